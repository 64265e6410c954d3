-- Forget a day in the index of days with work, unless new work came since the caller looked.
-- Submitters bump the day's score after appending, so an unchanged score proves that no
-- append happened after the caller saw the day drained.
-- KEYS[1]  sl:active      zset partition -> bump counter
-- ARGV[1]  partition
-- ARGV[2]  score the caller read before it checked that the day was drained
-- returns  1 removed, 0 kept
local score = redis.call("ZSCORE", KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call("ZREM", KEYS[1], ARGV[1])
  return 1
end
return 0
