-- delay_release: append the due delayed events to their stream, in due order.
-- KEYS[1] stream, KEYS[2] due index (sorted set), KEYS[3] data (hash); one hash tag.
-- ARGV[1] most events to release, ARGV[2] MAXLEN ('' none), ARGV[3] TTL in ms ('' none),
-- ARGV[4] TTL mode ('abs' keeps an existing expiry).
-- Returns {released IDs, next due time or false, now in ms, unreadable IDs}. The whole
-- release is one script: an event is appended and forgotten together, or neither. An
-- entry whose data is not a packing of fields (foreign data) is parked at score +inf,
-- its data kept; an index entry without data is dropped; both are reported.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fields_of(packed)
  local out, pos, n = {}, 1, #packed
  while pos <= n do
    if pos + 3 > n then
      return nil
    end
    local len
    len, pos = struct.unpack('>I4', packed, pos)
    if pos + len - 1 > n then
      return nil
    end
    out[#out + 1] = string.sub(packed, pos, pos + len - 1)
    pos = pos + len
  end
  if #out == 0 or #out % 2 ~= 0 then
    return nil
  end
  return out
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local released, unreadable = {}, {}
for _, id in ipairs(due) do
  local packed = redis.call('HGET', KEYS[3], id)
  local fields = packed and fields_of(packed)
  if fields then
    local args = {KEYS[1]}
    if ARGV[2] ~= '' then
      args[#args + 1] = 'MAXLEN'
      args[#args + 1] = '~'
      args[#args + 1] = ARGV[2]
    end
    args[#args + 1] = '*'
    for _, f in ipairs(fields) do
      args[#args + 1] = f
    end
    released[#released + 1] = redis.call('XADD', unpack(args))
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[2], id)
  else
    unreadable[#unreadable + 1] = id
    if packed then
      redis.call('ZADD', KEYS[2], '+inf', id)
    else
      redis.call('ZREM', KEYS[2], id)
    end
  end
end
if #released > 0 and ARGV[3] ~= '' then
  if ARGV[4] == 'abs' then
    redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX')
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
end
local nxt = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {released, nxt[2] or false, now, unreadable}
