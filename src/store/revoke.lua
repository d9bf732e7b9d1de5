-- Revokes a code issued here: overwrites its state (a used state too, which ends the lookup
-- grant of its verification) with "R". Nothing is written for a code the member does not hold.
-- KEYS: 1 issued mark, 2 code state; ARGV: 1 TTL of the revoked state (s)
-- Returns 1 revoked, 0 no such live code.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], 'R', 'EX', ARGV[1])
return 1
