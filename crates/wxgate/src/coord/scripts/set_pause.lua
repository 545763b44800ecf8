-- Pause an app's sends for the fleet until a time; the later pause wins, so a short window
-- reported by one instance never cuts a longer one reported by another.
--
-- KEYS[1] pause hash {until_ms, reason}   ARGV[1] until_ms   ARGV[2] reason
-- ARGV[3] TTL in ms (> 0, from the caller's clock)   ARGV[4] events channel   ARGV[5] app
-- Returns 1 when the pause moved later (and subscribers were told), 0 when it already lasted
-- at least as long.
local cur = tonumber(redis.call('HGET', KEYS[1], 'until_ms') or '0')
if tonumber(ARGV[1]) <= cur then
  return 0
end
redis.call('HSET', KEYS[1], 'until_ms', ARGV[1], 'reason', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({app = ARGV[5], kind = 'pause'}))
return 1
