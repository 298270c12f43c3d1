"""Every SQL statement of the PostgreSQL backends: versioned migrations and named queries.

Statements name tables without a schema; each connection's ``search_path`` is
set to nuvom's schema (quoted with ``psycopg.sql.Identifier``). Values are
always bound as server-side parameters, never formatted into the text.
"""

from __future__ import annotations

from nuvom.backends.common import JOB_COLUMNS
from nuvom.job import JobStatus

# Each migration brings the schema from version N-1 to N, in one transaction.
# Append new ones; never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Jobs waiting or claimed. available_at is due_at while waiting and the
        # lease's end while claimed, so one comparison finds every claimable row,
        # expired leases included. seq gives FIFO order.
        """CREATE TABLE nuvom_queue (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            queue text NOT NULL,
            priority integer NOT NULL DEFAULT 0,
            due_at double precision NOT NULL,
            available_at double precision NOT NULL,
            lease_owner text,
            attempts integer NOT NULL DEFAULT 0,
            enqueued_at double precision NOT NULL,
            payload bytea NOT NULL
        )""",
        "CREATE INDEX nuvom_queue_order ON nuvom_queue (priority DESC, due_at, seq)",
        "CREATE INDEX nuvom_queue_available ON nuvom_queue (available_at)",
        """CREATE TABLE nuvom_dead (
            id text PRIMARY KEY,
            queue text,
            payload bytea,
            reason text NOT NULL,
            quarantined_at double precision NOT NULL
        )""",
        """CREATE TABLE nuvom_jobs (
            id text PRIMARY KEY,
            func_name text,
            queue text,
            priority integer NOT NULL DEFAULT 0,
            status text NOT NULL,
            payload bytea,
            result bytea,
            has_result boolean NOT NULL DEFAULT false,
            error_type text,
            error_message text,
            traceback text,
            attempts integer NOT NULL DEFAULT 0,
            max_retries integer,
            created_at double precision,
            due_at double precision,
            started_at double precision,
            finished_at double precision,
            updated_at double precision NOT NULL,
            worker_id text
        )""",
        # history recent [--status S]: newest first, optionally of one status.
        "CREATE INDEX nuvom_jobs_status ON nuvom_jobs (status, updated_at DESC)",
        "CREATE INDEX nuvom_jobs_updated ON nuvom_jobs (updated_at DESC)",
        """CREATE TABLE nuvom_attempts (
            job_id text NOT NULL,
            number integer NOT NULL,
            status text NOT NULL,
            started_at double precision,
            finished_at double precision,
            worker_id text,
            error_type text,
            error_message text,
            traceback text,
            PRIMARY KEY (job_id, number)
        )""",
    ),
    (
        # 2: periodic jobs (nuvom/scheduler.py). definition is the codec's blob of
        # Schedule.definition(); the rest moves as ticks fire.
        """CREATE TABLE nuvom_schedules (
            id text PRIMARY KEY,
            definition bytea NOT NULL,
            next_run_at double precision NOT NULL,
            paused boolean NOT NULL DEFAULT false,
            last_run_at double precision,
            last_job_id text
        )""",
        "CREATE INDEX nuvom_schedules_due ON nuvom_schedules (paused, next_run_at)",
        # One row per tick claimed: its key is the promise that a tick fires once, however
        # many schedulers race for it. Kept TICKS_KEPT_SECS, then pruned.
        """CREATE TABLE nuvom_ticks (
            schedule_id text NOT NULL,
            tick double precision NOT NULL,
            job_id text,
            PRIMARY KEY (schedule_id, tick)
        )""",
    ),
    (
        # 3: workflows. A job that waits for others is parked with its queue row's columns
        # (due_at NULL: none was asked for) until it is released into nuvom_queue or
        # cancelled; waiting counts the jobs it waits for that have not succeeded yet, and
        # errback marks a job released by a failure. dependents, here and on nuvom_queue,
        # is set by a submit that parks a job waiting for this one: an ack racing that
        # submit waits for its row lock and then reads it (see ACK).
        """CREATE TABLE nuvom_parked (
            id text PRIMARY KEY,
            queue text NOT NULL,
            priority integer NOT NULL DEFAULT 0,
            due_at double precision,
            attempts integer NOT NULL DEFAULT 0,
            enqueued_at double precision NOT NULL,
            payload bytea NOT NULL,
            errback boolean NOT NULL DEFAULT false,
            waiting integer NOT NULL,
            dependents boolean NOT NULL DEFAULT false
        )""",
        # One row per job a parked job still waits for; counting a finished job deletes
        # its rows, so a job settled twice counts once.
        """CREATE TABLE nuvom_edges (
            job_id text NOT NULL,
            dep_id text NOT NULL,
            PRIMARY KEY (job_id, dep_id)
        )""",
        "CREATE INDEX nuvom_edges_dep ON nuvom_edges (dep_id)",
        "ALTER TABLE nuvom_queue ADD COLUMN dependents boolean NOT NULL DEFAULT false",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Run before the schema exists, under an advisory lock taken in the same transaction.
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
CREATE_META = """CREATE TABLE IF NOT EXISTS nuvom_meta (
    key text PRIMARY KEY,
    value text NOT NULL
)"""
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"
GET_SCHEMA_VERSION = "SELECT value FROM nuvom_meta WHERE key = 'schema_version'"
SET_SCHEMA_VERSION = """
INSERT INTO nuvom_meta (key, value) VALUES ('schema_version', %s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""

# -- queue -----------------------------------------------------------------
ENQUEUE = """
INSERT INTO nuvom_queue
    (id, queue, priority, due_at, available_at, attempts, enqueued_at, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    available_at = excluded.available_at, lease_owner = NULL,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at, payload = excluded.payload
"""
NOTIFY = "SELECT pg_notify(%s, '')"

_CLAIM = """
WITH picked AS (
    SELECT seq FROM nuvom_queue WHERE available_at <= %(now)s {queue_filter}
    ORDER BY priority DESC, due_at, seq LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
)
UPDATE nuvom_queue q
SET lease_owner = %(worker)s, available_at = %(until)s, attempts = q.attempts + 1
WHERE q.seq = ANY(ARRAY(SELECT seq FROM picked))
RETURNING q.seq, q.id, q.queue, q.priority, q.due_at, q.attempts, q.payload
"""
CLAIM_ANY_QUEUE = _CLAIM.format(queue_filter="")
CLAIM_FROM_QUEUES = _CLAIM.format(queue_filter="AND queue = ANY(%(queues)s)")

# Claim and mark running in ONE statement (one round trip, run outside an explicit
# transaction): lease the rows, set their job records RUNNING, mark earlier RUNNING
# attempts LOST and start a new attempt. The last column says whether the job had
# a record to update; the caller writes a full RUNNING record for those that had none.
# Its commit does not wait for the WAL flush (synchronous_commit off for this one
# transaction): a claim lost in a server crash leaves the job claimable again, the
# same as an expired lease, and any later synchronous commit (the job's settle)
# flushes it first, so nothing is lost and no outcome can outlive its claim.
_CLAIM_AND_START = """
WITH picked AS (
    SELECT seq FROM nuvom_queue WHERE available_at <= %(now)s {queue_filter}
    ORDER BY priority DESC, due_at, seq LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    -- = ANY(ARRAY(...)): always the primary-key index, never a scan of the whole queue.
    UPDATE nuvom_queue q
    SET lease_owner = %(worker)s, available_at = %(until)s, attempts = q.attempts + 1
    WHERE q.seq = ANY(ARRAY(SELECT seq FROM picked))
    RETURNING q.seq, q.id, q.queue, q.priority, q.due_at, q.attempts, q.payload
), running AS (
    UPDATE nuvom_jobs j
    SET status = 'RUNNING', started_at = %(started)s, worker_id = %(worker)s,
        attempts = j.attempts + 1, finished_at = NULL, updated_at = %(started)s
    FROM claimed c WHERE j.id = c.id
    RETURNING j.id
), lost AS (
    UPDATE nuvom_attempts a SET status = 'LOST'
    FROM running r WHERE a.job_id = r.id AND a.status = 'RUNNING'
), started AS (
    INSERT INTO nuvom_attempts (job_id, number, status, started_at, worker_id)
    SELECT r.id,
        coalesce((SELECT max(number) FROM nuvom_attempts a WHERE a.job_id = r.id), 0) + 1,
        'RUNNING', %(started)s, %(worker)s
    FROM running r
)
SELECT c.seq, c.id, c.queue, c.priority, c.due_at, c.attempts, c.payload, r.id IS NOT NULL
FROM claimed c LEFT JOIN running r ON r.id = c.id,
    (SELECT set_config('synchronous_commit', 'off', true)) AS lazy_commit
"""
CLAIM_AND_START_ANY_QUEUE = _CLAIM_AND_START.format(queue_filter="")
CLAIM_AND_START_FROM_QUEUES = _CLAIM_AND_START.format(queue_filter="AND queue = ANY(%(queues)s)")

# An acked job's id, and whether a parked job waits for it (then the ack resolves it):
# its flag, which a racing submit set under the row lock this DELETE waited for (the
# subquery's snapshot predates that submit), or an edge from a submit long done.
_ACKED = """
RETURNING id, dependents OR EXISTS (SELECT 1 FROM nuvom_edges e WHERE e.dep_id = nuvom_queue.id)
"""
ACK = f"DELETE FROM nuvom_queue WHERE id = %s AND lease_owner = %s {_ACKED}"
ACK_ANY = f"DELETE FROM nuvom_queue WHERE id = %s {_ACKED}"
NACK = """
UPDATE nuvom_queue SET lease_owner = NULL, due_at = %s, available_at = %s
WHERE id = %s AND lease_owner = %s
"""
NACK_ANY = """
UPDATE nuvom_queue SET lease_owner = NULL, due_at = %s, available_at = %s
WHERE id = %s AND lease_owner IS NOT NULL
"""
RELEASE = """
UPDATE nuvom_queue SET lease_owner = NULL, available_at = %s,
    attempts = greatest(attempts - 1, 0)
WHERE id = %s AND lease_owner = %s
"""
HEARTBEAT = """
UPDATE nuvom_queue SET available_at = %s
WHERE id = ANY(%s) AND lease_owner = %s RETURNING id
"""
ADJUST_ATTEMPTS = """
UPDATE nuvom_queue SET attempts = greatest(attempts + %s, 0) WHERE id = %s AND lease_owner = %s
RETURNING id
"""
# Counts come back as RETURNING rows: rowcount is not known inside a pipeline.
QSIZE = "SELECT count(*) FROM nuvom_queue WHERE lease_owner IS NULL"
QSIZE_OF = "SELECT count(*) FROM nuvom_queue WHERE lease_owner IS NULL AND queue = %s"
CLEAR = "DELETE FROM nuvom_queue RETURNING id"
# The removed job's queue row: a job cancelled while only queued keeps its call in its record.
CANCEL = """
DELETE FROM nuvom_queue WHERE id = %s AND lease_owner IS NULL
RETURNING queue, priority, payload, due_at
"""
STATS = """
SELECT queue,
    count(*) FILTER (WHERE lease_owner IS NULL AND available_at <= %(now)s),
    count(*) FILTER (WHERE lease_owner IS NULL AND available_at > %(now)s),
    count(*) FILTER (WHERE lease_owner IS NOT NULL AND available_at > %(now)s),
    count(*) FILTER (WHERE lease_owner IS NOT NULL AND available_at <= %(now)s)
FROM nuvom_queue GROUP BY queue ORDER BY queue
"""
LEASE_OWNERS = """
SELECT queue, lease_owner, count(*) FROM nuvom_queue
WHERE lease_owner IS NOT NULL AND available_at > %(now)s GROUP BY queue, lease_owner
"""
DEAD_BY_QUEUE = "SELECT coalesce(queue, 'default'), count(*) FROM nuvom_dead GROUP BY 1"
QUARANTINE = """
INSERT INTO nuvom_dead (id, queue, payload, reason, quarantined_at) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET queue = excluded.queue, payload = excluded.payload,
    reason = excluded.reason, quarantined_at = excluded.quarantined_at
"""
DELETE_QUEUED = "DELETE FROM nuvom_queue WHERE id = %s"
# Waiting jobs in claim order, for moving them to another backend.
WAITING_JOBS = """
SELECT id, queue, priority, due_at, attempts, payload FROM nuvom_queue
WHERE lease_owner IS NULL ORDER BY priority DESC, due_at, seq
"""

# -- workflows: parked jobs and what they wait for ------------------------------
PARK = """
INSERT INTO nuvom_parked
    (id, queue, priority, due_at, attempts, enqueued_at, payload, errback, waiting)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at,
    payload = excluded.payload, errback = excluded.errback, waiting = excluded.waiting
"""
ADD_EDGE = "INSERT INTO nuvom_edges (job_id, dep_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
# Mark each job waited for, even if marked already: the row lock is the point, so an ack of
# it either waits for this submit (then counts its edges) or commits first (then this submit
# reads it finished). Parked rows first: a release of one that took its row lock first has
# then committed, and the queue row it made is the one marked next.
MARK_WAITED_FOR = (
    "UPDATE nuvom_parked SET dependents = true WHERE id = %s",
    "UPDATE nuvom_queue SET dependents = true WHERE id = %s",
)
# Rows a racing count holds are skipped (it deletes them): waiting for them could deadlock,
# as that count waits for the parked row this transaction holds.
FORGET_EDGES = """
DELETE FROM nuvom_edges WHERE (job_id, dep_id) IN (
    SELECT job_id, dep_id FROM nuvom_edges WHERE job_id = %s FOR UPDATE SKIP LOCKED
)
"""
# Count finished jobs once each (their edges deleted) and lock what waited for them, in one
# statement: (parked id, dependency counted, waiting, errback). The locks are taken in id
# order by every resolve: racing completions of one job's last two dependencies take turns,
# and the second reads the count the first left.
COUNT_AND_LOCK = """
WITH counted AS (
    DELETE FROM nuvom_edges WHERE dep_id = ANY(%s) RETURNING job_id, dep_id
), locked AS (
    SELECT id, waiting, errback FROM nuvom_parked
    WHERE id IN (SELECT job_id FROM counted) ORDER BY id FOR UPDATE
)
SELECT c.job_id, c.dep_id, l.waiting, l.errback FROM counted c JOIN locked l ON l.id = c.job_id
"""
SET_WAITING = "UPDATE nuvom_parked SET waiting = %s WHERE id = %s"
# Released: waiting as if enqueued now (due now, attempts kept).
RELEASE_PARKED = """
INSERT INTO nuvom_queue
    (id, queue, priority, due_at, available_at, attempts, enqueued_at, payload, dependents)
SELECT id, queue, priority, %(now)s, %(now)s, attempts, %(now)s, payload, dependents
FROM nuvom_parked WHERE id = %(id)s
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    available_at = excluded.available_at, lease_owner = NULL, attempts = excluded.attempts,
    enqueued_at = excluded.enqueued_at, payload = excluded.payload,
    dependents = nuvom_queue.dependents OR excluded.dependents
"""
DROP_PARKED = "DELETE FROM nuvom_parked WHERE id = %s"
UNPARK = "DELETE FROM nuvom_parked WHERE id = %s RETURNING queue, priority, payload, due_at"
CLEAR_PARKED = "DELETE FROM nuvom_parked RETURNING id"
CLEAR_EDGES = "DELETE FROM nuvom_edges"
PARKED_JOBS = "SELECT id, queue, priority, due_at, attempts, payload FROM nuvom_parked ORDER BY id"

# -- schedules ---------------------------------------------------------------
_SCHEDULE_COLUMNS = "id, definition, next_run_at, paused, last_run_at, last_job_id"
SAVE_SCHEDULE = f"""
INSERT INTO nuvom_schedules ({_SCHEDULE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    definition = excluded.definition, next_run_at = excluded.next_run_at,
    paused = excluded.paused, last_run_at = excluded.last_run_at,
    last_job_id = excluded.last_job_id
"""
LIST_SCHEDULES = f"SELECT {_SCHEDULE_COLUMNS} FROM nuvom_schedules ORDER BY id"
REMOVE_SCHEDULE = "DELETE FROM nuvom_schedules WHERE id = %s RETURNING id"
FORGET_TICKS = "DELETE FROM nuvom_ticks WHERE schedule_id = %s"
PAUSE_SCHEDULE = "UPDATE nuvom_schedules SET paused = %s WHERE id = %s RETURNING id"
DUE_SCHEDULES = f"""
SELECT {_SCHEDULE_COLUMNS} FROM nuvom_schedules
WHERE NOT paused AND next_run_at <= %s ORDER BY next_run_at, id LIMIT %s
"""
NEXT_SCHEDULE_AT = "SELECT min(next_run_at) FROM nuvom_schedules WHERE NOT paused"
# fire_tick, in one transaction: the row lock makes racing schedulers take turns, and
# each one after the first sees the schedule already moved on.
# Claim a tick of a schedule that is there, not paused, and not past it, in one statement:
# the row lock serializes racers, and a racer that waited re-reads the moved-on row.
CLAIM_TICK = """
WITH schedule AS (
    SELECT id FROM nuvom_schedules
    WHERE id = %(sid)s AND NOT paused AND next_run_at <= %(tick)s FOR UPDATE
)
INSERT INTO nuvom_ticks (schedule_id, tick, job_id)
SELECT id, %(tick)s, %(job)s FROM schedule
ON CONFLICT DO NOTHING RETURNING tick
"""
MOVE_SCHEDULE = """
UPDATE nuvom_schedules SET next_run_at = %s, last_run_at = %s,
    last_job_id = coalesce(%s, last_job_id)
WHERE id = %s
"""
PRUNE_TICKS = "DELETE FROM nuvom_ticks WHERE schedule_id = %s AND tick < %s"

# -- results ---------------------------------------------------------------
_RECORD_PENDING = """
INSERT INTO nuvom_jobs
    (id, func_name, queue, priority, status, payload, max_retries, created_at, due_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
RECORD_ENQUEUED = (
    _RECORD_PENDING
    + """ON CONFLICT (id) DO UPDATE SET
    func_name = excluded.func_name, queue = excluded.queue, priority = excluded.priority,
    status = excluded.status, payload = excluded.payload, max_retries = excluded.max_retries,
    due_at = excluded.due_at, finished_at = NULL, updated_at = excluded.updated_at
"""
)
# A fired tick's job: recorded only if no worker has recorded it yet.
RECORD_FIRED = _RECORD_PENDING + "ON CONFLICT (id) DO NOTHING\n"
# One job enqueued (and recorded) with its NOTIFY as ONE statement outside an
# explicit transaction: one round trip for a single .delay(). Parameters: ENQUEUE's,
# then RECORD_ENQUEUED's (only in the second), then the channel.
ENQUEUE_ONE = f"WITH queued AS ({ENQUEUE}) {NOTIFY}"
SUBMIT_ONE = f"WITH queued AS ({ENQUEUE}), recorded AS ({RECORD_ENQUEUED}) {NOTIFY}"
MARK_RUNNING = """
INSERT INTO nuvom_jobs
    (id, func_name, queue, priority, status, payload, created_at, started_at, worker_id,
     attempts, updated_at)
VALUES (%s, %s, %s, %s, 'RUNNING', %s, %s, %s, %s, 1, %s)
ON CONFLICT (id) DO UPDATE SET
    status = 'RUNNING', started_at = excluded.started_at, worker_id = excluded.worker_id,
    attempts = nuvom_jobs.attempts + 1, finished_at = NULL, updated_at = excluded.updated_at
"""
MARK_EARLIER_ATTEMPTS_LOST = """
UPDATE nuvom_attempts SET status = 'LOST' WHERE job_id = %s AND status = 'RUNNING'
"""
START_ATTEMPT = """
INSERT INTO nuvom_attempts (job_id, number, status, started_at, worker_id)
SELECT %(id)s, coalesce(max(number), 0) + 1, 'RUNNING', %(at)s, %(worker)s
FROM nuvom_attempts WHERE job_id = %(id)s
"""
SAVE_OUTCOME = """
INSERT INTO nuvom_jobs
    (id, func_name, queue, priority, status, payload, result, has_result, error_type,
     error_message, traceback, created_at, due_at, finished_at, worker_id, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, result = excluded.result, has_result = excluded.has_result,
    error_type = excluded.error_type, error_message = excluded.error_message,
    traceback = excluded.traceback, due_at = coalesce(excluded.due_at, nuvom_jobs.due_at),
    finished_at = excluded.finished_at, worker_id = excluded.worker_id,
    updated_at = excluded.updated_at
"""
FINISH_ATTEMPT = """
UPDATE nuvom_attempts SET status = %(status)s, finished_at = %(at)s, error_type = %(type)s,
    error_message = %(message)s, traceback = %(traceback)s
WHERE job_id = %(id)s
  AND number = (SELECT max(number) FROM nuvom_attempts WHERE job_id = %(id)s)
"""
UNCOUNT_ATTEMPT = """
DELETE FROM nuvom_attempts
WHERE job_id = %(id)s AND status = 'RUNNING'
  AND number = (SELECT max(number) FROM nuvom_attempts WHERE job_id = %(id)s)
"""
UNCOUNT_START = "UPDATE nuvom_jobs SET attempts = greatest(attempts - 1, 0) WHERE id = %(id)s"
MARK_RELEASED = """
UPDATE nuvom_jobs SET status = 'PENDING', attempts = greatest(attempts - 1, 0), updated_at = %s
WHERE id = %s AND status = 'RUNNING'
"""
MARK_CANCELLED = """
INSERT INTO nuvom_jobs (id, status, finished_at, updated_at) VALUES (%s, 'CANCELLED', %s, %s)
ON CONFLICT (id) DO UPDATE SET status = 'CANCELLED', finished_at = excluded.finished_at,
    updated_at = excluded.updated_at
"""
# Cancelling a job that was only queued keeps its call, so retry_job can run it later.
MARK_QUEUED_CANCELLED = """
INSERT INTO nuvom_jobs (id, queue, priority, payload, status, due_at, finished_at, updated_at)
VALUES (%s, %s, %s, %s, 'CANCELLED', %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET status = 'CANCELLED', finished_at = excluded.finished_at,
    updated_at = excluded.updated_at
"""
MARK_FAILED = """
INSERT INTO nuvom_jobs (id, status, error_type, error_message, finished_at, updated_at)
VALUES (%s, 'FAILED', %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET status = 'FAILED', error_type = excluded.error_type,
    error_message = excluded.error_message, traceback = NULL,
    finished_at = excluded.finished_at, updated_at = excluded.updated_at
"""
# A job cancelled because one it waited for did not succeed: the reason is its error.
MARK_DEPENDENT_CANCELLED = """
INSERT INTO nuvom_jobs (id, status, error_type, error_message, finished_at, updated_at)
VALUES (%s, 'CANCELLED', 'Cancelled', %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET status = 'CANCELLED', error_type = 'Cancelled',
    error_message = excluded.error_message, traceback = NULL,
    finished_at = excluded.finished_at, updated_at = excluded.updated_at
"""
FINISHED_STATUS = """
SELECT id, status FROM nuvom_jobs WHERE id = %s AND status IN ('SUCCESS', 'FAILED', 'CANCELLED')
"""
_JOB_COLUMNS = ", ".join(JOB_COLUMNS)
# The reads below take named parameters, as SQLite's do (sqlbase.py passes both one mapping).
GET_JOB = f"SELECT {_JOB_COLUMNS} FROM nuvom_jobs WHERE id = %(id)s"
GET_STATUS = "SELECT status FROM nuvom_jobs WHERE id = %(id)s"
GET_ATTEMPTS = """
SELECT number, status, started_at, finished_at, worker_id, error_type, error_message, traceback
FROM nuvom_attempts WHERE job_id = %s ORDER BY number
"""
LIST_JOBS = f"""
SELECT {_JOB_COLUMNS} FROM nuvom_jobs ORDER BY updated_at DESC LIMIT %(limit)s OFFSET %(offset)s
"""
LIST_JOBS_WITH_STATUS = f"""
SELECT {_JOB_COLUMNS} FROM nuvom_jobs WHERE status = %(status)s
ORDER BY updated_at DESC LIMIT %(limit)s OFFSET %(offset)s
"""
LIST_LIVE_JOBS_WITH_STATUS = LIST_JOBS_WITH_STATUS  # every job has its nuvom_jobs row from submit
GET_RESULT = "SELECT status, result, has_result FROM nuvom_jobs WHERE id = %s"
GET_ERROR = "SELECT status, error_type, error_message FROM nuvom_jobs WHERE id = %s"
STATUS_COUNTS = "SELECT status, count(*) FROM nuvom_jobs GROUP BY status"
FAILED_BY_QUEUE = """
SELECT coalesce(queue, 'default'), count(*) FROM nuvom_jobs WHERE status = 'FAILED' GROUP BY 1
"""
# -- prune: finished records no unfinished job needs (sqlbase.Needed) ------------------
_UNFINISHED = ", ".join(f"'{s.value}'" for s in JobStatus if not s.is_final)
# The jobs that may still need others: unfinished records (by the status index) and parked
# jobs (each has its record too, unless queued by a bare enqueue, without results).
UNFINISHED_PAYLOADS = f"""
SELECT id, payload FROM nuvom_jobs WHERE status IN ({_UNFINISHED})
UNION ALL
SELECT id, payload FROM nuvom_parked
"""
PRUNE = """
DELETE FROM nuvom_jobs WHERE updated_at < %s AND status = ANY(%s) RETURNING id
"""
PRUNE_CANDIDATES = """
SELECT id, payload FROM nuvom_jobs WHERE updated_at < %s AND status = ANY(%s)
"""
# Those of the ids that are still records PRUNE would delete.
PRUNE_IDS = """
DELETE FROM nuvom_jobs WHERE id = ANY(%s) AND updated_at < %s AND status = ANY(%s) RETURNING id
"""
DELETE_ATTEMPTS = "DELETE FROM nuvom_attempts WHERE job_id = ANY(%s)"
