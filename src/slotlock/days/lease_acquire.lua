-- Acquire the lease of one day, with a fresh fencing token; granted, optionally read the
-- day's committed state and the commands after its cursor in the same step.
-- KEYS[1]  sl:{P}:lease   string "token:holder:nonce", with PX expiry
-- KEYS[2]  sl:{P}:fence   integer, the last token granted for this day
-- KEYS[3]  sl:{P}:state   (optional) hash of the committed state
-- KEYS[4]  sl:{P}:cmds    (optional) the day's command stream
-- ARGV[1]  holder id (worker id, no ':')
-- ARGV[2]  lease ttl in milliseconds
-- ARGV[3]  nonce: random per grant, so no two grants share a value even if the fence
--          counter went back and two workers share an id
-- ARGV[4]  (with KEYS[3..4]) at most this many commands
-- ARGV[5..] (with KEYS[3..4]) the state fields to read
-- returns  {1, token}                    granted: token is one more than any before it
--          {1, token, state, commands}   granted, with the read: state as HMGET of the
--                                        fields, commands as XRANGE after its cursor
--          {0, holder, pttl_ms}          held by someone else (or by this holder under an
--                                        older token)
local current = redis.call("GET", KEYS[1])
if current then
  local sep = string.find(current, ":", 1, true)
  local rest = string.sub(current, sep + 1)
  local holder = string.match(rest, "^(.*):[^:]*$") or rest
  return {0, holder, redis.call("PTTL", KEYS[1])}
end
local token = redis.call("INCR", KEYS[2])
redis.call("SET", KEYS[1], token .. ":" .. ARGV[1] .. ":" .. ARGV[3], "PX", ARGV[2])
if not KEYS[3] then
  return {1, token}
end
local fields = {}
local cursor_at = 0
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
  if ARGV[i] == "cursor" then
    cursor_at = #fields
  end
end
local state = redis.call("HMGET", KEYS[3], unpack(fields))
local cursor = state[cursor_at] or "0-0"
local commands = redis.call("XRANGE", KEYS[4], "(" .. cursor, "+", "COUNT", ARGV[4])
return {1, token, state, commands}
