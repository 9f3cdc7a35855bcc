-- stream_add_once: append unless the dedup key holds an earlier append's ID.
-- KEYS[1] stream, KEYS[2] dedup key (same hash tag).
-- ARGV[1] window in ms, ARGV[2] '1' to create a missing stream, ARGV[3] MAXLEN ('' none),
-- ARGV[4] TTL in ms ('' none), ARGV[5] TTL mode ('abs' keeps an existing expiry),
-- ARGV[6..] field/value pairs.
-- Returns {id, 1} when appended, {earlier id, 0} when deduplicated, {false, 0} when the
-- stream is missing and not to be created (then nothing is stored).
local earlier = redis.call('GET', KEYS[2])
if earlier then
  return {earlier, 0}
end
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return {false, 0}
end
local args = {KEYS[1]}
if ARGV[3] ~= '' then
  args[#args + 1] = 'MAXLEN'
  args[#args + 1] = '~'
  args[#args + 1] = ARGV[3]
end
args[#args + 1] = '*'
for i = 6, #ARGV do
  args[#args + 1] = ARGV[i]
end
local id = redis.call('XADD', unpack(args))
if ARGV[4] ~= '' then
  if ARGV[5] == 'abs' then
    redis.call('PEXPIRE', KEYS[1], ARGV[4], 'NX')
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {id, 1}
