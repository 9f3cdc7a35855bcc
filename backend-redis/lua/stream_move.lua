-- stream_move: move an entry to another stream as a new entry, once.
-- KEYS[1] source stream, KEYS[2] target stream (same hash tag);
-- ARGV[1] entry ID, ARGV[2..] the new entry's field/value pairs.
-- Returns the new entry's ID, or false when the entry is not in the source (moved
-- already, deleted): then nothing is written.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return false
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
