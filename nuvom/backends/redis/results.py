"""Results and history in Redis: a hash per job, its attempts in a list, a capped history index.

Finished jobs' hashes expire after ``NUVOM_RESULT_TTL_SECS`` (kept for ever when
unset). ``history recent`` reads sorted sets of job ids by last update, one for
all jobs and one per status, each capped at ``HISTORY_CAP`` entries; ``find_jobs`` walks
them from its keyset down a page per round trip, and ``delete_job`` takes a record out of
them with its hash, in one script.

A job that comes after others (a workflow's, ``Job.depends_on``) is fed their results, so
they are kept for it: its record names them in its ``after`` field (a JSON list) and each
one's ``P:keep:<id>`` set holds the jobs recorded after it. A finished record whose keep set
is not empty never expires and is never pruned or deleted. A job lets go of what it waits
for once it finished for good and nothing holds it in turn (so a workflow's members are all
kept until its last jobs finished); a record nothing holds any more gets its normal expiry
then, a whole ``NUVOM_RESULT_TTL_SECS`` from that moment. The only extra work for a job no
one waits for is one EXISTS when it finishes (none when nothing expires). Records of an
earlier version have no ``after`` field and no keep sets: they expire as they did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import Defaults, fill_call, result_blob, stored_result
from nuvom.backends.contract import BaseJobQueue, BaseResultBackend, JobQuery, JointWriter
from nuvom.backends.redis.client import RedisBackend, text, translated
from nuvom.job import DEFAULT_QUEUE, FINAL_STATUSES, Job, JobStatus
from nuvom.records import AttemptRecord, ErrorInfo, JobRecord, Outcome

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.runtime import Runtime
    from nuvom.serialization import Codec

HISTORY_CAP = 100_000  # job ids the history indexes keep; older ones drop off the end
_DELETE = b"\x00"  # a field value meaning "remove this field"
FIND_LOOKS = 1_000  # index entries one find_jobs round trip looks at (the server waits on it)
SEARCH_BATCH = 200  # records a search fetches per round trip, to test them for its text

# ARGV: P, ttl (0 = none), cap, token ('' = none), then per job:
#   id, updated_at, op, a1..a5, nfields, field, value, ...
# A field named "?x" is set only when x is absent. op: start | finish | release | after |
# "" (after: a1 is the JSON list of the ids the job waits for, kept for it; see the module
# docstring). With a token, a second call with the same one writes nothing (a resend of a
# lost reply).
# What a job holds for the jobs it waits for (the module docstring): needs P and ttl.
_KEEPS = r"""
local FINAL = {SUCCESS = true, FAILED = true, CANCELLED = true}

-- The ids in a record's ``after`` field (a JSON list); none if it is not one.
local function deps_of(after)
  local ok, deps = pcall(cjson.decode, after)
  local out = {}
  if ok and type(deps) == 'table' then
    for _, dep in ipairs(deps) do
      if type(dep) == 'string' then out[#out + 1] = dep end
    end
  end
  return out
end

-- Job ``id`` no longer holds ``deps``. One nothing else holds any more gets its normal
-- expiry if it finished for good, and then lets go of what it waited for, in turn.
local function let_go(id, deps)
  local todo, k = {{id, deps}}, 1
  while k <= #todo do
    local job, list = todo[k][1], todo[k][2]
    k = k + 1
    for _, dep in ipairs(list) do
      local keep = P .. ':keep:' .. dep
      if redis.call('SREM', keep, job) == 1 and redis.call('EXISTS', keep) == 0 then
        local f = redis.call('HMGET', P .. ':r:' .. dep, 'status', 'after')
        if f[1] and FINAL[f[1]] then
          if ttl > 0 then
            redis.call('EXPIRE', P .. ':r:' .. dep, ttl)
            redis.call('EXPIRE', P .. ':a:' .. dep, ttl)
          end
          if f[2] then todo[#todo + 1] = {dep, deps_of(f[2])} end
        end
      end
    end
  end
end
"""

_SAVE = (
    r"""
local P, ttl, cap, token = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if token ~= '' and not redis.call('SET', P .. ':tok:r:' .. token, 1, 'NX', 'EX', 300) then
  return 0
end
"""
    + _KEEPS
    + r"""
local written = {}  -- id -> whether this call left it finished: no PERSIST needed if not
local i = 5
while i <= #ARGV do
  local id, updated, op = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local a1, a2, a3, a4, a5 = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local nfields = tonumber(ARGV[i + 8])
  local key, akey = P .. ':r:' .. id, P .. ':a:' .. id
  local cur = redis.call('HMGET', key, 'status', 'after')
  local old, after = cur[1], cur[2]
  local skip = false
  if op == 'release' then
    skip = old ~= 'RUNNING'
    if not skip then
      local last = redis.call('LINDEX', akey, -1)
      if last and cjson.decode(last).status == 'RUNNING' then redis.call('RPOP', akey) end
      local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
      redis.call('HSET', key, 'attempts', math.max(attempts - 1, 0))
    end
  end
  if not skip then
    -- One HSET and one HDEL for the fields (each name comes once in an item); an HSETNX
    -- each for those set only where absent.
    local sets, dels, new = {'updated_at', updated}, {}, nil
    for f = 0, nfields - 1 do
      local name, value = ARGV[i + 9 + 2 * f], ARGV[i + 10 + 2 * f]
      if string.sub(name, 1, 1) == '?' then
        redis.call('HSETNX', key, string.sub(name, 2), value)
      elseif value == '\0' then
        dels[#dels + 1] = name
      else
        sets[#sets + 1], sets[#sets + 2] = name, value
        if name == 'status' then new = value end
      end
    end
    if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
    redis.call('HSET', key, unpack(sets))
    if op == 'start' then
      local n = redis.call('LLEN', akey)
      for k = 0, n - 1 do
        local a = cjson.decode(redis.call('LINDEX', akey, k))
        if a.status == 'RUNNING' then
          a.status = 'LOST'
          redis.call('LSET', akey, k, cjson.encode(a))
        end
      end
      redis.call('RPUSH', akey, cjson.encode({status = 'RUNNING', worker_id = a1, started_at = a2}))
      redis.call('HINCRBY', key, 'attempts', 1)
    elseif op == 'finish' then
      local last = redis.call('LINDEX', akey, -1)
      if last then
        local a = cjson.decode(last)
        a.status, a.finished_at, a.error_type, a.error_message, a.traceback = a1, a2, a3, a4, a5
        redis.call('LSET', akey, -1, cjson.encode(a))
      end
    end
    if not new then new = redis.call('HGET', key, 'status') end  -- no op writes status
    if old and old ~= new then redis.call('ZREM', P .. ':h:' .. old, id) end
    redis.call('ZADD', P .. ':h:' .. new, updated, id)
    redis.call('ZADD', P .. ':h', updated, id)
    if op == 'after' and not FINAL[new] then  -- it holds what it waits for (and no more)
      local deps, now_held = deps_of(a1), {}
      for _, dep in ipairs(deps) do now_held[dep] = true end
      if after and after ~= a1 then
        local dropped = {}
        for _, dep in ipairs(deps_of(after)) do
          if not now_held[dep] then dropped[#dropped + 1] = dep end
        end
        let_go(id, dropped)
      end
      redis.call('HSET', key, 'after', a1)
      after = a1
      for _, dep in ipairs(deps) do
        redis.call('SADD', P .. ':keep:' .. dep, id)
        if written[dep] ~= false and redis.call('PERSIST', P .. ':r:' .. dep) == 1 then
          redis.call('PERSIST', P .. ':a:' .. dep)  -- it had finished already
        end
      end
    end
    -- Finished for good: expires, unless a job not finished comes after it (one EXISTS).
    local held = FINAL[new] and (ttl > 0 or after)
      and redis.call('EXISTS', P .. ':keep:' .. id) == 1
    if ttl > 0 and FINAL[new] and not held then
      redis.call('EXPIRE', key, ttl)
      redis.call('EXPIRE', akey, ttl)
    else
      redis.call('PERSIST', key)
      redis.call('PERSIST', akey)
    end
    if after and FINAL[new] and not held then let_go(id, deps_of(after)) end
    written[id] = FINAL[new] == true
    if redis.call('ZCARD', P .. ':h') > cap then
      redis.call('ZREMRANGEBYRANK', P .. ':h', 0, -(cap + 1))
      redis.call('ZREMRANGEBYRANK', P .. ':h:' .. new, 0, -(cap + 1))
    end
  end
  i = i + 9 + 2 * nfields
end
return 1
"""
)

SAVE_SCRIPT = _SAVE  # the joint writer's scripts embed it

# ARGV: P, older_than, statuses...  Returns how many jobs were deleted (never one held for a
# job not finished: P:keep:<id>).
_PRUNE = r"""
local P, older = ARGV[1], ARGV[2]
local count = 0
for s = 3, #ARGV do
  local index = P .. ':h:' .. ARGV[s]
  local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. older)
  for _, id in ipairs(ids) do
    if redis.call('EXISTS', P .. ':keep:' .. id) == 0 then  -- else a job to come needs it
      redis.call('DEL', P .. ':r:' .. id, P .. ':a:' .. id)
      redis.call('ZREM', index, id)
      redis.call('ZREM', P .. ':h', id)
      count = count + 1
    end
  end
end
return count
"""

# ARGV: P, cursor ('0' to start), the default queue.  FAILED jobs per queue over one SCAN page of the FAILED
# index (a record gone meanwhile is not counted). Returns {next cursor ('0': done), flat
# (queue, count, ...)}.
_FAILED_PAGE = r"""
local P, cursor, default = ARGV[1], ARGV[2], ARGV[3]
local index = P .. ':h:FAILED'
if redis.call('TYPE', index).ok ~= 'zset' then return {'0', {}} end
local page = redis.call('ZSCAN', index, cursor, 'COUNT', 500)
local counts, order = {}, {}
for i = 1, #page[2], 2 do
  local f = redis.call('HMGET', P .. ':r:' .. page[2][i], 'status', 'queue')
  if f[1] == 'FAILED' then
    local queue = f[2] or default
    if not counts[queue] then order[#order + 1] = queue end
    counts[queue] = (counts[queue] or 0) + 1
  end
end
local out = {}
for _, queue in ipairs(order) do
  out[#out + 1] = queue
  out[#out + 1] = counts[queue]
end
return {page[1], out}
"""

# ARGV: P, status ('' = any: the index of every job), keyset score, keyset id ('' '' = from
# the newest), until ('' = none), since ('' = none), queue ('' = any), want, most entries to
# look at, then the task names (none: any). One page of ``find_jobs``: walks the index from
# just after the keyset (or from ``until``) down, newest first, ties by id descending (how a
# sorted set orders them), stopping at ``since``. A record passes on what its hash says of
# status, queue and task (a record without a task name passes: its payload may name one);
# the caller checks the rest. Returns {done (1: nothing older is left), score, id of the
# last entry looked at ('' when none), then id, HGETALL flat, ... of up to ``want``}.
_FIND_PAGE = r"""
local P, status, at, after_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local until_at, since, queue = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local want, most = tonumber(ARGV[8]), tonumber(ARGV[9])
local index = P .. ':h'
if status ~= '' then index = index .. ':' .. status end
local out = {1, '', ''}
if redis.call('TYPE', index).ok ~= 'zset' then return out end
local tasks = nil
if #ARGV > 9 then
  tasks = {}
  for k = 10, #ARGV do tasks[ARGV[k]] = true end
end

-- Whether a sorts before b as a sorted set orders members (bytes; Lua's < heeds the locale).
local function sorts_before(a, b)
  for k = 1, math.min(#a, #b) do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Where the walk starts: the rank (newest first) of the first entry before the keyset.
local start = 0
if until_at ~= '' then start = redis.call('ZCOUNT', index, until_at, '+inf') end
if at ~= '' then
  local pos
  local score = redis.call('ZSCORE', index, after_id)
  if score and tonumber(score) == tonumber(at) then
    pos = redis.call('ZREVRANK', index, after_id) + 1
  else  -- the keyset's job moved on or is gone: count what sorts at or after its place
    pos = redis.call('ZCOUNT', index, '(' .. at, '+inf')
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', index, at, at)) do
      if not sorts_before(member, after_id) then pos = pos + 1 end
    end
  end
  if pos > start then start = pos end
end

local found, seen, CHUNK = 0, 0, 100
while found < want and seen < most do
  local n = math.min(most - seen, CHUNK)
  local page = redis.call('ZREVRANGE', index, start + seen, start + seen + n - 1, 'WITHSCORES')
  for k = 1, #page, 2 do
    local id, score = page[k], page[k + 1]
    if since and tonumber(score) < since then return out end
    seen = seen + 1
    out[2], out[3] = score, id
    local key = P .. ':r:' .. id
    local f = redis.call('HMGET', key, 'status', 'queue', 'func_name')
    if f[1] and (status == '' or f[1] == status) and (queue == '' or f[2] == queue)
        and (not tasks or not f[3] or tasks[f[3]]) then
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGETALL', key)
      found = found + 1
      if found == want then break end
    end
  end
  if found < want and #page < 2 * n then return out end
end
out[1] = 0
return out
"""

# ARGV: P, id, ttl (0 = none), then every status name.  Forgets a finished job: its hash,
# its attempts and its entries in the history indexes; what it still held for itself (the
# jobs it waited for) is let go, as when it finished for good. Returns 1, or 0 (nothing
# written) when it has no record, has not finished, or is kept as prune keeps it: a job not
# finished still holds it (P:keep:<id>), to be fed its result.
_DELETE_JOB = (
    r"""
local P, id, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
"""
    + _KEEPS
    + r"""
local key = P .. ':r:' .. id
local f = redis.call('HMGET', key, 'status', 'after')
if not f[1] or not FINAL[f[1]] then return 0 end
if redis.call('EXISTS', P .. ':keep:' .. id) == 1 then return 0 end
if f[2] then let_go(id, deps_of(f[2])) end
redis.call('DEL', key, P .. ':a:' .. id)
redis.call('ZREM', P .. ':h', id)
for s = 4, #ARGV do redis.call('ZREM', P .. ':h:' .. ARGV[s], id) end
return 1
"""
)

Fields = list[tuple[str, Any]]
Item = tuple[str, str, Sequence[Any], Fields]  # (job id, attempt op, op args, fields)


def _num(value: float | int | None) -> Any:
    return _DELETE if value is None else repr(value)


class RedisResultBackend(RedisBackend, BaseResultBackend):
    name = "redis"
    shared_across_processes = True

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
        ttl_secs: int | None = None,
        history_cap: int = HISTORY_CAP,
        runtime: Runtime | None = None,
    ) -> None:
        """``ttl_secs``: how long a finished job is kept (0: for ever; None: the setting)."""
        self.history_cap = history_cap
        super().__init__(url, prefix=prefix, codec=codec, clock=clock, runtime=runtime)
        if ttl_secs is None:
            ttl_secs = Defaults(runtime).settings.result_ttl_secs
        self.ttl_secs = ttl_secs

    def ready(self) -> None:
        self._save = self.client.register_script(_SAVE)
        self._prune = self.client.register_script(_PRUNE)
        self._failed_page = self.client.register_script(_FAILED_PAGE)
        self._find_page = self.client.register_script(_FIND_PAGE)
        self._delete_job = self.client.register_script(_DELETE_JOB)

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        from nuvom.backends.redis.joint import RedisJointWriter
        from nuvom.backends.redis.queue import RedisJobQueue

        if isinstance(queue, RedisJobQueue) and queue.url == self.url:
            return RedisJointWriter(queue, self)
        return None

    def _write(self, items: Sequence[Item]) -> None:
        """Apply (id, op, op_args, fields) to each job in one script call."""
        if not items:
            return
        with translated(self.url):
            self._save(args=self._save_args(items))

    def _save_args(self, items: Sequence[Item]) -> list[Any]:
        return [self.prefix, self.ttl_secs or 0, self.history_cap, "", *self.item_args(items)]

    def item_args(self, items: Sequence[Item]) -> list[Any]:
        """The save script's arguments for ``items``, after its prefix, ttl, cap and token:
        what the joint writer's scripts pass it."""
        now = repr(self.clock.time())
        args: list[Any] = []
        for job_id, op, op_args, fields in items:
            padded = [_DELETE if a is None else a for a in op_args] + [""] * (5 - len(op_args))
            args += [job_id, now, op, *padded, len(fields)]
            for name, value in fields:
                args += [name, _DELETE if value is None else value]
        return args

    # -- the four methods every result backend has ------------------------------
    def set_result(self, job_id: str, result: Any) -> None:
        blob = self.codec.dumps(result)
        now = self.clock.time()
        fields: Fields = [("status", "SUCCESS"), ("result", blob), ("has_result", "1"),
                          ("error_type", None), ("error_message", None), ("traceback", None),
                          ("finished_at", repr(now))]  # fmt: skip
        self._write([(job_id, "", (), fields)])

    def get_result(self, job_id: str) -> Any:
        with translated(self.url):
            has_result, blob = self.client.hmget(
                f"{self.prefix}:r:{job_id}", "has_result", "result"
            )
        return stored_result(self.codec, blob) if has_result == b"1" else None

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        fields: Fields = [("status", "FAILED"), ("error_type", info.type),
                          ("error_message", info.message), ("traceback", None),
                          ("finished_at", repr(self.clock.time()))]  # fmt: skip
        self._write([(job_id, "", (), fields)])

    def get_error(self, job_id: str) -> str | None:
        with translated(self.url):
            status, kind, message = self.client.hmget(
                f"{self.prefix}:r:{job_id}", "status", "error_type", "error_message"
            )
        if status not in (b"FAILED", b"CANCELLED") or kind is None:
            return None
        return f"{text(kind)}: {text(message or b'')}"

    # -- richer methods ---------------------------------------------------
    def record_enqueued(self, jobs: Sequence[Job]) -> None:
        self._write(self.enqueued_items(jobs))

    def enqueued_items(self, jobs: Sequence[Job]) -> list[Item]:
        now = self.clock.time()
        items: list[Item] = []
        for job in jobs:
            scheduled = job.due_at is not None and job.due_at > now
            fields: Fields = [
                ("func_name", job.func_name), ("queue", job.queue),
                ("priority", str(job.priority)),
                ("status", "SCHEDULED" if scheduled else "PENDING"),
                ("payload", self.payloads.encode(job)),
                ("max_retries", None if job.max_retries is None else str(job.max_retries)),
                ("created_at", repr(job.created_at)), ("due_at", _num(job.due_at)),
                ("finished_at", None),
            ]  # fmt: skip
            deps = job.depends_on
            if deps:  # what it waits for is kept until it finished for good
                items.append((job.id, "after", (json.dumps(deps),), fields))
            else:
                items.append((job.id, "", (), fields))
        return items

    def record_fired(self, jobs: Sequence[Job]) -> None:
        """Each field set only where absent ("?"): a record a worker wrote stands."""
        items = [
            (job_id, op, args, [(f"?{name}", v) for name, v in fields if v not in (None, _DELETE)])
            for job_id, op, args, fields in self.enqueued_items(jobs)
        ]
        self._write(items)

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        items: list[Item] = []
        for job in jobs:
            fields: Fields = [
                ("?func_name", job.func_name), ("?queue", job.queue),
                ("?priority", str(job.priority)), ("?payload", self.payloads.encode(job)),
                ("?created_at", repr(job.created_at)), ("status", "RUNNING"),
                ("started_at", repr(started_at)), ("worker_id", worker_id),
                ("finished_at", None),
            ]  # fmt: skip
            items.append((job.id, "start", (worker_id, repr(started_at)), fields))
        self._write(items)

    def mark_released(self, job_ids: Sequence[str]) -> None:
        self._write([(job_id, "release", (), [("status", "PENDING")]) for job_id in job_ids])

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        self._write([(job_id, "", (), [("status", "CANCELLED"), ("finished_at", repr(at))])])

    def mark_dependents_cancelled(self, cancelled: Sequence[tuple[str, str]], *, at: float) -> None:
        self._write([(job_id, "", (), [("status", "CANCELLED"), ("error_type", "Cancelled"),
                                       ("error_message", reason), ("finished_at", repr(at))])
                     for job_id, reason in cancelled])  # fmt: skip

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        self._write(self.outcome_items(outcomes))

    def outcome_items(self, outcomes: Sequence[Outcome]) -> list[Item]:
        items: list[Item] = []
        for outcome in outcomes:
            job, error = outcome.job, outcome.error
            retrying = outcome.status is JobStatus.RETRYING
            blob = result_blob(self.codec, outcome)
            fields: Fields = [
                ("?func_name", job.func_name), ("?queue", job.queue),
                ("?created_at", repr(job.created_at)),
                ("status", outcome.status.value), ("result", blob),
                ("has_result", "1" if blob is not None else "0"),
                ("error_type", error.type if error else None),
                ("error_message", error.message if error else None),
                ("traceback", error.traceback if error else None),
                ("finished_at", None if retrying else _num(outcome.finished_at)),
                ("worker_id", outcome.worker_id),
            ]  # fmt: skip
            if retrying:
                fields.append(("due_at", _num(outcome.retry_at)))
            op_args = (
                outcome.status.value,
                _num(outcome.finished_at),
                error.type if error else None,
                error.message if error else None,
                error.traceback if error else None,
            )
            items.append((job.id, "finish", op_args, fields))
        return items

    # -- reading -------------------------------------------------------------
    def _record(self, job_id: str, raw: dict[bytes, bytes]) -> JobRecord:
        h = {text(k): v for k, v in raw.items()}

        def string(name: str) -> str | None:
            value = h.get(name)
            return None if value is None else text(value)

        def number(name: str) -> float | None:
            value = h.get(name)
            return None if value is None else float(value)

        has_result = h.get("has_result") == b"1"
        record = JobRecord(
            id=job_id,
            status=JobStatus(string("status")),
            func_name=string("func_name"),
            queue=string("queue"),
            priority=int(h.get("priority") or 0),
            result=stored_result(self.codec, h.get("result")) if has_result else None,
            has_result=has_result,
            error_type=string("error_type"),
            error_message=string("error_message"),
            traceback=string("traceback"),
            attempts=int(h.get("attempts") or 0),
            max_retries=None if h.get("max_retries") is None else int(h["max_retries"]),
            created_at=number("created_at"),
            due_at=number("due_at"),
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            updated_at=number("updated_at"),
            worker_id=string("worker_id"),
        )
        fill_call(record, h.get("payload"), self.payloads)
        return record

    @staticmethod
    def _attempt(number: int, raw: bytes) -> AttemptRecord:
        data = json.loads(raw)

        def opt(name: str) -> Any:
            value = data.get(name)
            return None if value in (None, "", "\x00") else value

        started, finished = opt("started_at"), opt("finished_at")
        return AttemptRecord(
            number,
            data["status"],
            None if started is None else float(started),
            None if finished is None else float(finished),
            opt("worker_id"),
            opt("error_type"),
            opt("error_message"),
            opt("traceback"),
        )

    def get_full(self, job_id: str) -> JobRecord | None:
        with translated(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(f"{self.prefix}:r:{job_id}")
            pipe.lrange(f"{self.prefix}:a:{job_id}", 0, -1)
            raw, attempts = pipe.execute()
        if not raw or b"status" not in raw:
            return None
        record = self._record(job_id, raw)
        record.history = [self._attempt(n, a) for n, a in enumerate(attempts, start=1)]
        return record

    def get_status(self, job_id: str) -> JobStatus | None:
        with translated(self.url):
            status = self.client.hget(f"{self.prefix}:r:{job_id}", "status")
        return None if status is None else JobStatus(text(status))

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        index = f"{self.prefix}:h" if status is None else f"{self.prefix}:h:{status.value}"
        records: list[JobRecord] = []
        with translated(self.url):
            ids = [text(i) for i in self.client.zrevrange(index, offset, offset + limit - 1)]
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(f"{self.prefix}:r:{job_id}")
            rows = pipe.execute() if ids else []
        for job_id, raw in zip(ids, rows, strict=True):
            if raw and b"status" in raw:  # an expired result leaves its id behind briefly
                records.append(self._record(job_id, raw))
        return records

    def find_jobs(self, query: JobQuery) -> list[JobRecord]:
        """Walks the history index (the status's, with ``query.status``) from the keyset
        down, a page per round trip, until ``query.limit`` records pass or ``since`` is
        reached. Status, queue and task are tested on the server, the rest here."""
        if query.limit <= 0 or (query.tasks is not None and not query.tasks):
            return []
        status = "" if query.status is None else query.status.value
        at, after_id = (
            ("", "") if query.before is None else (repr(query.before[0]), query.before[1])
        )
        bounds = ["" if t is None else repr(t) for t in (query.until, query.since)]
        found: list[JobRecord] = []
        while True:
            want = query.limit - len(found)
            if query.search:
                want = max(want, SEARCH_BATCH)
            args = [self.prefix, status, at, after_id, *bounds, query.queue or "", want,
                    FIND_LOOKS, *(query.tasks or ())]  # fmt: skip
            with translated(self.url):
                done, at, after_id, *rows = self._find_page(args=args)
            for i in range(0, len(rows), 2):
                flat = rows[i + 1]
                record = self._record(text(rows[i]), dict(zip(flat[::2], flat[1::2], strict=True)))
                if query.matches(record):
                    found.append(record)
                    if len(found) == query.limit:
                        return found
            if int(done) or not after_id:
                return found
            at, after_id = text(at), text(after_id)

    def delete_job(self, job_id: str) -> bool:
        """One script: the record, its attempts and its index entries go at once, unless a
        job of its workflow not finished yet still holds it (``prune`` keeps it too); the
        settle that would let go of it runs as a script as well, so the two never interleave."""
        args = [self.prefix, job_id, self.ttl_secs or 0, *(s.value for s in JobStatus)]
        with translated(self.url):
            return bool(self._delete_job(args=args))

    def status_counts(self) -> dict[str, int]:
        counts = {}
        with translated(self.url):
            for status in JobStatus:
                count = int(self.client.zcard(f"{self.prefix}:h:{status.value}"))
                if count:
                    counts[status.value] = count
        return counts

    def failed_by_queue(self) -> dict[str, int]:
        """Counted over the FAILED index a page at a time: the queue rows of ``nuvom queue
        stats`` each get their own."""
        failed: dict[str, int] = {}
        cursor: Any = "0"
        with translated(self.url):
            while True:
                cursor, flat = self._failed_page(args=[self.prefix, cursor, DEFAULT_QUEUE])
                for i in range(0, len(flat), 2):
                    queue = text(flat[i])
                    failed[queue] = failed.get(queue, 0) + int(flat[i + 1])
                if text(cursor) == "0":
                    return failed

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        chosen = [s.value for s in (statuses or FINAL_STATUSES) if s in FINAL_STATUSES]
        with translated(self.url):
            return int(self._prune(args=[self.prefix, repr(older_than), *chosen]))

    def close(self) -> None:
        self.client.close()
