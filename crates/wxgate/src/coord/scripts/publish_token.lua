-- Store a fetched token unless a newer generation is already stored.
--
-- KEYS[1] token hash {token, generation, expires_at_ms, fetched_at_ms, invalid}
-- KEYS[2] generation counter: a plain integer without TTL, so generations keep rising after
--         the token hash itself has expired
-- ARGV[1] token   ARGV[2] expires_at_ms   ARGV[3] fetched_at_ms
-- ARGV[4] based_on_generation ('' = none)   ARGV[5] TTL in ms (from the caller's clock)
-- ARGV[6] events channel   ARGV[7] app id
-- ARGV[8] '1' when WeChat just issued this token to the caller (it is current at WeChat, so an
--         invalid mark on the same string is cleared), else '0'
--
-- Returns {wrote, token, generation, expires_at_ms, fetched_at_ms, invalid}, all strings: the
-- record stored after the call. Numbers from ARGV are stored as the caller wrote them (a Lua
-- double printed with tostring would turn epoch milliseconds into 1.7e+12).
local cur = redis.call('HMGET', KEYS[1], 'token', 'generation', 'expires_at_ms', 'fetched_at_ms', 'invalid')

local function event(generation)
  redis.call('PUBLISH', ARGV[6], cjson.encode({app = ARGV[7], kind = 'token', generation = generation}))
end

if cur[1] and cur[1] == ARGV[1] then
  -- The same token again: keep its generation and its invalid mark (a token reported rejected
  -- stays rejected when another instance merely republishes it); only ever extend its expiry.
  -- WeChat issuing it again vouches for it: then the mark is cleared.
  if ARGV[8] == '1' and cur[5] == '1' then
    redis.call('HSET', KEYS[1], 'invalid', '0')
    cur[5] = '0'
    if tonumber(ARGV[2]) <= tonumber(cur[3]) then
      event(tonumber(cur[2]))
      return {'1', cur[1], cur[2], cur[3], cur[4], '0'}
    end
  end
  if tonumber(ARGV[2]) > tonumber(cur[3]) then
    redis.call('HSET', KEYS[1], 'expires_at_ms', ARGV[2], 'fetched_at_ms', ARGV[3])
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    event(tonumber(cur[2]))
    return {'1', cur[1], cur[2], ARGV[2], ARGV[3], cur[5]}
  end
  return {'0', cur[1], cur[2], cur[3], cur[4], cur[5]}
end

if cur[1] and ARGV[4] ~= '' and tonumber(cur[2]) > tonumber(ARGV[4]) then
  -- Someone published a newer token while this caller was fetching: keep it.
  return {'0', cur[1], cur[2], cur[3], cur[4], cur[5]}
end

-- A different token: the next generation above everything known, including the caller's own
-- view (so a Redis that lost its data does not send generations back to 1).
local gen = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(cur[2] or '0'),
  tonumber(ARGV[4] ~= '' and ARGV[4] or '0')) + 1
redis.call('SET', KEYS[2], gen)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'generation', gen, 'expires_at_ms', ARGV[2],
  'fetched_at_ms', ARGV[3], 'invalid', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
event(gen)
return {'1', ARGV[1], tostring(gen), ARGV[2], ARGV[3], '0'}
