-- lease_release: give a lease up if held by the caller.
-- KEYS[1] lease key; ARGV[1] holder. Returns 1 if it was released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
