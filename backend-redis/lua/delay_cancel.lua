-- delay_cancel: forget a delayed event before it is released.
-- KEYS[1] due index (sorted set), KEYS[2] data (hash), same hash tag. ARGV[1] id.
-- Returns 1 when it was held, else 0.
local held = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return held
