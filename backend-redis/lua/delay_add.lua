-- delay_add: keep an event to append to its stream once due.
-- KEYS[1] due index (sorted set: id -> due ms), KEYS[2] data (hash: id -> packed
-- fields), both in the stream's hash tag.
-- ARGV[1] id (unique), ARGV[2] due time (ms since the epoch), ARGV[3] packed fields
-- (per field: 4-byte big-endian length and name, then the same for the value).
-- Returns the earliest due time held before the add (false: none; entries parked at
-- +inf as unreadable do not count).
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(+inf', 'WITHSCORES', 'LIMIT', 0, 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return first[2] or false
