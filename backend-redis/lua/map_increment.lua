-- map_increment: add a delta to a decimal integer (absent = 0).
-- KEYS[1] hash; ARGV[1..4] see prelude; ARGV[5] key, ARGV[6] delta.
-- Returns {epoch, rev, new value}; error PULSE_INVALID when the value is not an integer
-- or the result overflows (nothing changed).
local key = ARGV[5]
local res = redis.pcall('HINCRBY', hash, key, ARGV[6])
if type(res) == 'table' and res.err then
  if string.find(res.err, 'WRONGTYPE', 1, true) then return res end
  return redis.error_reply('PULSE_INVALID ' .. res.err)
end
-- Read the value back as text: tostring() of a large Lua number loses digits.
local value = redis.call('HGET', hash, key)
local epoch, rev = bump('set')
publish_set(epoch, rev, key, value)
apply_ttl()
return { epoch, rev, value }
