-- Close the app's breaker for the fleet; tells subscribers only if there was one.
--
-- KEYS[1] block hash   ARGV[1] events channel   ARGV[2] app
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({app = ARGV[2], kind = 'block'}))
  return 1
end
return 0
