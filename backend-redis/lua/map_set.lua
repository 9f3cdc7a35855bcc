-- map_set: set keys if their conditions hold, in order, in one step (one write or a batch).
-- KEYS[1] hash; ARGV[1..4] see prelude; then 4 arguments per write from ARGV[5] on:
-- condition ("always" | "absent" | "equal"), key, value, test value ("" unless "equal").
-- Returns 4 values per write: epoch, rev, written (0|1), previous value or nil.
-- Publishes one frame for all the sets written: a plain set notice for one, a batch (tag 4,
-- see pulse::codec::MapNotice) for several.
local out, sets, first_epoch, first_rev = {}, {}, nil, nil
for i = 5, #ARGV, 4 do
  local cond, key, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  -- One read for the previous value and the epoch, one HSET for the value and bookkeeping.
  local m = redis.call('HMGET', hash, key, '=epoch')
  local prev = m[1]
  local write = cond == 'always' or (cond == 'absent' and not prev)
    or (cond == 'equal' and prev == ARGV[i + 3])
  local epoch, rev
  if write then
    epoch, rev = commit('set', m[2], key, value)
    if not first_rev then first_epoch, first_rev = epoch, rev end
    sets[#sets + 1] = struct.pack('<I4c0I4c0', #key, key, #value, value)
  else
    epoch, rev = current()
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = epoch, rev, write and 1 or 0, prev
end
if #sets == 1 then
  redis.call('PUBLISH', channel, struct.pack('<BI8I8B', 2, first_epoch, first_rev, 0) .. sets[1])
elseif #sets > 1 then
  redis.call('PUBLISH', channel,
    struct.pack('<BI8I8BI4', 2, first_epoch, first_rev, 4, #sets) .. table.concat(sets))
end
apply_ttl()
return out
