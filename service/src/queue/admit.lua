-- Admits up to ARGV[4] users from the head of an event's queue while there is room, never before
-- the sale opens (ARGV[5]).
-- KEYS[1] queue (ZSET user -> score; lowest first)   KEYS[2] active (ZSET user -> admission expiry ms)
-- ARGV[1] now ms   ARGV[2] threshold   ARGV[3] admission ttl ms   ARGV[4] max users this call
-- ARGV[5] sale opening ms
-- Returns {queue size after, admitted user ids...}. Atomic: nobody is admitted twice or lost.
local queue, active = KEYS[1], KEYS[2]
local now, threshold, ttl, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local opens = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', active, '-inf', now)
local room = threshold - redis.call('ZCARD', active)
local n = math.min(room, max)
local out = {0}
if n > 0 and now >= opens then
  local popped = redis.call('ZPOPMIN', queue, n)
  for i = 1, #popped, 2 do
    redis.call('ZADD', active, now + ttl, popped[i])
    out[#out + 1] = popped[i]
  end
end
out[1] = redis.call('ZCARD', queue)
return out
