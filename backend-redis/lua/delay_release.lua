-- delay_release: append the due delayed events to their stream, in due order.
-- KEYS[1] stream, KEYS[2] due index (sorted set), KEYS[3] data (hash); one hash tag.
-- ARGV[1] most events to release, ARGV[2] MAXLEN ('' none), ARGV[3] TTL in ms ('' none),
-- ARGV[4] TTL mode ('abs' keeps an existing expiry).
-- Returns {released IDs, next due time or false, now in ms}. The whole release is one
-- script: an event is appended and forgotten together, or neither.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local released = {}
for _, id in ipairs(due) do
  local packed = redis.call('HGET', KEYS[3], id)
  if packed then
    local args = {KEYS[1]}
    if ARGV[2] ~= '' then
      args[#args + 1] = 'MAXLEN'
      args[#args + 1] = '~'
      args[#args + 1] = ARGV[2]
    end
    args[#args + 1] = '*'
    local pos = 1
    while pos <= #packed do
      local len
      len, pos = struct.unpack('>I4', packed, pos)
      args[#args + 1] = string.sub(packed, pos, pos + len - 1)
      pos = pos + len
    end
    released[#released + 1] = redis.call('XADD', unpack(args))
  end
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
end
if #released > 0 and ARGV[3] ~= '' then
  if ARGV[4] == 'abs' then
    redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX')
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {released, nxt[2] or false, now}
