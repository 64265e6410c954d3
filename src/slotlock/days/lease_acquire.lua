-- Acquire the lease of one day, with a fresh fencing token.
-- KEYS[1]  sl:{P}:lease   string "token:holder:nonce", with PX expiry
-- KEYS[2]  sl:{P}:fence   integer, the last token granted for this day
-- ARGV[1]  holder id (worker id, no ':')
-- ARGV[2]  lease ttl in milliseconds
-- ARGV[3]  nonce: random per grant, so no two grants share a value even if the fence
--          counter went back and two workers share an id
-- returns  {1, token}            granted: token is one more than any before it
--          {0, holder, pttl_ms}  held by someone else (or by this holder under an older token)
local current = redis.call("GET", KEYS[1])
if current then
  local sep = string.find(current, ":", 1, true)
  local rest = string.sub(current, sep + 1)
  local holder = string.match(rest, "^(.*):[^:]*$") or rest
  return {0, holder, redis.call("PTTL", KEYS[1])}
end
local token = redis.call("INCR", KEYS[2])
redis.call("SET", KEYS[1], token .. ":" .. ARGV[1] .. ":" .. ARGV[3], "PX", ARGV[2])
return {1, token}
