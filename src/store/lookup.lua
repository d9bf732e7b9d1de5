-- The live status, only while a lookup grant of the member exists.
-- KEYS: 1 grant, 2 registry status hash
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, false}
end
return {1, redis.call('HGET', KEYS[2], 'd')}
