-- map_set: set a key if a condition holds.
-- KEYS[1] hash; ARGV[1..4] see prelude;
-- ARGV[5] condition ("always" | "absent" | "equal"), ARGV[6] key, ARGV[7] value, ARGV[8] test.
-- Returns {epoch, rev, written (0|1), previous value or nil}.
local cond, key, value = ARGV[5], ARGV[6], ARGV[7]
-- One read for the previous value and the epoch, one HSET for the value and bookkeeping.
local m = redis.call('HMGET', hash, key, '=epoch')
local prev = m[1]
local write = cond == 'always' or (cond == 'absent' and not prev) or (cond == 'equal' and prev == ARGV[8])
local epoch, rev
if write then
  epoch, rev = commit('set', m[2], key, value)
  publish_set(epoch, rev, key, value)
else
  epoch, rev = current()
end
apply_ttl()
return { epoch, rev, write and 1 or 0, prev }
