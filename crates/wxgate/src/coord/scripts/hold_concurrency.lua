-- Let one instance hold part of an app's fleet-wide concurrent sends, never letting the
-- holdings of all live instances add up to more than `limit`, and sharing them max-min fairly
-- by what each wants: an instance wanting less than an even split gets all it wants, the rest
-- is split evenly among the others (water-filling), so a newcomer gets its share as the
-- others renew theirs. A holding never drops below `floor` (the sends the
-- instance is running now): those were granted before, so the sum stays within the limit.
-- Holdings live `ttl` after their instance's last call (a heartbeat), so a crashed
-- instance's share frees itself. Expiries are in Redis' own clock (TIME, ms).
--
-- KEYS[1] holdings hash {instance -> count}   KEYS[2] wanting zset {instance -> expiry ms}
-- KEYS[3] wants hash {instance -> want}
-- ARGV[1] instance   ARGV[2] want (0 releases)   ARGV[3] limit   ARGV[4] ttl in ms (>= 1)
-- ARGV[5] floor (sends that run or may start at the instance, <= its current holding)
--
-- Returns {held, wanting, share}: what the instance now holds, how many instances want some,
-- and its fair share (it should start no more sends than that: holding more than its share,
-- because of `floor`, it drains to its share and holds less at its next call).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, want, limit, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local floor = tonumber(ARGV[5])

-- Forget instances that stopped calling.
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
  redis.call('HDEL', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[3], unpack(dead))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end

if want > 0 or floor > 0 then
  redis.call('ZADD', KEYS[2], now + ttl, me)
  redis.call('HSET', KEYS[3], me, want)
else
  redis.call('ZREM', KEYS[2], me)
  redis.call('HDEL', KEYS[3], me)
end
local wanting = redis.call('ZCARD', KEYS[2])

-- The water level: fill the smallest wants first, split what is left evenly.
local wants = {}
local all = redis.call('HVALS', KEYS[3])
for i = 1, #all do
  wants[i] = tonumber(all[i])
end
table.sort(wants)
local cap, left = limit, limit
for i = 1, #wants do
  local share = left / (#wants - i + 1)
  if wants[i] > share then
    cap = math.ceil(share)
    break
  end
  left = left - wants[i]
end

local others = 0
local held = redis.call('HGETALL', KEYS[1])
for i = 1, #held, 2 do
  if held[i] ~= me then
    others = others + tonumber(held[i + 1])
  end
end

local granted = math.max(floor, math.max(0, math.min(want, cap, limit - others)))
if granted > 0 then
  redis.call('HSET', KEYS[1], me, granted)
else
  redis.call('HDEL', KEYS[1], me)
end

-- Both keys live until the last live instance's expiry, then Redis drops them.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #last == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
else
  redis.call('PEXPIREAT', KEYS[1], last[2])
  redis.call('PEXPIREAT', KEYS[2], last[2])
  redis.call('PEXPIREAT', KEYS[3], last[2])
end
return {granted, wanting, math.min(cap, want)}
