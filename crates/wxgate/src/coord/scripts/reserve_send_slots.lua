-- Reserve up to `want` send slots for an app on the fleet's one timeline (GCRA): the stored
-- "theoretical arrival time" (TAT) is where the next free slot starts. Slots handed out are
-- consecutive and never overlap, so however many instances call, sends start at most once per
-- interval. Times are Redis' own clock (TIME), in microseconds, so instances whose clocks
-- disagree still share one timeline.
--
-- KEYS[1] rate key (integer, µs)
-- ARGV[1] want (>= 1)   ARGV[2] interval in µs (>= 1)   ARGV[3] horizon in µs (>= interval):
--         how far ahead of now the last granted slot may end
-- ARGV[4] TTL in ms (longer than the horizon, so an idle app's key goes away by itself)
--
-- Returns {granted, first_in_us, retry_in_us}: the first granted slot starts first_in_us after
-- Redis' now, the next ones every interval; with nothing granted, one slot is free again
-- retry_in_us from now.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local want, interval, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- An idle app restarts at now: unused past capacity is not saved up for a burst.
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local room = math.floor((now + horizon - tat) / interval)
if room <= 0 then
  -- One slot fits once now + horizon reaches tat + interval.
  return {0, 0, tat + interval - horizon - now}
end
local granted = math.min(want, room)
-- %.0f: the value printed as an integer (tostring could switch to exponent notation).
redis.call('SET', KEYS[1], string.format('%.0f', tat + granted * interval), 'PX', ARGV[4])
return {granted, tat - now, 0}
