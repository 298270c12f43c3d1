"""Flow control on the file queue: paused queues, concurrency slots, token buckets, unique
keys and the tags of held jobs, in small files that change without a lock.

Layout, beside the job folders of ``queue.py``::

    paused/<queue>                      a paused queue (its name inside)
    slots/<KEY>/<VERSION>.state         the claims that hold a concurrency key's slots
    rates/<TASK>/<VERSION>.state        a task's token bucket: when it is (was) empty
    unique/<KEY>/<VERSION>.state        the job holding a unique key (until when, once ended)
    holds/<TAG>/<queue>/<name>.hold     a job a limit held back, waiting in pending/<queue>/<name>

``KEY``, ``TASK`` and ``TAG`` are digests of the text they stand for, which each file
keeps inside. A state changes by compare-and-swap, as a schedule does: a writer reads the
newest version n, decides, and publishes n + 1 whole with ``store.publish_exclusively``
(POSIX ``link`` / Windows ``rename``, neither of which replaces a file), which exactly one
of any number of racing writers wins; the others read again and decide again. Versions
older than the one before the newest are deleted as newer ones land, and a writer whose
slot was deleted under it finds a newer version than its own and withdraws. A version
that does not decode is set aside (``.corrupt``) and the one before it counts.

A slot entry names the job, a token of its claim and its queue folder. The claim that
takes one has renamed the job into ``claimed/`` first, so an entry whose job has no
claimed file with a live lease (listed after the state was read) is left over — its
claim ended, or its lease ran out — and the next writer drops it. A unique key is
taken before its job's file is written; one whose holder has no file anywhere once the
key is ``stale_secs`` old outlived a producer that died in between, and is taken over.
Slots and buckets are not fsynced (a power cut loses them with the claims they count);
unique keys are, when the queue's writes are. A hold is a note named after the pending
file its job waits in, so a tag's folder lists its held jobs in claim order, due times
included, without reading one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from nuvom.backends.file import store as fs
from nuvom.errors import NuvomError
from nuvom.limits import concurrency_tag, rate_tag

if TYPE_CHECKING:
    from nuvom.limits import ConcurrencyLimit, RateLimit, UniqueKey
    from nuvom.serialization import Codec

log = logging.getLogger("nuvom.file")

FLOW_FORMAT_VERSION = 1  # bump when a flow-control file's layout changes
STATE_SUFFIX = ".state"
HOLD_SUFFIX = ".hold"
DIGEST_CHARS = 40  # hex digits of sha256 naming a key's folder
TOKEN_TOLERANCE = 1e-9  # float error in a bucket's refill: 0.9999999999 tokens is a whole one
CLAIM_TOKEN_BYTES = 6  # random bytes telling one claim of a job from the next
HOLD_WRITE_TRIES = 3  # a hold's folder can go (emptied) between its mkdir and the write
FOLDERS = ("paused", "slots", "rates", "unique", "holds")
_STATE_NAME = re.compile(r"([0-9]{20})" + re.escape(STATE_SUFFIX))
_T = TypeVar("_T")

#: ``leases(queue folders)``: lease end (epoch µs) of each claimed file there, by id field.
Leases = Callable[[Iterable[str]], dict[str, int]]
#: ``stored(job id, queue folder)``: whether the job has a file (waiting, claimed or parked).
Stored = Callable[[str, str], bool]


def digest(text: str) -> str:
    """The folder name standing for a key, task or tag: any text, one safe short name."""
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _listdir(path: Path) -> list[str]:
    try:
        return [name for name in os.listdir(path) if not name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


class Refusal(NamedTuple):
    """A limit refused a candidate: the hold tag it gets, and when it may be due again."""

    tag: str
    due: float


class Slot(NamedTuple):
    """One claim holding a slot of a concurrency key."""

    job_id: str
    token: str
    queue_dir: str


class HeldJob(NamedTuple):
    """A hold read back: its tag, and the pending file its job waits in."""

    tag: str
    queue_dir: str
    name: str
    path: Path


@dataclass(frozen=True, slots=True)
class _Version(Generic[_T]):
    """A state folder read: its highest version number (the next writer publishes one
    more), the newest value that decodes (None: none) and that version's file."""

    top: int
    value: _T | None = None
    path: Path | None = None


class _Key(NamedTuple):
    """A unique key's state: its holder (None: free), the holder's queue folder, and until
    when it is kept once the holder ended (None: it has not)."""

    holder: str | None
    queue_dir: str
    until: float | None


_FREE = _Key(None, "", None)


@dataclass(slots=True)
class Admission:
    """What one claim learned of the limits (each slot state as last read or written, the
    keys found full, each bucket's tokens as read, those set aside and the rate holds so
    far), so its candidates do not each read them again."""

    slots: dict[str, tuple[int, list[Slot]]] = field(default_factory=dict)
    full: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (limit, due)
    tokens: dict[str, float] = field(default_factory=dict)  # task -> tokens when read
    reserved: dict[str, int] = field(default_factory=dict)  # task -> tokens set aside
    rate_holds: dict[str, int] = field(default_factory=dict)


class FlowControl:
    """The flow-control files of one file queue; the queue moves the job files."""

    def __init__(
        self,
        root: Path,
        writer: fs.TempWriter,
        codec: Codec,
        *,
        leases: Leases,
        stored: Stored,
        stale_secs: float,
        read_only: bool = False,
    ) -> None:
        self.paused_dir = root / "paused"
        self.slots_dir = root / "slots"
        self.rates_dir = root / "rates"
        self.unique_dir = root / "unique"
        self.holds_dir = root / "holds"
        self._writer = writer
        self._codec = codec
        self._leases = leases
        self._stored = stored
        self.stale_secs = stale_secs
        self.read_only = read_only

    # -- versions: compare-and-swap on a folder of states ---------------------------
    def _read(self, folder: Path, parse: Callable[[list[Any]], _T]) -> _Version[_T]:
        """The newest version in ``folder`` that ``parse`` accepts (it raises ``LookupError``,
        ``TypeError`` or ``ValueError`` for a value it does not); those it refuses are set
        aside."""
        while True:
            numbers = sorted(
                int(match[1]) for name in _listdir(folder) if (match := _STATE_NAME.fullmatch(name))
            )
            for number in reversed(numbers):
                path = folder / f"{number:020d}{STATE_SUFFIX}"
                try:
                    data = fs.retry_in_use("read a flow-control file", path.read_bytes)
                except FileNotFoundError:
                    break  # deleted as an old version while listed: list again
                try:
                    assert isinstance(data, bytes)
                    value = self._codec.loads(fs.unframe(data, FLOW_FORMAT_VERSION))
                    if not isinstance(value, list) or not value or not isinstance(value[0], str):
                        raise ValueError("not a flow-control state")
                    parsed = parse(value)
                except (fs.DecodeFailure, NuvomError, LookupError, TypeError, ValueError) as exc:
                    self._set_aside(path, str(exc))
                    continue
                return _Version(numbers[-1], parsed, path)
            else:
                return _Version(numbers[-1] if numbers else 0)

    def _publish(self, folder: Path, top: int, value: list[Any], *, durable: bool) -> bool:
        """Make ``value`` version ``top + 1``; False if another writer made one first."""
        number = top + 1
        path = folder / f"{number:020d}{STATE_SUFFIX}"
        data = fs.frame(self._codec.dumps(value), FLOW_FORMAT_VERSION)
        try:
            won = fs.publish_exclusively(self._writer, path, data, durable=durable)
        except FileNotFoundError:  # the key's first state, or a clear removed its folder
            folder.mkdir(parents=True, exist_ok=True)
            won = fs.publish_exclusively(self._writer, path, data, durable=durable)
        if not won:
            return False
        names = _listdir(folder)
        numbers = [int(m[1]) for name in names if (m := _STATE_NAME.fullmatch(name))]
        if max(numbers, default=number) > number:  # our slot was pruned under us: we lost
            fs.unlink(path)
            return False
        try:
            for old in numbers:
                if old < number - 1:
                    fs.unlink(folder / f"{old:020d}{STATE_SUFFIX}")
        except NuvomError as exc:  # Windows: a reader holds it open; the next write prunes
            log.debug("keeping an old flow-control state for now: %s", exc)
        return True

    def _set_aside(self, path: Path, reason: str) -> None:
        if self.read_only:
            return
        try:
            fs.replace(path, path.with_name(path.name + ".corrupt"))
        except FileNotFoundError:
            return
        log.warning("set aside flow-control file %s: %s", path, reason)

    # -- paused queues ------------------------------------------------------------
    def paused_dirs(self) -> frozenset[str]:
        """The queue folders of paused queues: one listing per claim."""
        return frozenset(_listdir(self.paused_dir))

    def pause(self, queue: str, paused: bool) -> bool:
        path = self.paused_dir / fs.encode_field(queue, directory=True)
        if not paused:
            return fs.unlink(path)
        data = fs.frame(queue.encode(), FLOW_FORMAT_VERSION)
        try:
            return fs.publish_exclusively(self._writer, path, data)
        except FileNotFoundError:  # a folder written before queues could be paused
            self.paused_dir.mkdir(parents=True, exist_ok=True)
            return fs.publish_exclusively(self._writer, path, data)

    def paused_queues(self) -> dict[str, str]:
        """Each paused queue's folder name, with the queue's name."""
        found = {}
        for name in _listdir(self.paused_dir):
            try:
                data = fs.retry_in_use("read a paused queue", (self.paused_dir / name).read_bytes)
                assert isinstance(data, bytes)
                found[name] = fs.unframe(data, FLOW_FORMAT_VERSION).decode()
            except FileNotFoundError:
                continue  # resumed meanwhile
            except (fs.DecodeFailure, UnicodeDecodeError, NuvomError):
                found[name] = fs.field_label(name, directory=True)
        return found

    # -- concurrency slots ----------------------------------------------------------
    def _slots(self, folder: Path) -> tuple[int, list[Slot]]:
        version = self._read(folder, _parse_slots)
        return version.top, version.value or []

    def take_slot(
        self, limit: ConcurrencyLimit, job_id: str, queue_dir: str, now: float,
        admission: Admission,
    ) -> str | Refusal:  # fmt: skip
        """A slot of ``limit.key`` for a job this claim has moved into ``claimed/``: the
        token of its claim, or the hold (due when the earliest live lease of the key ends)."""
        if limit.key in admission.full:
            return Refusal(concurrency_tag(limit.key), admission.full[limit.key][1])
        folder = self.slots_dir / digest(limit.key)
        now_us = fs.micros(now)
        while True:
            top, slots = admission.slots.get(limit.key) or self._slots(folder)
            others = [slot for slot in slots if slot.job_id != job_id]  # its claims before
            if len(others) >= limit.limit:
                live = self._live(others, now_us, limit.limit)
                if len(live) >= limit.limit:
                    due = min(live.values()) / fs.MICROS_PER_SEC
                    admission.full[limit.key] = (limit.limit, due)
                    return Refusal(concurrency_tag(limit.key), due)
                others = [slot for slot in others if slot in live]
            token = os.urandom(CLAIM_TOKEN_BYTES).hex()
            taken = [*others, Slot(job_id, token, queue_dir)]
            if self._publish(folder, top, [limit.key, [list(s) for s in taken]], durable=False):
                admission.slots[limit.key] = (top + 1, taken)
                return token
            admission.slots.pop(limit.key, None)  # another writer came first: read again

    def _live(self, slots: Sequence[Slot], now_us: int, limit: int) -> dict[Slot, int]:
        """The slots whose job has a claimed file with a lease that has not run out, with
        that lease's end. Listed twice before a slot counts as free: a rename under a
        listing (a heartbeat's) may hide a file from it."""
        folders = {slot.queue_dir for slot in slots}
        live: dict[Slot, int] = {}
        for _ in range(2):
            leases = self._leases(folders)
            for slot in slots:
                lease = leases.get(fs.encode_field(slot.job_id), 0)
                if lease > now_us:
                    live[slot] = max(lease, live.get(slot, 0))
            if len(live) >= limit or len(live) == len(slots):
                break
        return live

    def free_slot(self, key: str, token: str) -> None:
        """The claim ``token`` of a job of ``key`` ended: its slot frees. Idempotent."""
        folder = self.slots_dir / digest(key)
        while True:
            top, slots = self._slots(folder)
            kept = [slot for slot in slots if slot.token != token]
            if len(kept) == len(slots):
                return
            if self._publish(folder, top, [key, [list(s) for s in kept]], durable=False):
                return

    def has_free_slot(self, key: str, limit: int, now: float) -> bool:
        """Whether fewer than ``limit`` claims hold ``key`` now (left-over entries apart)."""
        _, slots = self._slots(self.slots_dir / digest(key))
        return len(slots) < limit or len(self._live(slots, fs.micros(now), limit)) < limit

    # -- token buckets ------------------------------------------------------------
    def _bucket(self, folder: Path) -> tuple[int, float | None]:
        version = self._read(folder, _parse_bucket)
        return version.top, version.value

    def reserve_token(self, rate: RateLimit, now: float, admission: Admission) -> Refusal | None:
        """Set a token of ``rate.key``'s bucket aside for a candidate (``take_tokens`` takes
        them at the end of the claim), or say when the bucket will have one for it.

        The bucket is kept as the time it had (or will have) no token: ``burst`` when new,
        ``(now - empty_at) * per_sec`` since, never above ``burst``; a claim reads it once.
        The i-th hold of one claim is due when the i-th token to come is.
        """
        burst = float(rate.burst)
        if rate.key not in admission.tokens:
            _, empty_at = self._bucket(self.rates_dir / digest(rate.key))
            tokens = burst if empty_at is None else min(burst, (now - empty_at) * rate.per_sec)
            admission.tokens[rate.key] = tokens
        reserved = admission.reserved.get(rate.key, 0)
        left = admission.tokens[rate.key] - reserved
        if left + TOKEN_TOLERANCE < 1.0:
            behind = admission.rate_holds.get(rate.key, 0)
            admission.rate_holds[rate.key] = behind + 1
            return Refusal(rate_tag(rate.key), now + (1.0 - left + behind) / rate.per_sec)
        admission.reserved[rate.key] = reserved + 1
        return None

    def take_tokens(self, rate: RateLimit, count: int, now: float) -> tuple[int, float]:
        """Take up to ``count`` tokens of ``rate.key``'s bucket at once: how many it gave,
        and the tokens it holds after (below one when it gave fewer). Taken as the claim
        ends, so the jobs they start are handed out at once: tokens taken early in a long
        claim would start their jobs late, bunched with the next claim's."""
        folder = self.rates_dir / digest(rate.key)
        burst = float(rate.burst)
        while True:
            top, empty_at = self._bucket(folder)
            tokens = burst if empty_at is None else min(burst, (now - empty_at) * rate.per_sec)
            given = min(count, math.floor(tokens + TOKEN_TOLERANCE))
            if given <= 0:
                return 0, tokens
            left = tokens - given
            if self._publish(folder, top, [rate.key, now - left / rate.per_sec], durable=False):
                return given, left

    # -- unique keys --------------------------------------------------------------
    def _key_state(self, unique_key: str) -> tuple[Path, _Version[_Key], _Key]:
        folder = self.unique_dir / digest(unique_key)
        version = self._read(folder, _parse_key)
        return folder, version, version.value or _FREE

    def _holding(self, version: _Version[_Key], state: _Key, now: float) -> str | None:
        """Who holds the key now: nobody once its keep ran out, or when the job holding it
        has no file anywhere and the key is ``stale_secs`` old (its producer died between
        the key and the job file, or its worker between the ack and letting go). A holder
        found is looked for again only ``stale_secs`` later (the version is touched)."""
        holder = state.holder
        if holder is None:
            return None
        if state.until is not None:
            return holder if state.until > now else None
        path = version.path
        if path is None or not _older(path, time.time() - self.stale_secs):
            return holder
        if not self._stored(holder, state.queue_dir):
            return None
        if not self.read_only:
            with suppress(OSError):  # replaced meanwhile, or Windows has it open: look next time
                os.utime(path)
        return holder

    def take_key(self, unique: UniqueKey, job_id: str, queue_dir: str, now: float) -> str | None:
        """Take ``unique.key`` for ``job_id``: None when it is its own now, else the id of the
        job that holds it."""
        while True:
            folder, version, state = self._key_state(unique.key)
            holding = self._holding(version, state, now)
            if holding is not None and holding != job_id:
                return holding
            if holding == job_id and state.until is None:
                return None  # the holder submitted again: it stays the holder
            value = [unique.key, job_id, queue_dir, None]
            if self._publish(folder, version.top, value, durable=True):
                return None

    def let_go(self, unique: UniqueKey, job_id: str, now: float, *, finished: bool) -> None:
        """``job_id`` ended (``finished``: kept ``keep_secs`` more) or was cancelled: its key
        goes, unless another job holds it by now. Idempotent."""
        while True:
            folder, version, state = self._key_state(unique.key)
            if state.holder != job_id or state.until is not None:
                return
            value: list[Any] = [unique.key, None, None, None]
            if finished and unique.keep_secs > 0:
                value = [unique.key, job_id, state.queue_dir, now + unique.keep_secs]
            if self._publish(folder, version.top, value, durable=True):
                return

    def holder(self, unique_key: str, now: float) -> str | None:
        _, version, state = self._key_state(unique_key)
        return self._holding(version, state, now)

    # -- holds: which waiting jobs a limit held back --------------------------------
    # A hold is a note named after the pending file its job waits in, in its tag's folder
    # (``holds/<TAG>/<queue>/<pending name>.hold``, the tag inside): the names alone give
    # the claim order and due times of the jobs a tag holds back, and a note whose pending
    # file is gone (claimed, cancelled) is stale. A claim clears the notes of the files it
    # takes, and a tag's folders go once empty, so ``holds/`` is empty when nothing is held.
    def _note(self, tag: str, queue_dir: str, name: str) -> Path:
        return self.holds_dir / digest(tag) / queue_dir / f"{name}{HOLD_SUFFIX}"

    def hold(self, tag: str, queue_dir: str, name: str) -> None:
        """Note that the job waiting in ``pending/<queue_dir>/<name>`` is held back by
        ``tag``. Written in place, not fsynced: a hold is only a note (one cut short reads
        as none, and goes), its job waits all the same."""
        path = self._note(tag, queue_dir, name)
        data = fs.frame(tag.encode(), FLOW_FORMAT_VERSION)
        for attempt in range(HOLD_WRITE_TRIES):
            try:
                with open(path, "wb") as note:
                    note.write(data)
                return
            except FileNotFoundError:  # its folder is new, or went empty meanwhile
                if attempt == HOLD_WRITE_TRIES - 1:
                    raise
                path.parent.mkdir(parents=True, exist_ok=True)

    def move_hold(self, tag: str, queue_dir: str, name: str, moved_to: str) -> None:
        """The held job's file was renamed (woken, due now): its hold follows it."""
        try:
            fs.replace(self._note(tag, queue_dir, name), self._note(tag, queue_dir, moved_to))
        except FileNotFoundError:
            self.hold(tag, queue_dir, moved_to)

    def clear_holds(self, files: Sequence[tuple[str, str]]) -> None:
        """The jobs that waited in these ``(queue folder, pending name)`` are held back no
        more (claimed, or cancelled); a folder left empty goes."""
        for tag_dir in _listdir(self.holds_dir):
            folder = self.holds_dir / tag_dir
            for queue_dir, name in files:
                fs.unlink(folder / queue_dir / f"{name}{HOLD_SUFFIX}")
            for queue_dir in {queue_dir for queue_dir, _ in files}:
                with suppress(OSError):  # not empty: other jobs are held on it
                    (folder / queue_dir).rmdir()
            with suppress(OSError):
                folder.rmdir()

    def held_on(self, tag: str) -> list[tuple[str, str]]:
        """``(queue folder, pending name)`` of each job ``tag`` holds back, in claim order
        (by name: priority, due time, enqueue stamp), from the names alone."""
        folder = self.holds_dir / digest(tag)
        found = [
            (name[: -len(HOLD_SUFFIX)], queue_dir)
            for queue_dir in _listdir(folder)
            for name in _listdir(folder / queue_dir)
            if name.endswith(HOLD_SUFFIX)
        ]
        return [(queue_dir, name) for name, queue_dir in sorted(found)]

    def holds(self, named: Callable[[str], bool] | None = None) -> Iterator[HeldJob]:
        """Every hold (those whose pending name ``named`` accepts), its tag read back."""
        for tag_dir in _listdir(self.holds_dir):
            for queue_dir in _listdir(self.holds_dir / tag_dir):
                folder = self.holds_dir / tag_dir / queue_dir
                for note in _listdir(folder):
                    name = note[: -len(HOLD_SUFFIX)]
                    if note.endswith(HOLD_SUFFIX) and (named is None or named(name)):
                        tag = self._read_tag(folder / note)
                        if tag is not None:
                            yield HeldJob(tag, queue_dir, name, folder / note)

    def _read_tag(self, path: Path) -> str | None:
        try:
            data = fs.retry_in_use("read a hold", path.read_bytes)
            assert isinstance(data, bytes)
            return fs.unframe(data, FLOW_FORMAT_VERSION).decode()
        except FileNotFoundError:
            return None
        except (fs.DecodeFailure, NuvomError, UnicodeDecodeError) as exc:
            if not self.read_only:  # a hold is only a note: its job waits all the same
                log.warning("dropped hold %s: not a hold (%s)", path, exc)
                fs.unlink(path)
            return None

    # -- clearing and sweeping ------------------------------------------------------
    def clear(self) -> None:
        """Drop every slot, unique key and hold (paused queues and buckets stay)."""
        for folder in (self.slots_dir, self.unique_dir, self.holds_dir):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)

    def sweep_holds(self, waiting: Callable[[str, str], bool], cutoff: float) -> int:
        """Delete holds older than ``cutoff`` (epoch seconds) whose job no longer waits in
        the file they name (``waiting(queue folder, name)``): left by a process that died
        before clearing them, or by a job enqueued again. Empty folders go too."""
        removed = 0
        for tag_dir in _listdir(self.holds_dir):
            for queue_dir in _listdir(self.holds_dir / tag_dir):
                folder = self.holds_dir / tag_dir / queue_dir
                for note in _listdir(folder):
                    name = note[: -len(HOLD_SUFFIX)]
                    if _older(folder / note, cutoff) and not waiting(queue_dir, name):
                        removed += fs.unlink(folder / note)
                with suppress(OSError):  # not empty: jobs are held on it
                    folder.rmdir()
            with suppress(OSError):
                (self.holds_dir / tag_dir).rmdir()
        return removed


def _parse_slots(value: list[Any]) -> list[Slot]:
    """``[key, [[job id, claim token, queue folder], ...]]``."""
    return [Slot(*map(_text, entry)) for entry in value[1]]


def _parse_bucket(value: list[Any]) -> float:
    """``[task, empty_at]``."""
    return _number(value[1])


def _parse_key(value: list[Any]) -> _Key:
    """``[key, holder, holder's queue folder, kept until]``; a free key holds ``None``s."""
    _, holder, queue_dir, until = value
    if holder is None:
        return _FREE
    return _Key(_text(holder), _text(queue_dir), None if until is None else _number(until))


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value
