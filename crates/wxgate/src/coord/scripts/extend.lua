-- Extend a lease lock only if the caller still owns it (compare-and-PEXPIRE).
--
-- KEYS[1] lock   ARGV[1] owner   ARGV[2] lease in ms
-- Returns 1 when extended, 0 when the lock had expired or belongs to someone else.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
