-- Shared helpers, prepended to every map script (see src/scripts.rs).
-- Map scripts take KEYS[1] = the map's hash and
--   ARGV[1] = notice channel, ARGV[2] = epoch seed (decimal, < 2^53),
--   ARGV[3] = TTL mode ("" | "abs" | "slide"), ARGV[4] = TTL in ms,
-- followed by their own arguments from ARGV[5] on.
-- Only what several scripts need lives here: every helper defined costs every call of
-- every script.

local hash, channel, seed = KEYS[1], ARGV[1], ARGV[2]

-- Current {epoch, rev} without changing anything (0, 0 for a missing hash).
local function current()
  local m = redis.call('HMGET', hash, '=epoch', '=rev')
  return tonumber(m[1] or '0') or 0, tonumber(m[2] or '0') or 0
end

-- Writes the field/value pairs `...` together with the bookkeeping — the kind, and the
-- epoch when `stored_epoch` (the hash's current =epoch, possibly nil) says there is none —
-- in one HSET, then bumps the revision. Returns epoch, rev.
local function commit(kind, stored_epoch, ...)
  local epoch = tonumber(stored_epoch)
  if not epoch or epoch == 0 then
    epoch = tonumber(seed)
    redis.call('HSET', hash, '=kind', kind, '=epoch', seed, ...)
  else
    redis.call('HSET', hash, '=kind', kind, ...)
  end
  return epoch, redis.call('HINCRBY', hash, '=rev', '1')
end

-- Bumps the revision, records the kind, creates the epoch if needed.
local function bump(kind)
  return commit(kind, redis.call('HGET', hash, '=epoch'))
end

-- Notice frames (pulse::codec::MapNotice, version 2): fixed-width little-endian fields,
-- each frame one struct.pack call (building varints byte by byte in Lua cost more than the
-- rest of a write). Epochs and revisions stay below 2^53, exact in a Lua number.
-- A value over NOTICE_BUDGET (pulse::codec::NOTICE_VALUE_BUDGET) travels as a `changed`
-- notice (tag 5, key only): replicas read it from the hash.
local NOTICE_BUDGET = 1048576

local function publish_set(epoch, rev, key, value)
  if #value > NOTICE_BUDGET then
    redis.call('PUBLISH', channel, struct.pack('<BI8I8BI4c0', 2, epoch, rev, 5, #key, key))
  else
    redis.call('PUBLISH', channel, struct.pack('<BI8I8BI4c0I4c0', 2, epoch, rev, 0, #key, key, #value, value))
  end
end

local function publish_del(epoch, rev, key)
  redis.call('PUBLISH', channel, struct.pack('<BI8I8BI4c0', 2, epoch, rev, 1, #key, key))
end

-- A reset (tag 2) or destroy (tag 3) notice.
local function publish_clear(epoch, rev, tag)
  redis.call('PUBLISH', channel, struct.pack('<BI8I8B', 2, epoch, rev, tag))
end

local function apply_ttl()
  if ARGV[3] == 'abs' then
    redis.call('PEXPIRE', hash, ARGV[4], 'NX')
  elseif ARGV[3] == 'slide' then
    redis.call('PEXPIRE', hash, ARGV[4])
  end
end
