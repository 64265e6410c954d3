-- Delete a key only while it still holds the value the caller wrote (compare-and-delete).
-- KEYS[1]  the key
-- ARGV[1]  the value the caller expects it to hold
-- returns  1 deleted · 0 absent or someone else's value
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
