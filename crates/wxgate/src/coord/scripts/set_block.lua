-- Open the app's breaker for the fleet until a time; the last writer wins.
--
-- KEYS[1] block hash {until_ms, reason}   ARGV[1] until_ms   ARGV[2] reason (JSON)
-- ARGV[3] TTL in ms (> 0, from the caller's clock)   ARGV[4] events channel   ARGV[5] app
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'until_ms', ARGV[1], 'reason', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({app = ARGV[5], kind = 'block'}))
return 1
