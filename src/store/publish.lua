-- Compare-and-set of one registry record: stored only if its version is newer.
-- KEYS: 1 registry status hash (fields v = version, d = record)
-- ARGV: 1 version (integer below 2^53, exact in Lua numbers), 2 record
local stored = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if tonumber(ARGV[1]) > stored then
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
  return 1
end
return 0
