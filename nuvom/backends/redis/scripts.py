"""The Lua scripts of the Redis queue: each step is one atomic script on the server.

Keys live under one prefix (ARGV[1]); the scripts build key names from it, so
this backend targets a single Redis (or a cluster with the prefix as hash tag).

Redis does not roll back a script that fails part-way, so a script reads and
checks everything it will rely on before its first write: a record it cannot
use is quarantined by id with its reason, an entry that is not nuvom's is
dropped, and nothing else is touched. Enqueueing carries a token, so sending the
same enqueue twice (a retry after a lost reply) stores the jobs once.

Layout under prefix P:
  P:job:<id>          hash: queue, priority, due, seq, attempts, payload, state, owner, stream, entry,
                      and for a job with flow control: limits (``limits_arg``'s JSON; '{}'
                      for one held back by a worker, ``HOLD``, with no limits of its own),
                      hold (its hold tag while a limit holds it back; only read when it
                      has limits, so a plain job costs a claim no more)
  P:s:<queue>:<prio>  stream of due job ids, consumer group "nuvom" (one per queue and priority)
  P:prios:<queue>     zset of the priority levels a queue has streams for
  P:queues, P:jobs    sets of queue names and of every queued job id
  P:delayed           zset id -> due time (scheduled jobs and retry delays)
  P:leases            zset id -> lease end (0: released, waiting in its old place)
  P:waiting           hash: queue -> jobs waiting (due or scheduled)
  P:wake              capped stream idle workers block on (XREAD BLOCK)
  P:dead, P:dead:<id> set of quarantined job ids; each one's record (its P:job or P:park
                      hash, renamed) with its reason and quarantined_at (absent in letters
                      set aside before it was recorded)
  P:tok:q:<token>     an enqueue already applied: '1', or the duplicates it found (a JSON list
                      id, holder, ...); kept 5 minutes, far past any resend
  P:sched:<id>        hash: def (the definition, one codec blob), next, paused ('0' | '1'),
                      last_run ('' = none), last_job ('' = none); times as repr(float)
  P:scheds            zset id -> next run, of the schedules not paused (the due index)
  P:schedids          set of every schedule id, paused or not
  P:tick:<id>:<tick>  a tick claimed (``SET NX EX``, kept ``TICKS_KEPT_SECS``); <tick> is
                      repr(float), the same string from every scheduler
  P:park:<id>         hash of a parked job (one that waits for others): queue, priority, due
                      ('' = none), attempts, payload, errback ('0' | '1'); never claimable
  P:parked            set of the parked job ids
  P:waits:<id>        set of the ids parked job <id> still waits for (each counted once: a
                      dependency that succeeded leaves it)
  P:after:<id>        set of the parked ids that wait for job <id>; only a job with one is
                      resolved when it is acked (one EXISTS in the settle script)

Flow control (the contract's "flow control"), touched only by jobs that carry limits:
  P:paused            set of the paused queue names (claims skip them)
  P:bucket:<task>     hash: tokens, at: a rate-limited task's token bucket (client clock)
  P:slots:<key>       zset id -> lease end of the claimed jobs of concurrency key <key>; the
                      live ones (lease end after now) are what a claim counts
  P:chold:<key>       zset of the jobs a concurrency hold put off (not due yet): score -priority,
                      member the job's seq (20 digits) then its id, so the first is the first
                      in claim order; freeing a slot makes that one due at once
  P:holds             hash: id -> hold tag of each waiting job a limit held back
  P:unique            hash: unique key -> the id of the job that holds it
  P:unique_until      zset: unique key -> when it is let go (its holder finished, keep_secs);
                      absent while the holder waits or runs, or is parked

A job id is either queued (P:job) or parked (P:park), never both: storing one replaces
the other. Keys a store of an earlier version lacks read as empty: nothing to upgrade
(a job stored before limits existed has no ``limits`` field: it has none).
"""

from __future__ import annotations

from nuvom.backends.contract import cancel_reason
from nuvom.limits import CONCURRENCY_TAG, RATE_TAG

GROUP = "nuvom"
WAKE_TRIES = 10  # held jobs a freed slot looks at for one not due yet (stale ones are dropped)
UNIQUE_SWEEP = 16  # unique keys kept past their time that a submit of unique jobs deletes
HOLD_ROUNDS = 4  # a claim holds back at most this many jobs per job it may take ...
MIN_HOLDS = 4_000  # ... and at least this many, before it gives up reading on behind them
# (as the SQL engines' claim, ~4,000): a burst worker takes an empty claim for an empty queue
HOLD_READS = 40  # reads on, per source, behind held jobs (pages of at least 100)


def _lua_string(value: str) -> str:
    """``value`` as a Lua string literal (its UTF-8 bytes; any but plain ones escaped)."""
    kept = (chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in " ,.:") else f"\\{b:03d}"
            for b in value.encode())  # fmt: skip
    return '"' + "".join(kept) + '"'


# Reading a job's limits, and keys the flow-control writes may trust; needs no prefix, so
# the scripts without ``_COMMON`` (HEARTBEAT, CLEAR) take it alone.
_LIMITS = (
    f"local RATE_TAG, CONC_TAG = {_lua_string(RATE_TAG)}, {_lua_string(CONCURRENCY_TAG)}\n"
    + r"""
local function is_finite(x)
  return type(x) == 'number' and x == x and x ~= math.huge and x ~= -math.huge
end

local function is_count(x)
  return is_finite(x) and x == math.floor(x) and x >= 1
end

local function is_key(x)
  return type(x) == 'string' and x ~= ''
end

-- A job's limits (its ``limits`` field, ``limits_arg``'s JSON) as a table: task, per_sec,
-- burst (a rate limit), conc_key, conc_limit (a concurrency limit), unique_key, unique_keep
-- (a unique key), absent ones nil; ``limited`` when a claim must check it. Else nil and why.
local function limits_of(text)
  local ok, t = pcall(cjson.decode, text)
  if not ok or type(t) ~= 'table' then return nil, 'its limits are not a JSON object' end
  local L, rate, conc, unique = {}, t.rate, t.conc, t.unique
  if rate ~= nil then
    if type(rate) ~= 'table' or not is_key(rate[1]) or not is_finite(rate[2]) or rate[2] <= 0
        or not is_count(rate[3]) then
      return nil, 'its rate limit is not [task, tokens a second > 0, burst >= 1]'
    end
    L.task, L.per_sec, L.burst = rate[1], rate[2], rate[3]
  end
  if conc ~= nil then
    if type(conc) ~= 'table' or not is_key(conc[1]) or not is_count(conc[2]) then
      return nil, 'its concurrency limit is not [key, limit >= 1]'
    end
    L.conc_key, L.conc_limit = conc[1], conc[2]
  end
  if unique ~= nil then
    if type(unique) ~= 'table' or not is_key(unique[1]) or not is_finite(unique[2])
        or unique[2] < 0 then
      return nil, 'its unique key is not [key, seconds kept >= 0]'
    end
    L.unique_key, L.unique_keep = unique[1], unique[2]
  end
  L.limited = L.task ~= nil or L.conc_key ~= nil
  return L
end

-- ``key``, of type ``kind`` or not there yet: a key of another type is not nuvom's and is
-- deleted, so the write that follows cannot fail half-way through a script.
local owned = {}
local function own(key, kind)
  if not owned[key] then
    local found = redis.call('TYPE', key).ok
    if found ~= 'none' and found ~= kind then redis.call('DEL', key) end
    owned[key] = true
  end
  return key
end

-- A time or token count as text that reads back as the same double.
local function num(x)
  return string.format('%.17g', x)
end
"""
)

_COMMON = (
    r"""
local P = ARGV[1]
local GROUP = 'nuvom'
"""
    + _LIMITS
    + f"local WAKE_TRIES, UNIQUE_SWEEP = {WAKE_TRIES}, {UNIQUE_SWEEP}\n"
    + r"""
local function stream_of(queue, prio)
  local key = P .. ':s:' .. queue .. ':' .. prio
  if redis.call('ZADD', P .. ':prios:' .. queue, 'NX', prio, prio) == 1 then
    redis.pcall('XGROUP', 'CREATE', key, GROUP, '0', 'MKSTREAM')
  end
  return key
end

-- Append job ``id`` (of ``queue``, at ``prio``) to its stream; the hash fields that say so.
local function stream_fields(id, queue, prio)
  local key = stream_of(queue, prio)
  local entry = redis.call('XADD', key, '*', 'id', id)
  return {'state', 'waiting', 'stream', key, 'entry', entry, 'owner', ''}
end

local function to_stream(id)
  local job = P .. ':job:' .. id
  local f = redis.call('HMGET', job, 'queue', 'priority')
  redis.call('HSET', job, unpack(stream_fields(id, f[1], f[2])))
end

-- A job's state, stream, entry, queue, limits, hold tag, seq and owner, in one read.
local function fields_to_detach(id)
  return redis.call('HMGET', P .. ':job:' .. id, 'state', 'stream', 'entry', 'queue', 'limits',
    'hold', 'seq', 'owner')
end

-- Take a job out of every index (its stream entry, the delayed and lease sets, the
-- waiting count, the set of jobs), leaving its hash; ``f`` is ``fields_to_detach(id)``.
local function detach(id, f)
  if f[2] and f[3] and f[3] ~= '' then
    redis.pcall('XACK', f[2], GROUP, f[3])
    redis.pcall('XDEL', f[2], f[3])
  end
  redis.call('ZREM', P .. ':delayed', id)
  redis.call('ZREM', P .. ':leases', id)
  if (f[1] == 'delayed' or f[1] == 'waiting') and f[4] then
    redis.call('HINCRBY', P .. ':waiting', f[4], -1)
  end
  redis.call('SREM', P .. ':jobs', id)
end

-- -- flow control: what a job with limits leaves behind, and what it frees --------------
-- A held job's place among the jobs its concurrency key put off (P:chold), in claim order.
local SEQ_DIGITS = 20
local function held_member(seq, id)
  return string.format('%0' .. SEQ_DIGITS .. 'd', seq) .. id
end

-- A job its concurrency key held back is put off no more (due, claimed or taken out).
local function off_chold(id, L, hold, seq)
  if L.conc_key and hold == CONC_TAG .. L.conc_key and tonumber(seq) then
    redis.call('ZREM', own(P .. ':chold:' .. L.conc_key, 'zset'), held_member(tonumber(seq), id))
  end
end

-- A job a limit held is held no more (claimed or taken out): its tag goes.
local function drop_hold(id, L, hold, seq)
  redis.call('HDEL', own(P .. ':holds', 'hash'), id)
  off_chold(id, L, hold, seq)
end

-- Job ``id`` is claimed no more: its concurrency slot frees, and the first job its key held
-- back that is not due yet is due at once (one per slot freed). True if one was.
local function free_slot(id, L, now_text)
  if not (L and L.conc_key) then return false end
  redis.call('ZREM', own(P .. ':slots:' .. L.conc_key, 'zset'), id)
  local held = own(P .. ':chold:' .. L.conc_key, 'zset')
  local now, tag = tonumber(now_text), CONC_TAG .. L.conc_key
  for _ = 1, WAKE_TRIES do
    local first = redis.call('ZRANGE', held, 0, 0)[1]
    if not first then return false end
    redis.call('ZREM', held, first)
    local other = string.sub(first, SEQ_DIGITS + 1)
    local f = redis.call('HMGET', P .. ':job:' .. other, 'state', 'hold', 'due')
    if f[1] == 'delayed' and f[2] == tag and (tonumber(f[3]) or now) > now then
      redis.call('HSET', P .. ':job:' .. other, 'due', now_text)
      redis.call('ZADD', P .. ':delayed', now_text, other)
      return true
    end
  end
  return false
end

-- Job ``id`` left the queue or was replaced: the unique key it holds goes, or, when it
-- finished (``finished``, at ``now_text``), is kept its ``unique_keep`` seconds more.
local function let_go(id, L, now_text, finished)
  if not (L and L.unique_key) then return end
  local keys = own(P .. ':unique', 'hash')
  if redis.call('HGET', keys, L.unique_key) ~= id then return end
  local untils = own(P .. ':unique_until', 'zset')
  if finished and L.unique_keep > 0 then
    redis.call('ZADD', untils, num(tonumber(now_text) + L.unique_keep), L.unique_key)
  else
    redis.call('HDEL', keys, L.unique_key)
    redis.call('ZREM', untils, L.unique_key)
  end
end

-- A job taken out (in ``state``, its ``limits`` text and ``hold``): its hold, its unique key
-- and, when it was claimed, its slot go. True if that woke a held job. Limits that cannot
-- be read hold nothing to give back.
local function release_limits(id, state, limits, hold, seq, now_text, finished)
  local L = limits_of(limits)
  if not L then return false end
  if hold then drop_hold(id, L, hold, seq) end
  let_go(id, L, now_text, finished)
  return state == 'claimed' and free_slot(id, L, now_text)
end

-- The holder of unique key ``key`` at ``now``: a job waiting, claimed or parked, or one that
-- finished less than its keep_secs ago; nil when there is none (or a key not nuvom's).
-- Reads only.
local function unique_holder(key, now)
  if redis.call('TYPE', P .. ':unique').ok ~= 'hash' then return nil end
  local holder = redis.call('HGET', P .. ':unique', key)
  if not holder then return nil end
  local untils = P .. ':unique_until'
  local until_at = redis.call('TYPE', untils).ok == 'zset' and redis.call('ZSCORE', untils, key)
  if until_at then
    if tonumber(until_at) <= now then return nil end
    return holder
  end
  -- Held while it waits or runs: a holder gone some other way (its parked record set aside
  -- by a resolve, a store edited by hand) holds nothing.
  if redis.call('EXISTS', P .. ':job:' .. holder, P .. ':park:' .. holder) == 0 then
    return nil
  end
  return holder
end

-- Take a job out whole (its hash too), giving back what its limits held (``release_limits``);
-- returns its state (false when there was none) and whether that woke a held job. ``f``:
-- its ``fields_to_detach``, when the caller has read them already.
local function forget(id, now_text, finished, f)
  f = f or fields_to_detach(id)
  if not f[1] then return false, false end  -- an id not queued: nothing to undo
  detach(id, f)
  local woke = f[5] and release_limits(id, f[1], f[5], f[6], f[7], now_text, finished)
  redis.call('DEL', P .. ':job:' .. id)
  return f[1], woke
end

-- A job's fields if its record is whole (``fields``: the HMGET as read), else nil and the
-- reason (nothing is written).
local function parse(id)
  local f = redis.call('HMGET', P .. ':job:' .. id, 'queue', 'priority', 'due', 'seq',
    'attempts', 'state', 'stream', 'entry', 'payload', 'limits')
  if not f[6] then return nil, 'the job has no record' end
  if not f[1] or f[1] == '' then return nil, 'the job has no queue' end
  local prio, due = tonumber(f[2]), tonumber(f[3])
  local seq, attempts = tonumber(f[4]), tonumber(f[5])
  if not prio or prio ~= math.floor(prio) or prio < -2147483648 or prio > 2147483647 then
    return nil, 'priority ' .. tostring(f[2]) .. ' is not an int'
  end
  if not due or due ~= due or due == math.huge or due == -math.huge then
    return nil, 'due time ' .. tostring(f[3]) .. ' is not a number'
  end
  if not seq then return nil, 'its sequence number is not a number' end
  if not attempts or attempts ~= math.floor(attempts) or attempts < 0 then
    return nil, 'attempts ' .. tostring(f[5]) .. ' is not a count'
  end
  if not f[9] then return nil, 'the job has no payload' end
  local limits, hold = nil, nil
  if f[10] then  -- only a job with limits can have a hold tag: a plain one reads no more
    local why
    limits, why = limits_of(f[10])
    if not limits then return nil, why end
    hold = redis.call('HGET', P .. ':job:' .. id, 'hold') or nil
  end
  return {id = id, queue = f[1], prio = prio, due = due, seq = seq, state = f[6],
          stream = f[7], entry = f[8], limits = limits, hold = hold, fields = f}
end

-- Make ``key`` (a job's record, if it has one) the dead letter of ``id``, with why and when.
local function bury(key, id, reason, now_text)
  local dead = P .. ':dead:' .. id
  if redis.call('EXISTS', key) == 1 then redis.call('RENAME', key, dead) end
  redis.call('HSET', dead, 'reason', reason, 'quarantined_at', now_text)
  redis.call('SADD', P .. ':dead', id)
end

-- Set a job aside with its reason, whatever state its record is in: it is never claimed
-- again, and its record stays, for a person to read. What its limits held goes, as when
-- a job finishes.
local function quarantine(id, reason, now_text)
  local f = fields_to_detach(id)
  detach(id, f)
  if f[5] then release_limits(id, f[1], f[5], f[6], f[7], now_text, true) end
  bury(P .. ':job:' .. id, id, reason, now_text)
end

-- Move due jobs to their streams. A bad record is quarantined and listed in ``dead`` (id,
-- reason) for the caller to record; with no ``dead`` (an enqueue) it is left for a claim.
-- A held job that comes due keeps its tag until it is claimed, and leaves the jobs its
-- concurrency key put off: a slot freed then wakes another.
local function promote(now, dead)
  local due = redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    local job, why = parse(id)
    if job then
      redis.call('ZREM', P .. ':delayed', id)
      to_stream(id)
      if job.hold and job.limits then off_chold(id, job.limits, job.hold, job.seq) end
    elseif dead then
      quarantine(id, why, now)
      dead[#dead + 1] = id
      dead[#dead + 1] = why
    end
  end
  return #due
end

local function wake()
  redis.call('XADD', P .. ':wake', 'MAXLEN', '~', 100, '*', 'n', 1)
end

-- A claimed job waits again in its old place in claim order (a stream is append-only, so
-- appending it would put it behind newer jobs): its entry stays pending and its lease
-- drops to 0, and the next claim takes it from the sorted side with XCLAIM.
local function wait_in_place(id, queue)
  redis.call('HSET', P .. ':job:' .. id, 'state', 'waiting', 'owner', '')
  redis.call('ZADD', P .. ':leases', 0, id)
  redis.call('HINCRBY', P .. ':waiting', queue, 1)
end

-- Take a job off the stream entry it sits on (acked and deleted), keeping its hash.
local function unlink(id)
  local job = P .. ':job:' .. id
  local f = redis.call('HMGET', job, 'stream', 'entry')
  if f[2] and f[2] ~= '' then
    redis.call('XACK', f[1], GROUP, f[2])
    redis.call('XDEL', f[1], f[2])
  end
  redis.call('HSET', job, 'entry', '')
  redis.call('ZREM', P .. ':leases', id)
end

-- A key about to be written that holds another type than ``allowed`` is not nuvom's: it goes
-- in ``drop``, deleted before the first write (a type error part-way would leave half).
local function droppable(key, allowed, drop)
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'none' and kind ~= allowed then drop[#drop + 1] = key end
end

-- Take a parked job out, its row and what it waits for (its unique key goes too); false if
-- it was not parked. A key of another type than nuvom's is left for ``resolve`` to drop.
local function unpark(id)
  local row, waits = P .. ':park:' .. id, P .. ':waits:' .. id
  if redis.call('EXISTS', row) == 0 then return false end
  if redis.call('TYPE', waits).ok == 'set' then
    for _, dep in ipairs(redis.call('SMEMBERS', waits)) do
      local after = P .. ':after:' .. dep
      if redis.call('TYPE', after).ok == 'set' then redis.call('SREM', after, id) end
    end
  end
  local limits = redis.call('TYPE', row).ok == 'hash' and redis.call('HGET', row, 'limits')
  redis.call('DEL', row, waits)
  redis.call('SREM', P .. ':parked', id)
  if limits then let_go(id, limits_of(limits), nil, false) end
  return true
end

-- Store one job (replacing any job of that id) and put it on its stream, or in the delayed
-- set if it is not due by ``now_text``; ``limits`` ('' = none) as ``limits_arg`` made them.
-- Every enqueue goes through here: ENQUEUE, FIRE and the release of a parked job.
local function enqueue_one(now_text, id, queue, prio, due, attempts, payload, limits)
  local job = P .. ':job:' .. id
  if redis.call('EXISTS', job) == 1 then forget(id, now_text, false) end  -- most ids are new
  unpark(id)
  local seq = redis.call('INCR', P .. ':seq')
  redis.call('SADD', P .. ':jobs', id)
  redis.call('SADD', P .. ':queues', queue)
  redis.call('HINCRBY', P .. ':waiting', queue, 1)
  local fields
  if tonumber(due) > tonumber(now_text) then
    fields = {'state', 'delayed', 'entry', '', 'owner', ''}
    redis.call('ZADD', P .. ':delayed', due, id)
  else
    fields = stream_fields(id, queue, prio)
  end
  for _, v in ipairs({'queue', queue, 'priority', prio, 'due', due, 'seq', seq,
      'attempts', attempts, 'payload', payload}) do
    fields[#fields + 1] = v
  end
  if limits and limits ~= '' then fields[#fields + 1], fields[#fields + 2] = 'limits', limits end
  redis.call('HSET', job, unpack(fields))  -- the whole hash in one write
end

-- The paused queues, as a set (a key not nuvom's pauses none: claims never fail on it).
local function paused_queues()
  local found = redis.pcall('SMEMBERS', P .. ':paused')
  local paused = {}
  if type(found) == 'table' and not found.err then
    for _, q in ipairs(found) do paused[q] = true end
  end
  return paused
end
"""
)


def _reason_parts(succeeded: bool) -> tuple[str, str]:
    before, _, after = cancel_reason("\0", succeeded).partition("\0")
    return _lua_string(before), _lua_string(after)


# Resolving finished jobs, as ``resolve`` in contract.py says, in one script: SETTLE (on
# the ack of a final outcome), RESOLVE, and the joint writer's submit and cancel.
_RESOLVE = (
    r"""
-- A key's members if it is a set; a key of another type is not nuvom's: it goes in
-- ``drop``, deleted with the writes.
local function members_of(key, drop)
  local kind = redis.call('TYPE', key).ok
  if kind == 'set' then return redis.call('SMEMBERS', key) end
  if kind ~= 'none' then drop[#drop + 1] = key end
  return {}
end

-- Why a parked job is cancelled when ``dep`` finished (``cancel_reason``, word for word).
local function reason(dep, succeeded)
  if succeeded then return """
    + "{} .. dep .. {}".format(*_reason_parts(True))
    + r""" end
  return """
    + "{} .. dep .. {}".format(*_reason_parts(False))
    + r"""
end

-- A parked job's row if it is whole, else nil and why (nothing is written).
local function parked_row(id)
  local f = redis.call('HMGET', P .. ':park:' .. id, 'queue', 'priority', 'attempts',
    'payload', 'errback', 'limits')
  local prio, attempts = tonumber(f[2]), tonumber(f[3])
  if not f[1] or f[1] == '' then return nil, 'the job has no queue' end
  if not prio or prio ~= math.floor(prio) or prio < -2147483648 or prio > 2147483647 then
    return nil, 'priority ' .. tostring(f[2]) .. ' is not an int'
  end
  if not attempts or attempts ~= math.floor(attempts) or attempts < 0 then
    return nil, 'attempts ' .. tostring(f[3]) .. ' is not a count'
  end
  if not f[4] then return nil, 'the job has no payload' end
  if f[5] ~= '0' and f[5] ~= '1' then
    return nil, 'errback ' .. tostring(f[5]) .. ' is not 0 or 1'
  end
  local L, why = nil, nil
  if f[6] then
    L, why = limits_of(f[6])
    if not L then return nil, why end
  end
  return {queue = f[1], prio = f[2], attempts = f[3], payload = f[4], errback = f[5] == '1',
          limits = f[6] or '', L = L}
end

-- Tell the dependents of finished jobs, ``finished`` a list of {id, succeeded}: each parked
-- dependent counts a success once; one that counted all it waits for is released (due
-- now), an errback cancelled; a failure cancels a dependent and, in turn, its own (an
-- errback is released instead). Everything is read and checked first, the writes come
-- after. A dependent is counted with SCARD and SISMEMBER and read when it leaves: a chord's
-- body is not read whole on each member's ack. A parked record that cannot be used is
-- quarantined, and cancelled with why. Returns the ids released and, flat, (id, reason) of
-- each one cancelled.
local function resolve(finished, now_text)
  local drop, rows, left, counted, gone, cleared, cleared_ids = {}, {}, {}, {}, {}, {}, {}
  local unparked, released, cancelled, others, bad_waits = {}, {}, {}, {}, {}
  local todo, head = {}, 1
  for _, f in ipairs(finished) do todo[#todo + 1] = f end
  while head <= #todo do
    local dep, ok = todo[head][1], todo[head][2]
    head = head + 1
    if not cleared[dep] then
      cleared[dep] = true
      cleared_ids[#cleared_ids + 1] = dep
      local ids = members_of(P .. ':after:' .. dep, drop)
      table.sort(ids)
      for _, id in ipairs(ids) do
        local wkey = P .. ':waits:' .. id
        if rows[id] == nil then  -- first seen: is it parked, and how many does it wait for
          local key = P .. ':park:' .. id
          local kind = redis.call('TYPE', key).ok
          rows[id] = kind == 'hash'
          if kind == 'hash' then
            local wkind = redis.call('TYPE', wkey).ok
            left[id], counted[id] = 0, {}
            if wkind == 'set' then
              left[id] = redis.call('SCARD', wkey)
            else  -- never released on a guess: it may wait for others
              bad_waits[id] = wkind == 'none' and 'what it waits for is missing'
                or 'what it waits for is a ' .. wkind .. ', not a set'
            end
          elseif kind ~= 'none' then
            drop[#drop + 1] = key
          end
        end
        if rows[id] and not gone[id] then
          if left[id] > 0 and not counted[id][dep]
              and redis.call('SISMEMBER', wkey, dep) == 1 then
            counted[id][dep] = true
            left[id] = left[id] - 1
          end
          if not (ok and left[id] > 0) then  -- counted all it waits for, or one failed
            gone[id] = true
            unparked[#unparked + 1] = id
            local row, why = parked_row(id)  -- read once, when it leaves
            why = bad_waits[id] or why
            rows[id] = why and {bad = why} or row
            if why then
              why = 'its parked record cannot be used: ' .. why
            elseif ok == row.errback then  -- an errback with nothing failed, or a job
              why = reason(dep, ok)        -- whose dependency failed
            end
            if why then
              cancelled[#cancelled + 1] = id
              cancelled[#cancelled + 1] = why
              todo[#todo + 1] = {id, false}
            else
              released[#released + 1] = id
              row.released = true
            end
          end
        end
      end
    end
  end
  -- What a job taken out early still waits for: it leaves those sets too.
  for _, id in ipairs(unparked) do
    others[id] = {}
    if left[id] > 0 then
      for _, d in ipairs(redis.call('SMEMBERS', P .. ':waits:' .. id)) do
        if not cleared[d] and not counted[id][d] then
          others[id][#others[id] + 1] = d
          droppable(P .. ':after:' .. d, 'set', drop)
        end
      end
    end
  end
  for _, id in ipairs(released) do droppable(P .. ':job:' .. id, 'hash', drop) end
  if #unparked > 0 then droppable(P .. ':parked', 'set', drop) end

  -- The writes, on checked keys only.
  for _, key in ipairs(drop) do redis.call('DEL', key) end
  for _, dep in ipairs(cleared_ids) do redis.call('DEL', P .. ':after:' .. dep) end
  for id, deps in pairs(counted) do
    if not gone[id] then
      for d in pairs(deps) do redis.call('SREM', P .. ':waits:' .. id, d) end
    end
  end
  for _, id in ipairs(unparked) do
    for _, d in ipairs(others[id]) do redis.call('SREM', P .. ':after:' .. d, id) end
    redis.call('DEL', P .. ':waits:' .. id)
    redis.call('SREM', P .. ':parked', id)
    if rows[id].bad then
      bury(P .. ':park:' .. id, id, rows[id].bad, now_text)
    else
      redis.call('DEL', P .. ':park:' .. id)
      if not rows[id].released then let_go(id, rows[id].L, now_text, false) end
    end
  end
  for _, id in ipairs(released) do
    local r = rows[id]
    enqueue_one(now_text, id, r.queue, r.prio, now_text, r.attempts, r.payload, r.limits)
  end
  if #released > 0 then wake() end
  return released, cancelled
end
"""
)

# The joint writer's scripts write results through the result backend's save script
# (``save_records``, below), with its prefix, ttl and history cap.
_JOINT = r"""
-- The result backend's writes passed in ARGV[from..to] (its save script's items), but for
-- the jobs in ``skip`` (those a submit did not store: duplicates).
local function save_items(rp, ttl, cap, from, to, skip)
  if to < from then return end
  local save, n = {rp, ttl, cap, ''}, 4
  if not skip then
    for k = from, to do
      n = n + 1
      save[n] = ARGV[k]
    end
  else  -- an item: id, updated_at, op, a1..a5, nfields, then its fields (name, value)
    local k = from
    while k <= to do
      local width = 9 + 2 * tonumber(ARGV[k + 8])
      if not skip[ARGV[k]] then
        for j = k, k + width - 1 do
          n = n + 1
          save[n] = ARGV[j]
        end
      end
      k = k + width
    end
  end
  if n > 4 then save_records(save) end
end

-- The jobs a resolve cancelled, recorded CANCELLED with their reasons (as
-- ``mark_dependents_cancelled``).
local function record_cancelled(cancelled, rp, ttl, cap, now)
  if #cancelled == 0 then return end
  local save = {rp, ttl, cap, ''}
  for k = 1, #cancelled, 2 do
    for _, v in ipairs({cancelled[k], now, '', '', '', '', '', '', 4, 'status', 'CANCELLED',
                        'error_type', 'Cancelled', 'error_message', cancelled[k + 1],
                        'finished_at', now}) do
      save[#save + 1] = v
    end
  end
  save_records(save)
end
"""

# Enqueue's body; FIRST is the index of the first job in ARGV. Per job: id, queue, priority,
# due, attempts, payload, limits ('' = none), errback ('1' | '0'), n, then the n ids it waits
# for (n > 0: it is parked; the keys it is written to are checked first). A job whose unique
# key another job holds is not stored: ``dups`` lists it (id, holder, ...) and ``skipped``
# names it; in one batch the first job of a key wins. ``parked`` lists, in order, the ids
# the parked jobs wait for. With a token, a second run writes nothing and returns the first
# run's ``dups``, or 0 when it found none.
_ENQUEUE = r"""
local now = tonumber(ARGV[2])
local token = ARGV[3] ~= '' and P .. ':tok:q:' .. ARGV[3]
if token then
  local prior = redis.call('GET', token)
  if prior then
    local ok, dups = pcall(cjson.decode, prior)  -- '1': it found none
    if ok and type(dups) == 'table' and #dups > 0 then return dups end
    return 0
  end
end
local drop, dups, skipped, taken, claims = {}, {}, {}, {}, {}
local i = FIRST
while i <= #ARGV do
  local id, limits, n = ARGV[i], ARGV[i + 6], tonumber(ARGV[i + 8])
  if n > 0 then
    droppable(P .. ':job:' .. id, 'hash', drop)
    droppable(P .. ':park:' .. id, 'hash', drop)
    droppable(P .. ':waits:' .. id, 'set', drop)
    droppable(P .. ':parked', 'set', drop)
    for k = i + 9, i + 8 + n do droppable(P .. ':after:' .. ARGV[k], 'set', drop) end
  end
  if limits ~= '' then
    local L, why = limits_of(limits)
    if not L then return redis.error_reply('job ' .. id .. ': ' .. why) end
    local key = L.unique_key
    if key then
      local holder = taken[key]
      if holder == nil then holder = unique_holder(key, now) end
      if holder and holder ~= id then
        dups[#dups + 1] = id
        dups[#dups + 1] = holder
        skipped[id] = true
      else
        taken[key] = id
        claims[#claims + 1] = {key, id}
      end
    end
  end
  i = i + 9 + n
end
if #claims > 0 then
  droppable(P .. ':unique', 'hash', drop)
  droppable(P .. ':unique_until', 'zset', drop)
end
if token then redis.call('SET', token, #dups > 0 and cjson.encode(dups) or 1, 'EX', 300) end
for _, key in ipairs(drop) do redis.call('DEL', key) end
promote(ARGV[2])
local parked = {}
i = FIRST
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 8])
  if skipped[id] then
    -- a duplicate: nothing of it is stored
  elseif n == 0 then
    enqueue_one(ARGV[2], id, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
      ARGV[i + 6])
  else
    forget(id, ARGV[2], false)
    unpark(id)
    local row = P .. ':park:' .. id
    redis.call('HSET', row, 'queue', ARGV[i + 1], 'priority', ARGV[i + 2],
      'due', ARGV[i + 3], 'attempts', ARGV[i + 4], 'payload', ARGV[i + 5],
      'errback', ARGV[i + 7])
    if ARGV[i + 6] ~= '' then redis.call('HSET', row, 'limits', ARGV[i + 6]) end
    redis.call('SADD', P .. ':parked', id)
    for k = i + 9, i + 8 + n do
      redis.call('SADD', P .. ':waits:' .. id, ARGV[k])
      redis.call('SADD', P .. ':after:' .. ARGV[k], id)
      parked[#parked + 1] = ARGV[k]
    end
  end
  i = i + 9 + n
end
-- The keys, once their jobs are stored (storing a job lets go of the key its id held).
for _, claim in ipairs(claims) do
  redis.call('HSET', P .. ':unique', claim[1], claim[2])
  redis.call('ZREM', P .. ':unique_until', claim[1])
end
if #claims > 0 then  -- a few keys kept past their time go, so the index does not grow
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', P .. ':unique_until', '-inf', ARGV[2],
      'LIMIT', 0, UNIQUE_SWEEP)) do
    redis.call('HDEL', P .. ':unique', key)
    redis.call('ZREM', P .. ':unique_until', key)
  end
end
wake()
"""

# ARGV: P, now, token ('' = none), then the jobs (as ``_ENQUEUE``). Returns 1, or 0 when an
# enqueue with this token was already applied (nothing is written); or, when some jobs were
# not stored because other jobs hold their unique keys, those duplicates, flat (id, holder
# id, ...). ``duplicates`` reads either.
_RETURN_DUPLICATES = "if #dups > 0 then return dups end\nreturn 1\n"
ENQUEUE = _COMMON + "local FIRST = 4\n" + _ENQUEUE + _RETURN_DUPLICATES

# ARGV: P, now, then pairs of job id and '1' (succeeded) or '0'.  Returns {released ids,
# (id, reason) flat of each job cancelled}.
RESOLVE = (
    _COMMON
    + _RESOLVE
    + r"""
local finished = {}
for i = 3, #ARGV, 2 do finished[#finished + 1] = {ARGV[i], ARGV[i + 1] == '1'} end
local released, cancelled = resolve(finished, ARGV[2])
return {released, cancelled}
"""
)

# ARGV: P.  Every parked job: id, queue, priority, due ('' = none), attempts, payload.
PARKED = r"""
local P = ARGV[1]
local out = {}
if redis.call('TYPE', P .. ':parked').ok ~= 'set' then return out end
for _, id in ipairs(redis.call('SMEMBERS', P .. ':parked')) do
  local key = P .. ':park:' .. id
  if redis.call('TYPE', key).ok == 'hash' then
    local f = redis.call('HMGET', key, 'queue', 'priority', 'due', 'attempts', 'payload')
    for _, v in ipairs({id, f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or ''}) do
      out[#out + 1] = v
    end
  end
end
return out
"""


def enqueue_and_record(save_script: str) -> str:
    """The joint submit as one script: ENQUEUE, the jobs' records (PENDING or SCHEDULED),
    then what the parked jobs wait for that already finished (its record says SUCCESS,
    FAILED or CANCELLED) resolved, and the jobs that cancels recorded.

    ``save_script`` is the Redis result backend's save script (a local function over its
    own argument list). ARGV: P, now, token, result prefix, result ttl, history cap, n, n
    arguments of save items, then the jobs (as ``_ENQUEUE``). Returns what ENQUEUE returns;
    a duplicate gets no record. A second run with the same token writes nothing.
    """
    return (
        _COMMON
        + _RESOLVE
        + _saver(save_script)
        + _JOINT
        + "local RP, TTL, CAP = ARGV[4], ARGV[5], ARGV[6]\n"
        + "local FIRST = 8 + tonumber(ARGV[7])\n"
        + _ENQUEUE
        + _RECORD_ENQUEUED
        + _RETURN_DUPLICATES
    )


_RECORD_ENQUEUED = r"""
save_items(RP, TTL, CAP, 8, FIRST - 1, #dups > 0 and skipped or nil)
local finished, seen = {}, {}
for _, dep in ipairs(parked) do
  local key = RP .. ':r:' .. dep
  if not seen[dep] and redis.call('TYPE', key).ok == 'hash' then
    local status = redis.call('HGET', key, 'status')
    if status == 'SUCCESS' then
      finished[#finished + 1] = {dep, true}
    elseif status == 'FAILED' or status == 'CANCELLED' then
      finished[#finished + 1] = {dep, false}
    end
  end
  seen[dep] = true
end
if #finished > 0 then
  local _, cancelled = resolve(finished, ARGV[2])
  record_cancelled(cancelled, RP, TTL, CAP, ARGV[2])
end
"""

# ARGV: P, now, lease_until, consumer, n, queue names... (none: every queue)
# Returns {rows, dead}: rows flat (id, queue, priority, due, attempts, payload) in claim
# order; dead flat (id, reason) for each record the script quarantined.
# Everything is read and checked first; the writes come after, on checked records only.
# Paused queues give nothing. A candidate with limits is checked in claim order: its
# concurrency key's live slots (this claim's picks count), then its task's token bucket; one
# they refuse is held (moved to the delayed set, due when its limit may let it through, its
# tag kept) and does not count towards n: the claim reads on behind it, up to
# HOLD_ROUNDS * n held (at least MIN_HOLDS).
CLAIM = (
    _COMMON
    + f"local HOLD_ROUNDS, MIN_HOLDS, HOLD_READS = {HOLD_ROUNDS}, {MIN_HOLDS}, {HOLD_READS}\n"
    + r"""
local now, lease_end, consumer, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local now_n, until_n = tonumber(now), tonumber(lease_end)
local SCAN_PAGES, MIN_PAGE = 10, 100  -- a stream is read MIN_PAGE entries at a time or more
local dead = {}
promote(now, dead)
-- The hold tags this claimer refused (BaseJobQueue.refuse), NUL-separated; most often none.
local refused_arg = ARGV[6]
local refused, any_refused = {}, refused_arg ~= ''
for tag in string.gmatch(refused_arg, '[^%z]+') do refused[tag] = true end
local queues = {}
if #ARGV > 6 then
  for i = 7, #ARGV do queues[#queues + 1] = ARGV[i] end
else
  queues = redis.call('SMEMBERS', P .. ':queues')
end
local paused = paused_queues()
local wanted = {}
for _, q in ipairs(queues) do
  if not paused[q] then wanted[q] = true end
end

local function before(a, b)
  if a.prio ~= b.prio then return a.prio > b.prio end
  if a.due ~= b.due then return a.due < b.due end
  return a.seq < b.seq
end
local function is_stream(key)
  return key and redis.call('TYPE', key).ok == 'stream'
end
local function last_delivered(key)
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) ~= 'table' or groups.err then return nil end
  for _, g in ipairs(groups) do
    local fields = {}
    for i = 1, #g, 2 do fields[g[i]] = g[i + 1] end
    if fields['name'] == GROUP then return fields['last-delivered-id'] end
  end
  return nil
end

local bad, stale = {}, {}  -- records to quarantine, lease entries to drop: after the reads

-- Sources: expired leases (and released jobs, lease 0), taken with XCLAIM, in claim order
-- (each read sorted: the lease set is in lease order)...
local function read_leases(s, want)
  local found = {}
  repeat
    local page = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', s.cursor, 200)
    for _, id in ipairs(page) do
      local k, why = parse(id)
      if not k then
        bad[#bad + 1] = {id, why}
      elseif (k.state ~= 'claimed' and k.state ~= 'waiting') or not k.entry or k.entry == ''
          or not is_stream(k.stream) then
        stale[#stale + 1] = id
      elseif wanted[k.queue] then
        found[#found + 1] = k
      end
    end
    s.cursor = s.cursor + #page
    s.done = #page < 200
  until s.done or #found >= want
  table.sort(found, before)
  for _, k in ipairs(found) do s.items[#s.items + 1] = k end
end
-- ...then each stream's undelivered head. An entry is a job's only if the job is waiting
-- on that very entry; any other is dropped once the group has read past it. Read on past
-- entries that are not jobs until ``want`` jobs more are found (or SCAN_PAGES pages): a run
-- of garbage never hides the jobs behind it. No entry after the ``want``-th job is parsed (a
-- claim of one job with a deep backlog reads one record, not a page of them): the next read
-- starts after the last entry looked at.
local function read_stream(s, want)
  local found, page = 0, math.max(n, MIN_PAGE)
  for _ = 1, SCAN_PAGES do
    local got = redis.call('XRANGE', s.stream, s.start, '+', 'COUNT', page)
    local looked = 0
    for _, row in ipairs(got) do
      looked = looked + 1
      local r = #s.rows + 1
      s.rows[r] = row
      local fields, id = row[2], nil
      if #fields == 2 and fields[1] == 'id' then id = fields[2] end
      local k, why = nil, nil
      if id then k, why = parse(id) end
      if k and k.state == 'waiting' and k.entry == row[1] then
        k.row = r
        s.items[#s.items + 1] = k
        s.kinds[r] = 'job'
        found = found + 1
      else
        s.kinds[r] = 'other'
        if id and not k and redis.call('HGET', P .. ':job:' .. id, 'entry') == row[1] then
          bad[#bad + 1] = {id, why}
        end
      end
      if found >= want then break end
    end
    s.done = #got < page and looked == #got
    if looked > 0 then s.start = '(' .. got[looked][1] end
    if s.done or found >= want then break end
  end
end

local sources = {}
sources[1] = {items = {}, pos = 1, stream = false, cursor = 0, reads = 1}
read_leases(sources[1], n)
for _, q in ipairs(queues) do
  if wanted[q] then
    local prios = redis.call('ZREVRANGE', P .. ':prios:' .. q, 0, -1)
    for _, prio in ipairs(prios) do
      local key = P .. ':s:' .. q .. ':' .. prio
      local last = last_delivered(key)
      if last then
        local s = {items = {}, pos = 1, stream = key, start = '(' .. last, rows = {},
                   kinds = {}, chosen = {}, reads = 1}
        read_stream(s, n)
        if #s.rows > 0 then sources[#sources + 1] = s end
      end
    end
  end
end

-- Limits, read once per key and counted on in Lua as the claim picks.
local slots, buckets = {}, {}
local function slots_of(key)
  local c = slots[key]
  if c == nil then
    local zkey = own(P .. ':slots:' .. key, 'zset')
    local first = redis.call('ZRANGEBYSCORE', zkey, '(' .. now, '+inf', 'LIMIT', 0, 1,
      'WITHSCORES')
    c = {key = zkey, live = redis.call('ZCOUNT', zkey, '(' .. now, '+inf'),
         earliest = tonumber(first[2]), picked = {}}
    slots[key] = c
  end
  return c
end
local function bucket_of(L)
  local b = buckets[L.task]
  if b == nil then
    local key = own(P .. ':bucket:' .. L.task, 'hash')
    local f = redis.call('HMGET', key, 'tokens', 'at')
    local tokens, at = tonumber(f[1]), tonumber(f[2])
    if not (is_finite(tokens) and is_finite(at)) then tokens, at = L.burst, now_n end
    b = {key = key, tokens = math.max(tokens, 0), at = at, behind = 0}
    buckets[L.task] = b
  end
  return b
end
-- Nil when the limits of ``item`` let this claim take it now (its slot and token are taken),
-- else its hold tag and when it may be due again.
local function hold_of(item)
  local L, c = item.limits, nil
  if L.conc_key then
    c = slots_of(L.conc_key)
    if c.live >= L.conc_limit then return CONC_TAG .. L.conc_key, c.earliest or until_n end
  end
  if L.task then
    local b = bucket_of(L)
    -- Claimers read their clocks before their scripts run, so ``now`` may be a little
    -- before the bucket's last refill: the bucket's time never goes back (no token twice).
    local tokens = math.min(L.burst, b.tokens + math.max(0, now_n - b.at) * L.per_sec)
    b.at = math.max(b.at, now_n)
    if tokens < 1 then  -- the holds of one claim wait for successive tokens
      b.tokens = tokens
      b.behind = b.behind + 1
      return RATE_TAG .. L.task, b.at + (b.behind - tokens) / L.per_sec
    end
    b.tokens = tokens - 1
  end
  if c then
    c.live = c.live + 1
    c.picked[#c.picked + 1] = item.id
    if c.earliest == nil or until_n < c.earliest then c.earliest = until_n end
  end
  return nil
end

-- Merge the sources in claim order, each taken as a prefix (streams are read in order). A
-- held candidate is consumed like a chosen one; once any is held, a source that ran dry
-- is read on (HOLD_READS more reads at most).
local chosen, held = {}, {}
local hold_budget = math.max(HOLD_ROUNDS * n, MIN_HOLDS)
local function head_of(s)
  local head = s.items[s.pos]
  if head == nil and #held > 0 and not s.done and s.reads <= HOLD_READS then
    s.reads = s.reads + 1
    -- Behind held jobs a stream is read on a whole page at a time, as HOLD_READS counts.
    if s.stream then
      read_stream(s, math.max(n - #chosen, MIN_PAGE))
    else
      read_leases(s, n - #chosen)
    end
    head = s.items[s.pos]
  end
  return head
end
while #chosen < n do
  local best, item = nil, nil
  for _, s in ipairs(sources) do
    local head = head_of(s)
    if head and (item == nil or before(head, item)) then best, item = s, head end
  end
  if best == nil then break end
  best.pos = best.pos + 1
  item.source = best
  if best.stream then best.chosen[item.row] = true end
  local tag, due = nil, nil
  if any_refused then  -- a refused job is held as it was, due now: left for other claimers
    local h = item.hold or redis.call('HGET', P .. ':job:' .. item.id, 'hold')
    if h and refused[h] then tag, due, item.refused = h, now_n, true end
  end
  if not tag and item.limits and item.limits.limited then tag, due = hold_of(item) end
  if tag then
    held[#held + 1] = {item = item, tag = tag, due = due}
    if #held >= hold_budget then break end
  else
    chosen[#chosen + 1] = item
  end
end

-- The writes. The group reads each stream up to its last chosen entry and past any
-- entries before it (or at its head) that were not jobs; those are acked and deleted.
for _, s in ipairs(sources) do
  if s.stream then
    local consume = 0
    for r = 1, #s.rows do
      if s.kinds[r] == 'job' and not s.chosen[r] then break end
      consume = r
    end
    if consume > 0 then
      redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', consume,
        'STREAMS', s.stream, '>')
      for r = 1, consume do
        if s.kinds[r] ~= 'job' then
          redis.call('XACK', s.stream, GROUP, s.rows[r][1])
          redis.call('XDEL', s.stream, s.rows[r][1])
        end
      end
    end
  end
end

local out = {}
for _, item in ipairs(chosen) do
  local job = P .. ':job:' .. item.id
  if item.source.stream then
    redis.call('HINCRBY', P .. ':waiting', item.queue, -1)
  else
    redis.call('XCLAIM', item.stream, GROUP, consumer, 0, item.entry, 'JUSTID')
    if item.state == 'waiting' then redis.call('HINCRBY', P .. ':waiting', item.queue, -1) end
  end
  local attempts = redis.call('HINCRBY', job, 'attempts', 1)
  redis.call('HSET', job, 'state', 'claimed', 'owner', consumer)
  redis.call('ZADD', P .. ':leases', lease_end, item.id)
  if item.hold then
    redis.call('HDEL', job, 'hold')
    drop_hold(item.id, item.limits or {}, item.hold, item.seq)
  end
  local f, o = item.fields, #out  -- as parse read them: a claim changes none of these
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6] =
    item.id, f[1], f[2], f[3], attempts, f[9]
end
-- A held job waits in the delayed set until its limit may let it through, its attempts as
-- they were; it leaves the stream entry or lease it was a candidate on.
for _, h in ipairs(held) do
  local item, L = h.item, h.item.limits or {}
  local job = P .. ':job:' .. item.id
  redis.call('XACK', item.stream, GROUP, item.entry)
  redis.call('XDEL', item.stream, item.entry)
  if not item.source.stream then
    redis.call('ZREM', P .. ':leases', item.id)
    if item.state == 'claimed' then  -- its lease ran out: waiting again, its slot gone
      redis.call('HINCRBY', P .. ':waiting', item.queue, 1)
      if L.conc_key then redis.call('ZREM', own(P .. ':slots:' .. L.conc_key, 'zset'), item.id) end
    end
  end
  local due = num(h.due)
  if item.refused then  -- as it was (its due time, its place in claim order kept)
    redis.call('HSET', job, 'state', 'delayed', 'entry', '', 'owner', '', 'hold', h.tag)
  else
    redis.call('HSET', job, 'state', 'delayed', 'due', due, 'entry', '', 'owner', '',
      'hold', h.tag)
  end
  redis.call('ZADD', P .. ':delayed', due, item.id)
  redis.call('HSET', own(P .. ':holds', 'hash'), item.id, h.tag)
  if item.hold then off_chold(item.id, L, item.hold, item.seq) end
  if L.conc_key and h.tag == CONC_TAG .. L.conc_key then
    redis.call('ZADD', own(P .. ':chold:' .. L.conc_key, 'zset'), -item.prio,
      held_member(item.seq, item.id))
  end
end
for _, c in pairs(slots) do
  if #c.picked > 0 then
    redis.call('ZREMRANGEBYSCORE', c.key, '-inf', now)  -- leases run out: no slot to count
    for _, id in ipairs(c.picked) do redis.call('ZADD', c.key, lease_end, id) end
  end
end
for _, b in pairs(buckets) do
  redis.call('HSET', b.key, 'tokens', num(b.tokens), 'at', num(b.at))
end
local seen = {}
for _, b in ipairs(bad) do
  if not seen[b[1]] then
    seen[b[1]] = true
    quarantine(b[1], b[2], now)
    dead[#dead + 1] = b[1]
    dead[#dead + 1] = b[2]
  end
end
for _, id in ipairs(stale) do redis.call('ZREM', P .. ':leases', id) end
return {out, dead}
"""
)

_CLAIM_REFUSED_6 = "local refused_arg = ARGV[6]\n"
_CLAIM_REFUSED_9 = "local refused_arg = ARGV[9]\n"
_CLAIM_QUEUES_FROM_7 = "if #ARGV > 6 then\n  for i = 7, #ARGV do"
_CLAIM_QUEUES_FROM_10 = "if #ARGV > 9 then\n  for i = 10, #ARGV do"
_CLAIM_RETURN = "\nreturn {out, dead}\n"
# After the claim: mark each job with a result record RUNNING through the result
# backend's save script (as ``save_records``); report which ones had no record.
_START_CLAIMED = r"""
local RP, started = ARGV[6], ARGV[2]
local save = {RP, ARGV[7], ARGV[8], ''}
local flagged = {}
for k = 1, #out, 6 do
  local id = out[k]
  local recorded = redis.call('EXISTS', RP .. ':r:' .. id) == 1
  if recorded then  -- one item: id, updated, op, a1..a5, 4 fields
    local s = #save
    save[s + 1], save[s + 2], save[s + 3], save[s + 4], save[s + 5] =
      id, started, 'start', consumer, started
    save[s + 6], save[s + 7], save[s + 8], save[s + 9] = '', '', '', 4
    save[s + 10], save[s + 11], save[s + 12], save[s + 13] =
      'status', 'RUNNING', 'started_at', started
    save[s + 14], save[s + 15], save[s + 16], save[s + 17] =
      'worker_id', consumer, 'finished_at', '\0'
  end
  local g = #flagged
  for j = 1, 6 do flagged[g + j] = out[k + j - 1] end
  flagged[g + 7] = recorded and 1 or 0
end
if #save > 4 then save_records(save) end
return {flagged, dead}
"""


def claim_and_start(save_script: str) -> str:
    """CLAIM followed by mark-running, as one script: one round trip per claim.

    ``save_script`` is the Redis result backend's save script; it runs as a
    local function over its own argument list. ARGV: P, now, lease_until,
    consumer, n, result prefix, result ttl, history cap, refused tags, queue names...
    Returns CLAIM's rows, each with a seventh field: 1 if the job had a result
    record (now RUNNING), 0 if the caller still has to write one; then, as CLAIM,
    the (id, reason) pairs it quarantined.
    """
    body = CLAIM[len(_COMMON) :]
    for part in (_CLAIM_REFUSED_6, _CLAIM_QUEUES_FROM_7, _CLAIM_RETURN):
        if body.count(part) != 1:
            raise AssertionError(f"CLAIM script changed shape near {part!r}")
    body = body.replace(_CLAIM_REFUSED_6, _CLAIM_REFUSED_9)
    body = body.replace(_CLAIM_QUEUES_FROM_7, _CLAIM_QUEUES_FROM_10)
    body = body.replace(_CLAIM_RETURN, "\n" + _START_CLAIMED)
    return _COMMON + _saver(save_script) + body


def _saver(save_script: str) -> str:
    """The result backend's save script as a local function over its own argument list."""
    return f"local function save_records(ARGV)\n{save_script}\nend\n"


# Settle's body; FIRST is the index of the first job in ARGV. Per job: op, id, owner ('' =
# any), retry_at. op: 'nack', or an ack: 'ack' (nothing told), 'ack+' (it succeeded: what
# waits for it counts it) or 'ack-' (it failed for good: what waits for it is cancelled).
# Only an acked job with dependents (P:after:<id>, one EXISTS) is resolved.
_SETTLE = r"""
local now = tonumber(ARGV[2])
local woke = false
local finished = {}
for i = FIRST, #ARGV, 4 do
  local op, id, owner, retry_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local job = P .. ':job:' .. id
  local f = fields_to_detach(id)  -- state, stream, entry, queue, limits, hold, seq, owner
  local held = f[1] == 'claimed' and (owner == '' or f[8] == owner)
  if op ~= 'nack' then
    if (owner == '' and f[1]) or held then
      local _, freed = forget(id, ARGV[2], true, f)  -- its slot, its unique key (kept?)
      woke = woke or freed
      if op ~= 'ack' and redis.call('EXISTS', P .. ':after:' .. id) == 1 then
        finished[#finished + 1] = {id, op == 'ack+'}
      end
    end
  elseif held then
    redis.call('HSET', job, 'due', retry_at)
    if tonumber(retry_at) > now then
      unlink(id)
      redis.call('HSET', job, 'state', 'delayed', 'owner', '')
      redis.call('HINCRBY', P .. ':waiting', f[4], 1)
      redis.call('ZADD', P .. ':delayed', retry_at, id)
    else
      wait_in_place(id, f[4])
    end
    if f[5] then free_slot(id, limits_of(f[5]), ARGV[2]) end  -- its unique key stays
    woke = true
  end
end
if woke then wake() end
local released, cancelled = {}, {}
if #finished > 0 then released, cancelled = resolve(finished, ARGV[2]) end
"""

# ARGV: P, now, then the jobs (as ``_SETTLE``).  Returns {released ids, (id, reason) flat
# of each job cancelled}, what resolving the acked jobs changed.
SETTLE = _COMMON + _RESOLVE + "local FIRST = 3\n" + _SETTLE + "return {released, cancelled}\n"


def settle_and_record(save_script: str) -> str:
    """The joint settle as one script: the outcomes' records, then SETTLE, with the jobs
    its resolve cancelled recorded CANCELLED.

    ARGV: P, now, result prefix, result ttl, history cap, n, n arguments of save items,
    then the jobs (as ``_SETTLE``). Returns 1.
    """
    return (
        _COMMON
        + _RESOLVE
        + _saver(save_script)
        + _JOINT
        + "local RP, TTL, CAP = ARGV[3], ARGV[4], ARGV[5]\n"
        + "local FIRST = 7 + tonumber(ARGV[6])\n"
        + "save_items(RP, TTL, CAP, 7, FIRST - 1)\n"
        + _SETTLE
        + "record_cancelled(cancelled, RP, TTL, CAP, ARGV[2])\nreturn 1\n"
    )


# ARGV: P, now, owner, then pairs of id, reason. Sets aside claimed jobs whose payload the
# claimer could not decode (only while this owner holds them).
QUARANTINE = (
    _COMMON
    + r"""
local now, owner = ARGV[2], ARGV[3]
for i = 4, #ARGV, 2 do
  local f = redis.call('HMGET', P .. ':job:' .. ARGV[i], 'state', 'owner')
  if f[1] == 'claimed' and f[2] == owner then quarantine(ARGV[i], ARGV[i + 1], now) end
end
return 1
"""
)

# ARGV: P, now, owner, ids...  Shutdown: back in the queue at once, the attempt uncounted,
# its concurrency slot free.
RELEASE = (
    _COMMON
    + r"""
local now, owner = ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local id = ARGV[i]
  local job = P .. ':job:' .. id
  local f = redis.call('HMGET', job, 'state', 'owner', 'queue', 'attempts', 'limits')
  if f[1] == 'claimed' and f[2] == owner then
    redis.call('HSET', job, 'attempts', math.max(tonumber(f[4]) - 1, 0))
    wait_in_place(id, f[3])
    if f[5] then free_slot(id, limits_of(f[5]), now) end
  end
end
wake()
return 1
"""
)

# ARGV: P, now, owner, then triples of id, hold tag, due.  Gives back jobs this owner holds
# that a limit outside the store keeps from running there (``BaseJobQueue.hold``): each
# waits in the delayed set until its due time with its tag, its attempt refunded, its slot
# freed, its unique key kept. Returns the ids given back.
HOLD = (
    _COMMON
    + r"""
local now, owner = ARGV[2], ARGV[3]
local given, woke = {}, false
for i = 4, #ARGV, 3 do
  local id, tag, due = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local job = P .. ':job:' .. id
  local f = redis.call('HMGET', job, 'state', 'owner', 'queue', 'attempts', 'limits', 'hold',
    'seq')
  if f[1] == 'claimed' and f[2] == owner and tonumber(due) then
    local L = f[5] and limits_of(f[5])
    unlink(id)
    redis.call('HSET', job, 'state', 'delayed', 'owner', '', 'due', due, 'hold', tag,
      'attempts', math.max((tonumber(f[4]) or 1) - 1, 0))
    -- No limits of its own: '{}' says there is a tag to clear when it is claimed or goes.
    if not f[5] then redis.call('HSET', job, 'limits', '{}') end
    redis.call('HINCRBY', P .. ':waiting', f[3], 1)
    redis.call('ZADD', P .. ':delayed', due, id)
    redis.call('HSET', own(P .. ':holds', 'hash'), id, tag)
    if L then
      if f[6] then off_chold(id, L, f[6], f[7]) end
      woke = free_slot(id, L, now) or woke
    end
    given[#given + 1] = id
  end
end
if #given > 0 then wake() end
return given
"""
)

# ARGV: P, owner, then pairs of id, delta.  Returns the ids whose attempts changed.
ADJUST_ATTEMPTS = r"""
local P, owner = ARGV[1], ARGV[2]
local changed = {}
for i = 3, #ARGV, 2 do
  local id, job = ARGV[i], P .. ':job:' .. ARGV[i]
  local f = redis.call('HMGET', job, 'state', 'owner', 'attempts')
  local attempts = tonumber(f[3])
  if f[1] == 'claimed' and f[2] == owner and attempts then
    redis.call('HSET', job, 'attempts', math.max(attempts + tonumber(ARGV[i + 1]), 0))
    changed[#changed + 1] = id
  end
end
return changed
"""

# ARGV: P, owner, lease_until, ids...  Returns the ids still held. A job with a
# concurrency key keeps its slot as long as its lease.
HEARTBEAT = (
    _LIMITS
    + r"""
local P, owner, lease_end = ARGV[1], ARGV[2], ARGV[3]
local held = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', P .. ':job:' .. id, 'state', 'owner', 'limits')
  if f[1] == 'claimed' and f[2] == owner then
    redis.call('ZADD', P .. ':leases', lease_end, id)
    local L = f[3] and limits_of(f[3])
    if L and L.conc_key then
      redis.call('ZADD', own(P .. ':slots:' .. L.conc_key, 'zset'), lease_end, id)
    end
    held[#held + 1] = id
  end
end
return held
"""
)

# ARGV: P, id.  Removes a waiting or parked job (its unique key goes); returns 1, or false
# when it is neither.
_CANCEL = r"""
local id = ARGV[2]
local state = redis.call('HGET', P .. ':job:' .. id, 'state')
if state == 'waiting' or state == 'delayed' then
  forget(id, nil, false)
elseif not unpark(id) then
  return false
end
"""
CANCEL = _COMMON + _CANCEL + "return 1\n"

# With the cancel, record it CANCELLED through the result backend's save script, then
# cancel what waits for it, in turn, and record those too.
_RECORD_CANCELLED = r"""
local now = ARGV[6]
save_records({ARGV[3], ARGV[4], ARGV[5], '', id, now, '', '', '', '', '', '', 2,
              'status', 'CANCELLED', 'finished_at', now})
if redis.call('EXISTS', P .. ':after:' .. id) == 1 then
  local _, cancelled = resolve({{id, false}}, now)
  record_cancelled(cancelled, ARGV[3], ARGV[4], ARGV[5], now)
end
return 1
"""


def cancel_and_record(save_script: str) -> str:
    """CANCEL and, when it removed the job, its CANCELLED record and the cancellation of
    what waits for it (recorded too), as one script.

    ARGV: P, id, result prefix, result ttl, history cap, now. Returns 1, or false.
    """
    return _COMMON + _RESOLVE + _saver(save_script) + _JOINT + _CANCEL + _RECORD_CANCELLED


# -- schedules --------------------------------------------------------------------
# A schedule is a hash and, while not paused, an entry in the due index (P:scheds). A
# record a script cannot use is reported by id with its reason and never half-used.
_SCHEDULE_COMMON = r"""
local function finite(x)
  return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge
end

-- A schedule's fields if its record is whole, else nil and the reason (nothing is written);
-- nil and nil when there is no record at all.
local function schedule_of(id)
  local key = P .. ':sched:' .. id
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return nil, nil end
  if kind ~= 'hash' then return nil, 'its record is a ' .. kind .. ', not a hash' end
  local f = redis.call('HMGET', key, 'def', 'next', 'paused', 'last_run', 'last_job')
  if not f[1] then return nil, 'it has no definition' end
  local nxt, last_run = tonumber(f[2]), f[4] or ''
  if not finite(nxt) then return nil, 'next run ' .. tostring(f[2]) .. ' is not a number' end
  if f[3] ~= '0' and f[3] ~= '1' then
    return nil, 'paused ' .. tostring(f[3]) .. ' is not 0 or 1'
  end
  if last_run ~= '' then
    if not finite(tonumber(last_run)) then
      return nil, 'last run ' .. last_run .. ' is not a number'
    end
    last_run = string.format('%.17g', tonumber(last_run))
  end
  -- Times go back as %.17g, which reads back as the same double.
  return {id = id, def = f[1], next = nxt, next_text = string.format('%.17g', nxt),
          paused = f[3] == '1', last_run = last_run, last_job = f[5] or ''}
end

-- A schedule as reply fields: id, definition, next run, paused (1 | 0), last run, last job.
local function schedule_row(out, s)
  for _, v in ipairs({s.id, s.def, s.next_text, s.paused and 1 or 0, s.last_run,
                      s.last_job}) do
    out[#out + 1] = v
  end
end
"""


def _schedules(body: str) -> str:
    return _COMMON + _SCHEDULE_COMMON + body


# ARGV: P, id, definition, next run, paused ('1' | '0'), last run ('' = none), last job ('' =
# none).  Creates or replaces the schedule, every field as given; returns 1.
SAVE_SCHEDULE = _schedules(r"""
local id, nxt, paused, last_run = ARGV[2], ARGV[4], ARGV[5], ARGV[6]
if not finite(tonumber(nxt)) then
  return redis.error_reply('schedule ' .. id .. ': next run ' .. nxt .. ' is not a number')
end
if paused ~= '0' and paused ~= '1' then
  return redis.error_reply('schedule ' .. id .. ': paused ' .. paused .. ' is not 0 or 1')
end
if last_run ~= '' and not finite(tonumber(last_run)) then
  return redis.error_reply('schedule ' .. id .. ': last run ' .. last_run .. ' is not a number')
end
local key = P .. ':sched:' .. id
redis.call('DEL', key)
redis.call('HSET', key, 'def', ARGV[3], 'next', nxt, 'paused', paused, 'last_run', last_run,
  'last_job', ARGV[7])
redis.call('SADD', P .. ':schedids', id)
if paused == '1' then
  redis.call('ZREM', P .. ':scheds', id)
else
  redis.call('ZADD', P .. ':scheds', nxt, id)
end
return 1
""")

# ARGV: P.  Returns {rows, bad}: every schedule (rows flat, as schedule_row), and (id,
# reason) for each record it cannot read (left as it is).
LIST_SCHEDULES = _schedules(r"""
local out, bad = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', P .. ':schedids')) do
  local s, why = schedule_of(id)
  if s then
    schedule_row(out, s)
  elseif why then
    bad[#bad + 1] = id
    bad[#bad + 1] = why
  end
end
return {out, bad}
""")

# ARGV: P, id.  Deletes the schedule (its claimed ticks' keys expire by themselves); returns
# 1, or 0 when there was none.
REMOVE_SCHEDULE = _schedules(r"""
local id = ARGV[2]
local had = redis.call('SREM', P .. ':schedids', id) + redis.call('DEL', P .. ':sched:' .. id)
redis.call('ZREM', P .. ':scheds', id)
if had > 0 then return 1 end
return 0
""")

# ARGV: P, id, paused ('1' | '0').  Returns 1, or 0 when there is no such schedule. Resuming
# needs a whole record (it goes back in the due index at its next run); pausing does not.
PAUSE_SCHEDULE = _schedules(r"""
local id, paused = ARGV[2], ARGV[3]
local key = P .. ':sched:' .. id
local s, why = schedule_of(id)
if not s and not why then return 0 end
if paused == '1' then
  if redis.call('TYPE', key).ok ~= 'hash' then
    return redis.error_reply('schedule ' .. id .. ': ' .. why)
  end
  redis.call('HSET', key, 'paused', '1')
  redis.call('ZREM', P .. ':scheds', id)
else
  if not s then return redis.error_reply('schedule ' .. id .. ': ' .. why) end
  redis.call('HSET', key, 'paused', '0')
  redis.call('ZADD', P .. ':scheds', s.next_text, id)
end
return 1
""")

# ARGV: P, now, limit.  Returns {rows, bad} as LIST_SCHEDULES: up to ``limit`` schedules
# not paused whose next run is at or before ``now``, earliest first (ties by id). An index
# entry with no record behind it, or of a paused one, is dropped; one whose record cannot
# be read is taken out of the index and listed in ``bad``, so it does not come due over and
# over (saving it again, or resuming it once it is whole, puts it back).
DUE_SCHEDULES = _schedules(r"""
local ids = redis.call('ZRANGEBYSCORE', P .. ':scheds', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local out, bad, drop = {}, {}, {}
for _, id in ipairs(ids) do
  local s, why = schedule_of(id)
  if s and not s.paused then
    schedule_row(out, s)
  else
    drop[#drop + 1] = id
    if why then
      bad[#bad + 1] = id
      bad[#bad + 1] = why
    end
  end
end
for _, id in ipairs(drop) do redis.call('ZREM', P .. ':scheds', id) end
return {out, bad}
""")

# ARGV: P, id, definition.  Takes the schedule out of the due index if its stored definition
# is still this one (which the caller could not decode); returns 1 if it did.
SET_ASIDE_SCHEDULE = _schedules(r"""
local id = ARGV[2]
local key = P .. ':sched:' .. id
if redis.call('TYPE', key).ok ~= 'hash' or redis.call('HGET', key, 'def') ~= ARGV[3] then
  return 0
end
return redis.call('ZREM', P .. ':scheds', id)
""")

# ARGV: P, now, schedule id, tick, next run, secs a tick's key is kept, then the tick's job
# as ``job_args`` gives it (id, queue, priority, due, attempts, payload, limits; none: a
# skipped tick). Its unique key is not claimed: a tick fires once anyway.
# Claims the tick: keys it, enqueues its job and moves the schedule on, in one step. Returns
# 1, or 0 (nothing written) when the tick was claimed already or is before the schedule's
# next run, or the schedule is gone or paused. Everything is checked before the first
# write, the tick's key (SET NX), so an error leaves nothing half-done.
FIRE = _schedules(r"""
local now, id, tick_text, next_text, kept = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local job_id = ARGV[7]
local tick = tonumber(tick_text)
if not finite(tick) then
  return redis.error_reply('schedule ' .. id .. ': tick ' .. tick_text .. ' is not a number')
end
if not finite(tonumber(next_text)) then
  return redis.error_reply('schedule ' .. id .. ': next run ' .. next_text ..
    ' is not a number')
end
local s, why = schedule_of(id)
if not s then
  if why then return redis.error_reply('schedule ' .. id .. ': ' .. why) end
  return 0
end
if s.paused or tick < s.next then return 0 end
if job_id then
  local kind = redis.call('TYPE', P .. ':job:' .. job_id).ok
  if kind ~= 'none' and kind ~= 'hash' then
    return redis.error_reply('schedule ' .. id .. ': the record of job ' .. job_id ..
      ' is a ' .. kind .. ', not a hash')
  end
  if not finite(tonumber(ARGV[10])) then
    return redis.error_reply('schedule ' .. id .. ': due time ' .. ARGV[10] ..
      ' is not a number')
  end
  if (ARGV[13] or '') ~= '' and not limits_of(ARGV[13]) then
    return redis.error_reply('schedule ' .. id .. ': the limits of job ' .. job_id ..
      ' cannot be read')
  end
end
if not redis.call('SET', P .. ':tick:' .. id .. ':' .. tick_text, job_id or '', 'NX', 'EX',
    kept) then
  return 0
end
local key = P .. ':sched:' .. id
if job_id then
  promote(now)
  enqueue_one(now, job_id, ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13])
  redis.call('HSET', key, 'last_job', job_id)
end
redis.call('HSET', key, 'next', next_text, 'last_run', tick_text)
redis.call('ZADD', P .. ':scheds', next_text, id)
if job_id then wake() end
return 1
""")

# ARGV: P.  Removes every job, parked ones too, the unique keys and holds (not the pauses,
# nor the token buckets: a clear does not refill them); returns how many.
CLEAR = (
    _LIMITS
    + r"""
local P = ARGV[1]
local ids = redis.call('SMEMBERS', P .. ':jobs')
local parked = {}
if redis.call('TYPE', P .. ':parked').ok == 'set' then
  parked = redis.call('SMEMBERS', P .. ':parked')
end
local keys = {}  -- the concurrency keys of the jobs: their slots and holds go too
local function note(key)
  local limits = redis.pcall('HGET', key, 'limits')
  local L = type(limits) == 'string' and limits_of(limits)
  if L and L.conc_key then keys[L.conc_key] = true end
end
for _, id in ipairs(parked) do
  local waits = P .. ':waits:' .. id
  if redis.call('TYPE', waits).ok == 'set' then
    for _, dep in ipairs(redis.call('SMEMBERS', waits)) do
      redis.call('DEL', P .. ':after:' .. dep)
    end
  end
  note(P .. ':park:' .. id)
  redis.call('DEL', waits, P .. ':park:' .. id)
end
for _, id in ipairs(ids) do
  note(P .. ':job:' .. id)
  redis.call('DEL', P .. ':job:' .. id)
end
for key in pairs(keys) do redis.call('DEL', P .. ':slots:' .. key, P .. ':chold:' .. key) end
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  for _, prio in ipairs(redis.call('ZRANGE', P .. ':prios:' .. q, 0, -1)) do
    redis.call('DEL', P .. ':s:' .. q .. ':' .. prio)
  end
  redis.call('DEL', P .. ':prios:' .. q)
end
redis.call('DEL', P .. ':jobs', P .. ':queues', P .. ':delayed', P .. ':leases',
  P .. ':waiting', P .. ':parked', P .. ':holds', P .. ':unique', P .. ':unique_until')
return #ids + #parked
"""
)

# ARGV: P, now.  Returns pending, scheduled, running, expired, quarantined.
STATS = r"""
local P, now = ARGV[1], ARGV[2]
local waiting = 0
for _, v in ipairs(redis.call('HVALS', P .. ':waiting')) do waiting = waiting + tonumber(v) end
local scheduled = redis.call('ZCARD', P .. ':delayed')
local running = redis.call('ZCOUNT', P .. ':leases', '(' .. now, '+inf')
local expired = redis.call('ZCOUNT', P .. ':leases', '(0', now)
local quarantined = redis.call('SCARD', P .. ':dead')
return {waiting - scheduled, scheduled, running, expired, quarantined}
"""

# ARGV: P.  Waiting jobs (not claimed): id, queue, priority, due, attempts, payload.
WAITING = r"""
local P = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. ':jobs')) do
  local f = redis.call('HMGET', P .. ':job:' .. id, 'state', 'queue', 'priority', 'due',
    'attempts', 'payload', 'seq')
  if f[1] == 'waiting' or f[1] == 'delayed' then
    for _, v in ipairs({id, f[2], f[3], f[4], f[5], f[6], f[7]}) do out[#out + 1] = v end
  end
end
return out
"""

# -- flow control: pauses, unique keys, and what ``queue_stats`` reads ---------------------
# ARGV: P, op ('pause' | 'resume' | 'list'), queue.  Returns 1 if it changed anything (0 if
# not), or, for 'list', the paused queue names. A resumed queue wakes idle workers.
PAUSE = (
    _COMMON
    + r"""
local op, queue = ARGV[2], ARGV[3]
if op == 'list' then
  local names = {}
  for name in pairs(paused_queues()) do names[#names + 1] = name end
  return names
end
local key = own(P .. ':paused', 'set')
if op == 'pause' then return redis.call('SADD', key, queue) end
local changed = redis.call('SREM', key, queue)
if changed == 1 then wake() end
return changed
"""
)

# ARGV: P, unique key, now.  Returns the id of the job that holds the key, or false.
UNIQUE_HOLDER = _COMMON + "return unique_holder(ARGV[2], tonumber(ARGV[3])) or false\n"

# ARGV: P, now, what ('delayed' | 'leases' | 'holds' | 'dead'), cursor ('0' to start).
# Counts per queue over one SCAN page of that index, so a large store is read in steps
# that each block the server briefly. Returns {next cursor ('0': done), rows}: rows flat
# (queue, count name, owner or hold tag or '', count); count names: scheduled, running,
# expired, owner, held, quarantined.
STATS_PAGE = r"""
local P, now, what, cursor = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local KINDS = {delayed = 'zset', leases = 'zset', holds = 'hash', dead = 'set'}
local SCANS = {zset = 'ZSCAN', hash = 'HSCAN', set = 'SSCAN'}
local key = P .. ':' .. what
local kind = KINDS[what]
if not kind or redis.call('TYPE', key).ok ~= kind then return {'0', {}} end
local page = redis.call(SCANS[kind], key, cursor, 'COUNT', 500)
local counts, order = {}, {}
local function add(queue, name, sub)
  if not queue then return end
  local k = queue .. '\0' .. name .. '\0' .. sub
  if not counts[k] then
    counts[k] = 0
    order[#order + 1] = {queue, name, sub, k}
  end
  counts[k] = counts[k] + 1
end
local items = page[2]
local step = kind == 'set' and 1 or 2
for i = 1, #items, step do
  local id = items[i]
  if what == 'delayed' then
    add(redis.call('HGET', P .. ':job:' .. id, 'queue'), 'scheduled', '')
  elseif what == 'leases' then
    local lease = tonumber(items[i + 1])
    if lease > 0 then
      local f = redis.call('HMGET', P .. ':job:' .. id, 'queue', 'owner')
      if lease <= now then
        add(f[1], 'expired', '')
      else
        add(f[1], 'running', '')
        add(f[1], 'owner', f[2] or '?')
      end
    end
  elseif what == 'holds' then
    local f = redis.call('HMGET', P .. ':job:' .. id, 'state', 'queue', 'hold')
    if (f[1] == 'waiting' or f[1] == 'delayed') and f[3] == items[i + 1] then
      add(f[2], 'held', f[3])
    end
  else
    add(redis.call('HGET', P .. ':dead:' .. id, 'queue'), 'quarantined', '')
  end
end
local out = {}
for _, o in ipairs(order) do
  for _, v in ipairs({o[1], o[2], o[3], counts[o[4]]}) do out[#out + 1] = v end
end
return {page[1], out}
"""
