-- delay_info: how many delayed events are held and when the earliest readable one is due.
-- KEYS[1] due index (sorted set; unreadable entries are parked at +inf).
-- Returns {count, next due time or false}.
local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {redis.call('ZCARD', KEYS[1]), nxt[2] or false}
