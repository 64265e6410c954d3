-- Commit a decided batch of one day: state, cursor, outcomes, outbox and replies, all or nothing.
-- The fence: the whole commit is refused unless the lease still carries the caller's token.
-- KEYS[1]    sl:{P}:lease    string "token:holder:nonce"
-- KEYS[2]    sl:{P}:state    hash bookings, cursor, version, token, lease, pending, applied
-- KEYS[3]    sl:{P}:done     hash command id -> outcome json
-- KEYS[4]    sl:{P}:outbox   list of event json waiting to be published
-- KEYS[5]    sl:{P}:tokens   list of tokens that committed (appended when the token changes)
-- KEYS[6..]  sl:{P}:reply:<command id>, one per outcome, in ARGV order
-- ARGV[1]    "token:holder:nonce" as granted
-- ARGV[2]    token
-- ARGV[3]    cursor the batch was read after ("0-0" for a new day)
-- ARGV[4]    new cursor (stream id of the last command in the batch)
-- ARGV[5]    bookings json
-- ARGV[6]    new version
-- ARGV[7]    reply ttl in milliseconds
-- ARGV[8]    number of outcomes n
-- ARGV[9]    number of outbox events m
-- ARGV[10..] n pairs (command id, outcome json), then m event json
-- returns    {1, version}                  committed
--            {0, "fenced", lease value}    refused: the lease is gone or someone else's
--            {0, "cursor", cursor, lease}  refused: the day moved on since the caller read it
--                                          (lease: the value of the grant that committed last)
-- fence:begin (the test-only broken build cuts from here to fence:end, see scripts.py)
local lease = redis.call("GET", KEYS[1])
if lease ~= ARGV[1] then
  return {0, "fenced", lease or ""}
end
local cursor = redis.call("HGET", KEYS[2], "cursor") or "0-0"
if cursor ~= ARGV[3] then
  return {0, "cursor", cursor, redis.call("HGET", KEYS[2], "lease") or ""}
end
-- fence:end
local n = tonumber(ARGV[8])
local m = tonumber(ARGV[9])
local last_token = redis.call("LINDEX", KEYS[5], -1)
if last_token ~= ARGV[2] then
  redis.call("RPUSH", KEYS[5], ARGV[2])
end
redis.call("HSET", KEYS[2], "bookings", ARGV[5], "cursor", ARGV[4], "version", ARGV[6],
  "token", ARGV[2], "lease", ARGV[1])
redis.call("HINCRBY", KEYS[2], "pending", -n)
redis.call("HINCRBY", KEYS[2], "applied", n)
local ttl = ARGV[7]
for i = 0, n - 1 do
  local id = ARGV[10 + 2 * i]
  local outcome = ARGV[11 + 2 * i]
  redis.call("HSET", KEYS[3], id, outcome)
  local reply = KEYS[6 + i]
  redis.call("RPUSH", reply, outcome)
  redis.call("PEXPIRE", reply, ttl)
end
for j = 0, m - 1 do
  redis.call("RPUSH", KEYS[4], ARGV[10 + 2 * n + j])
end
return {1, tonumber(ARGV[6])}
