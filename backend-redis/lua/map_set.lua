-- map_set: set keys if their conditions hold, in order, in one step (one write or a batch).
-- KEYS[1] hash; ARGV[1..4] see prelude; then 4 arguments per write from ARGV[5] on:
-- condition ("always" | "absent" | "equal"), key, value, test value ("" unless "equal").
-- Returns 4 values per write: epoch, rev, written (0|1), previous value or nil;
-- error PULSE_INVALID when the stored revision is not an integer (nothing changed).
-- Later writes see earlier ones; the values and the bookkeeping are written by one HSET at
-- the end, and one frame is published for all the sets written: a plain set notice for one,
-- a batch (tag 4, see pulse::codec::MapNotice) for several. Values travel in order while
-- they fit in NOTICE_BUDGET (prelude); the others as `changed` (key only).
-- The bookkeeping and the first write's previous value in one read.
local meta = redis.call('HMGET', hash, '=epoch', '=rev', ARGV[6] or '=epoch')
local stored_epoch = tonumber(meta[1] or '0') or 0
local rev = 0
if meta[2] then
  rev = tonumber(meta[2])
  if not rev then return redis.error_reply('PULSE_INVALID revision is not an integer') end
end
-- The epoch reported: the stored one, or the seed once a write creates the generation.
local epoch = stored_epoch
local out, sets, pending, fields, first_rev = {}, {}, {}, {}, nil
local budget, first_carried = NOTICE_BUDGET, true
for i = 5, #ARGV, 4 do
  local cond, key, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local prev = pending[key]
  if prev == nil then
    if i == 5 then prev = meta[3] else prev = redis.call('HGET', hash, key) end
  end
  local write = cond == 'always' or (cond == 'absent' and not prev)
    or (cond == 'equal' and prev == ARGV[i + 3])
  if write then
    if epoch == 0 then epoch = tonumber(seed) end
    rev = rev + 1
    first_rev = first_rev or rev
    pending[key] = value
    fields[#fields + 1] = key
    fields[#fields + 1] = value
    if #value <= budget then
      budget = budget - #value
      sets[#sets + 1] = struct.pack('<I4c0I4c0', #key, key, #value, value)
    else
      if #sets == 0 then first_carried = false end
      sets[#sets + 1] = struct.pack('<I4c0I4', #key, key, 4294967295)
    end
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = epoch, rev, write and 1 or 0, prev
end
if first_rev then
  fields[#fields + 1] = '=kind'
  fields[#fields + 1] = 'set'
  fields[#fields + 1] = '=rev'
  fields[#fields + 1] = string.format('%d', rev)
  if stored_epoch == 0 then
    fields[#fields + 1] = '=epoch'
    fields[#fields + 1] = seed
  end
  redis.call('HSET', hash, unpack(fields))
  if #sets == 1 and not first_carried then
    redis.call('PUBLISH', channel, struct.pack('<BI8I8B', 2, epoch, first_rev, 5) .. string.sub(sets[1], 1, -5))
  elseif #sets == 1 then
    redis.call('PUBLISH', channel, struct.pack('<BI8I8B', 2, epoch, first_rev, 0) .. sets[1])
  else
    redis.call('PUBLISH', channel,
      struct.pack('<BI8I8BI4', 2, epoch, first_rev, 4, #sets) .. table.concat(sets))
  end
end
apply_ttl()
return out
