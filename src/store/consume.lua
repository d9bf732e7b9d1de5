-- Verification hot path, atomic: revocation check, single use, usage record, lookup grant,
-- live status. All keys carry the member's hash tag, so they share one Cluster slot.
-- KEYS: 1 code state ("R" once revoked; once used "<unix>|<centre>|<grant>|<claims>"),
--       2 usage list, 3 registry record
-- ARGV: 1 used state, 2 its TTL (s), 3 usage entry without its result
--       ("<unix>|<centre>|<purpose>|<code id>|"), 4 entries kept
-- Each redis.call costs Redis's single thread about a microsecond beyond the command itself
-- (docs/performance.md), so one SET NX GET both checks and consumes, the lookup grant rides in
-- the used state, LTRIM runs only once the list has outgrown its limit, and the live status is
-- read only for a valid code.
local result
local previous = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
if not previous then
  result = 'VALID'
elseif previous == 'R' then
  result = 'CODE_REVOKED'
  previous = false
else
  result = 'ALREADY_USED'
end
if redis.call('LPUSH', KEYS[2], ARGV[3] .. result) > tonumber(ARGV[4]) then
  redis.call('LTRIM', KEYS[2], 0, ARGV[4] - 1)
end
local live = false
if result == 'VALID' then
  live = redis.call('GET', KEYS[3])
end
return {result, previous, live}
