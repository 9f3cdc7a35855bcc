-- pool_claim: singleton admission of a job key.
-- KEYS[1] pending-guards hash (a map), KEYS[2] job-records hash; ARGV[1..4] see prelude;
-- ARGV[5] job key, ARGV[6] now (decimal ns), ARGV[7] deadline (decimal ns).
-- Returns {"running"} | {"pending", guard} | {"malformed", guard}
--       | {"claimed", deadline, epoch, rev}.
local key, now, deadline = ARGV[5], ARGV[6], ARGV[7]
if redis.call('HEXISTS', KEYS[2], key) == 1 then return { 'running' } end
local guard = redis.call('HGET', hash, key)
if guard then
  if not string.match(guard, '^%d+$') then return { 'malformed', guard } end
  -- Compare decimal strings of any length as integers.
  local g, n = string.gsub(guard, '^0+', ''), string.gsub(now, '^0+', '')
  if #g > #n or (#g == #n and g >= n) then return { 'pending', guard } end
end
redis.call('HSET', hash, key, deadline)
local epoch, rev = bump('set')
publish_set(epoch, rev, key, deadline)
apply_ttl()
return { 'claimed', deadline, epoch, rev }
