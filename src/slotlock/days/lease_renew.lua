-- Extend a lease, only for the holder that still carries its token.
-- KEYS[1]  sl:{P}:lease   string "token:holder:nonce", with PX expiry
-- ARGV[1]  "token:holder:nonce" as granted
-- ARGV[2]  lease ttl in milliseconds
-- returns  1 renewed, 0 lost (expired or held under another token)
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
