-- Retain one old day: store a verified snapshot at a cursor, then trim the stream it replaces.
-- Safe against a concurrent commit: only entries at or before the snapshot cursor (all
-- applied: the caller took the cursor from the committed state) are trimmed, and a
-- snapshot never moves backwards. Outcomes and idempotency records are not touched here:
-- prune.lua drops them once they are older than the idempotency TTL.
-- KEYS[1]  sl:{P}:cmds      stream of commands
-- KEYS[2]  sl:{P}:state     hash; field "cursor"
-- KEYS[3]  sl:{P}:snapshot  hash bookings, cursor, version, applied, revision, taken_at
-- ARGV[1]  snapshot cursor C (a stream id)
-- ARGV[2]  first id after C, for XTRIM MINID (entries below it are removed)
-- ARGV[3]  bookings json at C
-- ARGV[4]  version at C
-- ARGV[5]  number of commands applied up to C
-- ARGV[6]  rules revision of the last command up to C ("" if none)
-- ARGV[7]  taken at (unix ms)
-- returns  {1, trimmed entries}
--          {0, "behind"}   the snapshot already has a cursor at or after C
--          {0, "ahead"}    C is after the committed cursor (never trim unapplied commands)
local function before(a, b)
  local ams, aseq = string.match(a, "^(%d+)-(%d+)$")
  local bms, bseq = string.match(b, "^(%d+)-(%d+)$")
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local c = ARGV[1]
local old = redis.call("HGET", KEYS[3], "cursor")
if old and not before(old, c) then
  return {0, "behind"}
end
local cursor = redis.call("HGET", KEYS[2], "cursor") or "0-0"
if before(cursor, c) then
  return {0, "ahead"}
end
redis.call("HSET", KEYS[3], "cursor", c, "bookings", ARGV[3], "version", ARGV[4],
  "applied", ARGV[5], "revision", ARGV[6], "taken_at", ARGV[7])
local trimmed = redis.call("XTRIM", KEYS[1], "MINID", ARGV[2])
return {1, trimmed}
