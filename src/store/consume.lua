-- Verification hot path, atomic: revocation check, single use, usage record, lookup grant,
-- live status. All keys carry the member's hash tag, so they share one Cluster slot.
-- KEYS: 1 revoked mark, 2 used mark, 3 usage list, 4 grant, 5 registry status
-- ARGV: 1 used-mark value "<unix>|<centre>", 2 used-mark TTL (s), 3 grant TTL (s),
--       4 usage entry without its result ("<unix>|<centre>|<purpose>|<code id>|"), 5 entries kept,
--       6 the verified deposit claims (JSON), kept with the lookup grant
local result
local previous = false
if redis.call('EXISTS', KEYS[1]) == 1 then
  result = 'CODE_REVOKED'
else
  previous = redis.call('GET', KEYS[2])
  if previous then
    result = 'ALREADY_USED'
  else
    redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
    redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[3])
    result = 'VALID'
  end
end
redis.call('LPUSH', KEYS[3], ARGV[4] .. result)
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
local live = false
if result == 'VALID' then
  live = redis.call('HGET', KEYS[5], 'd')
end
return {result, previous, live}
