-- Release a lease lock only if the caller still owns it (compare-and-delete).
--
-- KEYS[1] lock   ARGV[1] owner   ARGV[2] events channel   ARGV[3] app
-- Returns 1 when released, 0 when the lock had expired or belongs to someone else.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], cjson.encode({app = ARGV[3], kind = 'unlocked'}))
  return 1
end
return 0
