-- Waiting-room entry for one user, atomically.
-- KEYS[1] queue  (ZSET user -> score: arrival ms, or a random instant of the opening window)
-- KEYS[2] active (ZSET user -> admission expiry ms)
-- KEYS[3] draws  (HASH user -> the lottery score drawn for the user, kept after leaving)
-- KEYS[4] outflow (the admission loop's measured outflow, JSON; read for the ETA)
-- (all in the event's slot: the admission loop's work list spans events, so the caller adds a queued
-- waiter's event to it beside this script)
-- ARGV[1] user   ARGV[2] now ms   ARGV[3] threshold   ARGV[4] admission ttl ms
-- ARGV[5] mode: 'fifo' | 'lottery' (queue at ARGV[6], never admit at once) | 'early' (enter nothing)
-- ARGV[6] queue score of a new entry (fifo: arrival ms, raised to stay behind the last in line;
--         lottery: a fresh draw, used only if the user has none yet)
-- ARGV[7] lottery: when the draws may be forgotten (ms since the epoch)
-- Returns {queued (0/1), position (0 if not queued), active users before this call, queue size,
--          the outflow record or '', the expiry (ms) of the admission whose end opens this place or '',
--          the user's admission: 'admitted' (by the admission loop), 'gate' (a place taken at an
--          open gate, by this call or earlier) or 'none', its expiry ms or 0}
-- A place taken at an open gate is scored expiry + 0.5 ms: the mark tells PostgreSQL not to count it
-- while its clock is still inside the opening lottery window (a replica whose clock is ahead may
-- think the lottery over); the admission loop's own ZADD replaces the mark.
-- A queued place also reads what its ETA is computed from (see queue::estimate).
local queue, active = KEYS[1], KEYS[2]
local user, now, threshold, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local mode, score = ARGV[5], ARGV[6]

-- a queued answer: read the ETA's inputs
local function queued(position, current, size)
  local outflow = redis.call('GET', KEYS[4]) or ''
  local nth = ''
  if outflow == '' and current > 0 and current >= threshold then
    local entry = redis.call('ZRANGE', active, (position - 1) % current, (position - 1) % current, 'WITHSCORES')
    nth = entry[2] or ''
  end
  return {1, position, current, size, outflow, nth, 'none', 0}
end

-- admissions expire per user, not as a whole set
redis.call('ZREMRANGEBYSCORE', active, '-inf', now)

-- a place, once given, is kept (refresh, re-check, another replica): the score is never rewritten
local rank = redis.call('ZRANK', queue, user)
if rank then
  return queued(rank + 1, redis.call('ZCARD', active), redis.call('ZCARD', queue))
end
local current = redis.call('ZCARD', active)
local expiry = tonumber(redis.call('ZSCORE', active, user))
if expiry then
  return {0, 0, current, redis.call('ZCARD', queue), '', '', expiry % 1 == 0 and 'admitted' or 'gate', math.floor(expiry)}
end
if mode == 'early' then
  return {0, 0, current, redis.call('ZCARD', queue), '', '', 'none', 0}
end
-- the opening crowd always waits; later, newcomers wait while anyone waits (FIFO), even if a place
-- just freed, or while the event is full
if mode == 'lottery' or current >= threshold or redis.call('ZCARD', queue) > 0 then
  if mode == 'lottery' then
    -- one draw per user and sale: leaving and checking again gets the same place, not a new chance
    redis.call('HSETNX', KEYS[3], user, score)
    score = redis.call('HGET', KEYS[3], user)
    redis.call('PEXPIREAT', KEYS[3], ARGV[7])
  end
  if mode == 'fifo' then
    -- strictly behind everyone already waiting: equal scores would order by user id, so a later
    -- arrival in the same millisecond could jump ahead and push earlier ones back
    local last = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')[2]
    score = math.max(tonumber(score), last and tonumber(last) + 0.001 or 0)
  end
  redis.call('ZADD', queue, 'NX', score, user)
  return queued(redis.call('ZRANK', queue, user) + 1, current, redis.call('ZCARD', queue))
end
redis.call('ZADD', active, string.format('%d.5', now + ttl), user)
return {0, 0, current, redis.call('ZCARD', queue), '', '', 'gate', now + ttl}
