-- Remove delivered events from the head of a day's outbox, and only those.
-- commit.lua only appends (RPUSH) and publishers only remove from the head, so the
-- entries a publisher read with LRANGE 0 n-1 are still the head unless another
-- publisher removed them first; the matching prefix is removed, nothing else.
-- KEYS[1]  sl:{P}:outbox   list of event json
-- ARGV[1..n] the event json the caller delivered, in outbox order from the head
-- returns  number of entries removed
local n = #ARGV
if n == 0 then
  return 0
end
local head = redis.call("LRANGE", KEYS[1], 0, n - 1)
local k = 0
for i = 1, #head do
  if head[i] ~= ARGV[i] then
    break
  end
  k = i
end
if k > 0 then
  redis.call("LTRIM", KEYS[1], k, -1)
end
return k
