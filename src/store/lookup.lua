-- The claims verified with a lookup grant and the live status, only while the grant exists.
-- KEYS: 1 grant, 2 registry status hash
local claims = redis.call('GET', KEYS[1])
if not claims then
  return {false, false}
end
return {claims, redis.call('HGET', KEYS[2], 'd')}
