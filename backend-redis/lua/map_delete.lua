-- map_delete: delete a key if present and a condition holds.
-- KEYS[1] hash; ARGV[1..4] see prelude; ARGV[5] condition ("always" | "equal"),
-- ARGV[6] key, ARGV[7] test. Returns {epoch, rev, deleted (0|1), previous value or nil}.
local cond, key = ARGV[5], ARGV[6]
local prev = redis.call('HGET', hash, key)
local delete = prev and (cond == 'always' or prev == ARGV[7])
local epoch, rev
if delete then
  redis.call('HDEL', hash, key)
  epoch, rev = bump('del')
  publish_del(epoch, rev, key)
else
  epoch, rev = current()
end
apply_ttl()
return { epoch, rev, delete and 1 or 0, prev }
