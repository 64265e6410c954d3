-- One worker's heartbeat in the fair share (workers/share.py): write its count of days held,
-- stamped with Redis's clock (not the host's: the workers' hosts may disagree), delete the
-- counts written more than forget_ms ago, and return the live ones. Done in one step, so a
-- count is deleted only if it is still the stale one read (a worker that resumed and wrote a
-- fresh count in between keeps it).
-- KEYS[1]  sl:workers:load   hash: worker instance -> {"held": n, "at": seconds}
-- ARGV[1]  this worker's instance ("worker-id:nonce")
-- ARGV[2]  days it holds, or "" to remove its count (it stops)
-- ARGV[3]  live_ms: counts written within this are live
-- ARGV[4]  forget_ms: counts written before this are deleted
-- returns  {instance, held, instance, held, ...} for the live counts (this one included)
local t = redis.call("TIME")
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == "" then
  redis.call("HDEL", KEYS[1], ARGV[1])
else
  redis.call("HSET", KEYS[1], ARGV[1],
             cjson.encode({held = tonumber(ARGV[2]), at = now_ms / 1000}))
end
local live_ms, forget_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local all = redis.call("HGETALL", KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local ok, load = pcall(cjson.decode, all[i + 1])
  local held = ok and type(load) == "table" and tonumber(load.held)
  local at = ok and type(load) == "table" and tonumber(load.at)
  if not held or not at or now_ms - at * 1000 > forget_ms then
    redis.call("HDEL", KEYS[1], all[i])
  elseif now_ms - at * 1000 <= live_ms then
    live[#live + 1] = all[i]
    live[#live + 1] = held
  end
end
return live
