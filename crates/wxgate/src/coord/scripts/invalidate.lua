-- Mark the stored token rejected, once, and only if it is the one the caller names.
--
-- KEYS[1] token hash   ARGV[1] token   ARGV[2] generation   ARGV[3] events channel   ARGV[4] app
-- Returns 1 = applied, 2 = already invalidated, 0 = stale (absent, other token or generation).
local cur = redis.call('HMGET', KEYS[1], 'token', 'generation', 'invalid')
if not cur[1] or cur[1] ~= ARGV[1] or tonumber(cur[2]) ~= tonumber(ARGV[2]) then
  return 0
end
if cur[3] == '1' then
  return 2
end
-- HSET keeps the hash's TTL.
redis.call('HSET', KEYS[1], 'invalid', '1')
redis.call('PUBLISH', ARGV[3], cjson.encode({app = ARGV[4], kind = 'invalidated', generation = tonumber(ARGV[2])}))
return 1
