-- Compare-and-set of one registry record: stored only if its version is newer than the stored
-- one, and at most ARGV[3] newer (a forged or mistyped version would otherwise pin the record).
-- KEYS: 1 registry record ("<version>|...", see encode_record in redis.rs)
-- ARGV: 1 version (below 2^42, exact in Lua numbers), 2 record, 3 largest version step
-- Returns 1 stored, 0 not newer, 2 step too large, 3 stored record unreadable.
local stored = redis.call('GET', KEYS[1])
if stored then
  local version = tonumber(string.match(stored, '^(%d+)|'))
  if not version then
    return 3
  end
  local new = tonumber(ARGV[1])
  if new <= version then
    return 0
  end
  if new - version > tonumber(ARGV[3]) then
    return 2
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
