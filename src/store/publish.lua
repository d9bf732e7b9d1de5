-- Compare-and-set of one registry record: stored only if its version is newer.
-- KEYS: 1 registry record ("<version>|...", see encode_record in redis.rs)
-- ARGV: 1 version (integer below 2^53, exact in Lua numbers), 2 record
local stored = redis.call('GET', KEYS[1])
if stored and tonumber(string.match(stored, '^%d+')) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
