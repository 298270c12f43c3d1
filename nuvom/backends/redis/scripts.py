"""The Lua scripts of the Redis queue: each step is one atomic script on the server.

Keys live under one prefix (ARGV[1]); the scripts build key names from it, so
this backend targets a single Redis (or a cluster with the prefix as hash tag).

Redis does not roll back a script that fails part-way, so a script reads and
checks everything it will rely on before its first write: a record it cannot
use is quarantined by id with its reason, an entry that is not nuvom's is
dropped, and nothing else is touched. Enqueueing carries a token, so sending the
same enqueue twice (a retry after a lost reply) stores the jobs once.

Layout under prefix P:
  P:job:<id>          hash: queue, priority, due, seq, attempts, payload, state, owner, stream, entry
  P:s:<queue>:<prio>  stream of due job ids, consumer group "nuvom" (one per queue and priority)
  P:prios:<queue>     zset of the priority levels a queue has streams for
  P:queues, P:jobs    sets of queue names and of every queued job id
  P:delayed           zset id -> due time (scheduled jobs and retry delays)
  P:leases            zset id -> lease end (0: released, waiting in its old place)
  P:waiting           hash: queue -> jobs waiting (due or scheduled)
  P:wake              capped stream idle workers block on (XREAD BLOCK)
  P:dead, P:dead:<id> set of quarantined job ids; each one's record, with its reason
  P:tok:q:<token>     an enqueue already applied (kept 5 minutes, far past any resend)
  P:sched:<id>        hash: def (the definition, one codec blob), next, paused ('0' | '1'),
                      last_run ('' = none), last_job ('' = none); times as repr(float)
  P:scheds            zset id -> next run, of the schedules not paused (the due index)
  P:schedids          set of every schedule id, paused or not
  P:tick:<id>:<tick>  a tick claimed (``SET NX EX``, kept ``TICKS_KEPT_SECS``); <tick> is
                      repr(float), the same string from every scheduler
"""

from __future__ import annotations

GROUP = "nuvom"

_COMMON = r"""
local P = ARGV[1]
local GROUP = 'nuvom'

local function stream_of(queue, prio)
  local key = P .. ':s:' .. queue .. ':' .. prio
  if redis.call('ZADD', P .. ':prios:' .. queue, 'NX', prio, prio) == 1 then
    redis.pcall('XGROUP', 'CREATE', key, GROUP, '0', 'MKSTREAM')
  end
  return key
end

local function to_stream(id)
  local job = P .. ':job:' .. id
  local f = redis.call('HMGET', job, 'queue', 'priority')
  local key = stream_of(f[1], f[2])
  local entry = redis.call('XADD', key, '*', 'id', id)
  redis.call('HSET', job, 'state', 'waiting', 'stream', key, 'entry', entry, 'owner', '')
end

local function fields_to_detach(id)
  return redis.call('HMGET', P .. ':job:' .. id, 'state', 'stream', 'entry', 'queue')
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

local function forget(id)
  local f = fields_to_detach(id)
  if not f[1] then return false end  -- a new id (every enqueue asks): nothing to undo
  detach(id, f)
  redis.call('DEL', P .. ':job:' .. id)
  return f[1]
end

-- A job's fields if its record is whole, else nil and the reason (nothing is written).
local function parse(id)
  local f = redis.call('HMGET', P .. ':job:' .. id, 'queue', 'priority', 'due', 'seq',
    'attempts', 'state', 'stream', 'entry', 'payload')
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
  return {id = id, queue = f[1], prio = prio, due = due, seq = seq, state = f[6],
          stream = f[7], entry = f[8]}
end

-- Set a job aside with its reason, whatever state its record is in: it is never claimed
-- again, and its record stays, for a person to read.
local function quarantine(id, reason)
  local job = P .. ':job:' .. id
  detach(id, fields_to_detach(id))
  if redis.call('EXISTS', job) == 1 then redis.call('RENAME', job, P .. ':dead:' .. id) end
  redis.call('HSET', P .. ':dead:' .. id, 'reason', reason)
  redis.call('SADD', P .. ':dead', id)
end

-- Move due jobs to their streams. A bad record is quarantined and listed in ``dead`` (id,
-- reason) for the caller to record; with no ``dead`` (an enqueue) it is left for a claim.
local function promote(now, dead)
  local due = redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    local job, why = parse(id)
    if job then
      redis.call('ZREM', P .. ':delayed', id)
      to_stream(id)
    elseif dead then
      quarantine(id, why)
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

-- Store one job (replacing any job of that id) and put it on its stream, or in the delayed
-- set if it is not due by ``now``. Every enqueue goes through here: ENQUEUE and FIRE.
local function enqueue_one(now, id, queue, prio, due, attempts, payload)
  forget(id)
  local seq = redis.call('INCR', P .. ':seq')
  redis.call('HSET', P .. ':job:' .. id, 'queue', queue, 'priority', prio, 'due', due,
    'seq', seq, 'attempts', attempts, 'payload', payload, 'owner', '', 'entry', '')
  redis.call('SADD', P .. ':jobs', id)
  redis.call('SADD', P .. ':queues', queue)
  redis.call('HINCRBY', P .. ':waiting', queue, 1)
  if tonumber(due) > now then
    redis.call('HSET', P .. ':job:' .. id, 'state', 'delayed')
    redis.call('ZADD', P .. ':delayed', due, id)
  else
    to_stream(id)
  end
end
"""

# ARGV: P, now, token ('' = none), then per job: id, queue, priority, due, attempts, payload.
# Returns 1, or 0 when an enqueue with this token was already applied (nothing is written).
ENQUEUE = (
    _COMMON
    + r"""
local now = tonumber(ARGV[2])
if ARGV[3] ~= '' and not redis.call('SET', P .. ':tok:q:' .. ARGV[3], 1, 'NX', 'EX', 300) then
  return 0
end
promote(ARGV[2])
for i = 4, #ARGV, 6 do
  enqueue_one(now, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
end
wake()
return 1
"""
)

# ARGV: P, now, lease_until, consumer, n, queue names... (none: every queue)
# Returns {rows, dead}: rows flat (id, queue, priority, due, attempts, payload) in claim
# order; dead flat (id, reason) for each record the script quarantined.
# Everything is read and checked first; the writes come after, on checked records only.
CLAIM = (
    _COMMON
    + r"""
local now, lease_end, consumer, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local SCAN_PAGES = 10
local dead = {}
promote(now, dead)
local queues = {}
if #ARGV > 5 then
  for i = 6, #ARGV do queues[#queues + 1] = ARGV[i] end
else
  queues = redis.call('SMEMBERS', P .. ':queues')
end
local wanted = {}
for _, q in ipairs(queues) do wanted[q] = true end

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

-- Sources: expired leases (and released jobs, lease 0), taken with XCLAIM, in claim order...
local sources = {}
local expired = {}
local cursor = 0
repeat
  local page = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', cursor, 200)
  for _, id in ipairs(page) do
    local k, why = parse(id)
    if not k then
      bad[#bad + 1] = {id, why}
    elseif (k.state ~= 'claimed' and k.state ~= 'waiting') or not k.entry or k.entry == ''
        or not is_stream(k.stream) then
      stale[#stale + 1] = id
    elseif wanted[k.queue] then
      expired[#expired + 1] = k
    end
  end
  cursor = cursor + #page
until #page < 200 or #expired >= n
table.sort(expired, before)
sources[1] = {items = expired, pos = 1, stream = false}
-- ...then each stream's undelivered head. An entry is a job's only if the job is waiting
-- on that very entry; any other is dropped once the group has read past it.
for _, q in ipairs(queues) do
  local prios = redis.call('ZREVRANGE', P .. ':prios:' .. q, 0, -1)
  for _, prio in ipairs(prios) do
    local key = P .. ':s:' .. q .. ':' .. prio
    local last = last_delivered(key)
    if last then
      -- Read on past entries that are not jobs until n jobs are found (or SCAN_PAGES pages):
      -- a run of garbage never hides the jobs behind it.
      local rows, items, kinds, start, page = {}, {}, {}, '(' .. last, math.max(n, 100)
      for _ = 1, SCAN_PAGES do
        local got = redis.call('XRANGE', key, start, '+', 'COUNT', page)
        for _, row in ipairs(got) do
          local r = #rows + 1
          rows[r] = row
          local fields, id = row[2], nil
          if #fields == 2 and fields[1] == 'id' then id = fields[2] end
          local k, why = nil, nil
          if id then k, why = parse(id) end
          if k and k.state == 'waiting' and k.entry == row[1] then
            k.row = r
            items[#items + 1] = k
            kinds[r] = 'job'
          else
            kinds[r] = 'other'
            if id and not k and redis.call('HGET', P .. ':job:' .. id, 'entry') == row[1] then
              bad[#bad + 1] = {id, why}
            end
          end
        end
        if #items >= n or #got < page then break end
        start = '(' .. got[#got][1]
      end
      if #rows > 0 then
        sources[#sources + 1] = {items = items, pos = 1, stream = key, rows = rows,
                                 kinds = kinds, chosen = {}}
      end
    end
  end
end

-- Merge the sources in claim order, each taken as a prefix (streams are read in order).
local chosen = {}
while #chosen < n do
  local best = nil
  for _, s in ipairs(sources) do
    local head = s.items[s.pos]
    if head and (best == nil or before(head, best.items[best.pos])) then best = s end
  end
  if best == nil then break end
  local item = best.items[best.pos]
  best.pos = best.pos + 1
  item.source = best
  chosen[#chosen + 1] = item
  if best.stream then best.chosen[item.row] = true end
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
  local f = redis.call('HMGET', job, 'queue', 'priority', 'due', 'payload')
  for _, v in ipairs({item.id, f[1], f[2], f[3], attempts, f[4]}) do out[#out + 1] = v end
end
local seen = {}
for _, b in ipairs(bad) do
  if not seen[b[1]] then
    seen[b[1]] = true
    quarantine(b[1], b[2])
    dead[#dead + 1] = b[1]
    dead[#dead + 1] = b[2]
  end
end
for _, id in ipairs(stale) do redis.call('ZREM', P .. ':leases', id) end
return {out, dead}
"""
)

_CLAIM_QUEUES_FROM_6 = "if #ARGV > 5 then\n  for i = 6, #ARGV do"
_CLAIM_QUEUES_FROM_9 = "if #ARGV > 8 then\n  for i = 9, #ARGV do"
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
  if recorded then
    for _, v in ipairs({id, started, 'start', consumer, started, '', '', '', 4,
                        'status', 'RUNNING', 'started_at', started, 'worker_id', consumer,
                        'finished_at', '\0'}) do
      save[#save + 1] = v
    end
  end
  for j = 0, 5 do flagged[#flagged + 1] = out[k + j] end
  flagged[#flagged + 1] = recorded and 1 or 0
end
if #save > 4 then save_records(save) end
return {flagged, dead}
"""


def claim_and_start(save_script: str) -> str:
    """CLAIM followed by mark-running, as one script: one round trip per claim.

    ``save_script`` is the Redis result backend's save script; it runs as a
    local function over its own argument list. ARGV: P, now, lease_until,
    consumer, n, result prefix, result ttl, history cap, queue names...
    Returns CLAIM's rows, each with a seventh field: 1 if the job had a result
    record (now RUNNING), 0 if the caller still has to write one; then, as CLAIM,
    the (id, reason) pairs it quarantined.
    """
    body = CLAIM[len(_COMMON) :]
    for part in (_CLAIM_QUEUES_FROM_6, _CLAIM_RETURN):
        if body.count(part) != 1:
            raise AssertionError(f"CLAIM script changed shape near {part!r}")
    body = body.replace(_CLAIM_QUEUES_FROM_6, _CLAIM_QUEUES_FROM_9)
    body = body.replace(_CLAIM_RETURN, "\n" + _START_CLAIMED)
    return _COMMON + _saver(save_script) + body


def _saver(save_script: str) -> str:
    """The result backend's save script as a local function over its own argument list."""
    return f"local function save_records(ARGV)\n{save_script}\nend\n"


# ARGV: P, now, then per job: op ('ack' | 'nack'), id, owner ('' = any), retry_at
SETTLE = (
    _COMMON
    + r"""
local now = tonumber(ARGV[2])
local woke = false
for i = 3, #ARGV, 4 do
  local op, id, owner, retry_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local job = P .. ':job:' .. id
  local f = redis.call('HMGET', job, 'state', 'owner', 'queue')
  local held = f[1] == 'claimed' and (owner == '' or f[2] == owner)
  if op == 'ack' then
    if (owner == '' and f[1]) or held then forget(id) end
  elseif held then
    redis.call('HSET', job, 'due', retry_at)
    if tonumber(retry_at) > now then
      unlink(id)
      redis.call('HSET', job, 'state', 'delayed', 'owner', '')
      redis.call('HINCRBY', P .. ':waiting', f[3], 1)
      redis.call('ZADD', P .. ':delayed', retry_at, id)
    else
      wait_in_place(id, f[3])
    end
    woke = true
  end
end
if woke then wake() end
return 1
"""
)

# ARGV: P, owner, then pairs of id, reason. Sets aside claimed jobs whose payload the
# claimer could not decode (only while this owner holds them).
QUARANTINE = (
    _COMMON
    + r"""
local owner = ARGV[2]
for i = 3, #ARGV, 2 do
  local f = redis.call('HMGET', P .. ':job:' .. ARGV[i], 'state', 'owner')
  if f[1] == 'claimed' and f[2] == owner then quarantine(ARGV[i], ARGV[i + 1]) end
end
return 1
"""
)

# ARGV: P, owner, ids...  Shutdown: back in the queue at once, the attempt uncounted.
RELEASE = (
    _COMMON
    + r"""
local owner = ARGV[2]
for i = 3, #ARGV do
  local id = ARGV[i]
  local job = P .. ':job:' .. id
  local f = redis.call('HMGET', job, 'state', 'owner', 'queue', 'attempts')
  if f[1] == 'claimed' and f[2] == owner then
    redis.call('HSET', job, 'attempts', math.max(tonumber(f[4]) - 1, 0))
    wait_in_place(id, f[3])
  end
end
wake()
return 1
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

# ARGV: P, owner, lease_until, ids...  Returns the ids still held.
HEARTBEAT = r"""
local P, owner, lease_end = ARGV[1], ARGV[2], ARGV[3]
local held = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', P .. ':job:' .. id, 'state', 'owner')
  if f[1] == 'claimed' and f[2] == owner then
    redis.call('ZADD', P .. ':leases', lease_end, id)
    held[#held + 1] = id
  end
end
return held
"""

# ARGV: P, id.  Removes a waiting job; returns 1, or false when it is not waiting.
_CANCEL = r"""
local id = ARGV[2]
local state = redis.call('HGET', P .. ':job:' .. id, 'state')
if state ~= 'waiting' and state ~= 'delayed' then return false end
forget(id)
"""
CANCEL = _COMMON + _CANCEL + "return 1\n"

# With the cancel, record it CANCELLED through the result backend's save script.
_RECORD_CANCELLED = r"""
local now = ARGV[6]
save_records({ARGV[3], ARGV[4], ARGV[5], '', id, now, '', '', '', '', '', '', 2,
              'status', 'CANCELLED', 'finished_at', now})
return 1
"""


def cancel_and_record(save_script: str) -> str:
    """CANCEL and, when it removed the job, its CANCELLED record, as one script.

    ARGV: P, id, result prefix, result ttl, history cap, now. Returns 1, or false.
    """
    return _COMMON + _saver(save_script) + _CANCEL + _RECORD_CANCELLED


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
# as ENQUEUE takes one (id, queue, priority, due, attempts, payload; none: a skipped tick).
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
end
if not redis.call('SET', P .. ':tick:' .. id .. ':' .. tick_text, job_id or '', 'NX', 'EX',
    kept) then
  return 0
end
local key = P .. ':sched:' .. id
if job_id then
  promote(now)
  enqueue_one(tonumber(now), job_id, ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
  redis.call('HSET', key, 'last_job', job_id)
end
redis.call('HSET', key, 'next', next_text, 'last_run', tick_text)
redis.call('ZADD', P .. ':scheds', next_text, id)
if job_id then wake() end
return 1
""")

# ARGV: P.  Removes every job; returns how many.
CLEAR = r"""
local P = ARGV[1]
local ids = redis.call('SMEMBERS', P .. ':jobs')
for _, id in ipairs(ids) do redis.call('DEL', P .. ':job:' .. id) end
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  for _, prio in ipairs(redis.call('ZRANGE', P .. ':prios:' .. q, 0, -1)) do
    redis.call('DEL', P .. ':s:' .. q .. ':' .. prio)
  end
  redis.call('DEL', P .. ':prios:' .. q)
end
redis.call('DEL', P .. ':jobs', P .. ':queues', P .. ':delayed', P .. ':leases',
  P .. ':waiting')
return #ids
"""

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
