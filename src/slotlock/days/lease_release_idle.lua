-- Give up the lease of a day its holder found idle, only if it is still ours and no command
-- came after the holder's cursor: the check and the release are one step, so a command
-- appended before the release is never left behind a released lease unseen (its holder
-- decides it), and one appended after it finds the lease free (its submitter's wake-up
-- brings a worker).
-- KEYS[1]  sl:{P}:lease   string "token:holder:nonce"
-- KEYS[2]  sl:{P}:cmds    the day's command stream
-- ARGV[1]  "token:holder:nonce" as granted
-- ARGV[2]  the holder's cursor: the id of the last command it committed ("0-0": none)
-- returns  1 released, 0 kept (commands after the cursor), -1 it was no longer ours
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return -1
end
if #redis.call("XRANGE", KEYS[2], "(" .. ARGV[2], "+", "COUNT", 1) > 0 then
  return 0
end
redis.call("DEL", KEYS[1])
return 1
