-- Append a command to a day's stream, at most once per idempotency key, within the backlog.
-- KEYS[1]  sl:{P}:cmds    stream of commands (field "c": command json)
-- KEYS[2]  sl:{P}:idem    hash idempotency key -> "<command id> <request fingerprint>"
-- KEYS[3]  sl:{P}:state   hash; field "pending" counts queued, not yet applied commands
-- KEYS[4]  sl:{P}:done    hash command id -> outcome json ("" while pending)
-- KEYS[5]  sl:{P}:reply:<ARGV[1]>  (optional) the reply list the caller waits on in the
--          same pipeline (BLMOVE after this script): whenever nothing is queued, a marker
--          "-" goes there so that the wait returns at once instead of at its timeout
-- ARGV[1]  command id
-- ARGV[2]  command json
-- ARGV[3]  idempotency key (actor-scoped), or "" for none
-- ARGV[4]  backlog limit (0: none)
-- ARGV[5]  request fingerprint (with a key: a retry must carry the same one)
-- ARGV[6]  "1": the caller refuses this command (outside the booking window, no such day)
--          unless it is a retry of one queued before: then nothing is written
-- ARGV[7]  marker TTL in ms, with KEYS[5]
-- returns  {"queued", stream id}
--          {"duplicate", first command id, its outcome json ("" while pending)}; also for
--                        a command id already queued (redis-py's cluster pipeline sends a
--                        command whose node timed out again: its first run may have landed)
--          {"mismatch", first command id}   the key was used for another request body
--          {"busy", pending}
--          {"refused"}                   ARGV[6] and no earlier command with this key
local function told(reply)
  if KEYS[5] then
    redis.call("RPUSH", KEYS[5], "-")
    redis.call("PEXPIRE", KEYS[5], ARGV[7])
  end
  return reply
end
if ARGV[3] ~= "" then
  local first = redis.call("HGET", KEYS[2], ARGV[3])
  if first then
    local sep = string.find(first, " ", 1, true)
    local cid = first
    if sep then
      cid = string.sub(first, 1, sep - 1)
      if string.sub(first, sep + 1) ~= ARGV[5] then
        return told({"mismatch", cid})
      end
    end
    return told({"duplicate", cid, redis.call("HGET", KEYS[4], cid) or ""})
  end
end
if ARGV[6] == "1" then
  return told({"refused"})
end
local seen = redis.call("HGET", KEYS[4], ARGV[1])
if seen then
  return told({"duplicate", ARGV[1], seen})
end
local pending = tonumber(redis.call("HGET", KEYS[3], "pending") or "0")
local limit = tonumber(ARGV[4])
if limit > 0 and pending >= limit then
  return told({"busy", tostring(pending)})
end
local id = redis.call("XADD", KEYS[1], "*", "c", ARGV[2])
if ARGV[3] ~= "" then
  redis.call("HSET", KEYS[2], ARGV[3], ARGV[1] .. " " .. ARGV[5])
end
redis.call("HINCRBY", KEYS[3], "pending", 1)
redis.call("HSET", KEYS[4], ARGV[1], "")
return {"queued", id}
