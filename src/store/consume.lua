-- Verification hot path, atomic: revocation check, single use (a retry of the same request is
-- recognised), usage record, lookup grant, live status. All keys carry the member's hash tag, so
-- they share one Cluster slot.
-- KEYS: 1 code state ("R" once revoked; once used "<centre>|<request id>|<unix>|<grant>|<claims>"),
--       2 usage list of every verdict but VALID, 3 usage list of VALID entries, 4 registry record
-- ARGV: 1 used state to set, or '' to only record the verdict ARGV[7] (an authentic code that
--       failed an offline check), 2 TTL of the used state (s),
--       3 usage entry key "<centre>|<purpose>|<code id>|", 4 now (unix), 5 entries kept per list,
--       6 "<centre>|<request id>|" of this request, or '' without a request id, 7 see ARGV[1]; when
--       consuming, the verdict to record if the code was used before ('' for ALREADY_USED;
--       DOUBLE_USE for a replayed deferred consumption), 8 seconds the usage lists live after
--       their latest entry (the configured retention)
-- Usage entries: "<centre>|<purpose>|<code id>|<verdict>|<first unix>|<last unix>|<count>".
-- Each redis.call costs Redis's single thread about a microsecond beyond the command itself
-- (docs/performance.md), so one SET NX GET both checks and consumes, the lookup grant rides in
-- the used state, LTRIM runs only once a list has outgrown its limit, and the live status is
-- read only for a valid code.
local result = ARGV[7]
local previous = false
if ARGV[1] ~= '' then
  previous = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
  if not previous then
    result = 'VALID'
  elseif previous == 'R' then
    result = 'CODE_REVOKED'
    previous = false
  elseif ARGV[6] ~= '' and string.sub(previous, 1, #ARGV[6]) == ARGV[6] then
    -- The same centre retrying the same request: that verification stands, nothing is added.
    return {'REPEATED', previous, redis.call('GET', KEYS[4])}
  elseif ARGV[7] ~= '' then
    result = ARGV[7]
  else
    result = 'ALREADY_USED'
  end
end
local kept = tonumber(ARGV[5])
if result == 'VALID' then
  -- VALID entries have a list of their own: at most one per code, so nothing a replayer does
  -- can push them out.
  if redis.call('LPUSH', KEYS[3], ARGV[3] .. 'VALID|' .. ARGV[4] .. '|' .. ARGV[4] .. '|1') > kept then
    redis.call('LTRIM', KEYS[3], 0, kept - 1)
  end
  redis.call('EXPIRE', KEYS[3], ARGV[8])
  return {result, false, redis.call('GET', KEYS[4])}
end
-- A repeat of the newest entry (a replayed code) counts up that entry instead of adding one.
local prefix = ARGV[3] .. result .. '|'
local newest = redis.call('LINDEX', KEYS[2], 0)
local first, count
if newest and string.sub(newest, 1, #prefix) == prefix then
  first, count = string.match(newest, '^(%d+)|%d+|(%d+)$', #prefix + 1)
end
if count then
  redis.call('LSET', KEYS[2], 0, prefix .. first .. '|' .. ARGV[4] .. '|' .. string.format('%d', math.min(tonumber(count) + 1, 4294967295)))
elseif redis.call('LPUSH', KEYS[2], prefix .. ARGV[4] .. '|' .. ARGV[4] .. '|1') > kept then
  redis.call('LTRIM', KEYS[2], 0, kept - 1)
end
redis.call('EXPIRE', KEYS[2], ARGV[8])
return {result, previous, false}
