-- Shared helpers, prepended to every map script (see src/scripts.rs).
-- Map scripts take KEYS[1] = the map's hash and
--   ARGV[1] = notice channel, ARGV[2] = epoch seed (decimal, < 2^53),
--   ARGV[3] = TTL mode ("" | "abs" | "slide"), ARGV[4] = TTL in ms,
-- followed by their own arguments from ARGV[5] on.
-- Notices use postcard's layout (see pulse::codec): varint lengths. Only what several
-- scripts need lives here: every helper defined costs every call of every script.

local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end

local function str(s)
  return varint(#s) .. s
end

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

-- Notice frame: version 1, varint epoch, varint rev, variant, fields.
local function notice(epoch, rev, variant, body)
  return string.char(1) .. varint(epoch) .. varint(rev) .. varint(variant) .. (body or '')
end

local function publish_set(epoch, rev, key, value)
  redis.call('PUBLISH', channel, notice(epoch, rev, 0, str(key) .. str(value)))
end

local function publish_del(epoch, rev, key)
  redis.call('PUBLISH', channel, notice(epoch, rev, 1, str(key)))
end

local function apply_ttl()
  if ARGV[3] == 'abs' then
    redis.call('PEXPIRE', hash, ARGV[4], 'NX')
  elseif ARGV[3] == 'slide' then
    redis.call('PEXPIRE', hash, ARGV[4])
  end
end
