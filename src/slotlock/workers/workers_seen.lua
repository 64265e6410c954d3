-- One worker's heartbeat in the list of workers (``slotlock status``): note when it was
-- last seen, by Redis's clock, and forget the workers not seen for forget_s (a PaaS gives
-- every deploy new worker ids: without this the list grows with every deploy, G8).
-- KEYS[1]  sl:workers        hash: worker id -> status json (written beside this script)
-- KEYS[2]  sl:workers:seen   zset: worker id -> unix seconds last seen
-- ARGV[1]  this worker's id
-- ARGV[2]  forget_s
-- returns  the number of workers forgotten
local t = redis.call("TIME")
local now = tonumber(t[1])
redis.call("ZADD", KEYS[2], now, ARGV[1])
-- entries written before this list existed are seen now, and forgotten in forget_s
for _, id in ipairs(redis.call("HKEYS", KEYS[1])) do
  redis.call("ZADD", KEYS[2], "NX", now, id)
end
local gone = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", now - tonumber(ARGV[2]))
for _, id in ipairs(gone) do
  redis.call("HDEL", KEYS[1], id)
  redis.call("ZREM", KEYS[2], id)
end
return #gone
