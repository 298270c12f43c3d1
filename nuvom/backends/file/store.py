"""Small, portable file primitives the file backends share: safe names, atomic writes, renames.

Every write goes temp file → flush → fsync → ``os.replace``; renames retry
Windows' "file in use" ``PermissionError`` briefly. No ``fcntl``: atomic
renames are the only lock.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from nuvom.backends.common import Defaults
from nuvom.errors import BackendUnavailable

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.config import Settings
    from nuvom.runtime import Runtime
    from nuvom.serialization import Codec

RENAME_RETRY_SECS = 1.0  # how long a rename waits out Windows' "file in use" errors
RENAME_FIRST_PAUSE_SECS = 0.001  # first pause between those retries; doubles each time
STALE_TEMP_SECS = 3600.0  # a temp file this old was left by a writer that crashed
PARALLEL_FSYNC_MIN = 4  # batches this large are fsynced by several threads at once
FSYNC_THREADS = 8  # threads fsyncing one batch
MAX_FIELD_CHARS = 96  # longest encoded id/queue/owner kept readable in a file name
FILE_MAGIC = b"NVF"  # every file the file backends write starts with this
HEADER = struct.Struct(">3sBII")  # magic, format version, body length, crc32 of the body
MICROS_PER_SEC = 1_000_000

_SAFE_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_SAFE_DIR = re.compile(r"[a-z0-9][a-z0-9.-]*")
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)
_HEX_PREFIX = "="
_HASH_PREFIX = "~"
_HASHED = re.compile(r"~[0-9a-f]{40}")  # what encode_field writes for a long text


#: Temp files a batch write holds open at once: a 20,000-job ``.map()`` must not run the
#: process out of file descriptors (each chunk is fsynced, then closed).
OPEN_FILES_AT_ONCE = 256


def micros(seconds: float) -> int:
    """Epoch seconds as the whole microseconds file names carry (never below 0)."""
    return max(0, round(seconds * MICROS_PER_SEC))


def synchronous_flag(mode: str) -> bool:
    """``full``: fsync every write (survives power loss); ``normal``: survives process crashes."""
    if mode not in ("full", "normal"):
        raise ValueError(f"synchronous must be 'full' or 'normal', not {mode!r}")
    return mode == "full"


class DecodeFailure(Exception):
    """A stored file is not a valid record; the message is the reason kept beside it."""


def encode_field(text: str, *, directory: bool = False) -> str:
    """``text`` as a file-name field with no ``_``: itself when plain, else hex (or a hash).

    Directory names are kept lower case, as Windows and macOS fold case.
    """
    pattern = _SAFE_DIR if directory else _SAFE_FIELD
    plain = pattern.fullmatch(text) is not None and text.split(".")[0] not in _WINDOWS_RESERVED
    encoded = text if plain else _HEX_PREFIX + text.encode().hex()
    if len(encoded) > MAX_FIELD_CHARS:
        encoded = _HASH_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:40]
    return encoded


def decode_field(field: str, *, directory: bool = False) -> str | None:
    """The text behind ``encode_field``; None when it was hashed (too long to keep).

    Raises ``DecodeFailure`` for a field ``encode_field`` never writes: a name
    edited by hand or by another program must quarantine its file, not stop a claim.
    """
    if field.startswith(_HEX_PREFIX):
        try:
            return bytes.fromhex(field[1:]).decode()
        except ValueError:  # UnicodeDecodeError included
            raise DecodeFailure(f"{field!r} is not hex-encoded text") from None
    if field.startswith(_HASH_PREFIX):
        if _HASHED.fullmatch(field) is None:
            raise DecodeFailure(f"{field!r} is not a hashed name")
        return None
    if (_SAFE_DIR if directory else _SAFE_FIELD).fullmatch(field) is None:
        raise DecodeFailure(f"{field!r} is not a file-name field")
    return field


def field_label(field: str, *, directory: bool = False) -> str:
    """``field`` as people should read it: its text when that can be recovered, else as is."""
    try:
        return decode_field(field, directory=directory) or field
    except DecodeFailure:
        return field


def frame(body: bytes, version: int) -> bytes:
    """Prefix ``body`` with the header that lets a reader spot truncation and garbage."""
    return HEADER.pack(FILE_MAGIC, version, len(body), zlib.crc32(body)) + body


def unframe(data: bytes, version: int) -> bytes:
    """The body of a framed file; raises ``DecodeFailure`` saying what is wrong."""
    if not data:
        raise DecodeFailure("empty file")
    if len(data) < HEADER.size:
        raise DecodeFailure(f"truncated header ({len(data)} bytes)")
    magic, found_version, length, crc = HEADER.unpack_from(data)
    if magic != FILE_MAGIC:
        raise DecodeFailure("not a nuvom file (bad magic bytes)")
    if found_version != version:
        raise DecodeFailure(f"file format version {found_version} is not {version}")
    body = data[HEADER.size :]
    if len(body) != length:
        raise DecodeFailure(f"truncated body: {len(body)} of {length} bytes")
    if zlib.crc32(body) != crc:
        raise DecodeFailure("checksum mismatch")
    return body


def retry_in_use(action: str, operation: object, *args: object) -> object:
    """Run ``operation(*args)``, retrying ``PermissionError`` (Windows: file in use) briefly."""
    deadline = time.monotonic() + RENAME_RETRY_SECS
    pause = RENAME_FIRST_PAUSE_SECS
    while True:
        try:
            return operation(*args)  # type: ignore[operator]
        except PermissionError as exc:
            if time.monotonic() >= deadline:
                raise BackendUnavailable(f"cannot {action}: {exc}", backend="file") from exc
            time.sleep(pause)  # back-off while another process has the file open
            pause = min(pause * 2, 0.05)


def replace(source: Path | str, target: Path | str) -> None:
    """Atomic ``os.replace``; ``FileNotFoundError`` when another process moved ``source`` first."""
    retry_in_use("rename a file", os.replace, source, target)


def unlink(path: Path | str) -> bool:
    """Remove ``path``; False when it was already gone (another process got there first)."""
    try:
        retry_in_use("remove a file", os.unlink, path)
    except FileNotFoundError:
        return False
    return True


def fsync_directory(path: Path) -> None:
    """Make renames into ``path`` durable (POSIX); Windows has no directory handles to sync."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_stale_temps(directory: Path, older_than_secs: float = STALE_TEMP_SECS) -> int:
    """Remove temp files a crashed writer left behind; return how many.

    Age is file modification time (wall clock): a live write is never that old.
    """
    cutoff = time.time() - older_than_secs
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            stale = entry.name.endswith(".tmp") and entry.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue
        if stale:
            removed += unlink(entry.path)
    return removed


class TempWriter:
    """Writes files into a private temp folder, durably, ready to be renamed into place.

    A batch is fsynced by a few threads at once: the filesystem commits
    concurrent fsyncs together, so a batch of 32 costs about what one does.
    """

    def __init__(self, directory: Path, *, sync: bool = True) -> None:
        self.directory = directory
        self.sync = sync  # False: nothing is fsynced (survives a process crash, not power loss)
        self._prefix = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._syncers: ThreadPoolExecutor | None = None

    def _temp_path(self) -> Path:
        with self._lock:
            number = next(self._counter)
        return self.directory / f"{self._prefix}-{threading.get_ident()}-{number}.tmp"

    def write(self, data: bytes, *, durable: bool = True) -> Path:
        return self.write_many([data], durable=durable)[0]

    def write_many(self, blobs: Sequence[bytes], *, durable: bool = True) -> list[Path]:
        """Write each blob to its own temp file; with ``durable``, fsync them all before returning."""
        durable = durable and self.sync
        paths: list[Path] = []
        handles: list[BinaryIO] = []  # closed after the fsyncs of their chunk, below
        try:
            for start in range(0, len(blobs), OPEN_FILES_AT_ONCE):
                for data in blobs[start : start + OPEN_FILES_AT_ONCE]:
                    path = self._temp_path()
                    handle: BinaryIO = open(path, "wb")  # noqa: SIM115
                    paths.append(path)
                    handles.append(handle)
                    handle.write(data)
                    if durable:
                        handle.flush()
                if durable:
                    self._fsync_all([opened.fileno() for opened in handles])
                while handles:
                    handles.pop().close()
        except BaseException:
            for opened in handles:
                opened.close()
            for path in paths:
                unlink(path)
            raise
        return paths

    def sync_directories(self, paths: Iterable[Path]) -> None:
        """Make the renames and creations in each folder durable, several at once (POSIX;
        nothing when ``sync`` is off). A folder that is gone is skipped: nothing is in it."""
        if not self.sync or os.name == "nt":
            return
        fds = []
        try:
            for path in dict.fromkeys(paths):
                with suppress(FileNotFoundError):
                    fds.append(os.open(path, os.O_RDONLY))
            self._fsync_all(fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _fsync_all(self, fds: list[int]) -> None:
        if len(fds) < PARALLEL_FSYNC_MIN:
            for fd in fds:
                os.fsync(fd)
            return
        with self._lock:
            if self._syncers is None:
                self._syncers = ThreadPoolExecutor(
                    max_workers=FSYNC_THREADS, thread_name_prefix="nuvom-fsync"
                )
            syncers = self._syncers
        for done in [syncers.submit(os.fsync, fd) for fd in fds]:
            done.result()

    def close(self) -> None:
        with self._lock:
            syncers, self._syncers = self._syncers, None
        if syncers is not None:
            syncers.shutdown(wait=True)


def write_atomically(
    writer: TempWriter, target: Path, data: bytes, *, durable: bool = True
) -> None:
    """Replace ``target`` with ``data`` so readers see the old file or the new, never half."""
    write_many_atomically(writer, [(target, data)], durable=durable)


def write_many_atomically(
    writer: TempWriter, files: Sequence[tuple[Path, bytes]], *, durable: bool = True
) -> None:
    """``write_atomically`` for a batch: every file is written (and fsynced) before any rename."""
    temps = writer.write_many([data for _, data in files], durable=durable)
    moved = 0
    try:
        for temp, (target, _) in zip(temps, files, strict=True):
            replace(temp, target)
            moved += 1
    except BaseException:
        for temp in temps[moved:]:
            unlink(temp)
        raise


def publish_exclusively(
    writer: TempWriter, target: Path, data: bytes, *, durable: bool = True
) -> bool:
    """Put ``data`` at ``target`` unless a file is there already; True if this call put it.

    The file is written whole (and, with ``durable``, fsynced) in the temp folder first,
    then linked in: POSIX ``link`` and Windows ``rename`` both refuse an existing target,
    so exactly one of any number of racing processes wins, and no reader ever sees a torn
    file (``open(..., "x")`` then writing would leave one holding the name after a crash).
    ``FileNotFoundError``: ``target``'s folder is missing.
    """
    temp = writer.write(data, durable=durable)
    try:
        if os.name == "nt":
            retry_in_use("create a file", os.rename, temp, target)
        else:
            _link(temp, target)
    except FileExistsError:
        return False
    finally:
        unlink(temp)  # POSIX: the link keeps the data; Windows: already renamed away
    if durable and writer.sync:
        fsync_directory(target.parent)
    return True


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError as exc:  # EPERM, ENOTSUP...: a filesystem without hard links
        raise BackendUnavailable(
            f"cannot create {target} (the folder must support hard links): {exc}",
            backend="file",
        ) from exc


class FileBackend:
    """How the file queue and the file results are both built: a folder (from the settings
    when not given) with the named subfolders, a durable temp writer, a codec and a clock."""

    #: The subfolders to create under the root, ``tmp`` among them.
    folders: ClassVar[tuple[str, ...]]
    what: ClassVar[str]  # for messages: "the file queue", "the results folder"
    root: Path
    codec: Codec
    clock: Clock

    @staticmethod
    def default_directory(settings: Settings) -> Path:
        raise NotImplementedError

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        codec: Codec | None = None,
        clock: Clock | None = None,
        synchronous: str | None = None,
        read_only: bool | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        """``read_only`` (default: the ``runtime``'s) creates no folder and sweeps nothing: a
        missing folder reads as an empty one. It is for looking; writes are not stopped."""
        defaults = Defaults(runtime)
        self.root = Path(directory or self.default_directory(defaults.settings))
        if read_only is None:
            read_only = runtime is not None and runtime.read_only
        self.read_only = read_only
        try:
            for name in () if self.read_only else self.folders:
                (self.root / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot create {self.what} at {self.root}: {exc}", backend="file"
            ) from exc
        self.codec, self.clock = defaults.codec(codec), defaults.clock(clock)
        sync = synchronous_flag(synchronous or defaults.settings.file_synchronous)
        self._writer = TempWriter(self.root / "tmp", sync=sync)
        if not self.read_only:
            sweep_stale_temps(self.root / "tmp")
        self.ready()

    def ready(self) -> None:
        """Called once built: set up what the subclass adds."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def close(self) -> None:
        self._writer.close()
