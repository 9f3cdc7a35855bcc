-- map_reset: clear every user key if each (key, value) test holds. A reset leaves a
-- tombstone (bookkeeping fields only) so revisions continue; a destroy deletes the hash,
-- leaving nothing behind (a later write starts a new generation).
-- KEYS[1] hash; ARGV[1..4] see prelude; ARGV[5] "reset" | "destroy",
-- ARGV[6..] test key, test value, … (none = unconditional).
-- Returns {epoch, rev, reset (0|1)}.
local kind = ARGV[5]
-- HMGET also fails with WRONGTYPE before anything is deleted.
local meta = redis.call('HMGET', hash, '=epoch', '=rev')
for i = 6, #ARGV, 2 do
  if redis.call('HGET', hash, ARGV[i]) ~= ARGV[i + 1] then
    apply_ttl()
    return { tonumber(meta[1] or '0') or 0, tonumber(meta[2] or '0') or 0, 0 }
  end
end
-- Keep the epoch as its original text: tostring() of a large Lua number loses digits.
local epoch_text = meta[1]
if not epoch_text or not tonumber(epoch_text) or tonumber(epoch_text) == 0 then epoch_text = seed end
local epoch = tonumber(epoch_text)
local rev = (tonumber(meta[2] or '0') or 0) + 1
-- UNLINK: the hash leaves the keyspace now and a big one is freed off the main thread, so
-- clearing a map of any size never holds the server.
redis.call('UNLINK', hash)
if kind == 'destroy' then
  if meta[1] then publish_clear(epoch, rev, 3) end
  return { epoch, rev, 1 }
end
redis.call('HSET', hash, '=epoch', epoch_text, '=rev', string.format('%d', rev), '=kind', kind)
publish_clear(epoch, rev, 2)
apply_ttl()
return { epoch, rev, 1 }
