-- map_increment: add a delta to a decimal integer (absent = 0).
-- KEYS[1] hash; ARGV[1..4] see prelude; ARGV[5] key, ARGV[6] delta.
-- Returns {epoch, rev, new value}; error PULSE_INVALID when the value is not an integer
-- or the result overflows (nothing changed). Any other error of HINCRBY (WRONGTYPE, OOM,
-- READONLY, ...) is returned as the server gave it, to be typed by its code.
local key = ARGV[5]
local res = redis.pcall('HINCRBY', hash, key, ARGV[6])
if type(res) == 'table' and res.err then
  local invalid = string.sub(res.err, 1, 4) == 'ERR '
    and (string.find(res.err, 'not an integer', 1, true) or string.find(res.err, 'overflow', 1, true))
  if invalid then return redis.error_reply('PULSE_INVALID ' .. res.err) end
  return res
end
-- Read the value back as text: tostring() of a large Lua number loses digits.
local value = redis.call('HGET', hash, key)
local epoch, rev = bump('set')
publish_set(epoch, rev, key, value)
apply_ttl()
return { epoch, rev, value }
