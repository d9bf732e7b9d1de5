-- A code's used state (with the lookup grant of its verification) and the member's live status,
-- read together so that both come from one moment.
-- KEYS: 1 used-codes hash, 2 registry record; ARGV: 1 code id
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state or string.sub(state, 1, 2) == 'R|' then
  return {false, false}
end
return {state, redis.call('GET', KEYS[2])}
