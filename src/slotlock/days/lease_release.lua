-- Give a lease up, only if it is still ours (the caller then wakes the other workers).
-- KEYS[1]  sl:{P}:lease   string "token:holder:nonce"
-- ARGV[1]  "token:holder:nonce" as granted
-- returns  1 released, 0 it was no longer ours
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
