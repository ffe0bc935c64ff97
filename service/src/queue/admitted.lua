-- May this user buy now? The waiting room's gate, atomically.
-- KEYS[1] queue  KEYS[2] active (ZSET user -> admission expiry ms)
-- ARGV[1] user  ARGV[2] now ms  ARGV[3] threshold  ARGV[4] admission ttl ms
-- ARGV[5] mode: 'closed' (not on sale yet: PostgreSQL refuses), 'lottery' (everyone goes through
--         the queue), 'fifo'
-- Returns 1 (may buy) or 0 (wait your turn).
local queue, active = KEYS[1], KEYS[2]
local user, now, threshold, ttl, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if mode == 'closed' then return 1 end
redis.call('ZREMRANGEBYSCORE', active, '-inf', now)
if redis.call('ZSCORE', active, user) then return 1 end
-- the gate is closed while anyone waits, while the admitted set is full, and during the lottery
if mode ~= 'fifo' or redis.call('ZCARD', queue) > 0 or redis.call('ZCARD', active) >= threshold then
  return 0
end
-- an open gate: the buyer takes a place like a check would, so the count of admitted users stays true
redis.call('ZADD', active, now + ttl, user)
return 1
