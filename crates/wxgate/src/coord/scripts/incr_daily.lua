-- Count one more for today and make sure the counter expires.
--
-- KEYS[1] counter   ARGV[1] TTL in ms, set only when the key has none (the first increment),
-- so a counter never lives on without one (EXPIRE ... NX would need Redis 7).
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
