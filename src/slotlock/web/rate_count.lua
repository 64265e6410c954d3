-- Count one request against each of a verified token's rate limits (fixed windows that
-- start at the window's first request, like Flask-Limiter's "fixed-window" strategy).
-- KEYS[i]         the counter of limit i (all keys share the token's hash tag)
-- ARGV[i]         limit i's window in seconds
-- ARGV[#KEYS + i] limit i's number of requests per window
-- returns         0 if the request is within every limit, else the seconds until the
--                 latest of the exceeded windows ends (Retry-After)
local n = #KEYS
local wait = 0
for i = 1, n do
  local count = redis.call("INCR", KEYS[i])
  if count == 1 then
    redis.call("EXPIRE", KEYS[i], ARGV[i])
  end
  if count > tonumber(ARGV[n + i]) then
    local ttl = redis.call("TTL", KEYS[i])
    if ttl < 1 then
      ttl = 1
    end
    if ttl > wait then
      wait = ttl
    end
  end
end
return wait
