-- Append a command to a day's stream, at most once per idempotency key, within the backlog.
-- KEYS[1]  sl:{P}:cmds    stream of commands (field "c": command json)
-- KEYS[2]  sl:{P}:idem    hash idempotency key -> command id
-- KEYS[3]  sl:{P}:state   hash; field "pending" counts queued, not yet applied commands
-- KEYS[4]  sl:{P}:done    hash command id -> outcome json ("" while pending)
-- ARGV[1]  command id
-- ARGV[2]  command json
-- ARGV[3]  idempotency key (actor-scoped), or "" for none
-- ARGV[4]  backlog limit (0: none)
-- returns  {"queued", stream id} | {"duplicate", first command id} | {"busy", pending}
if ARGV[3] ~= "" then
  local first = redis.call("HGET", KEYS[2], ARGV[3])
  if first then
    return {"duplicate", first}
  end
end
local pending = tonumber(redis.call("HGET", KEYS[3], "pending") or "0")
local limit = tonumber(ARGV[4])
if limit > 0 and pending >= limit then
  return {"busy", tostring(pending)}
end
local id = redis.call("XADD", KEYS[1], "*", "c", ARGV[2])
if ARGV[3] ~= "" then
  redis.call("HSET", KEYS[2], ARGV[3], ARGV[1])
end
redis.call("HINCRBY", KEYS[3], "pending", 1)
redis.call("HSET", KEYS[4], ARGV[1], "")
return {"queued", id}
