-- What the waiting room says about this buyer now, atomically. It only reports: PostgreSQL decides
-- with its own clock, in the hold's statement (migrations/0009), whether the sale is open and the
-- admission counts.
-- KEYS[1] queue  KEYS[2] active (ZSET user -> admission expiry ms)
-- ARGV[1] user  ARGV[2] now ms  ARGV[3] threshold  ARGV[4] admission ttl ms
-- ARGV[5] mode: 'closed' (this replica's clock says the sale has not opened), 'lottery' (everyone
--         goes through the queue), 'fifo'
-- Returns {kind, admission expiry ms or 0}: 'admitted' (a live admission from the queue), 'gate' (a
-- place taken at an open first-come gate, now or earlier), 'none' (wait your turn) or 'before_open'
-- (admitted nobody). A gate place's score ends in .5 (see check.lua): PostgreSQL does not count it
-- while its clock is inside the opening lottery window, however many times it is reported.
local queue, active = KEYS[1], KEYS[2]
local user, now, threshold, ttl, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
redis.call('ZREMRANGEBYSCORE', active, '-inf', now)
local expiry = tonumber(redis.call('ZSCORE', active, user))
if expiry then
  return {expiry % 1 == 0 and 'admitted' or 'gate', math.floor(expiry)}
end
if mode == 'closed' then return {'before_open', 0} end
-- the gate is closed while anyone waits, while the admitted set is full, and during the lottery
if mode ~= 'fifo' or redis.call('ZCARD', queue) > 0 or redis.call('ZCARD', active) >= threshold then
  return {'none', 0}
end
-- an open gate: the buyer takes a place like a check would, so the count of admitted users stays true
redis.call('ZADD', active, string.format('%d.5', now + ttl), user)
return {'gate', now + ttl}
