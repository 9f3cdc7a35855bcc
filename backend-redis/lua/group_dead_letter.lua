-- group_dead_letter: move a pending entry to a dead-letter stream, once.
-- KEYS[1] stream, KEYS[2] dead-letter stream (same hash tag);
-- ARGV[1] group, ARGV[2] entry ID, ARGV[3..] the dead letter's field/value pairs.
-- Returns the dead letter's ID, or false when the entry is not pending in the group
-- (acknowledged or moved already): then nothing is written.
-- The XADD comes first: a refusal there (WRONGTYPE, OOM) leaves the entry pending.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return false
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return id
