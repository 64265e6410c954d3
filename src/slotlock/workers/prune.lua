-- Drop the outcomes and idempotency records of one day's commands once no retry can need them.
-- A retry finds its first command through the key's global record (TTL: the idempotency TTL,
-- set before the command was appended) or the day's idempotency hash; both must outlive the
-- global record, so only commands appended before the cutoff (now - TTL - margin) go.
-- Only commands folded into the day's verified retention snapshot go (the audit replays
-- from the snapshot, so it never misses their outcomes).
-- KEYS[1]  sl:{P}:snapshot  hash; field "cursor"
-- KEYS[2]  sl:{P}:done    hash command id -> outcome json ("" while pending)
-- KEYS[3]  sl:{P}:idem    hash idempotency key -> "<command id> <fingerprint>"
-- ARGV[1]  age in ms (the idempotency TTL plus a margin): commands appended longer ago than
--          this, by the Redis server's own clock (the clock of stream ids and TTLs), may go
-- returns  {pruned outcomes, pruned idempotency records}
local now = redis.call("TIME")
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local cursor = redis.call("HGET", KEYS[1], "cursor")
if not cursor then
  return {0, 0}
end
local cms, cseq = string.match(cursor, "^(%d+)-(%d+)$")
cms, cseq = tonumber(cms), tonumber(cseq)
local gone = {}
local pruned = 0
local done = redis.call("HGETALL", KEYS[2])
for i = 1, #done, 2 do
  local raw = done[i + 1]
  if raw ~= "" then
    local ms, seq = string.match(raw, '"stream_id":"(%d+)-(%d+)"')
    ms, seq = tonumber(ms), tonumber(seq)
    if ms and ms < cutoff and (ms < cms or (ms == cms and seq <= cseq)) then
      gone[done[i]] = true
      pruned = pruned + redis.call("HDEL", KEYS[2], done[i])
    end
  end
end
local idem = 0
if pruned > 0 then
  local records = redis.call("HGETALL", KEYS[3])
  for i = 1, #records, 2 do
    local value = records[i + 1]
    local sep = string.find(value, " ", 1, true)
    if sep then
      value = string.sub(value, 1, sep - 1)
    end
    if gone[value] then
      idem = idem + redis.call("HDEL", KEYS[3], records[i])
    end
  end
end
return {pruned, idem}
