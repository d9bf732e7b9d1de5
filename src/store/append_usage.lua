-- Appends one usage entry and keeps the newest ARGV[2].
-- KEYS: 1 usage list; ARGV: 1 entry, 2 entries kept
if redis.call('LPUSH', KEYS[1], ARGV[1]) > tonumber(ARGV[2]) then
  redis.call('LTRIM', KEYS[1], 0, ARGV[2] - 1)
end
return 1
