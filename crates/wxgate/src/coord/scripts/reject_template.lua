-- Remember for the fleet that WeChat rejected one template (or message type) of an app until a
-- time, so its other messages fail without a call. A template's later rejection wins; entries
-- over by the caller's clock are dropped on the way, so the hash stays small.
--
-- KEYS[1] templates hash {template -> JSON {errcode, reason, until_ms}}
-- ARGV[1] template   ARGV[2] record (JSON)   ARGV[3] until_ms   ARGV[4] TTL in ms (> 0, from
-- the caller's clock)   ARGV[5] events channel   ARGV[6] app   ARGV[7] caller's now in ms
-- Returns 1 when written (and subscribers were told), 0 when a longer rejection was stored.
local now, until_ms = tonumber(ARGV[7]), tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i + 1])
  local stored = ok and type(rec) == 'table' and tonumber(rec.until_ms) or nil
  if stored and stored <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif stored and all[i] == ARGV[1] and stored >= until_ms then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
-- The hash lives as long as its longest rejection (PTTL is -1 on a new hash).
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
redis.call('PUBLISH', ARGV[5], cjson.encode({app = ARGV[6], kind = 'template', template = ARGV[1]}))
return 1
