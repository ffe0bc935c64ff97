-- Waiting-room entry for one user, atomically.
-- KEYS[1] queue  (ZSET user -> enqueue ms)   KEYS[2] active (ZSET user -> admission expiry ms)
-- ARGV[1] user   ARGV[2] now ms   ARGV[3] threshold   ARGV[4] admission ttl ms
-- Returns {queued (0/1), position (0 if not queued), active users before this call, queue size}
local queue, active = KEYS[1], KEYS[2]
local user, now, threshold, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

-- admissions expire per user, not as a whole set
redis.call('ZREMRANGEBYSCORE', active, '-inf', now)

local rank = redis.call('ZRANK', queue, user)
if rank then
  return {1, rank + 1, redis.call('ZCARD', active), redis.call('ZCARD', queue)}
end
local current = redis.call('ZCARD', active)
if redis.call('ZSCORE', active, user) then
  return {0, 0, current, redis.call('ZCARD', queue)}
end
-- while anyone waits, newcomers wait behind them (FIFO), even if a place just freed
if current >= threshold or redis.call('ZCARD', queue) > 0 then
  redis.call('ZADD', queue, 'NX', now, user)
  return {1, redis.call('ZRANK', queue, user) + 1, current, redis.call('ZCARD', queue)}
end
redis.call('ZADD', active, now + ttl, user)
return {0, 0, current, redis.call('ZCARD', queue)}
