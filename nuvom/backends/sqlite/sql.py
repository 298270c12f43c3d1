"""Every SQL statement of the SQLite backends, with the schema and its version."""

from __future__ import annotations

from nuvom.backends.common import JOB_COLUMNS
from nuvom.job import JobStatus

# 2: flow control (the limit columns of nuvom_queue and nuvom_parked, and the tables at
# the end of SCHEMA). A file at 1 is upgraded in place (``ADDED_COLUMNS``) when a writer
# opens it; an older nuvom then refuses it rather than claim limited jobs unlimited.
SCHEMA_VERSION = 2

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS nuvom_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    # Jobs waiting or claimed. available_at is due_at while waiting and the
    # lease's end while claimed, so one comparison finds every claimable row,
    # expired leases included. seq (the rowid) gives FIFO order.
    """CREATE TABLE IF NOT EXISTS nuvom_queue (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        available_at REAL NOT NULL,
        lease_owner TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        enqueued_at REAL NOT NULL,
        payload BLOB NOT NULL,
        limited INTEGER NOT NULL DEFAULT 0,
        conc_key TEXT,
        hold TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS nuvom_queue_order ON nuvom_queue (priority DESC, due_at, seq)",
    # Jobs only queued, newest first, for the listings (their record is their queue row
    # until a claim writes one: ``FIND_QUEUED``).
    "CREATE INDEX IF NOT EXISTS nuvom_queue_enqueued ON nuvom_queue (enqueued_at)",
    """CREATE TABLE IF NOT EXISTS nuvom_dead (
        id TEXT PRIMARY KEY,
        queue TEXT,
        payload BLOB,
        reason TEXT NOT NULL,
        quarantined_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS nuvom_jobs (
        id TEXT PRIMARY KEY,
        func_name TEXT,
        queue TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        payload BLOB,
        result BLOB,
        has_result INTEGER NOT NULL DEFAULT 0,
        error_type TEXT,
        error_message TEXT,
        traceback TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_retries INTEGER,
        created_at REAL,
        due_at REAL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        worker_id TEXT
    ) WITHOUT ROWID""",  # keyed by id alone: one b-tree to write per job, not table + index
    # The listings, newest first (find_jobs pages by keyset on them): an index of a
    # WITHOUT ROWID table ends with its key, so each of these is really (..., updated_at, id).
    "CREATE INDEX IF NOT EXISTS nuvom_jobs_status ON nuvom_jobs (status, updated_at)",
    "CREATE INDEX IF NOT EXISTS nuvom_jobs_updated ON nuvom_jobs (updated_at)",
    # A task's records of a status (a filter by task or tag, one range per status); added
    # without a version bump: IF NOT EXISTS creates it in files written before it existed,
    # as the two below.
    "CREATE INDEX IF NOT EXISTS nuvom_jobs_task ON nuvom_jobs (func_name, status, updated_at)",
    # FAILED jobs per queue (queue stats, the overview), read without visiting the rows;
    # partial, so a job that never fails costs it nothing.
    "CREATE INDEX IF NOT EXISTS nuvom_jobs_failed ON nuvom_jobs (status, queue) WHERE status = 'FAILED'",
    # A worker of one queue (-Q emails) claims from that queue's range in claim order (a
    # one-name IN is an equality), not by walking every other queue's due jobs first.
    """CREATE INDEX IF NOT EXISTS nuvom_queue_by_queue ON nuvom_queue
        (queue, priority DESC, due_at, seq)""",
    """CREATE TABLE IF NOT EXISTS nuvom_attempts (
        job_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at REAL,
        finished_at REAL,
        worker_id TEXT,
        error_type TEXT,
        error_message TEXT,
        traceback TEXT,
        PRIMARY KEY (job_id, number)
    ) WITHOUT ROWID""",
    # Attempts by when they ended, for the activity chart (``ATTEMPTS_ENDED`` reads only
    # it). Partial: a claim's new attempt, not ended yet, writes no entry.
    """CREATE INDEX IF NOT EXISTS nuvom_attempts_ended ON nuvom_attempts (finished_at, status)
        WHERE finished_at IS NOT NULL""",
    # Idle workers listening for a loopback UDP nudge when jobs arrive.
    """CREATE TABLE IF NOT EXISTS nuvom_listeners (
        worker_id TEXT PRIMARY KEY,
        port INTEGER NOT NULL,
        seen_at REAL NOT NULL
    )""",
    # Running workers, for `nuvom workers`; one whose heartbeat_at is older than
    # its lease_secs is lost. Added without a version bump: IF NOT EXISTS
    # creates it in files written before it existed.
    """CREATE TABLE IF NOT EXISTS nuvom_workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pool TEXT NOT NULL,
        concurrency INTEGER NOT NULL,
        inflight INTEGER NOT NULL DEFAULT 0,
        heartbeat_at REAL NOT NULL,
        started_at REAL NOT NULL,
        lease_secs REAL NOT NULL
    )""",
    # Periodic jobs (nuvom/scheduler.py), added without a version bump like nuvom_workers.
    # definition is the codec's blob of Schedule.definition(); the rest moves as ticks fire.
    """CREATE TABLE IF NOT EXISTS nuvom_schedules (
        id TEXT PRIMARY KEY,
        definition BLOB NOT NULL,
        next_run_at REAL NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        last_run_at REAL,
        last_job_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS nuvom_schedules_due ON nuvom_schedules (paused, next_run_at)",
    # One row per tick claimed: its key is the promise that a tick fires once, however
    # many schedulers race for it. Kept TICKS_KEPT_SECS, then pruned.
    """CREATE TABLE IF NOT EXISTS nuvom_ticks (
        schedule_id TEXT NOT NULL,
        tick REAL NOT NULL,
        job_id TEXT,
        PRIMARY KEY (schedule_id, tick)
    ) WITHOUT ROWID""",
    # Workflows, added without a version bump like nuvom_workers. A job that waits for
    # others is parked here with its queue row's columns (due_at NULL: none was asked for)
    # until it is released into nuvom_queue or cancelled; waiting counts the jobs it waits
    # for that have not succeeded yet, and errback marks a job released by a failure.
    """CREATE TABLE IF NOT EXISTS nuvom_parked (
        id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        due_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        enqueued_at REAL NOT NULL,
        payload BLOB NOT NULL,
        errback INTEGER NOT NULL DEFAULT 0,
        waiting INTEGER NOT NULL,
        limited INTEGER NOT NULL DEFAULT 0,
        conc_key TEXT
    )""",
    # One row per job a parked job still waits for; counting a finished job deletes its
    # rows, so a job settled twice counts once.
    """CREATE TABLE IF NOT EXISTS nuvom_edges (
        job_id TEXT NOT NULL,
        dep_id TEXT NOT NULL,
        PRIMARY KEY (job_id, dep_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS nuvom_edges_dep ON nuvom_edges (dep_id)",
    # Flow control (schema 2). On nuvom_queue: limited marks a job with a rate or
    # concurrency limit (a claim checks it before taking it), conc_key its concurrency
    # key, hold the tag of the limit that held it back at its last claim.
    # The first held job of a key, in claim order (woken when a slot frees).
    """CREATE INDEX IF NOT EXISTS nuvom_queue_held ON nuvom_queue
        (conc_key, hold, priority DESC, due_at, seq) WHERE conc_key IS NOT NULL""",
    # The claimed jobs of a key, by lease end (counted by a claim). Only limited rows are
    # in it: a plain claim or ack writes no entry.
    """CREATE INDEX IF NOT EXISTS nuvom_queue_slots ON nuvom_queue (conc_key, available_at)
        WHERE conc_key IS NOT NULL AND lease_owner IS NOT NULL""",
    # The limited jobs by the time they are claimable: a claim that took fewer than asked
    # looks here before it reads candidates (``LIMITED_DUE``).
    """CREATE INDEX IF NOT EXISTS nuvom_queue_limited ON nuvom_queue (available_at)
        WHERE limited""",
    # Queues claims skip.
    """CREATE TABLE IF NOT EXISTS nuvom_paused (
        queue TEXT PRIMARY KEY,
        paused_at REAL NOT NULL
    ) WITHOUT ROWID""",
    # One token bucket per rate-limited task: tokens as of updated_at.
    """CREATE TABLE IF NOT EXISTS nuvom_buckets (
        key TEXT PRIMARY KEY,
        tokens REAL NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID""",
    # Unique keys: held by job_id while it waits or runs (kept_until NULL), then until
    # kept_until (its keep_secs after it finished). The primary key is what makes racing
    # submits of one key store one job.
    """CREATE TABLE IF NOT EXISTS nuvom_unique (
        key TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        keep_secs REAL NOT NULL,
        kept_until REAL
    )""",
    "CREATE INDEX IF NOT EXISTS nuvom_unique_job ON nuvom_unique (job_id)",
    "CREATE INDEX IF NOT EXISTS nuvom_unique_kept ON nuvom_unique (kept_until)",
)
# Columns a table of a schema-1 file lacks, added (in this order) when a writer opens it.
ADDED_COLUMNS = {
    "nuvom_queue": (
        ("limited", "INTEGER NOT NULL DEFAULT 0"),
        ("conc_key", "TEXT"),
        ("hold", "TEXT"),
    ),
    "nuvom_parked": (("limited", "INTEGER NOT NULL DEFAULT 0"), ("conc_key", "TEXT")),
}

GET_SCHEMA_VERSION = "SELECT value FROM nuvom_meta WHERE key = 'schema_version'"
# A file opened read-only may predate its schema (created, nothing committed yet).
HAS_META_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'nuvom_meta'"
SET_SCHEMA_VERSION = "INSERT INTO nuvom_meta (key, value) VALUES ('schema_version', ?)"
UPGRADE_SCHEMA_VERSION = "UPDATE nuvom_meta SET value = ? WHERE key = 'schema_version'"
TABLE_COLUMNS = "SELECT name FROM pragma_table_info(?)"

# -- queue -----------------------------------------------------------------
ENQUEUE = """
INSERT INTO nuvom_queue
    (id, queue, priority, due_at, available_at, attempts, enqueued_at, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    available_at = excluded.available_at, lease_owner = NULL,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at, payload = excluded.payload
"""

# Limited jobs (flow control) are left to ``CANDIDATES``: a claim that took fewer than
# asked reads them next, in the same transaction (``SQLJobQueue.take_limited``).
_NOT_PAUSED = "queue NOT IN (SELECT queue FROM nuvom_paused)"
_CLAIM = f"""
UPDATE nuvom_queue SET lease_owner = ?, available_at = ?, attempts = attempts + 1
WHERE seq IN (
    SELECT seq FROM nuvom_queue WHERE available_at <= ? {{queue_filter}} AND {_NOT_PAUSED}
    ORDER BY priority DESC, due_at, seq LIMIT ?
) AND NOT limited
RETURNING seq, id, queue, priority, due_at, attempts, payload
"""
CLAIM_ANY_QUEUE = _CLAIM.format(queue_filter="")


def _in_queues(count: int, refused: int) -> str:
    """Filters on ``count`` queue names, then on ``refused`` hold tags a claimer refused
    (``BaseJobQueue.refuse``), each bound as a parameter."""
    where = f"AND queue IN ({', '.join('?' * count)})" if count else ""
    if refused:
        where += f" AND (hold IS NULL OR hold NOT IN ({', '.join('?' * refused)}))"
    return where


def claim_from_queues(count: int, refused: int = 0) -> str:
    """The claim statement limited to ``count`` queue names and leaving jobs held with
    ``refused`` tags (parameters: owner, lease end, now, the names, the tags, how many)."""
    return _CLAIM.format(queue_filter=_in_queues(count, refused))


# -- flow control: the claim's second step, and what settles and submits add --------
# Whether the claim statement may have left a limited job (by an index of those alone).
LIMITED_DUE = "SELECT 1 FROM nuvom_queue WHERE limited AND available_at <= ? LIMIT 1"
_CANDIDATES = f"""
SELECT seq, id, queue, priority, due_at, attempts, payload FROM nuvom_queue
WHERE available_at <= ? {{queue_filter}} AND {_NOT_PAUSED}
ORDER BY priority DESC, due_at, seq LIMIT ?
"""


def candidates(count: int, refused: int = 0) -> str:
    """The next claimable rows, limited or not, in claim order, from ``count`` queues (0: any),
    but those held with ``refused`` tags; parameters: now, the queue names, the tags, how many."""
    return _CANDIDATES.format(queue_filter=_in_queues(count, refused))


# A limited job enqueued: its limit columns set, a hold it had dropped.
ENQUEUE_LIMITED = """
INSERT INTO nuvom_queue
    (id, queue, priority, due_at, available_at, attempts, enqueued_at, payload, limited, conc_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    available_at = excluded.available_at, lease_owner = NULL,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at, payload = excluded.payload,
    limited = excluded.limited, conc_key = excluded.conc_key, hold = NULL
"""
# Claimed by the second step; its limit columns as its payload says (a row an enqueue
# without limits replaced may have kept them).
CLAIM_ROW = """
UPDATE nuvom_queue SET lease_owner = :worker, available_at = :until, attempts = attempts + 1,
    hold = NULL, limited = :limited, conc_key = :conc_key
WHERE seq = :seq
"""
# Held back by a limit: waiting (an expired lease's too), due again at :due, tagged.
HOLD_ROW = """
UPDATE nuvom_queue SET lease_owner = NULL, due_at = :due, available_at = :due, hold = :tag
WHERE seq = :seq
"""
BUCKET = "SELECT tokens, updated_at FROM nuvom_buckets WHERE key = ?"
SAVE_BUCKET = """
INSERT INTO nuvom_buckets (key, tokens, updated_at) VALUES (:key, :tokens, :at)
ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at
"""
# How many jobs of a concurrency key are claimed with a live lease, and the first to end.
SLOTS = """
SELECT count(*), min(available_at) FROM nuvom_queue
WHERE conc_key = ? AND lease_owner IS NOT NULL AND available_at > ?
"""
# Job :id, claimed (by :owner, unless NULL), is about to stop being claimed: the first job
# its concurrency key held back (claim order) and not due yet is due now.
WAKE_HELD = """
UPDATE nuvom_queue SET due_at = min(due_at, :now), available_at = min(available_at, :now)
WHERE seq = (
    SELECT h.seq FROM nuvom_queue j JOIN nuvom_queue h ON h.conc_key = j.conc_key
    WHERE j.id = :id AND j.lease_owner IS NOT NULL
      AND (CAST(:owner AS TEXT) IS NULL OR j.lease_owner = :owner)
      AND h.hold = :prefix || j.conc_key AND h.lease_owner IS NULL AND h.available_at > :now
    ORDER BY h.priority DESC, h.due_at, h.seq LIMIT 1
)
"""
# A claimed job a worker gives back (``BaseJobQueue.hold``): waiting, its attempt refunded,
# tagged, claimable again at :due.
GIVE_BACK = """
UPDATE nuvom_queue SET lease_owner = NULL, attempts = max(attempts - 1, 0), due_at = :due,
    available_at = :due, hold = :tag
WHERE id = :id AND lease_owner = :owner
RETURNING id
"""
# Job :id is about to be acked (by :owner, unless NULL): its unique key is kept its
# keep_secs from now (0: free at once).
LET_GO = """
UPDATE nuvom_unique SET kept_until = :now + keep_secs
WHERE job_id = :id AND kept_until IS NULL AND EXISTS (
    SELECT 1 FROM nuvom_queue
    WHERE id = :id AND (CAST(:owner AS TEXT) IS NULL OR lease_owner = :owner)
)
"""
FORGET_UNIQUE = "DELETE FROM nuvom_unique WHERE job_id = ? AND kept_until IS NULL"
# Whether a settle may have a slot to free or a key to let go (both lookups by an index).
ANY_FLOW_STATE = """
SELECT EXISTS (SELECT 1 FROM nuvom_queue WHERE conc_key IS NOT NULL)
    OR EXISTS (SELECT 1 FROM nuvom_unique)
"""
# Take unique key :key for job :id, unless another job holds it; the holder's id either
# way (one row, always: the key's row is written, so racing submits take turns on it).
TAKE_UNIQUE = """
INSERT INTO nuvom_unique (key, job_id, keep_secs, kept_until) VALUES (:key, :id, :keep, NULL)
ON CONFLICT (key) DO UPDATE SET
    job_id = CASE WHEN nuvom_unique.kept_until <= :now OR nuvom_unique.job_id = excluded.job_id
        THEN excluded.job_id ELSE nuvom_unique.job_id END,
    keep_secs = CASE WHEN nuvom_unique.kept_until <= :now OR nuvom_unique.job_id = excluded.job_id
        THEN excluded.keep_secs ELSE nuvom_unique.keep_secs END,
    kept_until = CASE WHEN nuvom_unique.kept_until <= :now OR nuvom_unique.job_id = excluded.job_id
        THEN NULL ELSE nuvom_unique.kept_until END
RETURNING job_id
"""
KEPT_KEYS_PER_SUBMIT = 100  # expired keys a submit of unique jobs deletes, at most
DROP_EXPIRED_KEYS = f"""
DELETE FROM nuvom_unique WHERE key IN (
    SELECT key FROM nuvom_unique WHERE kept_until <= ? LIMIT {KEPT_KEYS_PER_SUBMIT}
)
"""
UNIQUE_HOLDER = """
SELECT job_id FROM nuvom_unique WHERE key = :key AND (kept_until IS NULL OR kept_until > :now)
"""
CLEAR_UNIQUE = "DELETE FROM nuvom_unique"
PAUSE_QUEUE = """
INSERT INTO nuvom_paused (queue, paused_at) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING queue
"""
RESUME_QUEUE = "DELETE FROM nuvom_paused WHERE queue = ? RETURNING queue"
PAUSED_QUEUES = "SELECT queue FROM nuvom_paused ORDER BY queue"
HOLD_OF = "SELECT hold FROM nuvom_queue WHERE id = ? AND lease_owner IS NULL"
HELD_BY_QUEUE = """
SELECT queue, hold, count(*) FROM nuvom_queue
WHERE hold IS NOT NULL AND lease_owner IS NULL GROUP BY queue, hold
"""


ACK = "DELETE FROM nuvom_queue WHERE id = ? AND lease_owner = ?"
ACK_ANY = "DELETE FROM nuvom_queue WHERE id = ?"
# Each ack as it runs while jobs wait for others: the acked job's id, and whether a parked
# job waits for it (then the ack resolves it). Reading rows back costs twice the plain ack.
_ACKED = "RETURNING id, EXISTS (SELECT 1 FROM nuvom_edges e WHERE e.dep_id = nuvom_queue.id)"
ACK_READING = {ACK: f"{ACK} {_ACKED}", ACK_ANY: f"{ACK_ANY} {_ACKED}"}
NACK = """
UPDATE nuvom_queue SET lease_owner = NULL, due_at = ?, available_at = ?
WHERE id = ? AND lease_owner = ?
"""
NACK_ANY = """
UPDATE nuvom_queue SET lease_owner = NULL, due_at = ?, available_at = ?
WHERE id = ? AND lease_owner IS NOT NULL
"""
RELEASE = """
UPDATE nuvom_queue SET lease_owner = NULL, available_at = ?, attempts = max(attempts - 1, 0)
WHERE id = ? AND lease_owner = ?
"""
HEARTBEAT = "UPDATE nuvom_queue SET available_at = ? WHERE id = ? AND lease_owner = ? RETURNING id"
ADJUST_ATTEMPTS = """
UPDATE nuvom_queue SET attempts = max(attempts + ?, 0) WHERE id = ? AND lease_owner = ?
RETURNING id
"""
QSIZE = "SELECT count(*) FROM nuvom_queue WHERE lease_owner IS NULL"
QSIZE_OF = "SELECT count(*) FROM nuvom_queue WHERE lease_owner IS NULL AND queue = ?"
CLEAR = "DELETE FROM nuvom_queue RETURNING id"
# The removed job's queue row: a job cancelled while only queued keeps its call in its record.
CANCEL = """
DELETE FROM nuvom_queue WHERE id = ? AND lease_owner IS NULL
RETURNING queue, priority, payload, due_at
"""
STATS = """
SELECT queue,
    sum(lease_owner IS NULL AND available_at <= :now),
    sum(lease_owner IS NULL AND available_at > :now),
    sum(lease_owner IS NOT NULL AND available_at > :now),
    sum(lease_owner IS NOT NULL AND available_at <= :now)
FROM nuvom_queue GROUP BY queue ORDER BY queue
"""
DEAD_BY_QUEUE = "SELECT coalesce(queue, 'default'), count(*) FROM nuvom_dead GROUP BY 1"
DEAD_LETTERS = """
SELECT id, queue, payload, reason, quarantined_at FROM nuvom_dead WHERE id > ?
ORDER BY id LIMIT ?
"""
DEAD_LETTER = "SELECT id, queue, payload, reason FROM nuvom_dead WHERE id = ?"
FORGET_DEAD = "DELETE FROM nuvom_dead WHERE id = ? RETURNING id"
LEASE_OWNERS = """
SELECT queue, lease_owner, count(*) FROM nuvom_queue
WHERE lease_owner IS NOT NULL AND available_at > :now GROUP BY queue, lease_owner
"""
FAILED_BY_QUEUE = """
SELECT coalesce(queue, 'default'), count(*) FROM nuvom_jobs WHERE status = 'FAILED' GROUP BY 1
"""
QUARANTINE = """
INSERT OR REPLACE INTO nuvom_dead (id, queue, payload, reason, quarantined_at)
VALUES (?, ?, ?, ?, ?)
"""
DELETE_QUEUED = "DELETE FROM nuvom_queue WHERE id = ?"
# Waiting jobs in claim order, for moving them to another backend.
WAITING_JOBS = """
SELECT id, queue, priority, due_at, attempts, payload FROM nuvom_queue
WHERE lease_owner IS NULL ORDER BY priority DESC, due_at, seq
"""

# -- workflows: parked jobs and what they wait for ------------------------------
PARK = """
INSERT INTO nuvom_parked
    (id, queue, priority, due_at, attempts, enqueued_at, payload, errback, waiting, limited,
     conc_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at,
    payload = excluded.payload, errback = excluded.errback, waiting = excluded.waiting,
    limited = excluded.limited, conc_key = excluded.conc_key
"""
ADD_EDGE = "INSERT INTO nuvom_edges (job_id, dep_id) VALUES (?, ?) ON CONFLICT DO NOTHING"
# What PostgreSQL marks so a racing ack sees a new dependent; writes are serialized here.
MARK_WAITED_FOR: tuple[str, ...] = ()
FORGET_EDGES = "DELETE FROM nuvom_edges WHERE job_id = ?"
ANY_EDGE = "SELECT 1 FROM nuvom_edges LIMIT 1"  # does any job wait for another?
COUNT_DEPENDENCY = "DELETE FROM nuvom_edges WHERE dep_id = ? RETURNING job_id, dep_id"
# Named as PostgreSQL's, which locks the row; BEGIN IMMEDIATE already serializes writers.
LOCK_PARKED = "SELECT id, waiting, errback FROM nuvom_parked WHERE id = ?"
SET_WAITING = "UPDATE nuvom_parked SET waiting = ? WHERE id = ?"
# Released: waiting as if enqueued now (due now, attempts kept).
RELEASE_PARKED = """
INSERT INTO nuvom_queue
    (id, queue, priority, due_at, available_at, attempts, enqueued_at, payload, limited,
     conc_key)
SELECT id, queue, priority, :now, :now, attempts, :now, payload, limited, conc_key
FROM nuvom_parked WHERE id = :id
ON CONFLICT (id) DO UPDATE SET
    queue = excluded.queue, priority = excluded.priority, due_at = excluded.due_at,
    available_at = excluded.available_at, lease_owner = NULL,
    attempts = excluded.attempts, enqueued_at = excluded.enqueued_at, payload = excluded.payload,
    limited = excluded.limited, conc_key = excluded.conc_key, hold = NULL
"""
DROP_PARKED = "DELETE FROM nuvom_parked WHERE id = ?"
UNPARK = "DELETE FROM nuvom_parked WHERE id = ? RETURNING queue, priority, payload, due_at"
CLEAR_PARKED = "DELETE FROM nuvom_parked RETURNING id"
CLEAR_EDGES = "DELETE FROM nuvom_edges"
PARKED_JOBS = "SELECT id, queue, priority, due_at, attempts, payload FROM nuvom_parked ORDER BY id"

REGISTER_LISTENER = """
INSERT OR REPLACE INTO nuvom_listeners (worker_id, port, seen_at) VALUES (?, ?, ?)
"""
TOUCH_LISTENER = "UPDATE nuvom_listeners SET seen_at = ? WHERE worker_id = ?"
UNREGISTER_LISTENER = "DELETE FROM nuvom_listeners WHERE worker_id = ?"
LIVE_LISTENER_PORTS = "SELECT port FROM nuvom_listeners WHERE seen_at > ?"
FORGET_STALE_LISTENERS = "DELETE FROM nuvom_listeners WHERE seen_at <= ?"

REGISTER_WORKER = """
INSERT OR REPLACE INTO nuvom_workers
    (id, host, pid, pool, concurrency, inflight, heartbeat_at, started_at, lease_secs)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
HEARTBEAT_WORKER = "UPDATE nuvom_workers SET inflight = ?, heartbeat_at = ? WHERE id = ?"
UNREGISTER_WORKER = "DELETE FROM nuvom_workers WHERE id = ?"
FORGET_LOST_WORKERS = "DELETE FROM nuvom_workers WHERE heartbeat_at < ?"
LIST_WORKERS = """
SELECT id, host, pid, pool, concurrency, inflight, heartbeat_at, started_at, lease_secs
FROM nuvom_workers ORDER BY started_at, id
"""

# -- schedules ---------------------------------------------------------------
_SCHEDULE_COLUMNS = "id, definition, next_run_at, paused, last_run_at, last_job_id"
SAVE_SCHEDULE = f"""
INSERT INTO nuvom_schedules ({_SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    definition = excluded.definition, next_run_at = excluded.next_run_at,
    paused = excluded.paused, last_run_at = excluded.last_run_at,
    last_job_id = excluded.last_job_id
"""
LIST_SCHEDULES = f"SELECT {_SCHEDULE_COLUMNS} FROM nuvom_schedules ORDER BY id"
REMOVE_SCHEDULE = "DELETE FROM nuvom_schedules WHERE id = ? RETURNING id"
FORGET_TICKS = "DELETE FROM nuvom_ticks WHERE schedule_id = ?"
PAUSE_SCHEDULE = "UPDATE nuvom_schedules SET paused = ? WHERE id = ? RETURNING id"
DUE_SCHEDULES = f"""
SELECT {_SCHEDULE_COLUMNS} FROM nuvom_schedules
WHERE paused = 0 AND next_run_at <= ? ORDER BY next_run_at, id LIMIT ?
"""
NEXT_SCHEDULE_AT = "SELECT min(next_run_at) FROM nuvom_schedules WHERE paused = 0"
# fire_tick, in one transaction (BEGIN IMMEDIATE: racing schedulers take turns).
# Claim a tick of a schedule that is there, not paused, and not past it, in one statement
# (BEGIN IMMEDIATE already serializes writers); no row back: refused.
CLAIM_TICK = """
INSERT INTO nuvom_ticks (schedule_id, tick, job_id)
SELECT id, :tick, :job FROM nuvom_schedules
WHERE id = :sid AND paused = 0 AND next_run_at <= :tick
ON CONFLICT DO NOTHING RETURNING tick
"""
MOVE_SCHEDULE = """
UPDATE nuvom_schedules SET next_run_at = ?, last_run_at = ?,
    last_job_id = coalesce(?, last_job_id)
WHERE id = ?
"""
PRUNE_TICKS = "DELETE FROM nuvom_ticks WHERE schedule_id = ? AND tick < ?"


# -- results ---------------------------------------------------------------
_RECORD_PENDING = """
INSERT INTO nuvom_jobs
    (id, func_name, queue, priority, status, payload, max_retries, created_at, due_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
# With a shared store, enqueue writes only nuvom_queue (half the work of also
# writing nuvom_jobs); a job gets its nuvom_jobs row when first claimed. A job
# enqueued again under a known id (retry_job) has its row reopened here.
REOPEN_ENQUEUED = """
UPDATE nuvom_jobs SET status = ?, due_at = ?, finished_at = NULL, updated_at = ? WHERE id = ?
"""
MARK_RUNNING = """
INSERT INTO nuvom_jobs
    (id, func_name, queue, priority, status, payload, created_at, started_at, worker_id,
     attempts, updated_at)
VALUES (?, ?, ?, ?, 'RUNNING', ?, ?, ?, ?, 1, ?)
ON CONFLICT (id) DO UPDATE SET
    status = 'RUNNING', started_at = excluded.started_at, worker_id = excluded.worker_id,
    attempts = nuvom_jobs.attempts + 1, finished_at = NULL, updated_at = excluded.updated_at
"""
MARK_EARLIER_ATTEMPTS_LOST = """
UPDATE nuvom_attempts SET status = 'LOST' WHERE job_id = ? AND status = 'RUNNING'
"""
START_ATTEMPT = """
INSERT INTO nuvom_attempts (job_id, number, status, started_at, worker_id)
VALUES (:id, (SELECT coalesce(max(number), 0) + 1 FROM nuvom_attempts WHERE job_id = :id),
        'RUNNING', :at, :worker)
"""
SAVE_OUTCOME = """
INSERT INTO nuvom_jobs
    (id, func_name, queue, priority, status, payload, result, has_result, error_type,
     error_message, traceback, created_at, due_at, finished_at, worker_id, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, result = excluded.result, has_result = excluded.has_result,
    error_type = excluded.error_type, error_message = excluded.error_message,
    traceback = excluded.traceback, due_at = coalesce(excluded.due_at, nuvom_jobs.due_at),
    finished_at = excluded.finished_at, worker_id = excluded.worker_id,
    updated_at = excluded.updated_at
"""
FINISH_ATTEMPT = """
UPDATE nuvom_attempts SET status = :status, finished_at = :at, error_type = :type,
    error_message = :message, traceback = :traceback
WHERE job_id = :id AND number = (SELECT max(number) FROM nuvom_attempts WHERE job_id = :id)
"""
UNCOUNT_ATTEMPT = """
DELETE FROM nuvom_attempts
WHERE job_id = :id AND status = 'RUNNING'
  AND number = (SELECT max(number) FROM nuvom_attempts WHERE job_id = :id)
"""
MARK_RELEASED = """
UPDATE nuvom_jobs SET status = 'PENDING', attempts = max(attempts - 1, 0), updated_at = ?
WHERE id = ? AND status = 'RUNNING'
"""
# A finished job's record, forgotten (``delete_job``): its attempts go with it.
FINISHED_PAYLOAD = """
SELECT id, payload FROM nuvom_jobs WHERE id = ? AND status IN ('SUCCESS', 'FAILED', 'CANCELLED')
"""
DELETE_FINISHED = """
DELETE FROM nuvom_jobs WHERE id = ? AND status IN ('SUCCESS', 'FAILED', 'CANCELLED') RETURNING id
"""
DELETE_JOB_ATTEMPTS = "DELETE FROM nuvom_attempts WHERE job_id = ?"
MARK_CANCELLED = """
INSERT INTO nuvom_jobs (id, status, finished_at, updated_at) VALUES (?, 'CANCELLED', ?, ?)
ON CONFLICT (id) DO UPDATE SET status = 'CANCELLED', finished_at = excluded.finished_at,
    updated_at = excluded.updated_at
"""
# Cancelling a job that was only queued keeps its call, so retry_job can run it later.
MARK_QUEUED_CANCELLED = """
INSERT INTO nuvom_jobs (id, queue, priority, payload, status, due_at, finished_at, updated_at)
VALUES (?, ?, ?, ?, 'CANCELLED', ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET status = 'CANCELLED', finished_at = excluded.finished_at,
    updated_at = excluded.updated_at
"""
MARK_FAILED = """
INSERT INTO nuvom_jobs (id, status, error_type, error_message, finished_at, updated_at)
VALUES (?, 'FAILED', ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET status = 'FAILED', error_type = excluded.error_type,
    error_message = excluded.error_message, traceback = NULL,
    finished_at = excluded.finished_at, updated_at = excluded.updated_at
"""
# A job cancelled because one it waited for did not succeed: the reason is its error.
MARK_DEPENDENT_CANCELLED = """
INSERT INTO nuvom_jobs (id, status, error_type, error_message, finished_at, updated_at)
VALUES (?, 'CANCELLED', 'Cancelled', ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET status = 'CANCELLED', error_type = 'Cancelled',
    error_message = excluded.error_message, traceback = NULL,
    finished_at = excluded.finished_at, updated_at = excluded.updated_at
"""
# A job waited for that finished for good (a final status lives only in nuvom_jobs).
FINISHED_STATUS = """
SELECT id, status FROM nuvom_jobs WHERE id = ? AND status IN ('SUCCESS', 'FAILED', 'CANCELLED')
"""
_JOB_COLUMNS = ", ".join(JOB_COLUMNS)
# A job still only in nuvom_queue, shaped like a nuvom_jobs row, its status as of :now.
# Its name, creation time and options are read from the payload.
# The reads below take named parameters (:id, :now, :status, :limit, :offset), as
# PostgreSQL's do, so the code in sqlbase.py passes both engines the same mapping.
# A job a limit held back came due before: PENDING, though its due time moved on.
_QUEUED_STATUS = """
CASE WHEN q.lease_owner IS NOT NULL THEN 'RUNNING'
     WHEN q.due_at > :now AND q.hold IS NULL THEN 'SCHEDULED' ELSE 'PENDING' END
"""
_QUEUED_COLUMNS = f"""
q.id, {_QUEUED_STATUS} AS status, NULL, q.payload, q.queue, q.priority, NULL, 0, NULL, NULL,
NULL, q.attempts, NULL, NULL, q.due_at, NULL, NULL, q.enqueued_at, NULL
"""
_ONLY_QUEUED = "NOT EXISTS (SELECT 1 FROM nuvom_jobs j WHERE j.id = q.id)"

GET_JOB = f"""
SELECT {_JOB_COLUMNS} FROM nuvom_jobs WHERE id = :id
UNION ALL
SELECT {_QUEUED_COLUMNS} FROM nuvom_queue q WHERE q.id = :id AND {_ONLY_QUEUED}
"""
GET_STATUS = f"""
SELECT status FROM nuvom_jobs WHERE id = :id
UNION ALL
SELECT {_QUEUED_STATUS} FROM nuvom_queue q WHERE q.id = :id AND {_ONLY_QUEUED}
"""
GET_ATTEMPTS = """
SELECT number, status, started_at, finished_at, worker_id, error_type, error_message, traceback
FROM nuvom_attempts WHERE job_id = ? ORDER BY number
"""
LIST_JOBS = f"""
SELECT {_JOB_COLUMNS} FROM nuvom_jobs
UNION ALL
SELECT {_QUEUED_COLUMNS} FROM nuvom_queue q WHERE {_ONLY_QUEUED}
ORDER BY updated_at DESC LIMIT :limit OFFSET :offset
"""
# A status only nuvom_jobs holds (SUCCESS, FAILED, CANCELLED, RETRYING).
LIST_JOBS_WITH_STATUS = f"""
SELECT {_JOB_COLUMNS} FROM nuvom_jobs WHERE status = :status
ORDER BY updated_at DESC LIMIT :limit OFFSET :offset
"""
# A status a queued job can have too (PENDING, SCHEDULED, RUNNING).
LIST_LIVE_JOBS_WITH_STATUS = f"""
SELECT {_JOB_COLUMNS} FROM nuvom_jobs WHERE status = :status
UNION ALL
SELECT * FROM (SELECT {_QUEUED_COLUMNS} FROM nuvom_queue q WHERE {_ONLY_QUEUED})
WHERE status = :status
ORDER BY updated_at DESC LIMIT :limit OFFSET :offset
"""
GET_RESULT = "SELECT status, result, has_result FROM nuvom_jobs WHERE id = ?"
GET_ERROR = "SELECT status, error_type, error_message FROM nuvom_jobs WHERE id = ?"
# Each arm counts on its own (the records along the status index, without a temporary
# b-tree of a million rows), then the two are added.
STATUS_COUNTS = f"""
SELECT status, sum(n) FROM (
    SELECT status, count(*) AS n FROM nuvom_jobs GROUP BY status
    UNION ALL
    SELECT {_QUEUED_STATUS} AS status, count(*) AS n FROM nuvom_queue q WHERE {_ONLY_QUEUED}
    GROUP BY 1
) GROUP BY status
"""


# -- listings for people (sqlbase.SQLResultBackend.find_jobs, activity) -----------------
# A page starts strictly after the keyset (:before_at, :before_id), newest first, on the
# index its filters pick; each filter is a condition on its named parameter ({n}: an arm's).
_FIND_FILTERS = {
    "status": "status = :status{n}",
    # No index leads with it (a queue holds many jobs): ``+`` keeps any from being used
    # for it, as SQLite, without stats, could prefer one and sort all it holds.
    "queue": "+queue = :queue{n}",
    "task": "func_name = :task{n}",
    "since": "updated_at >= :since{n}",
    "until": "updated_at < :until{n}",
}
_FIND_ORDER = "ORDER BY updated_at DESC, id DESC LIMIT :limit"


def find_jobs(shared: tuple[str, ...], own: tuple[str, ...] = (), arms: int = 1) -> str:
    """A page of records passing the ``shared`` filters (names of ``_FIND_FILTERS``) and,
    with ``own``, those of one of ``arms`` arms, each with its own parameters (``:task0``,
    ``:status0``, ...): each arm one range of an index walked in order from the keyset (the
    task one, the status one or the updated one), no sort but of the arms' pages."""

    def arm(n: str) -> str:
        where = "".join(f" AND {_FIND_FILTERS[f].format(n='')}" for f in shared)
        where += "".join(f" AND {_FIND_FILTERS[f].format(n=n)}" for f in own)
        return f"""SELECT {_JOB_COLUMNS} FROM nuvom_jobs
WHERE updated_at <= :before_at AND (updated_at < :before_at OR id < :before_id){where}
{_FIND_ORDER}"""

    if not own or arms == 1:
        return arm("" if not own else "0")
    union = "\nUNION ALL\n".join(f"SELECT * FROM ({arm(str(i))})" for i in range(arms))
    return f"SELECT * FROM (\n{union}\n) {_FIND_ORDER}"


_QUEUED_FILTERS = {
    "status": f"({_QUEUED_STATUS}) = :status",
    "queue": "+q.queue = :queue",
    "since": "q.enqueued_at >= :since",
    "until": "q.enqueued_at < :until",
}


def find_queued(filters: tuple[str, ...]) -> str:
    """A page of the jobs only queued (``_QUEUED_COLUMNS``) passing ``filters``, by the time
    they were enqueued; their task is in their payload alone, so a task is filtered after."""
    where = "".join(f" AND {_QUEUED_FILTERS[f]}" for f in filters if f in _QUEUED_FILTERS)
    return f"""
SELECT {_QUEUED_COLUMNS} FROM nuvom_queue q
WHERE q.enqueued_at <= :before_at AND (q.enqueued_at < :before_at OR q.id < :before_id)
    AND {_ONLY_QUEUED}{where}
ORDER BY q.enqueued_at DESC, q.id DESC LIMIT :limit
"""


# Per bucket of :bucket seconds from :since, the attempts that ended in [:since, :until),
# by status: one range of nuvom_attempts_ended, which holds both columns (floor of a
# non-negative quotient: the cast).
ATTEMPTS_ENDED = """
SELECT CAST((finished_at - :since) / :bucket AS INTEGER), status, count(*)
FROM nuvom_attempts
WHERE finished_at >= :since AND finished_at < :until
    AND status IN ('SUCCESS', 'FAILED', 'RETRYING')
GROUP BY 1, 2
"""
# The same of records that ended with no attempt recorded (results stored without a claim,
# a quarantined job): their own end counts, as ``activity_of`` counts it.
UNATTEMPTED_ENDED = """
SELECT CAST((finished_at - :since) / :bucket AS INTEGER), status, count(*)
FROM nuvom_jobs
WHERE status IN ('SUCCESS', 'FAILED') AND updated_at >= :since AND attempts = 0
    AND finished_at >= :since AND finished_at < :until
GROUP BY 1, 2
"""
# The run times of the latest :sample jobs that succeeded since :since, by task.
RUN_TIMES = """
SELECT func_name, finished_at - started_at FROM nuvom_jobs
WHERE status = 'SUCCESS' AND updated_at >= :since AND finished_at >= :since
    AND started_at IS NOT NULL
ORDER BY updated_at DESC LIMIT :sample
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


def _finished_before(status_count: int) -> str:
    marks = ", ".join("?" * status_count)
    return f"updated_at < ? AND status IN ({marks})"


def prune_statement(status_count: int) -> str:
    """Delete every record finished before ? with one of ``status_count`` statuses."""
    return f"DELETE FROM nuvom_jobs WHERE {_finished_before(status_count)} RETURNING id"


def prune_candidates(status_count: int) -> str:
    """The (id, payload) of every record ``prune_statement`` would delete."""
    return f"SELECT id, payload FROM nuvom_jobs WHERE {_finished_before(status_count)}"


def prune_one(status_count: int) -> str:
    """Delete record ?, if it is still one ``prune_statement`` would delete."""
    return f"DELETE FROM nuvom_jobs WHERE id = ? AND {_finished_before(status_count)}"


DELETE_ATTEMPTS = "DELETE FROM nuvom_attempts WHERE job_id = ?"
