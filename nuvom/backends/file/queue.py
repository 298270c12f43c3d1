"""A queue of plain files: one file per job, claimed by atomic rename, safe across processes.

Layout under ``NUVOM_FILE_QUEUE_DIR`` (default ``.nuvom/queue``)::

    pending/<queue>/<P>_<DUE>_<SEQ>_<ATTEMPTS>_<ID>.job          waiting (due or scheduled)
    claimed/<queue>/<LEASE>_<OWNER>_<P>_<DUE>_<SEQ>_<ATTEMPTS>_<ID>.job   held by a worker
    corrupt/<queue>/<name>.corrupt  +  <name>.reason             quarantined, with why
    submitting/<WRITTEN>_<PID>-<RANDOM>.sub                       ids of a submit under way
    schedules/<schedule>/<VERSION>.sched                          a periodic job, version by version
    schedules/<schedule>/<PID>-<RANDOM>.job                       a tick's job file, staged
    ticks/<schedule>/<TICK>.tick                                  a tick claimed (its float's bits)
    parked/<JOB>/<queue>_<pending name>                           a job waiting for others to end
    parked/<JOB>/<BB>/<DEP>.wait  or  <DEP>.failed                one it still waits for, or saw fail
    deps/<DEP>/<JOB>                                              who waits for DEP (empty files)
    cancelled/<JOB>.cancelled                                     a parked job cancelled, and why
    paused/ slots/ rates/ unique/ holds/                          flow control (``flow.py``)
    tmp/                                                          writes in progress

``P`` is ``2**31 - 1 - priority`` in 10 digits, ``DUE`` and ``LEASE`` are epoch
microseconds in 17 digits and ``SEQ`` is a 20-digit enqueue stamp (nanoseconds,
rising within a process), so sorting names gives priority, then due time, then
FIFO without opening a file; a scheduled job is a pending file whose ``DUE`` is
in the future. ``ID``, ``OWNER`` and ``<queue>`` are plain when they are
file-name safe, else hex (``=...``), or a hash (``~...``) when too long.

Every state change is one ``os.replace`` or unlink of one file, which succeeds
for exactly one process: a claim renames ``pending/`` → ``claimed/`` (attempts
+ 1, lease end and owner in the new name), a heartbeat renames to a later
lease, ack unlinks, nack/release/an expired lease rename back to ``pending/``.
New files are written to ``tmp/``, fsynced, then renamed in. A file whose name
or contents cannot be decoded moves to ``corrupt/`` beside a ``.reason`` file
(``corrupt/_/`` for one found outside any queue folder) and is logged once, when
a claim reaches it; the claim reports the job its contents name, so its record
ends FAILED ``CorruptJob``. The dead letters are those files, listed by the id their
contents name (else their name's, else the name itself), revived by decoding them again
and forgotten by unlinking them. No ``fcntl``; Windows' "file in use" errors are retried.

A submit with a result backend apart writes the records, then the files. It
first notes its job ids in ``submitting/`` and removes the note at the end; a
note older than ``NEVER_ENQUEUED_GRACE_SECS`` outlived a producer that died in
between, and a claim records FAILED ``NeverEnqueued`` each job it names that
still waits with no file queued.

Re-enqueueing a waiting id writes a newer file; readers keep the newest file
per id and delete older ones. ``enqueue_many`` refuses the whole batch on bad
input, but a crash part-way through writing it leaves the files written so far.

Schedules change by compare-and-swap, with no lock to go stale: a change reads the
newest version n (``VERSION``: 20 digits), decides, and publishes version n + 1
whole with ``store.publish_exclusively`` (written in ``tmp/``, then POSIX ``link`` /
Windows ``rename``, neither of which replaces a file): one writer gets n + 1, the
others read again and decide again. ``fire_tick`` stages its job file in the
schedule's folder, then publishes the version that claims the tick, the job's
staged name in it, refused when the schedule is gone, paused, past the tick or the
tick has a key; the winner then makes the tick's key and renames the job into
``pending/``. Both steps are idempotent (the staged file renames once), and every
reader of a schedule takes them for the newest version too, before any writer
replaces it: a winner that dies in between still gets its job queued, exactly once,
and every claimed tick but the newest version's has its key. Older versions are
deleted as newer ones land; a writer whose slot was deleted under it finds a newer
version than its own and withdraws. The sweep (``sweep_schedules``) deletes keys
``TICKS_KEPT_SECS`` older than the newest, and a removed schedule's files, and
staged jobs no version names, that old.

A job that waits for others (``Job.depends_on``) is parked: its folder in ``parked/``
(``JOB`` and ``DEP`` are job ids as folder names) gets a ``.wait`` marker per job it
waits for, in one of 256 buckets (``BB``, from a CRC of ``DEP``, so a count lists a few
names however many it waits for), and ``deps/`` an entry per edge, then its job file,
last: a job file there means every edge of it is written. The ack of a job with a
``deps/`` folder resolves it before unlinking its file, so a crash between the two runs
it again. Resolving a finished job counts each edge once, by the one unlink (succeeded)
or rename to ``.failed`` that wins. After a success, the counter that empties a bucket
removes it and the one that finds no bucket left decides; after a failure, its counter
decides: the markers are checked one by one, the job file seen again, and the job is
released — renamed into ``pending/`` as if enqueued now, which one racer wins — or
cancelled: what waits for it is resolved first, then a note of why goes to
``cancelled/``, then its file is unlinked, and the unlink that wins reports it. Every
step is idempotent and leaves the job parked until its file goes, so a process killed
part-way leaves it for the next resolve of the same job, or for the sweep
(``sweep_dependencies``, with the one for dead submits) that ends every parked job
whose markers decide it and, once ``NEVER_ENQUEUED_GRACE_SECS`` old, records the
cancelled notes whose job's record still waits and deletes what a dead resolve or
submit left behind.

Flow control (``flow.py`` keeps its files): a claim skips the folders of paused queues
(their expired leases too), and checks a job's limits once its file is in ``claimed/``:
a concurrency slot, then a token of its task's bucket, each taken by compare-and-swap on
a small versioned state. A job a limit holds back is renamed back to ``pending/``, its
attempt uncounted and due when the limit may allow it, with a note of its hold tag; at
most ``HOLD_ROUNDS`` times ``n`` are held back per claim, and the claim goes on past them.
The end of a claim (ack, nack, release, ``hold``) frees the slot the process took, then
wakes the first job held back on the key that is not due yet; a claim that held jobs
back looks at the slots once more at its end, so a slot freed meanwhile is not missed.
Unique keys are taken before a submit writes records or files, and let go by the ack of
a final outcome, a cancel or ``clear``. None of this is one atomic step with the job's
rename: each step is ordered so that a crash between two leaves a limit stricter for a
while (a slot no longer live, a key whose job is gone), never looser, and the next claim
or submit that needs it finds it stale. With no limited job, no paused queue and no hold,
a claim costs two listings more (``paused/``, ``holds/``) and a settle nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nuvom.backends.common import QuarantiningQueue
from nuvom.backends.contract import (
    TICKS_KEPT_SECS,
    BaseResultBackend,
    Claimed,
    DeadLetter,
    Duplicates,
    Hold,
    Queues,
    QueueStats,
    Resolved,
    TwoStepWriter,
    cancel_reason,
    duplicate_reason,
    finished_before,
    preview_of,
    waits,
)
from nuvom.backends.file import flow as flows
from nuvom.backends.file import store as fs
from nuvom.errors import BackendUnavailable, CorruptJob, NuvomError, SerializationError
from nuvom.job import MAX_PRIORITY, MIN_PRIORITY, Job, JobStatus
from nuvom.limits import UniqueKey, concurrency_of, concurrency_tag, rate_tag, unique_of
from nuvom.records import ErrorInfo, JobPayloadCodec, Outcome, Schedule

if TYPE_CHECKING:
    from nuvom.config import Settings

log = logging.getLogger("nuvom.file")

FORMAT_VERSION = 1  # bump when the job file layout changes
SCHEDULE_FORMAT_VERSION = 1  # bump when the schedule file layout changes
SCHEDULE_SUFFIX = ".sched"
TICK_SUFFIX = ".tick"
JOB_SUFFIX = ".job"
CORRUPT_SUFFIX = ".corrupt"
REASON_SUFFIX = ".reason"
INTENT_SUFFIX = ".sub"
WAIT_SUFFIX = ".wait"  # parked/<job>/<bucket>/<dep>.wait: the job still waits for dep
FAILED_SUFFIX = ".failed"  # parked/<job>/<bucket>/<dep>.failed: dep did not succeed (counted)
CANCELLED_SUFFIX = ".cancelled"  # cancelled/<job>.cancelled: a parked job cancelled, and why
STRAY_FOLDER = "_"  # corrupt/_/ keeps files found outside any queue folder (no queue is "_")
MICROS_PER_SEC = fs.MICROS_PER_SEC
NEVER_ENQUEUED_GRACE_SECS = 300.0  # seconds after which a submit's note means its producer died
SWEEP_EVERY_SECS = 60.0  # seconds between two looks for submits that died half-way
HOLD_ROUNDS = 4  # a claim of n holds back this many times n candidates (MIN_HOLDS at least)
MIN_HOLDS = 4_000  # ... (as the SQL and Redis claims) then stops once it took a job; one that
# took none reads on for at most
HOLDING_SECS = 1.0  # this long: a queue full of held jobs must not look empty to a worker
FLOW_RETRY_SECS = 1.0  # a job whose limits could not be checked (I/O error) waits this long
NEVER_ENQUEUED = "NeverEnqueued"  # error type of a job recorded by a submit that died half-way
NEVER_ENQUEUED_REASON = "the producer stopped after recording the job and before queueing it"
_STRING = struct.Struct(">H")  # length prefix of the id and queue stored in a job file
_PENDING_NAME = re.compile(r"([0-9]{10})_([0-9]{17})_([0-9]{20})_([0-9]{1,10})_([^_]+)")
_CLAIMED_NAME = re.compile(r"([0-9]{17})_([^_]+)_(.+)", re.DOTALL)
_INTENT_NAME = re.compile(r"([0-9]{17})_[0-9a-f-]+" + re.escape(INTENT_SUFFIX))
_VERSION_NAME = re.compile(r"([0-9]{20})" + re.escape(SCHEDULE_SUFFIX))
_STAGED_NAME = re.compile(r"[0-9a-f]+-[0-9a-f]{12}" + re.escape(JOB_SUFFIX))
_TICK_NAME = re.compile(r"[0-9a-f]{16}" + re.escape(TICK_SUFFIX))
_BUCKET = re.compile(r"[0-9a-f]{2}")
_TICK_BITS = struct.Struct(">d")


_micros = fs.micros


class _Stamp:
    """Enqueue stamps: wall-clock nanoseconds, strictly rising within this process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


_STAMP = _Stamp()


@dataclass(frozen=True, slots=True)
class _Entry:
    """A job file's name, parsed."""

    queue_dir: str
    name: str
    priority: int
    due_us: int
    seq: str
    attempts: int
    id_field: str

    def pending_name(self, *, attempts: int, due_us: int | None = None) -> str:
        due = self.due_us if due_us is None else due_us
        prio = MAX_PRIORITY - self.priority
        return f"{prio:010d}_{due:017d}_{self.seq}_{attempts}_{self.id_field}{JOB_SUFFIX}"


class _Flow(NamedTuple):
    """What the end of a claim must undo: the concurrency slot it took (the key, and the
    claim's token when this process took it) and the job's unique key."""

    conc: str | None = None
    token: str | None = None
    unique: UniqueKey | None = None


NO_FLOW = _Flow()


@dataclass(frozen=True, slots=True)
class _Held:
    """A claimed job file, parsed: the job's entry plus its lease, and (when this process
    claimed it) what its end must undo; None: not known here, the file says."""

    entry: _Entry
    lease_us: int
    owner: str
    flow: _Flow | None = None


@dataclass(frozen=True, slots=True)
class _BadName:
    """A file in the queue's folders whose name (or folder) is not one this queue writes."""

    path: Path
    queue_dir: str  # the corrupt/ subfolder it goes to
    reason: str


def _parse_pending(queue_dir: str, name: str) -> _Entry:
    """A pending file's name, parsed; raises ``DecodeFailure`` saying what is wrong with it."""
    if not name.endswith(JOB_SUFFIX):
        raise fs.DecodeFailure(f"not a job file name (no {JOB_SUFFIX} suffix)")
    match = _PENDING_NAME.fullmatch(name[: -len(JOB_SUFFIX)])
    if match is None:
        raise fs.DecodeFailure("not a job file name (want PRIORITY_DUE_SEQ_ATTEMPTS_ID.job)")
    prio, due, seq, attempts, id_field = match.groups()
    priority = MAX_PRIORITY - int(prio)
    if priority < MIN_PRIORITY:
        raise fs.DecodeFailure(f"not a job file name (priority field {prio} is out of range)")
    if int(attempts) > MAX_PRIORITY:
        raise fs.DecodeFailure(f"not a job file name (attempts field {attempts} is out of range)")
    try:
        fs.decode_field(id_field)
    except fs.DecodeFailure as exc:
        raise fs.DecodeFailure(f"not a job file name (job id field: {exc})") from None
    return _Entry(queue_dir, name, priority, int(due), seq, int(attempts), id_field)


def _parse_claimed(queue_dir: str, name: str) -> _Held:
    """A claimed file's name, parsed; raises ``DecodeFailure`` saying what is wrong with it."""
    match = _CLAIMED_NAME.fullmatch(name)
    if match is None:
        raise fs.DecodeFailure("not a claimed job file name (want LEASE_OWNER_<pending name>)")
    lease, owner, rest = match.groups()
    try:
        fs.decode_field(owner)
    except fs.DecodeFailure as exc:
        raise fs.DecodeFailure(f"not a claimed job file name (owner field: {exc})") from None
    entry = _parse_pending(queue_dir, rest)
    return _Held(_Entry(queue_dir, name, *_fields(entry)), int(lease), owner)


def _maybe_pending(queue_dir: str, name: str) -> _Entry | None:
    try:
        return _parse_pending(queue_dir, name)
    except fs.DecodeFailure:
        return None


def _fields(entry: _Entry) -> tuple[int, int, str, int, str]:
    return entry.priority, entry.due_us, entry.seq, entry.attempts, entry.id_field


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    """``path``'s entries but hidden ones (``.nfs*`` and the like)."""
    try:
        return [entry for entry in os.scandir(path) if not entry.name.startswith(".")]
    except FileNotFoundError:
        return []


def _corrupt_dirs(corrupt_dir: Path) -> list[str]:
    return sorted(entry.name for entry in _scandir(corrupt_dir) if entry.is_dir())


@dataclass(frozen=True, slots=True)
class _Letter:
    """A quarantined file as the dead letters read it: the id it is listed under, and what
    reviving it takes (its bytes, and its name parsed when the name is one this queue writes)."""

    id: str
    queue: str
    reason: str
    quarantined_at: float | None
    path: Path  # corrupt/<queue folder>/<name>.corrupt
    data: bytes
    entry: _Entry | None

    @property
    def reason_path(self) -> Path:
        return self.path.with_name(self.path.name[: -len(CORRUPT_SUFFIX)] + REASON_SUFFIX)

    def letter(self) -> DeadLetter:
        return DeadLetter(self.id, self.queue, self.reason, self.quarantined_at,
                          preview_of(self.data))  # fmt: skip


def _is_queue_folder(queue_dir: str) -> bool:
    if queue_dir == STRAY_FOLDER:
        return False
    try:
        fs.decode_field(queue_dir, directory=True)
    except fs.DecodeFailure:
        return False
    return True


def _entry_of_letter(queue_dir: str, name: str) -> _Entry | None:
    """The job file name a quarantined file had (claimed, or pending), parsed; None when it
    was a name this queue never writes."""
    try:
        return _parse_claimed(queue_dir, name).entry
    except fs.DecodeFailure:
        return _maybe_pending(queue_dir, name)


@dataclass(frozen=True, slots=True)
class _Fire:
    """A tick a schedule version claimed, and the job file it staged (if any) in the
    schedule's folder, to be renamed to ``pending/<queue_dir>/<name>``."""

    tick: float
    staged: str | None = None
    queue_dir: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class _Version:
    """One version file of a schedule: the schedule (None: removed) and, for a fire, the
    tick it claimed."""

    number: int
    schedule: Schedule | None
    fire: _Fire | None = None
    token: str | None = None  # names this version; the next one names it as its ``after``
    after: str | None = None

    @property
    def live(self) -> bool:
        return self.schedule is not None


# What a change of a schedule publishes: the schedule (None: removed) and the fire it claims.
_Change = tuple[Schedule | None, _Fire | None]


def _version_name(number: int) -> str:
    return f"{number:020d}{SCHEDULE_SUFFIX}"


def _version_numbers(folder: Path) -> list[int]:
    """The version numbers in a schedule's folder, lowest first."""
    numbers = []
    for name in _listdir(folder):
        match = _VERSION_NAME.fullmatch(name)
        if match is not None:
            numbers.append(int(match[1]))
    return sorted(numbers)


def _tick_name(tick: float) -> str:
    """A tick's key file: the float's 64 bits in hex, so equal ticks (only) share a key."""
    return _TICK_BITS.pack(tick + 0.0).hex() + TICK_SUFFIX  # + 0.0: -0.0 is 0.0


def _tick_of(name: str) -> float | None:
    if _TICK_NAME.fullmatch(name) is None:
        return None
    (tick,) = _TICK_BITS.unpack(bytes.fromhex(name[: -len(TICK_SUFFIX)]))
    return float(tick)


def _parse_fire(stored: object) -> _Fire:
    """A stored fire, checked: its names come from a file, and name files to rename."""
    if not isinstance(stored, list) or len(stored) != 4:
        raise fs.DecodeFailure("bad fire: not [tick, staged, queue folder, name]")
    tick, staged, queue_dir, name = stored
    if isinstance(tick, bool) or not isinstance(tick, int | float):
        raise fs.DecodeFailure("bad fire: its tick is not a number")
    if staged is None:
        return _Fire(float(tick))
    if not isinstance(staged, str) or _STAGED_NAME.fullmatch(staged) is None:
        raise fs.DecodeFailure(f"bad fire: {staged!r} is not a staged job file name")
    if not isinstance(queue_dir, str) or not isinstance(name, str):
        raise fs.DecodeFailure("bad fire: queue folder or name")
    fs.decode_field(queue_dir, directory=True)
    _parse_pending(queue_dir, name)
    return _Fire(float(tick), staged, queue_dir, name)


def _key(job_id: str) -> str:
    """A job id as a folder or marker name in ``parked/`` and ``deps/`` (case-folding safe)."""
    return fs.encode_field(job_id, directory=True)


def _bucket(dep_key: str) -> str:
    """The subfolder of a parked folder that holds the marker of ``dep_key``: 256 of them
    keep a folder small however many jobs one waits for, so a count lists few names."""
    return f"{zlib.crc32(dep_key.encode()) & 0xFF:02x}"


def _waits_in(bucket: Path) -> bool:
    """Whether a bucket still holds a ``.wait`` marker."""
    try:
        with os.scandir(bucket) as entries:
            return any(entry.name.endswith(WAIT_SUFFIX) for entry in entries)
    except FileNotFoundError:
        return False


def _parked_entry(name: str) -> _Entry | None:
    """A parked job file's name (``<queue>_<pending name>``), parsed; None if it is not one."""
    if not name.endswith(JOB_SUFFIX):
        return None
    queue_dir, _, pending = name.partition("_")
    return _maybe_pending(queue_dir, pending)


def _parked_name(names: Iterable[str]) -> str | None:
    """The job file among a parked folder's names: the newest, should a new park race an old."""
    found = [(entry.seq, name) for name in names if (entry := _parked_entry(name)) is not None]
    return max(found)[1] if found else None


def _failing(folder: Path, deps: Sequence[str], by: str | None) -> list[str] | None:
    """Which of ``deps`` a parked job saw fail, marker by marker: the first found (``by``
    looked at first), ``[]`` when all succeeded, None while one still waits and none failed.
    A marker is looked for as ``.wait`` first: it only ever becomes ``.failed`` or goes."""
    waiting = False
    for dep in dict.fromkeys([by, *deps] if by is not None and by in deps else deps):
        dep_key = _key(dep)
        bucket = folder / _bucket(dep_key)
        if (bucket / f"{dep_key}{WAIT_SUFFIX}").exists():
            waiting = True
        elif (bucket / f"{dep_key}{FAILED_SUFFIX}").exists():
            return [dep]
    return None if waiting else []


def _touch(path: Path) -> None:
    """Create an empty file, and its folder again should a cleanup remove it meanwhile."""
    for _ in range(2):
        try:
            path.touch()
            return
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


@dataclass(frozen=True, slots=True)
class _Unpark:
    """A parked job found cancelled, removed once what waits for it is resolved: its file
    unlinked (``path``; None when set aside already), and reported by the unlink that wins."""

    key: str
    job_id: str
    reason: str
    path: Path | None
    deps: tuple[str, ...]
    order: int = 0  # when it was decided: reported in that order
    unique: UniqueKey | None = None  # its key, let go once it is cancelled


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


class FileJobQueue(fs.FileBackend, QuarantiningQueue):
    name = "file"
    shared_across_processes = True
    keeps_dependencies = True
    keeps_limits = True
    honours_refusals = True
    folders = (
        "pending", "claimed", "corrupt", "submitting", "schedules", "ticks", "parked", "deps",
        "cancelled", "tmp", *flows.FOLDERS,
    )  # fmt: skip
    what = "the file queue"

    @staticmethod
    def default_directory(settings: Settings) -> Path:
        return settings.file_queue_dir

    def ready(self) -> None:
        self.pending_dir = self.root / "pending"
        self.claimed_dir = self.root / "claimed"
        self.corrupt_dir = self.root / "corrupt"
        self.submitting_dir = self.root / "submitting"
        self.schedules_dir = self.root / "schedules"
        self.ticks_dir = self.root / "ticks"
        self.parked_dir = self.root / "parked"
        self.deps_dir = self.root / "deps"
        self.cancelled_dir = self.root / "cancelled"
        self.tmp_dir = self.root / "tmp"
        self.payloads = JobPayloadCodec(self.codec)
        self._made_dirs: set[Path] = set()
        # Where this process last put each job it holds, so ack/heartbeat skip a listing.
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        # One change at a time to a file this process holds: a heartbeat renaming it
        # under an ack would leave the renamed file claimed, and the job run again.
        self._moving = threading.RLock()
        self._next_sweep = float("-inf")  # clock time of the next look for dead submits
        self._next_schedule_sweep = float("-inf")  # and of the next sweep of schedules/
        self.flow = flows.FlowControl(
            self.root,
            self._writer,
            self.codec,
            leases=self._leases,
            stored=self._stored,
            stale_secs=NEVER_ENQUEUED_GRACE_SECS,
            read_only=self.read_only,
        )

    # -- files -------------------------------------------------------------
    def _dir(self, area: Path, queue_dir: str) -> Path:
        path = area / queue_dir
        if path not in self._made_dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(path)
        return path

    def _queue_dirs(
        self, area: Path, queues: Sequence[str] | None, bad: list[_BadName] | None = None
    ) -> list[str]:
        """The queue folders in ``pending/`` or ``claimed/`` (those of ``queues`` when given).

        A folder whose name no queue has and a file outside any folder are left
        out, and each such file is added to ``bad``: they hold no job this queue can run.
        """
        if queues:
            return sorted({fs.encode_field(q, directory=True) for q in queues})
        found = []
        for entry in _scandir(area):
            if not entry.is_dir():
                if bad is not None:
                    bad.append(_BadName(Path(entry.path), STRAY_FOLDER, "not in a queue folder"))
                continue
            try:
                fs.decode_field(entry.name, directory=True)
            except fs.DecodeFailure as exc:
                if bad is not None:
                    reason = f"its folder is not a queue folder: {exc}"
                    bad.extend(
                        _BadName(Path(entry.path) / name, entry.name, reason)
                        for name in _listdir(Path(entry.path))
                        if not name.startswith(".")
                    )
                continue
            found.append(entry.name)
        return sorted(found)

    def _encode(self, job: Job) -> tuple[str, bytes]:
        payload = self.payloads.encode(job)
        body = b"".join(
            _STRING.pack(len(text)) + text for text in (job.id.encode(), job.queue.encode())
        )
        return fs.encode_field(job.queue, directory=True), fs.frame(body + payload, FORMAT_VERSION)

    @staticmethod
    def _header(body: bytes) -> tuple[str, str, int]:
        """The job id and queue at the start of a job file's body, and where the payload starts."""
        texts: list[str] = []
        offset = 0
        try:
            for _ in range(2):
                (length,) = _STRING.unpack_from(body, offset)
                offset += _STRING.size
                if offset + length > len(body):
                    raise fs.DecodeFailure("bad id/queue header: cut short")
                texts.append(body[offset : offset + length].decode())
                offset += length
        except (struct.error, UnicodeDecodeError) as exc:
            raise fs.DecodeFailure(f"bad id/queue header: {exc}") from None
        return texts[0], texts[1], offset

    def _decode(self, data: bytes, entry: _Entry, due_us: int) -> Job:
        """Rebuild a job from its file; raises ``DecodeFailure`` with the reason."""
        body = fs.unframe(data, FORMAT_VERSION)
        job_id, queue, offset = self._header(body)
        if fs.encode_field(job_id) != entry.id_field:
            raise fs.DecodeFailure(f"file holds job {job_id!r}, its name says {entry.id_field!r}")
        if fs.encode_field(queue, directory=True) != entry.queue_dir:
            raise fs.DecodeFailure(
                f"file holds a job of queue {queue!r}, its folder is {entry.queue_dir!r}"
            )
        try:
            return self.payloads.decode(
                body[offset:],
                job_id=job_id,
                queue=queue,
                priority=entry.priority,
                attempts=entry.attempts,
                due_at=due_us / MICROS_PER_SEC,
            )
        except CorruptJob as exc:
            raise fs.DecodeFailure(str(exc)) from None

    def _quarantine(self, path: Path, queue_dir: str, reason: str) -> Path | None:
        """Move ``path`` aside as ``*.corrupt`` with a ``.reason`` file; log it once.

        Returns where it went, or None when another process quarantined it first.
        """
        target_dir = self._dir(self.corrupt_dir, queue_dir)
        target = target_dir / f"{path.name}{CORRUPT_SUFFIX}"
        try:
            fs.replace(path, target)
        except FileNotFoundError:
            return None  # another process quarantined it first, and logged it
        fs.write_atomically(
            self._writer,
            target_dir / f"{path.name}{REASON_SUFFIX}",
            f"{reason}\n".encode(),
            durable=False,
        )
        log.warning("quarantined %s: %s", target, reason)
        return target

    def _set_aside(self, bad: Sequence[_BadName], claimed: Claimed) -> None:
        """Quarantine files with bad names; report the job each holds, when its body says.

        Only the body is trusted for the id: a name that does not parse proves nothing.
        """
        for found in bad:
            reason = f"job file {found.path.name!r}: {found.reason}"
            try:
                target = self._quarantine(found.path, found.queue_dir, reason)
            except OSError as exc:  # a folder where a file was expected, and the like
                log.warning("cannot quarantine %s (%s): %s", found.path, reason, exc)
                continue
            if target is None:
                continue
            try:
                job_id, _, _ = self._header(fs.unframe(target.read_bytes(), FORMAT_VERSION))
            except (fs.DecodeFailure, OSError):
                continue  # not a job file at all: there is no job to fail
            claimed.quarantined.append((job_id, reason))

    # -- producing -------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> Duplicates:
        if not jobs:
            return {}
        now_us = _micros(self.clock.time())
        files = [self._job_file(job, now_us) for job in jobs]  # all checked before any is written
        duplicates = self._take_keys(jobs)
        self._write_jobs(jobs, files, duplicates)
        return duplicates

    def _take_keys(self, jobs: Sequence[Job]) -> Duplicates:
        """Take the unique key of each job that has one, before its file is written (a
        producer that dies in between leaves a key its job never took up, which the next
        submit takes over once ``NEVER_ENQUEUED_GRACE_SECS`` old); those held by another
        job are returned, with the holder's id."""
        duplicates: Duplicates = {}
        now = self.clock.time()
        try:
            for job in jobs:
                unique = job.unique
                if unique is not None:
                    queue_dir = fs.encode_field(job.queue, directory=True)
                    holder = self.flow.take_key(unique, job.id, queue_dir, now)
                    if holder is not None:
                        duplicates[job.id] = holder
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot take unique keys in {self.flow.unique_dir}: {exc}", backend=self.name
            ) from exc
        return duplicates

    def _write_jobs(
        self,
        jobs: Sequence[Job],
        encoded: Sequence[tuple[str, str, bytes]],
        duplicates: Duplicates,
    ) -> None:
        """Write the job files (parked for those that wait for others), less ``duplicates``."""
        files = []
        parked = []
        for job, (queue_dir, name, data) in zip(jobs, encoded, strict=True):
            if duplicates and job.id in duplicates:
                continue
            if job.depends_on:
                parked.append((job, queue_dir, name, data))
            else:
                files.append((self._dir(self.pending_dir, queue_dir) / name, data))
        try:
            if files:
                fs.write_many_atomically(self._writer, files)
                if self._writer.sync:
                    for directory in {target.parent for target, _ in files}:
                        fs.fsync_directory(directory)
            if parked:
                self._park_many(parked)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot write jobs to {self.pending_dir}: {exc}", backend=self.name
            ) from exc

    def _job_file(self, job: Job, now_us: int) -> tuple[str, str, bytes]:
        """``job``'s file as ``enqueue_many`` writes it: its queue folder, name and bytes."""
        queue_dir, data = self._encode(job)
        due_us = _micros(job.due_at) if job.due_at is not None else now_us
        stamp = f"{_STAMP.next():020d}"
        entry = _Entry(
            queue_dir, "", job.priority, due_us, stamp, job.attempts, fs.encode_field(job.id)
        )
        return queue_dir, entry.pending_name(attempts=job.attempts), data

    def check_jobs(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._encode(job)

    # -- workflows: jobs that wait for other jobs ------------------------------
    def _park_many(self, parked: Sequence[tuple[Job, str, str, bytes]]) -> None:
        """Park jobs: each one's ``.wait`` markers and ``deps/`` entries, then its job file."""
        folders: dict[Path, list[str]] = {}
        made: list[Path] = []
        files = []
        for job, queue_dir, name, data in parked:
            key = _key(job.id)
            folder = self.parked_dir / key
            folders.setdefault(folder, _listdir(folder))  # parked before: replaced below
            for dep in dict.fromkeys(job.depends_on):
                dep_key = _key(dep)
                bucket = folder / _bucket(dep_key)
                _touch(bucket / f"{dep_key}{WAIT_SUFFIX}")
                _touch(self.deps_dir / dep_key / key)
                made += (bucket, self.deps_dir / dep_key)
            files.append((folder / f"{queue_dir}_{name}", data))
        self._writer.sync_directories([*made, *folders])
        fs.write_many_atomically(self._writer, files)
        self._writer.sync_directories(folders)
        for folder, before in folders.items():
            for name in before:
                if _parked_entry(name) is not None:
                    fs.unlink(folder / name)

    def resolve(self, finished: Sequence[tuple[str, bool]]) -> Resolved:
        return self._resolve(list(reversed(finished)))

    def _resolve(
        self, stack: list[tuple[str, bool] | _Unpark], looks: Sequence[str] = ()
    ) -> Resolved:
        """Count each ``(job id, succeeded)`` on the stack for what waits for it, and decide
        the parked jobs that ends (``looks``: parked folders to decide first, counting
        nothing). Depth first, so a job cancelled is unlinked only once what waits for it
        is resolved: until then a crash leaves it parked, for the next resolve or the sweep.
        """
        resolved = Resolved()
        cancelled: list[_Unpark] = []
        order = itertools.count()
        try:
            self._decide(looks, None, resolved, stack, order)
            while stack:
                step = stack.pop()
                if isinstance(step, _Unpark):
                    self._write_tombstone(step)
                    if step.path is None or fs.unlink(step.path):
                        cancelled.append(step)
                        self._drop_parked(step.key, step.deps)
                        if step.unique is not None:
                            self.flow.let_go(step.unique, step.job_id, self.clock.time(),
                                             finished=False)  # fmt: skip
                    continue
                dep, succeeded = step
                dep_key = _key(dep)
                keys = sorted(k for k in _listdir(self.deps_dir / dep_key) if not k.startswith("."))
                for key in keys:
                    self._count(self.parked_dir / key, dep_key, succeeded)
                self._decide(keys, dep, resolved, stack, order, succeeded)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot resolve the jobs waiting in {self.parked_dir}: {exc}", backend=self.name
            ) from exc
        cancelled.sort(key=lambda step: step.order)
        resolved.cancelled = [(step.job_id, step.reason) for step in cancelled]
        return resolved

    def _count(self, folder: Path, dep_key: str, succeeded: bool) -> None:
        """Count one edge, once: the unlink (or rename to ``.failed``) of its marker that wins."""
        bucket = folder / _bucket(dep_key)
        wait = bucket / f"{dep_key}{WAIT_SUFFIX}"
        if succeeded:
            counted = fs.unlink(wait)
        else:
            try:
                fs.replace(wait, bucket / f"{dep_key}{FAILED_SUFFIX}")
                counted = True
            except FileNotFoundError:
                counted = False
        if counted:
            self._writer.sync_directories([bucket])

    def _decide(
        self,
        keys: Sequence[str],
        by: str | None,
        resolved: Resolved,
        stack: list[tuple[str, bool] | _Unpark],
        order: Iterator[int],
        succeeded: bool = False,
    ) -> None:
        found = []
        for key in keys:
            decided = self._advance(key, by, succeeded)
            if isinstance(decided, str):
                resolved.released.append(decided)
            elif decided is not None:
                found.append(dataclasses.replace(decided, order=next(order)))
        for unpark in reversed(found):
            stack.append(unpark)
            stack.append((unpark.job_id, False))  # resolved before the job's file goes

    def _advance(self, key: str, by: str | None, succeeded: bool) -> str | _Unpark | None:
        """Decide the job parked in ``parked/<key>`` if its markers do (``by``: the job just
        counted, ``succeeded`` or not; None for the sweep): its id when this call released
        it, an ``_Unpark`` when it is to be cancelled, None while it waits or once it is gone.

        After a success, the last to empty a bucket removes it, and the one that finds no
        bucket left decides; a bucket a ``.failed`` keeps is for the job that failed to
        decide on (or the sweep). Counted markers never change back and nothing is deleted
        before the job file goes, so the markers checked one by one, then the job file seen
        again, say what to do: a listing made while names change may miss one.
        """
        folder = self.parked_dir / key
        if by is not None and succeeded:
            bucket = folder / _bucket(_key(by))
            if _waits_in(bucket):
                return None
            with suppress(OSError):
                bucket.rmdir()
        names = _listdir(folder)
        name = _parked_name(names)
        if name is None:
            return None
        if by is not None and succeeded and any(_BUCKET.fullmatch(n) for n in names):
            return None
        path = folder / name
        try:
            job = self._read_parked(path, name)
        except FileNotFoundError:
            return None
        except (fs.DecodeFailure, OSError) as exc:
            return self._set_parked_aside(key, path, name, str(exc))
        deps = tuple(dict.fromkeys(job.depends_on))
        failing = _failing(folder, deps, by)
        if failing is None:
            return None
        if bool(failing) is job.on_failure:
            return job.id if self._release(key, name, deps) else None
        if not path.exists():
            return None  # decided meanwhile
        if failing:
            reason = cancel_reason(failing[0], False)
        else:
            last = by if by in deps else (deps[-1] if deps else job.id)
            reason = cancel_reason(str(last), True)
        return _Unpark(key, job.id, reason, path, deps, unique=job.unique)

    def _release(self, key: str, name: str, deps: Sequence[str]) -> bool:
        """Rename a parked job into ``pending/`` as if enqueued now; False when another
        process decided it first."""
        folder = self.parked_dir / key
        queue_dir, _, pending = name.partition("_")
        entry = _parse_pending(queue_dir, pending)
        now = dataclasses.replace(
            entry, due_us=_micros(self.clock.time()), seq=f"{_STAMP.next():020d}"
        )
        target = self._dir(self.pending_dir, queue_dir) / now.pending_name(attempts=entry.attempts)
        try:
            fs.replace(folder / name, target)
        except FileNotFoundError:
            return False
        self._writer.sync_directories([target.parent, folder])
        self._drop_parked(key, deps)
        return True

    def _drop_parked(self, key: str, deps: Sequence[str]) -> None:
        """Delete what a job decided (or cancelled) left in ``parked/`` and ``deps/``, an
        older job file of the same id included; the sweep removes ``deps/`` folders left
        empty. Idempotent."""
        folder = self.parked_dir / key
        names = _listdir(folder)
        buckets = [folder / name for name in names if _BUCKET.fullmatch(name)]
        markers = [bucket / name for bucket in buckets for name in _listdir(bucket)]
        dep_keys = {_key(dep) for dep in deps} | {m.name.rpartition(".")[0] for m in markers}
        for dep_key in sorted(dep_keys):
            fs.unlink(self.deps_dir / dep_key / key)  # the folder, emptied, is the sweep's
        for marker in markers:
            fs.unlink(marker)
        for bucket in buckets:
            with suppress(OSError):
                bucket.rmdir()
        for name in names:
            if _parked_entry(name) is not None:
                fs.unlink(folder / name)
        with suppress(OSError):
            folder.rmdir()

    def _write_tombstone(self, step: _Unpark) -> None:
        """Note a parked job cancelled, and why, before its file goes: a resolve killed
        before its caller records the cancellations leaves them to the sweep."""
        data = fs.frame(self.codec.dumps([step.job_id, step.reason]), FORMAT_VERSION)
        path = self.cancelled_dir / f"{step.key}{CANCELLED_SUFFIX}"
        fs.write_atomically(self._writer, path, data)

    def _record_tombstones(self, results: BaseResultBackend, cutoff: float) -> None:
        """Record CANCELLED the jobs of the notes older than ``cutoff`` that the resolve
        which cancelled them did not live to have recorded (their record still waits and
        no file of theirs is queued: not one submitted again), then delete those notes."""
        queued: set[str] | None = None
        for name in sorted(_listdir(self.cancelled_dir)):
            path = self.cancelled_dir / name
            if not name.endswith(CANCELLED_SUFFIX) or not _older(path, cutoff):
                continue
            try:
                job_id, reason = self.codec.loads(fs.unframe(path.read_bytes(), FORMAT_VERSION))
                status = results.get_status(str(job_id))
            except FileNotFoundError:
                continue  # another sweep took it
            except (fs.DecodeFailure, NuvomError, OSError, TypeError, ValueError) as exc:
                self._set_note_aside(path, str(exc), what="cancelled job note")
                continue
            if status is None or not status.is_final:
                queued = self._queued_id_fields() if queued is None else queued
                if fs.encode_field(str(job_id)) not in queued:
                    at = self.clock.time()
                    results.mark_dependents_cancelled([(str(job_id), str(reason))], at=at)
            fs.unlink(path)

    def _set_parked_aside(self, key: str, path: Path, name: str, why: str) -> _Unpark | None:
        """Quarantine a parked job file that cannot be read, and cancel its job (what waits
        for it in turn) when its folder's name says which."""
        reason = f"parked job file {name} cannot be decoded: {why}"
        queue_dir = name.partition("_")[0]
        try:
            fs.decode_field(queue_dir, directory=True)
            job_id = fs.decode_field(key, directory=True)
        except fs.DecodeFailure:
            queue_dir, job_id = STRAY_FOLDER, None
        if self._quarantine(path, queue_dir, reason) is None or job_id is None:
            return None
        return _Unpark(key, job_id, reason, None, ())

    def _read_parked(self, path: Path, name: str) -> Job:
        """The job in a parked file; raises ``DecodeFailure``, or ``OSError`` once it is gone."""
        queue_dir, _, pending = name.partition("_")
        entry = _parse_pending(queue_dir, pending)
        return self._decode(path.read_bytes(), entry, entry.due_us)

    def _parked_job(self, job_id: str) -> Job | None:
        folder = self.parked_dir / _key(job_id)
        name = _parked_name(_listdir(folder))
        if name is None:
            return None
        try:
            return self._read_parked(folder / name, name)
        except (fs.DecodeFailure, OSError):
            return None

    def parked_jobs(self) -> list[Job]:
        jobs = []
        for key in _listdir(self.parked_dir):
            folder = self.parked_dir / key
            name = _parked_name(_listdir(folder))
            if name is None:
                continue
            try:
                jobs.append(self._read_parked(folder / name, name))
            except FileNotFoundError:
                continue  # released or cancelled meanwhile
            except (fs.DecodeFailure, OSError) as exc:
                log.warning("skipping parked job file %s: %s", name, exc)
        return sorted(jobs, key=lambda job: job.id)

    def _cancel_parked(self, job_id: str) -> bool:
        key = _key(job_id)
        folder = self.parked_dir / key
        name = _parked_name(_listdir(folder))
        if name is None:
            return False
        try:
            job: Job | None = self._read_parked(folder / name, name)
        except (fs.DecodeFailure, OSError):
            job = None  # its markers still name what it waits for
        if not fs.unlink(folder / name):
            return False
        self._drop_parked(key, job.depends_on if job is not None else [])
        self._cancelled(job_id, job, None)  # a parked job is never held back
        return True

    def sweep_dependencies(
        self,
        results: BaseResultBackend | None = None,
        *,
        grace_secs: float = NEVER_ENQUEUED_GRACE_SECS,
    ) -> Resolved:
        """End what resolves killed part-way left: decide every parked job its markers decide,
        and delete the markers and ``deps/`` entries of jobs no longer parked once
        ``grace_secs`` old (by modification time: a submit writes them before its job file).
        With ``results``, the jobs it cancels are recorded there, and so are those a dead
        resolve cancelled without their record. Idempotent."""
        if self.read_only:
            return Resolved()
        cutoff = time.time() - grace_secs
        looks: list[str] = []
        try:
            for key in sorted(_listdir(self.parked_dir)):
                folder = self.parked_dir / key
                names = _listdir(folder)
                buckets = [folder / name for name in names if _BUCKET.fullmatch(name)]
                markers = [name for bucket in buckets for name in _listdir(bucket)]
                if _parked_name(names) is None:
                    files = [folder / n for n in names] + [
                        b / n for b in buckets for n in _listdir(b)
                    ]
                    if all(_older(path, cutoff) for path in files):
                        self._drop_parked(key, ())
                elif any(n.endswith(FAILED_SUFFIX) for n in markers) or not any(
                    n.endswith(WAIT_SUFFIX) for n in markers
                ):
                    looks.append(key)
            for dep_key in _listdir(self.deps_dir):
                edges = self.deps_dir / dep_key
                kept = 0
                for key in _listdir(edges):
                    stale = _older(edges / key, cutoff) and self._parked_job_gone(key)
                    kept += not (stale and fs.unlink(edges / key))
                if not kept:
                    with suppress(OSError):  # an edge added meanwhile keeps it
                        edges.rmdir()
            if results is not None:
                self._record_tombstones(results, cutoff)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot sweep the jobs waiting in {self.parked_dir}: {exc}", backend=self.name
            ) from exc
        resolved = self._resolve([], looks)
        if results is not None and resolved.cancelled:
            results.mark_dependents_cancelled(resolved.cancelled, at=self.clock.time())
        return resolved

    def _parked_job_gone(self, key: str) -> bool:
        return _parked_name(_listdir(self.parked_dir / key)) is None

    # -- submits that died half-way ------------------------------------------
    def submit(self, jobs: Sequence[Job], results: BaseResultBackend) -> Duplicates:
        """A two-step submit, bracketed by a note in ``submitting/`` naming its jobs.

        The records are written before the files; a producer killed between the
        two leaves records no file backs, and nobody to tell. The note it leaves
        lets a claimer fail those jobs (``fail_never_enqueued``) instead of leaving
        them PENDING for ever. Unique keys are taken before the records, so a duplicate
        is never recorded.
        """
        writer = self._writer_for(results)
        if not jobs or not isinstance(writer, TwoStepWriter):
            return super().submit(jobs, results)
        self.check_jobs(jobs)  # a refused batch writes nothing, not even its note
        note = self._write_note(jobs)
        duplicates = self._take_keys(jobs)
        stored = [job for job in jobs if job.id not in duplicates] if duplicates else jobs
        results.record_enqueued(stored)  # TwoStepWriter.submit, less its check: done above
        late = self.enqueue_many(stored)  # their keys are theirs now: none is a duplicate
        if late:  # (only a key taken over in between could be) recorded: say why it never ran
            reasons = [(job_id, duplicate_reason(holder)) for job_id, holder in late.items()]
            results.mark_dependents_cancelled(reasons, at=self.clock.time())
            duplicates.update(late)
            stored = [job for job in stored if job.id not in late]
        if waits(stored):
            writer.note(self.resolve(finished_before(stored, results)))
        fs.unlink(note)  # a submit that raised keeps its note: some records may be stranded
        return duplicates

    def _write_note(self, jobs: Sequence[Job]) -> Path:
        written_us = _micros(self.clock.time())
        name = f"{written_us:017d}_{os.getpid():x}-{os.urandom(6).hex()}{INTENT_SUFFIX}"
        path = self.submitting_dir / name
        data = fs.frame(self.codec.dumps([job.id for job in jobs]), FORMAT_VERSION)
        try:
            fs.write_atomically(self._writer, path, data)  # durable before any record is
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot write to {self.submitting_dir}: {exc}", backend=self.name
            ) from exc
        return path

    def _read_note(self, path: Path) -> list[str]:
        """The job ids a note names; raises ``DecodeFailure``, or ``OSError`` when it is gone."""
        ids = self.codec.loads(fs.unframe(path.read_bytes(), FORMAT_VERSION))
        if not (isinstance(ids, list) and all(isinstance(job_id, str) for job_id in ids)):
            raise fs.DecodeFailure("not a list of job ids")
        return ids

    def claim(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        results: BaseResultBackend,
        queues: Queues = None,
    ) -> list[Job]:
        """The contract's claim, after a look (once every ``SWEEP_EVERY_SECS``) for dead submits
        and for what dead resolves left parked."""
        now = self.clock.time()
        with self._lock:
            sweep = now >= self._next_sweep
            if sweep:
                self._next_sweep = now + SWEEP_EVERY_SECS
        if sweep:
            try:
                self.fail_never_enqueued(results)
                self.sweep_dependencies(results)
                self.sweep_holds()
            except (OSError, NuvomError) as exc:  # the claim matters more; next sweep retries
                log.warning("looking for jobs that were never queued failed: %s", exc)
        return super().claim(
            n, worker_id=worker_id, lease_secs=lease_secs, results=results, queues=queues
        )

    def fail_never_enqueued(
        self, results: BaseResultBackend, *, grace_secs: float = NEVER_ENQUEUED_GRACE_SECS
    ) -> int:
        """Record FAILED ``NeverEnqueued`` each job of a dead submit; return how many.

        A note older than ``grace_secs`` outlived its submit: a job it names whose
        record still waits (PENDING or SCHEDULED) but which has no file in
        ``pending/`` or ``claimed/`` was recorded and never queued. Idempotent, and
        safe in several processes at once.
        """
        cutoff_us = _micros(self.clock.time() - grace_secs)
        notes = []
        for name in sorted(_listdir(self.submitting_dir)):
            match = _INTENT_NAME.fullmatch(name)
            if match is not None and int(match[1]) <= cutoff_us:
                notes.append(self.submitting_dir / name)
        if not notes:
            return 0
        named: list[str] = []
        for path in notes:
            try:
                named.extend(self._read_note(path))
            except FileNotFoundError:
                continue  # another claimer swept it
            except (fs.DecodeFailure, NuvomError, OSError) as exc:
                self._set_note_aside(path, str(exc))
        stranded = self._stranded(named, results)
        for job_id in stranded:
            results.set_error(job_id, ErrorInfo(NEVER_ENQUEUED, NEVER_ENQUEUED_REASON))
        self._end_dead_submit(named, stranded, results)
        for path in notes:
            fs.unlink(path)
        if stranded:
            log.warning(
                "%d jobs recorded FAILED %s: %s", len(stranded), NEVER_ENQUEUED,
                NEVER_ENQUEUED_REASON,
            )  # fmt: skip
        return len(stranded)

    def _end_dead_submit(
        self, job_ids: Sequence[str], stranded: Sequence[str], results: BaseResultBackend
    ) -> None:
        """What a dead submit left undone for jobs that wait: those it parked count what had
        finished before it, and what waits for a job never queued is cancelled."""
        parked = [job for job in map(self._parked_job, dict.fromkeys(job_ids)) if job is not None]
        finished = finished_before(parked, results) + [(job_id, False) for job_id in stranded]
        if finished:
            resolved = self.resolve(finished)
            if resolved.cancelled:
                results.mark_dependents_cancelled(resolved.cancelled, at=self.clock.time())

    def _stranded(self, job_ids: Sequence[str], results: BaseResultBackend) -> list[str]:
        """The ``job_ids`` whose records wait while no file of theirs is queued.

        Files are listed before the records are read: a job's file goes only after
        its record is final. A file moving between folders as they are listed (a
        release) could be missed, so the folders are listed again before answering.
        """
        queued = self._queued_id_fields()
        waiting = (JobStatus.PENDING, JobStatus.SCHEDULED)
        stranded = [
            job_id
            for job_id in dict.fromkeys(job_ids)
            if fs.encode_field(job_id) not in queued and results.get_status(job_id) in waiting
        ]
        if stranded:
            queued = self._queued_id_fields()
            stranded = [job_id for job_id in stranded if fs.encode_field(job_id) not in queued]
        return stranded

    def _queued_id_fields(self) -> set[str]:
        """The id field of every job file in ``claimed/``, ``parked/``, ``pending/``, then
        ``claimed/`` again."""
        fields: set[str] = set()
        for area in (self.claimed_dir, self.parked_dir, self.pending_dir, self.claimed_dir):
            for queue_dir in _listdir(area):
                fields.update(
                    name[: -len(JOB_SUFFIX)].rpartition("_")[2]
                    for name in _listdir(area / queue_dir)
                    if name.endswith(JOB_SUFFIX)
                )
        return fields

    def _set_note_aside(self, path: Path, reason: str, *, what: str = "submit note") -> None:
        try:
            fs.replace(path, path.with_name(path.name + CORRUPT_SUFFIX))
        except FileNotFoundError:
            return
        log.warning("set aside %s %s: %s", what, path, reason)

    # -- schedules ---------------------------------------------------------
    # Each change is a new version file published with ``fs.publish_exclusively``: the
    # writer that creates version n + 1 of a schedule is the one whose read of version n
    # counted (compare-and-swap); the others read again and decide again.
    def _schedule_folder(self, schedule_id: str) -> Path:
        return self.schedules_dir / fs.encode_field(schedule_id, directory=True)

    def _tick_key(self, folder: Path, tick: float) -> Path:
        return self.ticks_dir / folder.name / _tick_name(tick)

    @contextmanager
    def _schedule_io(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot use the schedules in {self.schedules_dir}: {exc}", backend=self.name
            ) from exc

    def save_schedule(self, schedule: Schedule) -> None:
        with self._schedule_io():
            self._change(schedule.id, lambda current: (schedule, None))

    def list_schedules(self) -> list[Schedule]:
        with self._schedule_io():
            found = [version.schedule for version in self._live_versions()]
        return sorted((s for s in found if s is not None), key=lambda s: s.id)

    def remove_schedule(self, schedule_id: str) -> bool:
        def removed(current: _Version | None) -> _Change | bool:
            if current is None or not current.live:
                return False
            return (None, None)

        with self._schedule_io():
            return self._change(schedule_id, removed)

    def pause_schedule(self, schedule_id: str, paused: bool) -> bool:
        def flipped(current: _Version | None) -> _Change | bool:
            if current is None or current.schedule is None:
                return False
            if current.schedule.paused == paused:
                return True
            return (dataclasses.replace(current.schedule, paused=paused), None)

        with self._schedule_io():
            return self._change(schedule_id, flipped)

    def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        self._maybe_sweep_schedules()
        due = [s for s in self.list_schedules() if not s.paused and s.next_run_at <= now]
        due.sort(key=lambda s: (s.next_run_at, s.id))
        return due[:limit]

    def next_schedule_at(self) -> float | None:
        times = [s.next_run_at for s in self.list_schedules() if not s.paused]
        return min(times) if times else None

    def fire_tick(
        self, schedule_id: str, tick: float, *, job: Job | None, next_run_at: float
    ) -> bool:
        folder = self._schedule_folder(schedule_id)
        with self._schedule_io():
            top, current = self._current(folder, repair=True)
            if self._claimable(folder, current, tick) is None:
                return False
            fire = self._stage(folder, job, tick) if job is not None else _Fire(tick)
            won = False
            # An error in here leaves the staged file: a version may name it (the sweep
            # deletes it a day later if none does).
            while not won and (schedule := self._claimable(folder, current, tick)) is not None:
                moved = dataclasses.replace(schedule, last_run_at=tick, next_run_at=next_run_at)
                if job is not None:
                    moved.last_job_id = job.id
                won = self._publish(folder, top, current, schedule_id, moved, fire)
                if not won:  # another writer moved the schedule: decide again
                    top, current = self._current(folder, repair=True)
            if fire.staged is not None and not won:
                fs.unlink(folder / fire.staged)
        if won:
            try:
                self._finish_fire(folder, fire)
            except (OSError, NuvomError) as exc:  # the tick is ours: the next reader ends it
                log.warning("ending schedule %s's tick %r failed: %s", schedule_id, tick, exc)
        return won

    def _claimable(self, folder: Path, current: _Version | None, tick: float) -> Schedule | None:
        """The schedule whose ``tick`` may be claimed; None: there is none, it is paused,
        ``tick`` is stale (before ``next_run_at``) or claimed already (its key is there:
        every fire but the newest version's has its key, and reading it made its key)."""
        if current is None or current.schedule is None:
            return None
        schedule, fire = current.schedule, current.fire
        if schedule.paused or tick < schedule.next_run_at or (fire and fire.tick == tick):
            return None
        return None if self._tick_key(folder, tick).exists() else schedule

    def _stage(self, folder: Path, job: Job, tick: float) -> _Fire:
        """Write ``job``'s file into the schedule's folder, ready to be renamed into ``pending/``."""
        queue_dir, name, data = self._job_file(job, _micros(self.clock.time()))
        staged = f"{os.getpid():x}-{os.urandom(6).hex()}{JOB_SUFFIX}"
        fs.write_atomically(self._writer, folder / staged, data)
        return _Fire(tick, staged, queue_dir, name)

    def _finish_fire(self, folder: Path, fire: _Fire) -> None:
        """End a fire its version claimed: make the tick's key, then queue its staged job
        (unless that is done: one rename wins). Idempotent; any reader may do it."""
        key = self._tick_key(folder, fire.tick)
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.touch()
            if self._writer.sync:
                fs.fsync_directory(key.parent)
        if fire.staged is not None:
            self._queue_staged(folder, fire)

    def _queue_staged(self, folder: Path, fire: _Fire) -> None:
        target = self._dir(self.pending_dir, fire.queue_dir) / fire.name
        try:
            fs.replace(folder / str(fire.staged), target)
        except FileNotFoundError:
            return  # queued already (and maybe run since)
        if self._writer.sync:
            fs.fsync_directory(target.parent)

    def _change(
        self, schedule_id: str, change: Callable[[_Version | None], _Change | bool]
    ) -> bool:
        """Publish ``change(current version)`` (the schedule, None: removed, and its fire) as
        the next version, reading again each time another writer gets there first; when
        ``change`` returns a bool, return that instead (nothing to write)."""
        folder = self._schedule_folder(schedule_id)
        while True:
            top, current = self._current(folder, repair=True)
            changed = change(current)
            if isinstance(changed, bool):
                return changed
            if self._publish(folder, top, current, schedule_id, *changed):
                return True

    def _publish(
        self,
        folder: Path,
        top: int,
        current: _Version | None,
        schedule_id: str,
        schedule: Schedule | None,
        fire: _Fire | None,
    ) -> bool:
        """Make ``schedule`` (and ``fire``) version ``top + 1``, written after ``current``;
        False if another writer made one first.

        The old versions but the last are deleted. A writer whose read was so old that its
        slot was deleted meanwhile finds a newer version than its own: it lost, and takes
        its file back (nobody read it as the newest, since a newer one was there first).
        A newer version can also be one written after this one — another writer read this
        one and moved on from it — and then this one won: the next version names the one
        it was written after by its token. (When even the next version is gone, three
        writers came and went meanwhile; this one calls itself lost, and the tick its fire
        claimed is still ended exactly once, by the reader that moved on.)
        """
        token = os.urandom(8).hex()
        record = self._dump_version(schedule_id, schedule, fire, token=token, after=current)
        number = top + 1
        path = folder / _version_name(number)
        try:
            won = fs.publish_exclusively(self._writer, path, record)
        except FileNotFoundError:  # the first version, or the folder was swept
            folder.mkdir(parents=True, exist_ok=True)
            if self._writer.sync:
                fs.fsync_directory(folder.parent)
            won = fs.publish_exclusively(self._writer, path, record)
        if not won:
            return False
        numbers = _version_numbers(folder)
        if numbers and numbers[-1] > number and not self._written_after(folder, number + 1, token):
            fs.unlink(path)
            return False
        try:
            for old in numbers:
                if old < number - 1:
                    fs.unlink(folder / _version_name(old))
        except BackendUnavailable as exc:  # Windows: a reader holds it open; the next write prunes
            log.debug("keeping an old schedule version for now: %s", exc)
        return True

    def _current(self, folder: Path, *, repair: bool) -> tuple[int, _Version | None]:
        """The highest version number in ``folder`` and the newest version that decodes.

        With ``repair``, the newest version's fire is ended (``_finish_fire``) in case its
        writer died before doing so; every writer reads with it, so no version replaces
        one whose fire is not ended.
        """
        while True:
            numbers = _version_numbers(folder)
            for number in reversed(numbers):
                path = folder / _version_name(number)
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    break  # deleted as an old version while listed: list again
                try:
                    version = self._load_version(data, number)
                except (fs.DecodeFailure, NuvomError) as exc:
                    if not self.read_only:
                        self._set_note_aside(path, str(exc), what="schedule file")
                    continue
                if repair and not self.read_only and version.fire is not None:
                    self._finish_fire(folder, version.fire)
                return (numbers[-1], version)
            else:
                return (numbers[-1] if numbers else 0, None)

    def _live_versions(self) -> list[_Version]:
        found = []
        for entry in _scandir(self.schedules_dir):
            if entry.is_dir():
                _, version = self._current(Path(entry.path), repair=True)
                if version is not None and version.live:
                    found.append(version)
        return found

    def _written_after(self, folder: Path, number: int, token: str) -> bool:
        """Whether version ``number`` was written after the version named ``token``."""
        try:
            data = (folder / _version_name(number)).read_bytes()
            return self._load_version(data, number).after == token
        except (FileNotFoundError, fs.DecodeFailure, NuvomError):
            return False

    def _dump_version(
        self,
        schedule_id: str,
        schedule: Schedule | None,
        fire: _Fire | None,
        *,
        token: str,
        after: _Version | None,
    ) -> bytes:
        record: dict[str, object] = {
            "id": schedule_id,
            "removed": schedule is None,
            "token": token,
            "after": None if after is None else after.token,
        }
        if schedule is not None:
            record.update(
                definition=schedule.definition(),
                next_run_at=schedule.next_run_at,
                paused=schedule.paused,
                last_run_at=schedule.last_run_at,
                last_job_id=schedule.last_job_id,
                fire=None if fire is None else [fire.tick, fire.staged, fire.queue_dir, fire.name],
            )
        return fs.frame(self.codec.dumps(record), SCHEDULE_FORMAT_VERSION)

    def _load_version(self, data: bytes, number: int) -> _Version:
        """A version file's schedule; raises ``DecodeFailure`` saying what is wrong."""
        record = self.codec.loads(fs.unframe(data, SCHEDULE_FORMAT_VERSION))
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise fs.DecodeFailure("not a schedule record")
        token, after = record.get("token"), record.get("after")
        if not isinstance(token, (str, type(None))) or not isinstance(after, (str, type(None))):
            raise fs.DecodeFailure("not a schedule record: its token is not text")
        if record.get("removed"):
            return _Version(number, None, token=token, after=after)
        try:
            schedule = Schedule.from_stored(
                record["id"],
                dict(record["definition"]),
                next_run_at=record["next_run_at"],
                paused=record["paused"],
                last_run_at=record["last_run_at"],
                last_job_id=record["last_job_id"],
            )
            fire = None if record["fire"] is None else _parse_fire(record["fire"])
        except (KeyError, TypeError, ValueError) as exc:
            raise fs.DecodeFailure(f"not a schedule record: {exc!r}") from None
        return _Version(number, schedule, fire, token=token, after=after)

    def _maybe_sweep_schedules(self) -> None:
        """Now and then (every ``SWEEP_EVERY_SECS``) delete what schedules left behind."""
        if self.read_only:
            return
        now = self.clock.time()
        with self._lock:
            if now < self._next_schedule_sweep:
                return
            self._next_schedule_sweep = now + SWEEP_EVERY_SECS
        try:
            self.sweep_schedules()
        except (OSError, NuvomError) as exc:  # the pass matters more; the next sweep retries
            log.warning("sweeping the schedules folders failed: %s", exc)

    def sweep_schedules(self, *, older_than_secs: float = TICKS_KEPT_SECS) -> int:
        """Delete what schedules leave behind once ``older_than_secs`` old, and return how
        many files went: the keys of ticks that much older than the newest, and the files
        of a schedule removed that long ago (by modification time), or those of a staged
        job no version names (its writer died before publishing, or lost)."""
        cutoff = time.time() - older_than_secs
        removed = 0
        swept: set[str] = set()
        for entry in _scandir(self.schedules_dir):
            if entry.is_dir():
                swept.add(entry.name)
                removed += self._sweep_schedule(Path(entry.path), cutoff, older_than_secs)
        for entry in _scandir(self.ticks_dir):
            if (
                entry.is_dir()
                and entry.name not in swept
                and not (self.schedules_dir / entry.name).exists()
            ):
                removed += self._delete_folder(Path(entry.path), _listdir(Path(entry.path)))
        return removed

    def _sweep_schedule(self, folder: Path, cutoff: float, older_than_secs: float) -> int:
        names = _listdir(folder)  # listed first: what is published after this is kept
        keys_folder = self.ticks_dir / folder.name
        keys = _listdir(keys_folder)
        _, current = self._current(folder, repair=True)
        if current is not None and not current.live:
            if not _older(folder / _version_name(current.number), cutoff):
                return 0
            return self._delete_folder(keys_folder, keys) + self._delete_folder(folder, names)
        held = current.fire.staged if current is not None and current.fire is not None else None
        removed = sum(
            fs.unlink(folder / name)
            for name in names
            if name.endswith(JOB_SUFFIX) and name != held and _older(folder / name, cutoff)
        )
        ticks = {name: _tick_of(name) for name in keys}
        newest = max((t for t in ticks.values() if t is not None), default=None)
        if newest is not None:
            removed += sum(
                fs.unlink(keys_folder / name)
                for name, tick in ticks.items()
                if tick is not None and tick < newest - older_than_secs
            )
        if not _listdir(folder):
            self._delete_folder(folder, [])  # a first save that died before publishing
        return removed

    @staticmethod
    def _delete_folder(folder: Path, names: Sequence[str]) -> int:
        """Delete ``names`` in ``folder``, then the folder if that emptied it."""
        removed = sum(fs.unlink(folder / name) for name in names)
        with suppress(OSError):  # not empty: a schedule saved again meanwhile keeps it
            folder.rmdir()
        return removed

    # -- reading the folders ----------------------------------------------
    def _pending(
        self,
        queues: Sequence[str] | None,
        bad: list[_BadName] | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> Iterator[_Entry]:
        """Waiting jobs in claim order, the newest file per id, parsed only as they are read
        (those of the queue folders in ``skip`` left out: paused queues, for a claim).

        Older duplicates of an id are removed. Files whose names do not parse are
        skipped, and added to ``bad`` (a claim quarantines them and fails their jobs).
        """
        listed: list[tuple[str, str]] = []
        for queue_dir in self._queue_dirs(self.pending_dir, queues, bad):
            if queue_dir in skip:
                continue
            listed.extend(
                (name, queue_dir)
                for name in _listdir(self.pending_dir / queue_dir)
                if not name.startswith(".")
            )
        listed.sort()  # fixed-width names: string order is claim order
        ids = [name.rpartition("_")[2] for name, _ in listed]
        if len(set(ids)) != len(ids):
            listed = self._drop_duplicates(listed)
        for name, queue_dir in listed:
            try:
                entry = _parse_pending(queue_dir, name)
            except fs.DecodeFailure as exc:
                if bad is not None:
                    bad.append(_BadName(self.pending_dir / queue_dir / name, queue_dir, str(exc)))
                continue
            yield entry

    def _drop_duplicates(self, listed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Keep the newest file (highest enqueue stamp) of each id; remove the others."""
        newest: dict[str, _Entry] = {}
        for name, queue_dir in listed:
            entry = _maybe_pending(queue_dir, name)
            if entry is None:
                continue
            kept = newest.get(entry.id_field)
            if kept is None or kept.seq < entry.seq:
                newest[entry.id_field] = entry
        keep = {(entry.name, entry.queue_dir) for entry in newest.values()}
        survivors = []
        for name, queue_dir in listed:
            if (name, queue_dir) not in keep and _maybe_pending(queue_dir, name) is not None:
                fs.unlink(self.pending_dir / queue_dir / name)
            else:
                survivors.append((name, queue_dir))
        return survivors

    def _claimed(self, bad: list[_BadName] | None = None) -> list[_Held]:
        """Every claimed file, parsed; those whose names do not parse go to ``bad``."""
        held: list[_Held] = []
        for queue_dir in self._queue_dirs(self.claimed_dir, None, bad):
            directory = self.claimed_dir / queue_dir
            for name in _listdir(directory):
                if name.startswith("."):
                    continue
                try:
                    held.append(_parse_claimed(queue_dir, name))
                except fs.DecodeFailure as exc:
                    if bad is not None:
                        bad.append(_BadName(directory / name, queue_dir, str(exc)))
        return held

    def _find_held(self, job_id: str, worker_id: str | None) -> _Held | None:
        """The claimed file of ``job_id`` (held by ``worker_id`` when given), or None."""
        id_field = fs.encode_field(job_id)
        owner = fs.encode_field(worker_id) if worker_id is not None else None
        with self._lock:
            cached = self._held.get(job_id)
        if (
            cached is not None
            and owner in (None, cached.owner)
            and (self.claimed_dir / cached.entry.queue_dir / cached.entry.name).exists()
        ):
            return cached
        for held in self._claimed():
            if held.entry.id_field == id_field and owner in (None, held.owner):
                return held
        return None

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    # -- consuming -------------------------------------------------------
    def claim_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> Claimed:
        """Claim by renaming ``pending/`` → ``claimed/``, then read the job; a job with limits
        is checked once it is claimed (so a slot's holder is claimed before it counts), and
        renamed back, due later, when a limit holds it back."""
        now = self.clock.time()
        now_us = _micros(now)
        bad: list[_BadName] = []
        paused = self.flow.paused_dirs()
        self._requeue_expired(now_us, bad, paused)
        owner = fs.encode_field(worker_id)
        lease_until = now + lease_secs
        lease_us = _micros(lease_until)
        claimed = Claimed([])
        taken: list[tuple[str, str]] = []  # (queue folder, pending name) of each file taken
        rated: list[tuple[Job, _Held]] = []  # claimed with a token set aside, taken at the end
        admission: flows.Admission | None = None
        holds_left = max(HOLD_ROUNDS * n, MIN_HOLDS)
        give_up_at = float("inf")
        refused = {held for tag in self.refused_by(worker_id) for held in self.flow.held_on(tag)}
        for entry in self._pending(queues, bad, paused):
            if len(claimed.jobs) >= n:
                break
            if holds_left <= 0:
                if claimed.jobs or time.monotonic() >= give_up_at:
                    break
                give_up_at = min(give_up_at, time.monotonic() + HOLDING_SECS)
            if entry.due_us > now_us or (refused and (entry.queue_dir, entry.name) in refused):
                continue  # not due, or held with a tag this claimer refused: left as it is
            took = self._take(entry, owner, lease_us, claimed)
            if took is None:
                continue
            job, held = took
            taken.append((entry.queue_dir, entry.name))  # claimed or held again: no longer held
            flow = NO_FLOW
            if job.limited or job.unique is not None:
                admission = admission or flows.Admission()
                at = self.clock.time()  # not the claim's start: leases may have run out since
                admitted = self._admit(job, _Held(held, lease_us, owner), at, admission)
                if admitted is None:
                    holds_left -= 1
                    continue
                flow = admitted
            job.status, job.lease_owner, job.lease_until = JobStatus.RUNNING, worker_id, lease_until
            with self._lock:
                self._held[job.id] = _Held(held, lease_us, owner, flow)
            claimed.jobs.append(job)
            if job.rate_limit is not None:
                rated.append((job, self._held[job.id]))
        if taken:
            self._end_claim(claimed, taken, rated, admission)
        self._set_aside(bad, claimed)
        return claimed

    def _end_claim(
        self,
        claimed: Claimed,
        taken: Sequence[tuple[str, str]],
        rated: Sequence[tuple[Job, _Held]],
        admission: flows.Admission | None,
    ) -> None:
        """What a claim that took files does last: take the tokens it set aside, look at the
        slots it found full once more, and clear the holds of the files it took."""
        if rated:
            self._take_tokens(rated, claimed)
        if admission is not None and admission.full:
            self._wake_if_freed(admission)
        self._clear_holds(taken)

    def _clear_holds(self, files: Sequence[tuple[str, str]]) -> None:
        """The jobs taken from these files (claimed, or held back again under a new name)
        are held back in them no more: one look at ``holds/`` when nothing is held."""
        try:
            self.flow.clear_holds(files)
        except (OSError, NuvomError) as exc:  # ``hold_of`` checks the file a hold names
            log.warning("cannot clear the holds of claimed jobs: %s", exc)

    def _take(
        self, entry: _Entry, owner: str, lease_us: int, claimed: Claimed
    ) -> tuple[Job, _Entry] | None:
        """Rename a pending file into ``claimed/`` and read its job; None when another
        claimer (or a cancel) took it first, or it was quarantined (noted in ``claimed``)."""
        attempts = entry.attempts + 1
        name = f"{lease_us:017d}_{owner}_{entry.pending_name(attempts=attempts)}"
        target = self._dir(self.claimed_dir, entry.queue_dir) / name
        try:
            fs.replace(self.pending_dir / entry.queue_dir / entry.name, target)
        except FileNotFoundError:
            return None  # another claimer (or cancel) took it first
        held = _Entry(entry.queue_dir, name, entry.priority, entry.due_us, entry.seq,
                      attempts, entry.id_field)  # fmt: skip
        try:
            job = self._decode(target.read_bytes(), held, entry.due_us)
        except (fs.DecodeFailure, OSError) as exc:
            reason = f"job file {entry.name} cannot be decoded: {exc}"
            if self._quarantine(target, entry.queue_dir, reason) is not None:
                job_id = fs.decode_field(entry.id_field)  # the name parsed: it decodes
                if job_id is not None:
                    claimed.quarantined.append((job_id, reason))
            return None
        return job, held

    def _admit(self, job: Job, held: _Held, now: float, admission: flows.Admission) -> _Flow | None:
        """Check a claimed job's limits — concurrency first, then its task's bucket — and
        take its slot and token; what its end must undo, or None when a limit held it back
        (renamed back to wait, attempts unchanged, with its hold noted)."""
        limit, rate, unique = job.concurrency_limit, job.rate_limit, job.unique
        token: str | None = None
        try:
            if limit is not None:
                slot = self.flow.take_slot(limit, job.id, held.entry.queue_dir, now, admission)
                if isinstance(slot, flows.Refusal):
                    self._hold_back(held, slot)
                    return None
                token = slot
            if rate is not None:
                hold = self.flow.reserve_token(rate, now, admission)
                if hold is not None:
                    if limit is not None and token is not None:
                        self.flow.free_slot(limit.key, token)
                        admission.slots.pop(limit.key, None)
                    self._hold_back(held, hold)
                    return None
        except (OSError, NuvomError) as exc:  # its limits could not be read: it waits a bit
            log.warning("cannot check the limits of job %s, it waits: %s", job.id, exc)
            self._hold_back(held, None, due=now + FLOW_RETRY_SECS)
            return None
        return _Flow(limit.key if limit is not None else None, token, unique)

    def _take_tokens(self, rated: Sequence[tuple[Job, _Held]], claimed: Claimed) -> None:
        """Take the tokens the claim set aside, one swap per task, as it ends; a job whose
        token a racing claim took first is held back after all (its slot freed)."""
        by_task: dict[str, list[tuple[Job, _Held]]] = {}
        for job, held in rated:
            rate = job.rate_limit
            assert rate is not None
            by_task.setdefault(rate.key, []).append((job, held))
        refused: set[str] = set()
        for task, jobs in by_task.items():
            rate, now = jobs[0][0].rate_limit, self.clock.time()
            assert rate is not None
            try:
                given, left = self.flow.take_tokens(rate, len(jobs), now)
            except (OSError, NuvomError) as exc:  # its limits could not be read: it waits a bit
                log.warning("cannot take tokens of %s, its jobs wait: %s", task, exc)
                given, left = 0, None
            for behind, (job, held) in enumerate(jobs[given:]):
                refused.add(job.id)
                with self._moving:
                    self._forget(job.id)
                    if left is None:
                        self._hold_back(held, None, due=now + FLOW_RETRY_SECS)
                    else:
                        due = now + (1.0 - left + behind) / rate.per_sec
                        self._hold_back(held, flows.Refusal(rate_tag(task), due))
                flow = held.flow or NO_FLOW
                if flow.conc is not None and flow.token is not None:
                    with suppress(OSError, NuvomError):  # left over, it is dropped when needed
                        self.flow.free_slot(flow.conc, flow.token)
        if refused:
            claimed.jobs = [job for job in claimed.jobs if job.id not in refused]

    def _hold_back(self, held: _Held, hold: flows.Refusal | None, due: float = 0.0) -> None:
        """Rename a claimed job back to ``pending/``, its attempt uncounted, due when its
        limit may allow it, and note its hold."""
        entry = held.entry
        due_us = _micros(hold.due if hold is not None else due)
        attempts = entry.attempts - 1
        if not self._move_back(held, attempts=attempts, due_us=due_us):
            return  # its lease ran out under us (a clock far off): it is back already
        if hold is not None:
            name = entry.pending_name(attempts=attempts, due_us=due_us)
            with suppress(OSError, NuvomError):  # a hold is a note: the job waits all the same
                self.flow.hold(hold.tag, entry.queue_dir, name)

    def _wake_if_freed(self, admission: flows.Admission) -> None:
        """A slot freed while this claim held jobs back on its key would have found no hold
        to wake yet: look once more, now that the holds are written."""
        for key, (limit, _) in admission.full.items():
            try:
                if self.flow.has_free_slot(key, limit, self.clock.time()):
                    self._wake_first_held(key)
            except (OSError, NuvomError) as exc:
                log.warning("cannot look at the slots of %s: %s", key, exc)

    def _wake_first_held(self, key: str) -> None:
        """A slot of ``key`` freed: the first job held back on it (claim order) that is not
        due yet is due now — one woken per slot freed — so the next job of a
        ``concurrency=1`` task starts at once. Its hold stays noted."""
        now_us = _micros(self.clock.time())
        tag = concurrency_tag(key)
        for queue_dir, name in self.flow.held_on(tag):
            entry = _maybe_pending(queue_dir, name)
            if entry is None or entry.due_us <= now_us:
                continue  # woken already by another slot freed, or due anyway
            path = self.pending_dir / queue_dir / name
            woken = entry.pending_name(attempts=entry.attempts, due_us=now_us)
            try:
                fs.replace(path, path.with_name(woken))
            except FileNotFoundError:
                continue  # claimed, cancelled or woken meanwhile
            self.flow.move_hold(tag, queue_dir, name, woken)
            return

    def _ended(self, job_id: str, flow: _Flow, *, finished: bool) -> None:
        """A claim of ``job_id`` ended (``finished``: for good): its slot frees and wakes the
        first job held on its key; a finished job lets its unique key go (or keeps it
        ``keep_secs``). A failure here is logged: the slot, no longer live, is dropped by
        the next claim that needs it, and the key is taken over once stale."""
        try:
            if flow.conc is not None:
                if flow.token is not None:
                    self.flow.free_slot(flow.conc, flow.token)
                self._wake_first_held(flow.conc)
            if finished and flow.unique is not None:
                self.flow.let_go(flow.unique, job_id, self.clock.time(), finished=True)
        except (OSError, NuvomError) as exc:
            log.warning("cannot free the limits job %s held: %s", job_id, exc)

    def _flow_of(self, held: _Held, job: Job | None) -> _Flow:
        """What the end of ``held``'s claim must undo: known when this process claimed it,
        else from ``job`` (an outcome's), else from its file (no token: its slot is left to
        go when it is no longer live)."""
        if held.flow is not None:
            return held.flow
        origin = job.origin if job is not None else self._origin(held)
        try:
            limit, unique = concurrency_of(origin), unique_of(origin)
        except (IndexError, TypeError, ValueError):
            return NO_FLOW
        return _Flow(limit.key if limit is not None else None, None, unique)

    def _origin(self, held: _Held) -> dict[str, object] | None:
        path = self.claimed_dir / held.entry.queue_dir / held.entry.name
        try:
            _, _, offset = self._header(body := fs.unframe(path.read_bytes(), FORMAT_VERSION))
            return self.payloads.origin(body[offset:])
        except (fs.DecodeFailure, OSError, SerializationError):
            return None

    def _move_back(self, held: _Held, *, attempts: int, due_us: int | None = None) -> bool:
        entry = held.entry
        name = entry.pending_name(attempts=attempts, due_us=due_us)
        target = self._dir(self.pending_dir, entry.queue_dir) / name
        try:
            fs.replace(self.claimed_dir / entry.queue_dir / entry.name, target)
        except FileNotFoundError:
            return False
        return True

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        self._ack(job_id, worker_id, None)

    def _ack(self, job_id: str, worker_id: str | None, job: Job | None) -> None:
        flow = NO_FLOW
        with self._moving:
            held = self._find_held(job_id, worker_id)
            if held is not None:
                flow = self._flow_of(held, job)
                if not fs.unlink(self.claimed_dir / held.entry.queue_dir / held.entry.name):
                    flow = NO_FLOW  # its lease ran out and another process took it back
            self._forget(job_id)
        if flow is not NO_FLOW:
            self._ended(job_id, flow, finished=True)

    def ack_outcomes(self, outcomes: Sequence[Outcome]) -> Resolved | None:
        """Ack and nack one by one; a finished job others wait for is resolved before its
        ack, so a crash between the two runs it again rather than losing what it ends."""
        resolved: Resolved | None = None
        waited_for = self._anyone_waits()
        for outcome in outcomes:
            job_id, owner = outcome.job.id, outcome.worker_id
            if outcome.status is JobStatus.RETRYING and outcome.retry_at is not None:
                self._give_back(job_id, owner, outcome.job, retry_at=outcome.retry_at)
                continue
            if (
                waited_for
                and outcome.status.is_final
                and os.path.exists(os.path.join(self.deps_dir, _key(job_id)))
                and self._find_held(job_id, owner) is not None
            ):
                resolved = resolved or Resolved()
                resolved.add(self.resolve([(job_id, outcome.status is JobStatus.SUCCESS)]))
            self._ack(job_id, owner, outcome.job)
        return resolved

    def _anyone_waits(self) -> bool:
        """Whether ``deps/`` holds anything: one look per settle spares every ack its own."""
        try:
            with os.scandir(self.deps_dir) as entries:
                return next(entries, None) is not None
        except FileNotFoundError:
            return False

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        self._give_back(job_id, worker_id, None, retry_at=retry_at)

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        for job_id in job_ids:
            self._give_back(job_id, worker_id, None)

    def _give_back(
        self, job_id: str, worker_id: str | None, job: Job | None, *, retry_at: float | None = None
    ) -> None:
        """Nack (due at ``retry_at``, the attempt kept) or release (due as it was, the attempt
        uncounted) a claimed job; its slot frees once its file is back in ``pending/``."""
        flow = NO_FLOW
        with self._moving:
            held = self._find_held(job_id, worker_id)
            if held is not None:
                flow = self._flow_of(held, job)
                attempts = held.entry.attempts if retry_at is not None else held.entry.attempts - 1
                due_us = _micros(retry_at) if retry_at is not None else None
                if not self._move_back(held, attempts=max(0, attempts), due_us=due_us):
                    flow = NO_FLOW
            self._forget(job_id)
        if flow.conc is not None:
            self._ended(job_id, flow, finished=False)

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        lease_us = _micros(self.clock.time() + lease_secs)
        return [
            job_id
            for job_id in job_ids
            if self._rename_held(job_id, worker_id, lease_us=lease_us) is not None
        ]

    def adjust_attempts(self, deltas: Mapping[str, int], *, worker_id: str) -> list[str]:
        return [
            job_id
            for job_id, delta in deltas.items()
            if self._rename_held(job_id, worker_id, attempts_delta=delta) is not None
        ]

    def _rename_held(
        self,
        job_id: str,
        worker_id: str,
        *,
        lease_us: int | None = None,
        attempts_delta: int = 0,
    ) -> _Held | None:
        """Rename the file ``worker_id`` holds for ``job_id`` to a new lease end or attempt
        count; the renamed file, or None when it holds it no more."""
        with self._moving:
            held = self._find_held(job_id, worker_id)
            if held is None:
                self._forget(job_id)
                return None
            entry = held.entry
            lease_us = held.lease_us if lease_us is None else lease_us
            attempts = max(0, entry.attempts + attempts_delta)
            name = f"{lease_us:017d}_{held.owner}_{entry.pending_name(attempts=attempts)}"
            directory = self.claimed_dir / entry.queue_dir
            try:
                fs.replace(directory / entry.name, directory / name)
            except FileNotFoundError:
                self._forget(job_id)  # its lease ran out and another process took it back
                return None
            renamed = _Held(
                _Entry(entry.queue_dir, name, entry.priority, entry.due_us, entry.seq,
                       attempts, entry.id_field),
                lease_us,
                held.owner,
                held.flow,
            )  # fmt: skip
            with self._lock:
                self._held[job_id] = renamed
            return renamed

    def _requeue_expired(self, now_us: int, bad: list[_BadName], paused: frozenset[str]) -> None:
        """Put back the jobs whose lease ran out (a paused queue's stay as they are)."""
        for held in self._claimed(bad):
            if held.lease_us <= now_us and held.entry.queue_dir not in paused:
                self._move_back(held, attempts=held.entry.attempts)

    def _leases(self, queue_dirs: Iterable[str]) -> dict[str, int]:
        """The lease end of each job claimed in ``queue_dirs``, by id field (flow control
        asks which slots are still held)."""
        leases: dict[str, int] = {}
        for queue_dir in queue_dirs:
            for name in _listdir(self.claimed_dir / queue_dir):
                try:
                    held = _parse_claimed(queue_dir, name)
                except fs.DecodeFailure:
                    continue
                id_field = held.entry.id_field
                leases[id_field] = max(held.lease_us, leases.get(id_field, 0))
        return leases

    def _stored(self, job_id: str, queue_dir: str) -> bool:
        """Whether ``job_id`` has a file: parked, then in ``claimed/``, ``pending/`` and
        ``claimed/`` again (each move between them is seen in one look or the next)."""
        if _parked_name(_listdir(self.parked_dir / _key(job_id))) is not None:
            return True
        id_field = fs.encode_field(job_id)
        for area in (self.claimed_dir, self.pending_dir, self.claimed_dir):
            for name in _listdir(area / queue_dir):
                if (
                    name.endswith(JOB_SUFFIX)
                    and name[: -len(JOB_SUFFIX)].rpartition("_")[2] == id_field
                ):
                    return True
        return False

    # -- inspecting and removing -----------------------------------------
    def qsize(self, queue: str | None = None) -> int:
        return sum(1 for _ in self._pending([queue] if queue is not None else None))

    def clear(self) -> int:
        removed = 0
        for area in (self.pending_dir, self.claimed_dir):
            for queue_dir in _listdir(area):  # every folder, a queue's or not
                for name in _listdir(area / queue_dir):
                    removed += fs.unlink(area / queue_dir / name)
        for name in _listdir(self.cancelled_dir):
            fs.unlink(self.cancelled_dir / name)
        for key in _listdir(self.parked_dir):
            folder = self.parked_dir / key
            for name in _listdir(folder):
                if _BUCKET.fullmatch(name):
                    self._delete_folder(folder / name, _listdir(folder / name))
                elif fs.unlink(folder / name):
                    removed += _parked_entry(name) is not None  # a job, not a stray file
            self._delete_folder(folder, [])
        for key in _listdir(self.deps_dir):
            self._delete_folder(self.deps_dir / key, _listdir(self.deps_dir / key))
        with self._lock:
            self._held.clear()
        self.flow.clear()
        return removed

    def cancel(self, job_id: str) -> bool:
        """Remove a waiting (or parked) job; its unique key goes at once, and its holds."""
        if self._cancel_parked(job_id):
            return True
        id_field = fs.encode_field(job_id)
        removed = False
        for entry in self._pending(None):
            if entry.id_field == id_field:
                path = self.pending_dir / entry.queue_dir / entry.name
                try:  # read first: once unlinked, nothing says which key it held
                    job: Job | None = self._decode(path.read_bytes(), entry, entry.due_us)
                except (fs.DecodeFailure, OSError):
                    job = None
                if fs.unlink(path):
                    removed = True
                    self._cancelled(job_id, job, (entry.queue_dir, entry.name))
        return removed

    def _cancelled(self, job_id: str, job: Job | None, file: tuple[str, str] | None) -> None:
        """A waiting job was cancelled (from ``file``: queue folder, pending name): its hold
        goes, and its unique key with it."""
        try:
            if file is not None:
                self.flow.clear_holds([file])
            if job is not None and job.unique is not None:
                self.flow.let_go(job.unique, job_id, self.clock.time(), finished=False)
        except (OSError, NuvomError) as exc:  # the key is taken over once stale
            log.warning("cannot let go the unique key of cancelled job %s: %s", job_id, exc)

    # -- flow control: paused queues, holds, unique keys (``flow.py`` keeps their files) --
    def hold(self, held: Sequence[Hold], *, worker_id: str) -> list[str]:
        """Give back claimed jobs as a claim holds one: renamed back to ``pending/`` due at
        ``due_at`` with the attempt uncounted, the hold noted, the slot freed (waking the
        next held job of its key), the unique key kept."""
        given = []
        for hold in held:
            flow, moved = NO_FLOW, False
            with self._moving:
                found = self._find_held(hold.job_id, worker_id)
                if found is not None:
                    entry, due_us = found.entry, _micros(hold.due_at)
                    attempts = max(0, entry.attempts - 1)
                    flow = self._flow_of(found, None)
                    moved = self._move_back(found, attempts=attempts, due_us=due_us)
                self._forget(hold.job_id)
            if found is None or not moved:
                continue
            given.append(hold.job_id)
            name = entry.pending_name(attempts=attempts, due_us=due_us)
            try:
                self.flow.hold(hold.tag, entry.queue_dir, name)
            except (OSError, NuvomError) as exc:  # a hold is a note: the job waits all the same
                log.warning("cannot note the hold of job %s: %s", hold.job_id, exc)
            if flow.conc is not None:
                self._ended(hold.job_id, flow, finished=False)
        return given

    def pause_queue(self, queue: str, paused: bool = True) -> bool:
        try:
            return self.flow.pause(queue, paused)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot pause queue {queue!r} in {self.flow.paused_dir}: {exc}",
                backend=self.name,
            ) from exc

    def paused_queues(self) -> list[str]:
        return sorted(self.flow.paused_queues().values())

    def hold_of(self, job_id: str) -> str | None:
        """The tag of the hold noted for ``job_id``, while it waits in the file it was held
        in (or woken into): a claim since (then a nack or release) has cleared it."""
        tail = f"_{fs.encode_field(job_id)}{JOB_SUFFIX}"
        for held in self.flow.holds(lambda name: name.endswith(tail)):
            if (self.pending_dir / held.queue_dir / held.name).exists():
                return held.tag
        return None

    def unique_holder(self, key: str) -> str | None:
        return self.flow.holder(key, self.clock.time())

    def sweep_holds(self, *, older_than_secs: float = NEVER_ENQUEUED_GRACE_SECS) -> int:
        """Delete the holds (that old) of jobs no longer waiting in the file they were held
        in: a claim that died before clearing them left them. Returns how many."""
        if self.read_only:
            return 0
        return self.flow.sweep_holds(
            lambda queue_dir, name: (self.pending_dir / queue_dir / name).exists(),
            time.time() - older_than_secs,
        )

    def waiting_jobs(self) -> list[Job]:
        jobs = []
        for entry in self._pending(None):
            path = self.pending_dir / entry.queue_dir / entry.name
            try:
                jobs.append(self._decode(path.read_bytes(), entry, entry.due_us))
            except FileNotFoundError:
                continue  # claimed or cancelled meanwhile
            except (fs.DecodeFailure, OSError) as exc:
                log.warning("skipping job file %s: %s", entry.name, exc)
        return jobs

    def queue_stats(self) -> list[QueueStats]:
        now_us = _micros(self.clock.time())
        rows: dict[str, QueueStats] = {}
        paused = self.flow.paused_queues()

        def row(queue_dir: str) -> QueueStats:
            if queue_dir not in rows:
                label = paused.get(queue_dir) or fs.field_label(queue_dir, directory=True)
                rows[queue_dir] = QueueStats(label)
            return rows[queue_dir]

        waiting: set[tuple[str, str]] = set()
        for entry in self._pending(None):
            waiting.add((entry.queue_dir, entry.name))
            stats = row(entry.queue_dir)
            if entry.due_us > now_us:
                stats.scheduled += 1
            else:
                stats.pending += 1
        for hold in self.flow.holds():
            if (hold.queue_dir, hold.name) in waiting:
                counts = row(hold.queue_dir).held
                counts[hold.tag] = counts.get(hold.tag, 0) + 1
        for queue_dir in paused:
            row(queue_dir).paused = True
        for held in self._claimed():
            stats = row(held.entry.queue_dir)
            if held.lease_us <= now_us:
                stats.expired += 1
            else:
                stats.running += 1
                owner = fs.field_label(held.owner)
                stats.lease_owners[owner] = stats.lease_owners.get(owner, 0) + 1
        for queue_dir in _corrupt_dirs(self.corrupt_dir):
            names = _listdir(self.corrupt_dir / queue_dir)
            count = sum(1 for name in names if name.endswith(CORRUPT_SUFFIX))
            if count:
                row(queue_dir).quarantined += count
        return [rows[key] for key in sorted(rows)]

    def quarantined(self) -> Iterable[tuple[Path, str]]:
        """Each quarantined file with the reason it was set aside."""
        for queue_dir in _corrupt_dirs(self.corrupt_dir):
            directory = self.corrupt_dir / queue_dir
            for name in sorted(_listdir(directory)):
                if name.endswith(CORRUPT_SUFFIX):
                    reason_file = directory / (name[: -len(CORRUPT_SUFFIX)] + REASON_SUFFIX)
                    try:
                        reason = reason_file.read_text(encoding="utf-8").strip()
                    except OSError:
                        reason = "(no reason recorded)"
                    yield directory / name, reason

    # -- dead letters: corrupt/<queue>/<name>.corrupt beside <name>.reason ----------------
    def dead_letters(self, *, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        """Every quarantined file is read (dead letters are few), as the id in its body
        is trusted over its name; a file named by no readable id is listed under its name."""
        letters = sorted(self._letters().items())
        page = [letter for job_id, letter in letters if after is None or job_id > after]
        return [letter.letter() for letter in page[: max(0, limit)]]

    def revive_dead(self, job_id: str) -> Job | None:
        """Decoded as a claim decodes it, with today's payload codec (a signing key set right
        since reads it); a file whose name this queue never wrote is read from its body
        alone, at the default priority."""
        letter = self._letters().get(job_id)
        if letter is None:
            return None
        try:
            if letter.entry is not None:
                return self._decode(letter.data, letter.entry, letter.entry.due_us)
            body = fs.unframe(letter.data, FORMAT_VERSION)
            found_id, queue, offset = self._header(body)
            return self.payloads.decode(body[offset:], job_id=found_id, queue=queue)
        except (fs.DecodeFailure, CorruptJob) as exc:
            name = letter.path.name[: -len(CORRUPT_SUFFIX)]
            raise CorruptJob(f"job file {name} still cannot be decoded: {exc}", job_id=job_id,
                             backend=self.name) from None  # fmt: skip

    def forget_dead(self, job_id: str) -> bool:
        """Unlink the ``.corrupt`` file, then its ``.reason``: of racing forgets, the one
        whose unlink wins says True. Every file listed under ``job_id`` goes."""
        forgotten = False
        for letter in self._letters(job_id).values():
            if fs.unlink(letter.path):
                forgotten = True
                fs.unlink(letter.reason_path)
        return forgotten

    def _letters(self, job_id: str | None = None) -> dict[str, _Letter]:
        """The dead letters (those listed under ``job_id`` when given), one per id: the one
        quarantined last when a job was quarantined twice (resubmitted under its id)."""
        letters: dict[str, _Letter] = {}
        for queue_dir in _corrupt_dirs(self.corrupt_dir):
            for name in _listdir(self.corrupt_dir / queue_dir):
                if not name.endswith(CORRUPT_SUFFIX) or name.startswith("."):
                    continue
                letter = self._read_letter(queue_dir, name)
                if letter is None or job_id not in (None, letter.id):
                    continue
                kept = letters.get(letter.id)
                if kept is None or (kept.quarantined_at or 0.0) < (letter.quarantined_at or 0.0):
                    letters[letter.id] = letter
        return letters

    def _read_letter(self, queue_dir: str, name: str) -> _Letter | None:
        """One quarantined file read, or None when it went meanwhile (forgotten)."""
        path = self.corrupt_dir / queue_dir / name
        stem = name[: -len(CORRUPT_SUFFIX)]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a folder where a file was expected, and the like
            data = f"<unreadable: {exc}>".encode()
        reason_path = path.with_name(stem + REASON_SUFFIX)
        try:
            reason = reason_path.read_text(encoding="utf-8").strip()
            quarantined_at: float | None = reason_path.stat().st_mtime
        except OSError:  # not written yet, or lost: the quarantine does it second
            reason, quarantined_at = "(no reason recorded)", None
        queue = fs.field_label(queue_dir, directory=True)
        try:
            found_id: str | None
            found_id, queue, _ = self._header(fs.unframe(data, FORMAT_VERSION))
        except fs.DecodeFailure:
            found_id = None
        # Set aside for its folder (not a queue's), it is read as of the queue its body names.
        home = queue_dir if _is_queue_folder(queue_dir) else fs.encode_field(queue, directory=True)
        entry = _entry_of_letter(home, stem)
        if found_id is None and entry is not None:
            found_id = fs.decode_field(entry.id_field)
        job_id = stem if found_id is None else found_id
        return _Letter(job_id, queue, reason, quarantined_at, path, data, entry)
