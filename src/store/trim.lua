-- Bounds a member's used-codes hash: keeps the newest ARGV[1] fields and, of the older ones,
-- deletes those whose code can no longer be live (used or revoked before ARGV[2]), so a live
-- code's mark is never dropped. Runs only when the hot path sees the hash past its bound.
-- KEYS: 1 used-codes hash; ARGV: 1 fields kept, 2 unix before which no code is still live
-- Returns the number of fields deleted.
local all = redis.call('HGETALL', KEYS[1])
local fields = {}
for i = 1, #all, 2 do
  local state = all[i + 1]
  local unix = string.match(state, '^R|(%d+)|') or string.match(state, '^[^|]*|[^|]*|(%d+)|')
  if unix then
    fields[#fields + 1] = {all[i], tonumber(unix)}
  end
end
table.sort(fields, function(a, b) return a[2] > b[2] end)
local kept, horizon, deleted = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for i = kept + 1, #fields do
  if fields[i][2] < horizon then
    deleted = deleted + redis.call('HDEL', KEYS[1], fields[i][1])
  end
end
return deleted
