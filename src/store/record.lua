-- Records a verdict other than VALID in the member's usage record: a refused consumption, or an
-- authentic code that failed an offline check. A repeat of the newest entry (a replayed code)
-- counts up that entry instead of adding one, so a replayer cannot push older entries out fast.
-- KEYS: 1 usage list
-- ARGV: 1 entry key "<centre>|<purpose>|<code id>|", 2 verdict, 3 now (unix), 4 entries kept,
--       5 seconds the list lives after its latest entry (the configured retention)
-- Entries: "<centre>|<purpose>|<code id>|<verdict>|<first unix>|<last unix>|<count>".
local prefix = ARGV[1] .. ARGV[2] .. '|'
local newest = redis.call('LINDEX', KEYS[1], 0)
local first, count
if newest and string.sub(newest, 1, #prefix) == prefix then
  first, count = string.match(newest, '^(%d+)|%d+|(%d+)$', #prefix + 1)
end
if count then
  redis.call('LSET', KEYS[1], 0, prefix .. first .. '|' .. ARGV[3] .. '|' .. string.format('%d', math.min(tonumber(count) + 1, 4294967295)))
elseif redis.call('LPUSH', KEYS[1], prefix .. ARGV[3] .. '|' .. ARGV[3] .. '|1') > tonumber(ARGV[4]) then
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
