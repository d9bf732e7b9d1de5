-- A code's state (with the lookup grant of its verification) and the member's live status, read
-- together so that both come from one moment.
-- KEYS: 1 code state, 2 registry record
local state = redis.call('GET', KEYS[1])
if not state or state == 'R' then
  return {false, false}
end
return {state, redis.call('GET', KEYS[2])}
