-- Freeze a calendar's time zone before the first command computed in it is queued.
-- A command's day and instants are computed in the calendar's zone by the submitter; if the
-- zone could change afterwards, two days of different zones could hold the same instant.
-- The lock is taken only for the zone the submitter used, so a submitter that read the
-- zone before a change is told to read it again instead of locking the new one.
-- KEYS[1]  sl:{cal:<id>} calendar json (field "zone_locked" is added here)
-- ARGV[1]  the time zone the caller computed in
-- returns  {1}              locked (now or before) with that zone
--          {0, "missing"}   no such calendar
--          {0, zone}        the calendar's zone is another one: read it again
local raw = redis.call("GET", KEYS[1])
if not raw then
  return {0, "missing"}
end
local data = cjson.decode(raw)
if data["timezone"] ~= ARGV[1] then
  return {0, data["timezone"]}
end
if data["zone_locked"] ~= true then
  data["zone_locked"] = true
  redis.call("SET", KEYS[1], cjson.encode(data))
end
return {1}
