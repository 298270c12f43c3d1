"""Every SQL statement of the PostgreSQL backends: versioned migrations and named queries.

Statements name tables without a schema; each connection's ``search_path`` is
set to nuvom's schema (quoted with ``psycopg.sql.Identifier``). Values are
always bound as server-side parameters, never formatted into the text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

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
    (
        # 4: flow control. limited marks a job with a rate or concurrency limit (a claim
        # checks it before taking it), conc_key its concurrency key, hold the tag of the
        # limit that held it back at its last claim; a parked job keeps the first two.
        """ALTER TABLE nuvom_queue ADD COLUMN limited boolean NOT NULL DEFAULT false,
            ADD COLUMN conc_key text, ADD COLUMN hold text""",
        """ALTER TABLE nuvom_parked ADD COLUMN limited boolean NOT NULL DEFAULT false,
            ADD COLUMN conc_key text""",
        # The first held job of a key in claim order (woken when a slot frees), and the
        # claimed jobs of a key by lease end (counted by a claim); partial, so a plain
        # claim or ack writes no entry in either.
        """CREATE INDEX nuvom_queue_held ON nuvom_queue (conc_key, hold, priority DESC, due_at, seq)
            WHERE conc_key IS NOT NULL""",
        """CREATE INDEX nuvom_queue_slots ON nuvom_queue (conc_key, available_at)
            WHERE conc_key IS NOT NULL AND lease_owner IS NOT NULL""",
        # Queues claims skip.
        """CREATE TABLE nuvom_paused (
            queue text PRIMARY KEY,
            paused_at double precision NOT NULL
        )""",
        # One token bucket per rate-limited task: tokens as of updated_at.
        """CREATE TABLE nuvom_buckets (
            key text PRIMARY KEY,
            tokens double precision NOT NULL,
            updated_at double precision NOT NULL
        )""",
        # Unique keys: held by job_id while it waits or runs (kept_until NULL), then until
        # kept_until (its keep_secs after it finished). The primary key is what makes
        # racing submits of one key store one job.
        """CREATE TABLE nuvom_unique (
            key text PRIMARY KEY,
            job_id text NOT NULL,
            keep_secs double precision NOT NULL,
            kept_until double precision
        )""",
        "CREATE INDEX nuvom_unique_job ON nuvom_unique (job_id)",
        "CREATE INDEX nuvom_unique_kept ON nuvom_unique (kept_until)",
    ),
    (
        # 5: the listings (find_jobs pages by keyset, newest first): the two indexes of
        # history recent end with the id now, and a task's records of a status have their
        # own (a filter by task or tag reads one range per status); the
        # attempts by when they ended, for the activity chart (partial: a claim's new
        # attempt, not ended yet, writes no entry).
        "DROP INDEX IF EXISTS nuvom_jobs_status",
        "DROP INDEX IF EXISTS nuvom_jobs_updated",
        "CREATE INDEX nuvom_jobs_status ON nuvom_jobs (status, updated_at, id)",
        "CREATE INDEX nuvom_jobs_updated ON nuvom_jobs (updated_at, id)",
        "CREATE INDEX nuvom_jobs_task ON nuvom_jobs (func_name, status, updated_at, id)",
        """CREATE INDEX nuvom_attempts_ended ON nuvom_attempts (finished_at, status)
            WHERE finished_at IS NOT NULL""",
        # FAILED jobs per queue (queue stats, the overview) without visiting the rows.
        "CREATE INDEX nuvom_jobs_failed ON nuvom_jobs (status, queue) WHERE status = 'FAILED'",
    ),
    (
        # 6: a worker of one queue (-Q emails) claims from that queue's range in claim
        # order, not by walking every other queue's due jobs first.
        "CREATE INDEX nuvom_queue_by_queue ON nuvom_queue (queue, priority DESC, due_at, seq)",
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


def unnested(statement: str, types: tuple[str, ...]) -> str:
    """``statement`` (an ``INSERT ... VALUES (%s, ...) ...``) as one statement for many rows:
    the VALUES become a SELECT over one jsonb array of rows (each a JSON array of the
    columns, ``types`` in order, bytea as hex), in the rows' order, so a batch costs the
    server one statement and the client one C-encoded parameter, not one per row or per
    value (``PostgresBackend.run_many``)."""
    head, values_and_tail = statement.split("VALUES", 1)
    _, tail = values_and_tail.split(")", 1)
    columns = head[head.index("(") + 1 : head.index(")")].replace("\n", " ").split(",")
    names = [name.strip() for name in columns]
    if len(names) != len(types):
        raise AssertionError(f"{len(types)} column types for {len(names)} columns")
    values = ", ".join(
        f"decode(r.v ->> {i}, 'hex')" if kind == "bytea" else f"(r.v ->> {i})::{kind}"
        for i, kind in enumerate(types)
    )
    return (
        f"{head}SELECT {values} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY"
        f" AS r (v, ord) ORDER BY r.ord{tail}"
    )


# The claims take the unlimited jobs among the first n of queues not paused; a row of
# NULLs after them says they left limited ones, which the claim's second step
# (``SQLJobQueue.take_limited``) decides on. With none left: one round trip, as before.
# A claimer's refused hold tags (``BaseJobQueue.refuse``; most often none) are passed over.
_NOT_REFUSED = "AND (hold IS NULL OR hold <> ALL(%(refused)s::text[]))"
# Queues not paused as NOT IN (a hashed subplan, estimated to keep half the rows): as
# <> ALL(ARRAY(...)) the planner takes each of ten guessed paused queues to remove 1/n of
# the rows of a table of n queues (0.5^10 of them with two), and with statistics read (by
# autovacuum) reads every due job and sorts them for the first n, instead of walking the
# claim order's index to the n-th.
_NOT_PAUSED = "queue NOT IN (SELECT queue FROM nuvom_paused)"
_PICKED = f"""
    SELECT seq, limited FROM nuvom_queue
    WHERE available_at <= %(now)s AND {_NOT_PAUSED}
        {_NOT_REFUSED} {{queue_filter}}
    ORDER BY priority DESC, due_at, seq LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
"""
_UNLIMITED = "ARRAY(SELECT seq FROM picked WHERE NOT limited)"
_LIMITED_LEFT = "SELECT {nulls} FROM picked WHERE limited LIMIT 1"
_CLAIM = f"""
WITH picked AS ({_PICKED}), claimed AS (
    UPDATE nuvom_queue q
    SET lease_owner = %(worker)s, available_at = %(until)s, attempts = q.attempts + 1
    WHERE q.seq = ANY({_UNLIMITED})
    RETURNING q.seq, q.id, q.queue, q.priority, q.due_at, q.attempts, q.payload
)
SELECT * FROM claimed
UNION ALL ({_LIMITED_LEFT.format(nulls=", ".join(["NULL"] * 7))})
"""
_ONE_QUEUE, _QUEUES = "AND queue = %(queue)s", "AND queue = ANY(%(queues)s)"
CLAIM_ANY_QUEUE = _CLAIM.format(queue_filter="")
CLAIM_FROM_QUEUE = _CLAIM.format(queue_filter=_ONE_QUEUE)
CLAIM_FROM_QUEUES = _CLAIM.format(queue_filter=_QUEUES)

# Claim and mark running in ONE statement (one round trip, run outside an explicit
# transaction): lease the rows, set their job records RUNNING, mark earlier RUNNING
# attempts LOST and start a new attempt. The last column says whether the job had
# a record to update; the caller writes a full RUNNING record for those that had none.
# Its commit does not wait for the WAL flush (synchronous_commit off for this one
# transaction): a claim lost in a server crash leaves the job claimable again, the
# same as an expired lease, and any later synchronous commit (the job's settle)
# flushes it first, so nothing is lost and no outcome can outlive its claim.
_CLAIM_AND_START = f"""
WITH picked AS ({_PICKED}), claimed AS (
    -- = ANY(ARRAY(...)): always the primary-key index, never a scan of the whole queue.
    UPDATE nuvom_queue q
    SET lease_owner = %(worker)s, available_at = %(until)s, attempts = q.attempts + 1
    WHERE q.seq = ANY({_UNLIMITED})
    RETURNING q.seq, q.id, q.queue, q.priority, q.due_at, q.attempts, q.payload
), running AS (
    UPDATE nuvom_jobs j
    SET status = 'RUNNING', started_at = %(started)s, worker_id = %(worker)s,
        attempts = j.attempts + 1, finished_at = NULL, updated_at = %(started)s
    WHERE j.id = ANY(ARRAY(SELECT id FROM claimed))
    RETURNING j.id
), lost AS (
    -- = ANY(ARRAY(...)) again: joined to the CTE, the planner scans every attempt ever made.
    UPDATE nuvom_attempts a SET status = 'LOST'
    WHERE a.job_id = ANY(ARRAY(SELECT id FROM running)) AND a.status = 'RUNNING'
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
UNION ALL ({_LIMITED_LEFT.format(nulls=", ".join(["NULL"] * 8))})
"""
CLAIM_AND_START_ANY_QUEUE = _CLAIM_AND_START.format(queue_filter="")
CLAIM_AND_START_FROM_QUEUE = _CLAIM_AND_START.format(queue_filter=_ONE_QUEUE)
CLAIM_AND_START_FROM_QUEUES = _CLAIM_AND_START.format(queue_filter=_QUEUES)

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
# A settle's acks, as ACK and ACK_ANY, and the concurrency key of each job they took from
# a worker (its slot is freed: ``WAKE_KEY`` follows, sent with the commit).
_ACKED_KEYED = """
RETURNING id, dependents OR EXISTS (SELECT 1 FROM nuvom_edges e WHERE e.dep_id = nuvom_queue.id),
    CASE WHEN lease_owner IS NOT NULL THEN conc_key END
"""
ACK_KEYED = f"DELETE FROM nuvom_queue WHERE id = %s AND lease_owner = %s {_ACKED_KEYED}"
ACK_ANY_KEYED = f"DELETE FROM nuvom_queue WHERE id = %s {_ACKED_KEYED}"
# A slot of key :key freed: the first job the key held back (claim order) and not due yet is
# due now.
_FIRST_HELD = """
SELECT seq FROM nuvom_queue
WHERE conc_key = {key} AND hold = %(prefix)s::text || {key} AND lease_owner IS NULL
  AND available_at > %(now)s
ORDER BY priority DESC, due_at, seq LIMIT 1
"""
_WAKE = """
UPDATE nuvom_queue SET due_at = least(due_at, %(now)s), available_at = least(available_at, %(now)s)
WHERE seq = ({first})
"""
WAKE_KEY = _WAKE.format(first=_FIRST_HELD.format(key="%(key)s"))
# The acked jobs' unique keys let go, each kept its keep_secs from now (0: free at once).
LET_GO_ACKED = """
UPDATE nuvom_unique SET kept_until = %(now)s + keep_secs
WHERE job_id = ANY(%(ids)s) AND kept_until IS NULL
"""
# A settle's nack, freeing its job's slot in the same statement.
_NACK_FREEING = f"""
WITH nacked AS (
    UPDATE nuvom_queue SET lease_owner = NULL, due_at = %(retry_at)s, available_at = %(retry_at)s
    WHERE id = %(id)s AND {{owned}}
    RETURNING conc_key
), woken AS (
    {_WAKE.format(first=_FIRST_HELD.format(key="(SELECT conc_key FROM nacked)"))}
    RETURNING seq
)
SELECT count(*) FROM woken
"""
NACK_FREEING = _NACK_FREEING.format(owned="lease_owner = %(owner)s")
NACK_ANY_FREEING = _NACK_FREEING.format(owned="lease_owner IS NOT NULL")
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
DEAD_LETTERS = """
SELECT id, queue, payload, reason, quarantined_at FROM nuvom_dead WHERE id > %s
ORDER BY id LIMIT %s
"""
DEAD_LETTER = "SELECT id, queue, payload, reason FROM nuvom_dead WHERE id = %s"
FORGET_DEAD = "DELETE FROM nuvom_dead WHERE id = %s RETURNING id"
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

# -- flow control: the claim's second step, and what settles and submits add --------
# The next claimable rows, limited or not, in claim order; those another claimer locks
# are skipped, and so are those this claim saw another deciding on (skip).
_CANDIDATES = f"""
SELECT seq, id, queue, priority, due_at, attempts, payload FROM nuvom_queue
WHERE available_at <= %(now)s AND {_NOT_PAUSED}
    AND seq <> ALL(%(skip)s::bigint[]) {_NOT_REFUSED} {{queue_filter}}
ORDER BY priority DESC, due_at, seq LIMIT %(n)s
FOR UPDATE SKIP LOCKED
"""
CANDIDATES_ANY_QUEUE = _CANDIDATES.format(queue_filter="")
CANDIDATES_FROM_QUEUE = _CANDIDATES.format(queue_filter=_ONE_QUEUE)
CANDIDATES_FROM_QUEUES = _CANDIDATES.format(queue_filter=_QUEUES)


def for_queues(queues: Sequence[str] | None, any_queue: str, one: str, many: str) -> str:
    """The variant of a claim statement for ``queues``: every queue, one (an equality, so
    the claim reads ``nuvom_queue_by_queue`` in order), or several.

    The queue names are written into the statement as literals, so each worker's set is a
    statement (and a plan) of its own: as parameters, the generic plan cannot tell a queue
    of ten jobs from one of a million (one queue of a million waiting and the claim of
    another walked the claim order's index past all of them: 400 ms a claim).
    """
    if not queues:
        return any_queue
    return _with_names(one if len(queues) == 1 else many, tuple(queues))


@functools.lru_cache(maxsize=256)
def _with_names(statement: str, queues: tuple[str, ...]) -> str:
    names = ", ".join(_literal(name) for name in queues)
    return statement.replace("%(queue)s", _literal(queues[0])).replace(
        "%(queues)s", f"ARRAY[{names}]::text[]"
    )


def _literal(text: str) -> str:
    """``text`` as an SQL string literal inside a psycopg statement (quotes doubled, and
    ``%`` doubled, psycopg's placeholder mark); standard_conforming_strings is on."""
    if "\0" in text:
        raise ValueError("a queue name cannot hold a NUL character")
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


# The hold tags (a bucket's, a concurrency key's) whose transaction-scoped advisory lock
# this claim got: it decides on those alone, and racing claimers on one key take turns
# (a claimer never waits for one: it leaves that key's jobs to the one deciding).
LOCK_LIMITS = """
SELECT tag FROM unnest(%(tags)s::text[]) AS t (tag)
WHERE pg_try_advisory_xact_lock(hashtextextended(%(prefix)s::text || tag, 0))
"""
# Read in the statements after LOCK_LIMITS: their snapshots see what the last claimer that
# held a lock committed.
BUCKETS = "SELECT key, tokens, updated_at FROM nuvom_buckets WHERE key = ANY(%(keys)s)"
SLOTS = """
SELECT conc_key, count(*), min(available_at) FROM nuvom_queue
WHERE conc_key = ANY(%(keys)s) AND lease_owner IS NOT NULL AND available_at > %(now)s
GROUP BY conc_key
"""
SAVE_BUCKET = """
INSERT INTO nuvom_buckets (key, tokens, updated_at) VALUES (%(key)s, %(tokens)s, %(at)s)
ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at
"""
# A limited job enqueued: its limit columns set, a hold it had dropped.
ENQUEUE_LIMITED = """
INSERT INTO nuvom_queue
    (id, queue, priority, due_at, available_at, attempts, enqueued_at, payload, limited, conc_key)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    available_at = excluded.available_at, lease_owner = NULL,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at, payload = excluded.payload,
    limited = excluded.limited, conc_key = excluded.conc_key, hold = NULL
"""
# Claimed by the second step; its limit columns as its payload says (a row an enqueue
# without limits replaced may have kept them).
CLAIM_ROW = """
UPDATE nuvom_queue SET lease_owner = %(worker)s, available_at = %(until)s,
    attempts = attempts + 1, hold = NULL, limited = %(limited)s, conc_key = %(conc_key)s
WHERE seq = %(seq)s
"""
# Held back by a limit: waiting (an expired lease's too), due again at :due, tagged.
HOLD_ROW = """
UPDATE nuvom_queue SET lease_owner = NULL, due_at = %(due)s, available_at = %(due)s,
    hold = %(tag)s
WHERE seq = %(seq)s
"""
# A settle, ack, nack or release: first the advisory locks of its jobs' concurrency keys
# (a claim deciding on a key has committed, so the statements after it see the job it held
# back, and wake it). Sent before the settle's statements, read with them: no round trip.
LOCK_SLOTS_OF = """
SELECT pg_advisory_xact_lock(
    hashtextextended(%(prefix)s::text || %(tag)s::text || k.conc_key, 0))
FROM (SELECT DISTINCT conc_key FROM nuvom_queue
      WHERE id = ANY(%(ids)s) AND conc_key IS NOT NULL ORDER BY conc_key) AS k
"""
# A plain ack, nack or release frees slots in statements before its own: it locks the rows
# first (in id order), so no claim re-takes an expired one in between.
LOCK_ROWS = "SELECT id FROM nuvom_queue WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE"
# Job :id, claimed (by :owner, unless NULL), is about to stop being claimed: the first job
# its concurrency key held back (claim order) and not due yet is due now.
WAKE_HELD = """
UPDATE nuvom_queue SET due_at = least(due_at, %(now)s), available_at = least(available_at, %(now)s)
WHERE seq = (
    SELECT h.seq FROM nuvom_queue j JOIN nuvom_queue h ON h.conc_key = j.conc_key
    WHERE j.id = %(id)s AND j.lease_owner IS NOT NULL
      AND (CAST(%(owner)s AS text) IS NULL OR j.lease_owner = %(owner)s)
      AND h.hold = %(prefix)s::text || j.conc_key AND h.lease_owner IS NULL
      AND h.available_at > %(now)s
    ORDER BY h.priority DESC, h.due_at, h.seq LIMIT 1
)
"""
# A claimed job a worker gives back (``BaseJobQueue.hold``): waiting, its attempt refunded,
# tagged, claimable again at :due.
GIVE_BACK = """
UPDATE nuvom_queue SET lease_owner = NULL, attempts = greatest(attempts - 1, 0),
    due_at = %(due)s, available_at = %(due)s, hold = %(tag)s
WHERE id = %(id)s AND lease_owner = %(owner)s
RETURNING id
"""
# Job :id is about to be acked (by :owner, unless NULL): its unique key is kept its
# keep_secs from now (0: free at once).
LET_GO = """
UPDATE nuvom_unique SET kept_until = %(now)s + keep_secs
WHERE job_id = %(id)s AND kept_until IS NULL AND EXISTS (
    SELECT 1 FROM nuvom_queue
    WHERE id = %(id)s AND (CAST(%(owner)s AS text) IS NULL OR lease_owner = %(owner)s)
)
"""
FORGET_UNIQUE = "DELETE FROM nuvom_unique WHERE job_id = %s AND kept_until IS NULL"
# Take unique key :key for job :id, unless another job holds it; the holder's id either
# way (one row, always). A racing submit of the key waits for this one's row and then
# reads it: exactly one of them stores its job.
_FREE = "nuvom_unique.kept_until <= %(now)s OR nuvom_unique.job_id = excluded.job_id"
TAKE_UNIQUE = f"""
INSERT INTO nuvom_unique (key, job_id, keep_secs, kept_until)
VALUES (%(key)s, %(id)s, %(keep)s, NULL)
ON CONFLICT (key) DO UPDATE SET
    job_id = CASE WHEN {_FREE} THEN excluded.job_id ELSE nuvom_unique.job_id END,
    keep_secs = CASE WHEN {_FREE} THEN excluded.keep_secs ELSE nuvom_unique.keep_secs END,
    kept_until = CASE WHEN {_FREE} THEN NULL ELSE nuvom_unique.kept_until END
RETURNING job_id
"""
KEPT_KEYS_PER_SUBMIT = 100  # expired keys a submit of unique jobs deletes, at most
# Rows a racing submit holds are skipped: it is taking that key again.
DROP_EXPIRED_KEYS = f"""
DELETE FROM nuvom_unique WHERE key IN (
    SELECT key FROM nuvom_unique WHERE kept_until <= %s
    LIMIT {KEPT_KEYS_PER_SUBMIT} FOR UPDATE SKIP LOCKED
)
"""
UNIQUE_HOLDER = """
SELECT job_id FROM nuvom_unique
WHERE key = %(key)s AND (kept_until IS NULL OR kept_until > %(now)s)
"""
CLEAR_UNIQUE = "DELETE FROM nuvom_unique"
PAUSE_QUEUE = """
INSERT INTO nuvom_paused (queue, paused_at) VALUES (%s, %s) ON CONFLICT DO NOTHING
RETURNING queue
"""
RESUME_QUEUE = "DELETE FROM nuvom_paused WHERE queue = %s RETURNING queue"
PAUSED_QUEUES = "SELECT queue FROM nuvom_paused ORDER BY queue"
HOLD_OF = "SELECT hold FROM nuvom_queue WHERE id = %s AND lease_owner IS NULL"
HELD_BY_QUEUE = """
SELECT queue, hold, count(*) FROM nuvom_queue
WHERE hold IS NOT NULL AND lease_owner IS NULL GROUP BY queue, hold
"""

# -- workflows: parked jobs and what they wait for ------------------------------
PARK = """
INSERT INTO nuvom_parked
    (id, queue, priority, due_at, attempts, enqueued_at, payload, errback, waiting, limited,
     conc_key)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at,
    payload = excluded.payload, errback = excluded.errback, waiting = excluded.waiting,
    limited = excluded.limited, conc_key = excluded.conc_key
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
    (id, queue, priority, due_at, available_at, attempts, enqueued_at, payload, dependents,
     limited, conc_key)
SELECT id, queue, priority, %(now)s, %(now)s, attempts, %(now)s, payload, dependents, limited,
    conc_key
FROM nuvom_parked WHERE id = %(id)s
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    available_at = excluded.available_at, lease_owner = NULL, attempts = excluded.attempts,
    enqueued_at = excluded.enqueued_at, payload = excluded.payload,
    dependents = nuvom_queue.dependents OR excluded.dependents,
    limited = excluded.limited, conc_key = excluded.conc_key, hold = NULL
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
# The same for a job with a rate or concurrency limit: ENQUEUE_LIMITED's parameters first.
ENQUEUE_LIMITED_ONE = f"WITH queued AS ({ENQUEUE_LIMITED}) {NOTIFY}"
SUBMIT_LIMITED_ONE = f"WITH queued AS ({ENQUEUE_LIMITED}), recorded AS ({RECORD_ENQUEUED}) {NOTIFY}"
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
# A finished job's record, forgotten (``delete_job``): its attempts go with it.
FINISHED_PAYLOAD = """
SELECT id, payload FROM nuvom_jobs WHERE id = %s AND status IN ('SUCCESS', 'FAILED', 'CANCELLED')
"""
DELETE_FINISHED = """
DELETE FROM nuvom_jobs WHERE id = %s AND status IN ('SUCCESS', 'FAILED', 'CANCELLED') RETURNING id
"""
DELETE_JOB_ATTEMPTS = "DELETE FROM nuvom_attempts WHERE job_id = %s"
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

# -- listings for people (sqlbase.SQLResultBackend.find_jobs, activity) -----------------
# A page starts strictly after the keyset (before_at, before_id), newest first; each
# filter is a condition on its named parameter ({n}: an arm's). Every job has its record here.
_FIND_FILTERS = {
    "status": "status = %(status{n})s",
    "queue": "queue = %(queue{n})s",
    "task": "func_name = %(task{n})s",
    "since": "updated_at >= %(since{n})s",
    "until": "updated_at < %(until{n})s",
}
_FIND_ORDER = "ORDER BY updated_at DESC, id DESC LIMIT %(limit)s"


def find_jobs(shared: tuple[str, ...], own: tuple[str, ...] = (), arms: int = 1) -> str:
    """A page of records passing the ``shared`` filters (names of ``_FIND_FILTERS``) and,
    with ``own``, those of one of ``arms`` arms, each with its own parameters (``task0``,
    ``status0``, ...): each arm one range of an index walked in order from the keyset (the
    task one, the status one or the updated one), no sort but of the arms' pages."""

    def arm(n: str) -> str:
        where = "".join(f" AND {_FIND_FILTERS[f].format(n='')}" for f in shared)
        where += "".join(f" AND {_FIND_FILTERS[f].format(n=n)}" for f in own)
        return f"""SELECT {_JOB_COLUMNS} FROM nuvom_jobs
WHERE (updated_at, id) < (%(before_at)s, %(before_id)s){where}
{_FIND_ORDER}"""

    if not own or arms == 1:
        return arm("" if not own else "0")
    union = "\nUNION ALL\n".join(f"({arm(str(i))})" for i in range(arms))
    return f"{union}\n{_FIND_ORDER}"


# Per bucket of bucket seconds from since, the attempts that ended in [since, until), by
# status: one range of nuvom_attempts_ended, which holds both columns.
ATTEMPTS_ENDED = """
SELECT floor((finished_at - %(since)s) / %(bucket)s)::bigint, status, count(*)
FROM nuvom_attempts
WHERE finished_at >= %(since)s AND finished_at < %(until)s
    AND status IN ('SUCCESS', 'FAILED', 'RETRYING')
GROUP BY 1, 2
"""
# The same of records that ended with no attempt recorded (results stored without a claim,
# a quarantined job): their own end counts, as ``activity_of`` counts it. The bound at
# infinity changes no result: the generic plan (the store's plan_cache_mode) reads the two
# as a range, an index's, where one side alone looks like a third of the table to scan.
UNATTEMPTED_ENDED = """
SELECT floor((finished_at - %(since)s) / %(bucket)s)::bigint, status, count(*)
FROM nuvom_jobs
WHERE status IN ('SUCCESS', 'FAILED') AND updated_at >= %(since)s
    AND updated_at < 'Infinity' AND attempts = 0
    AND finished_at >= %(since)s AND finished_at < %(until)s
GROUP BY 1, 2
"""
# The run times of the latest sample jobs that succeeded since since, by task.
RUN_TIMES = """
SELECT func_name, finished_at - started_at FROM nuvom_jobs
WHERE status = 'SUCCESS' AND updated_at >= %(since)s AND finished_at >= %(since)s
    AND started_at IS NOT NULL
ORDER BY updated_at DESC LIMIT %(sample)s
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

# Batches of these run as one statement each (``PostgresBackend.run_many``): the column
# types, in the statement's order.
_ENQUEUE_TYPES = ("text", "text", "integer", "float8", "float8", "integer", "float8", "bytea")
_RECORD_TYPES = ("text", "text", "text", "integer", "text", "bytea", "integer", "float8",
                 "float8", "float8")  # fmt: skip
_OUTCOME_TYPES = ("text", "text", "text", "integer", "text", "bytea", "bytea", "boolean", "text",
                  "text", "text", "float8", "float8", "float8", "text", "float8")  # fmt: skip
# FINISH_ATTEMPT's named rows, their fields in this order, as one UPDATE.
_ATTEMPT_FIELDS = ("id", "status", "at", "type", "message", "traceback")
# The batch's ids, for an index scan: joined to a table alone, the rows' function scan is
# hashed against a scan of the whole table (every parameter is the batch's one jsonb).
_BATCH_IDS = "ARRAY(SELECT e.v ->> 0 FROM jsonb_array_elements(%s::jsonb) AS e (v))"
_FINISH_ATTEMPTS = f"""
UPDATE nuvom_attempts a SET status = r.v ->> 1, finished_at = (r.v ->> 2)::float8,
    error_type = r.v ->> 3, error_message = r.v ->> 4, traceback = r.v ->> 5
FROM jsonb_array_elements(%s::jsonb) AS r (v)
WHERE a.job_id = ANY({_BATCH_IDS}) AND a.job_id = r.v ->> 0
  AND a.number = (SELECT max(number) FROM nuvom_attempts m WHERE m.job_id = a.job_id)
"""
# ACK_KEYED's rows (id, lease owner) as one DELETE; its rows locked in id order first, as
# the row-wise acks (sorted by id) lock them, so it cannot deadlock with a racing submit.
_ACKS_KEYED = f"""
DELETE FROM nuvom_queue WHERE seq IN (
    SELECT q.seq FROM nuvom_queue q
    JOIN jsonb_array_elements(%s::jsonb) AS r (v)
      ON q.id = r.v ->> 0 AND q.lease_owner = r.v ->> 1
    WHERE q.id = ANY({_BATCH_IDS})
    ORDER BY q.id FOR UPDATE OF q
) {_ACKED_KEYED}"""
#: statement -> (one statement for a batch of its rows, column types, the names of its rows'
#: fields when they are named); ``PostgresBackend.run_many`` and ``returned``.
BATCHED: dict[str, tuple[str, tuple[str, ...], tuple[str, ...] | None]] = {
    ENQUEUE: (unnested(ENQUEUE, _ENQUEUE_TYPES), _ENQUEUE_TYPES, None),
    RECORD_ENQUEUED: (unnested(RECORD_ENQUEUED, _RECORD_TYPES), _RECORD_TYPES, None),
    SAVE_OUTCOME: (unnested(SAVE_OUTCOME, _OUTCOME_TYPES), _OUTCOME_TYPES, None),
    FINISH_ATTEMPT: (
        _FINISH_ATTEMPTS,
        ("text",) * 2 + ("float8",) + ("text",) * 3,
        _ATTEMPT_FIELDS,
    ),
    ACK_KEYED: (_ACKS_KEYED, ("text", "text"), None),
}
