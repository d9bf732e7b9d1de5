-- Revokes a code issued here: its field in the member's used-codes hash becomes
-- "R|<unix>|<used state, if it was used>", which ends the lookup grant of its verification but
-- keeps the use in the member's usage record. Nothing is written for a code the member does not
-- hold.
-- KEYS: 1 issued mark, 2 used-codes hash; ARGV: 1 code id, 2 now (unix), 3 lifetime of the hash (s)
-- Returns 1 revoked (now or before), 0 no such live code.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local state = redis.call('HGET', KEYS[2], ARGV[1])
if state and string.sub(state, 1, 2) == 'R|' then
  return 1
end
redis.call('HSET', KEYS[2], ARGV[1], 'R|' .. ARGV[2] .. '|' .. (state or ''))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
