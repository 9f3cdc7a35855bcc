-- map_set: set a key if a condition holds.
-- KEYS[1] hash; ARGV[1..4] see prelude;
-- ARGV[5] condition ("always" | "absent" | "equal"), ARGV[6] key, ARGV[7] value, ARGV[8] test.
-- Returns {epoch, rev, written (0|1), previous value or nil}.
local cond, key, value = ARGV[5], ARGV[6], ARGV[7]
local prev = redis.call('HGET', hash, key)
local write = cond == 'always' or (cond == 'absent' and not prev) or (cond == 'equal' and prev == ARGV[8])
local epoch, rev
if write then
  redis.call('HSET', hash, key, value)
  epoch, rev = bump('set')
  publish_set(epoch, rev, key, value)
else
  epoch, rev = current()
end
apply_ttl()
return { epoch, rev, write and 1 or 0, prev }
