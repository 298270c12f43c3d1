"""One SQLite file, shared by the queue and the result backend when both point at it.

WAL mode, ``busy_timeout``, one connection per thread, writes under
``BEGIN IMMEDIATE``. Sharing the file lets a job's outcome and its ack commit
in one transaction. All SQL for this store lives in ``sql.py`` beside it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from nuvom.backends.common import Defaults
from nuvom.backends.sqlbase import Row, SQLBackend
from nuvom.backends.sqlite import sql
from nuvom.errors import BackendError, BackendUnavailable

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.config import Settings
    from nuvom.runtime import Runtime
    from nuvom.serialization import Codec

log = logging.getLogger("nuvom.sqlite")

LOCK_RETRY_SLEEP_SECS = 0.005  # first pause when SQLite reports busy past its own timeout
LOCK_RETRY_MAX_SLEEP_SECS = 0.2

# SQLite's primary result codes (the sqlite3 module names them only from Python 3.11).
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_CORRUPT = 5, 6, 8, 11
SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 13, 14, 26
# How to tell them when the error has no code: raised by the sqlite3 module, or Python 3.10.
_CODES_BY_TEXT = (
    ("not a database", SQLITE_NOTADB),
    ("malformed", SQLITE_CORRUPT),
    ("readonly", SQLITE_READONLY),
    ("read-only", SQLITE_READONLY),
    ("unable to open", SQLITE_CANTOPEN),
    ("locked", SQLITE_BUSY),
    ("busy", SQLITE_BUSY),
    ("disk is full", SQLITE_FULL),
)


def _code(exc: sqlite3.Error) -> int | None:
    """The primary result code, by number when SQLite gave one (a trigger's RAISE text may
    say anything), else by the text."""
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF
    text = str(exc).lower()
    return next((code for words, code in _CODES_BY_TEXT if words in text), None)


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in (SQLITE_BUSY, SQLITE_LOCKED)


class SQLiteStore:
    """Connections, schema and transactions for one database file.

    ``transaction()`` yields a connection inside ``BEGIN IMMEDIATE`` and commits on
    exit; SQLite's busy errors are retried until ``busy_timeout_secs`` passes,
    then surface as ``BackendUnavailable``, never as "database is locked"; any other
    ``sqlite3.Error`` as a ``BackendError`` naming the file. ``read_only`` stores (for
    commands that only look) create nothing, refuse ``transaction()``, and read a file
    that does not exist as an empty store.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "full",
        busy_timeout_secs: float = 10.0,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.key = self.path.resolve()  # the file itself, however the path was spelt
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise BackendError(f"unknown SQLite synchronous mode {synchronous!r}", backend="sqlite")
        self.busy_timeout_secs = busy_timeout_secs
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        # Never create the file, its folder or its tables; never write (_open_for_reading).
        self.read_only = read_only
        if not read_only:
            self._ensure_schema()

    @classmethod
    def from_settings(
        cls,
        path: Path | str,
        settings: Settings,
        *,
        synchronous: str | None = None,
        busy_timeout_secs: float | None = None,
        read_only: bool = False,
    ) -> SQLiteStore:
        """A store for ``path`` with the settings' durability and lock timeout, unless given."""
        return cls(
            path,
            synchronous=synchronous or settings.sqlite_synchronous,
            busy_timeout_secs=busy_timeout_secs or settings.sqlite_busy_timeout_secs,
            read_only=read_only,
        )

    def same_file(self, other: SQLiteStore) -> bool:
        """True when ``other`` opens this database file: a transaction here covers its tables."""
        return other is self or other.key == self.key

    # -- connections -----------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        conn = self._open_for_reading() if self.read_only else self._open_for_writing()
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _open_for_writing(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(
                f"cannot create {self.path.parent}: {exc.strerror or exc}", backend="sqlite"
            ) from None
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout_secs,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._explain(exc) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_secs * 1000)}")
            conn.execute("PRAGMA temp_store=MEMORY")
        except sqlite3.Error as exc:
            conn.close()
            raise self._explain(exc) from None
        return conn

    def _open_for_reading(self) -> sqlite3.Connection:
        """The file as it is, or an empty view when there is none: nothing is created or written.

        ``mode=rw`` opens only a file that exists, and ``query_only`` refuses every write.
        (Not ``mode=ro``: a read-only connection cannot remove the WAL files it made when it
        closes, so it would leave ``-wal`` and ``-shm`` files behind.) A missing file, or
        one with no nuvom tables yet, reads as an in-memory database holding the empty
        schema, so every read answers "nothing" the way it would on a new store.
        """
        try:
            conn = sqlite3.connect(
                f"{self.key.as_uri()}?mode=rw",
                uri=True,
                timeout=self.busy_timeout_secs,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            if _code(exc) == SQLITE_CANTOPEN and not self.path.exists():
                return self._empty_view()
            raise self._explain(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_secs * 1000)}")
            has_meta = conn.execute(sql.HAS_META_TABLE).fetchone() is not None
            version = conn.execute(sql.GET_SCHEMA_VERSION).fetchone() if has_meta else None
            if version is not None:
                self._check_version(version[0])
                _fill_missing_tables(conn)
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            conn.close()
            raise self._explain(exc) from None
        except BackendError:
            conn.close()
            raise
        if version is None:  # an empty file: created, but no nuvom schema committed in it yet
            conn.close()
            return self._empty_view()
        return conn

    @staticmethod
    def _empty_view() -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        for statement in sql.SCHEMA:
            conn.execute(statement)
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _check_version(self, found: str) -> None:
        if int(found) > sql.SCHEMA_VERSION:
            raise BackendError(
                f"{self.path} was written by a newer nuvom (schema {found}, "
                f"this one knows {sql.SCHEMA_VERSION}); upgrade nuvom",
                backend="sqlite",
            )

    def _explain(self, exc: sqlite3.Error, doing: str = "opening it") -> BackendError:
        """``exc`` as a nuvom error naming this file, what was being done, and what to do."""
        text = str(exc)
        code = _code(exc)
        if code in (SQLITE_NOTADB, SQLITE_CORRUPT):
            return BackendError(
                f"{self.path} is not a SQLite database nuvom can use ({text}); "
                "move it aside or point NUVOM_SQLITE_DB_PATH elsewhere",
                backend="sqlite",
            )
        if code in (SQLITE_READONLY, SQLITE_CANTOPEN) and self.read_only:
            return BackendError(
                f"cannot read {self.path} ({text}): check its permissions, "
                "or point NUVOM_SQLITE_DB_PATH elsewhere",
                backend="sqlite",
            )
        if code in (SQLITE_READONLY, SQLITE_CANTOPEN):
            return BackendError(
                f"cannot write to {self.path} ({text}): check that {self.path.parent} "
                "is writable, or point NUVOM_SQLITE_DB_PATH elsewhere",
                backend="sqlite",
            )
        if code in (SQLITE_BUSY, SQLITE_LOCKED):
            return BackendUnavailable(
                f"{self.path} stayed locked for over {self.busy_timeout_secs:g}s", backend="sqlite"
            )
        if code == SQLITE_FULL:
            return BackendError(
                f"cannot write to {self.path} ({text}): free some space on its disk",
                backend="sqlite",
            )
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        return BackendError(
            f"SQLite error on {self.path} {doing}: {text} ({name})", backend="sqlite"
        )

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise BackendError(f"store {self.path} is closed", backend="sqlite")
            conn = self._local.conn = self._open()
        return conn

    def _ensure_schema(self) -> None:
        """Create what is missing; a file an older nuvom wrote gets its new columns first
        (``sql.ADDED_COLUMNS``), as the indexes on them need them."""
        with self.transaction() as conn:
            tables = [s for s in sql.SCHEMA if _CREATE_TABLE.search(s)]
            for statement in tables:
                conn.execute(statement)
            row = conn.execute(sql.GET_SCHEMA_VERSION).fetchone()
            if row is not None:
                self._check_version(row[0])
            _add_missing_columns(conn)
            for statement in sql.SCHEMA:
                if statement not in tables:
                    conn.execute(statement)
            if row is None:
                conn.execute(sql.SET_SCHEMA_VERSION, (str(sql.SCHEMA_VERSION),))
            elif int(row[0]) < sql.SCHEMA_VERSION:
                conn.execute(sql.UPGRADE_SCHEMA_VERSION, (str(sql.SCHEMA_VERSION),))
                log.info("upgraded %s to schema %d", self.path, sql.SCHEMA_VERSION)

    # -- transactions ----------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; commits on success, rolls back on error.

        An ``sqlite3.Error`` from any statement in it, or from the commit, is rolled back
        and raised as a ``BackendError``: callers never see the driver's exceptions, and
        the connection stays usable for the next transaction.
        """
        if self.read_only:
            raise BackendError(f"{self.path} is open read-only", backend="sqlite")
        conn = self.conn
        self._begin(conn)
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._rollback(conn) and _code(exc) == SQLITE_FULL:
                self._reclaim_wal(conn)
            raise self._explain(exc, "during a write") from None
        except BaseException:
            self._rollback(conn)
            raise

    write = transaction  # its name before it matched PostgresStore's; kept for code using it

    def _begin(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + self.busy_timeout_secs
        pause = LOCK_RETRY_SLEEP_SECS
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise self._explain(exc, "starting a write") from None
                log.debug("SQLite busy on %s; retrying", self.path)
                time.sleep(pause)
                pause = min(pause * 2, LOCK_RETRY_MAX_SLEEP_SECS)

    def _rollback(self, conn: sqlite3.Connection) -> bool:
        """End the failed transaction; True if ``conn`` is still usable. One that cannot roll
        back is dropped, and the next use opens a fresh one (closing it rolls back the rest)."""
        try:
            if conn.in_transaction:  # SQLite itself rolls back on a full disk or an I/O error
                conn.execute("ROLLBACK")
            return True
        except sqlite3.Error:
            log.warning("rollback failed on %s; reopening its connection", self.path, exc_info=True)
            self._discard(conn)
            return False

    def _reclaim_wal(self, conn: sqlite3.Connection) -> None:
        """After a full disk: copy the WAL into the database and truncate it. The WAL keeps
        its largest size for reuse, so the space it holds would stay taken, and the store
        stuck, after the disk has room again. May fail too (still full): then it only logs."""
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("disk full on %s; could not checkpoint its WAL: %s", self.path, exc)
            return
        if busy:
            log.warning(
                "disk full on %s; its WAL is still in use (%d of %d frames copied)",
                self.path, copied, frames,
            )  # fmt: skip
        else:
            log.warning("disk full on %s; checkpointed and truncated its WAL", self.path)

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def read(self, query: str, params: Any = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise self._explain(exc, "during a read") from None

    def reads(self, *queries: tuple[str, Any]) -> list[list[sqlite3.Row]]:
        """Several reads in a row on this thread's connection."""
        return [self.read(query, params) for query, params in queries]

    def data_version(self) -> int:
        """Changes whenever another connection commits; cheap to poll."""
        return int(self.read("PRAGMA data_version")[0][0])

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed in its own thread
                conn.close()
        self._local = threading.local()


class SQLiteBackend(SQLBackend):
    """How the SQLite queue and results are both built: on a file, or on a ``store`` given;
    the current settings (or those of the ``runtime`` building them) fill in the rest. Built
    by a runtime, every backend on one file shares one store, so their steps commit together."""

    sql: ClassVar[ModuleType] = sql
    store: SQLiteStore
    #: The setting that names the file when no path or store is given.
    path_setting: ClassVar[str]

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        store: SQLiteStore | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
        synchronous: str | None = None,
        busy_timeout_secs: float | None = None,
        read_only: bool | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        """``read_only`` (default: the ``runtime``'s) opens the file without creating or
        writing anything; a missing file reads as an empty store (``SQLiteStore._open_for_reading``)."""
        if read_only is None:
            read_only = runtime is not None and runtime.read_only

        def where(settings: Settings) -> tuple[Any, Callable[[], SQLiteStore]]:
            file = Path(path or getattr(settings, self.path_setting))
            return ("sqlite", file.resolve()), lambda: SQLiteStore.from_settings(
                file,
                settings,
                synchronous=synchronous,
                busy_timeout_secs=busy_timeout_secs,
                read_only=read_only,
            )

        self.attach(store, Defaults(runtime), codec, clock, where)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.store.path)!r})"

    def returned(self, cur: sqlite3.Connection, statement: str, rows: Sequence[Any]) -> list[Row]:
        """One ``execute`` per row: ``executemany`` drops the rows a statement returns."""
        return [found for params in rows for found in cur.execute(statement, params).fetchall()]


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")


def _missing_columns(conn: sqlite3.Connection) -> dict[str, list[tuple[str, str]]]:
    """The ``sql.ADDED_COLUMNS`` each table of this file lacks (a table it lacks is left out)."""
    missing: dict[str, list[tuple[str, str]]] = {}
    for table, columns in sql.ADDED_COLUMNS.items():
        have = {row[0] for row in conn.execute(sql.TABLE_COLUMNS, (table,))}
        if have:
            missing[table] = [(name, kind) for name, kind in columns if name not in have]
    return {table: columns for table, columns in missing.items() if columns}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in _missing_columns(conn).items():
        for name, kind in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _fill_missing_tables(conn: sqlite3.Connection) -> None:
    """Empty TEMP stand-ins for tables a file written by an older nuvom lacks (they are
    added when a writer next opens it): a read of them answers "nothing", and the file
    is not touched (TEMP tables live in this connection alone). A table that lacks newer
    columns is read through a TEMP view of the same name (TEMP names come first), which
    gives them their defaults."""
    have = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for statement in sql.SCHEMA:
        found = _CREATE_TABLE.search(statement)
        if found is not None and found.group(1) not in have:
            conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
    for table, columns in _missing_columns(conn).items():
        defaults = ", ".join(f"{_default_of(kind)} AS {name}" for name, kind in columns)
        conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {defaults} FROM main.{table}")


def _default_of(kind: str) -> str:
    """The value a column of ``sql.ADDED_COLUMNS`` kind ``kind`` has in rows older than it."""
    found = re.search(r"DEFAULT (\S+)", kind)
    return found.group(1) if found else "NULL"
