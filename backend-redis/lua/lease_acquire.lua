-- lease_acquire: take or renew a lease.
-- KEYS[1] lease key; ARGV[1] holder, ARGV[2] TTL in ms. Returns 1 if held by ARGV[1] now.
-- Expiry is the server's (PX), so holders need no synchronised clocks.
local cur = redis.call('GET', KEYS[1])
if not cur or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
