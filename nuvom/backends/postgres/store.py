"""One PostgreSQL schema, shared by the queue and the result backend when both point at it.

A ``psycopg_pool`` pool whose connections use nuvom's schema as ``search_path``;
the schema is created and migrated on first use. Connection failures, and a server
that stops answering, surface as ``BackendUnavailable`` within a bounded time, never
as a hang.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from nuvom.backends.common import Defaults
from nuvom.backends.postgres import sql as q
from nuvom.backends.sqlbase import Row, SQLBackend
from nuvom.config import DEFAULT_POSTGRES_TIMEOUT_SECS
from nuvom.errors import BackendError, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    from nuvom.clock import Clock
    from nuvom.config import Settings
    from nuvom.runtime import Runtime
    from nuvom.serialization import Codec

log = logging.getLogger("nuvom.postgres")

DEFAULT_SCHEMA = "nuvom"
# One setting, NUVOM_POSTGRES_TIMEOUT_SECS, bounds every wait on the server: a connect,
# a pooled connection, each statement (server side) and each answer (client side).
MIN_CONNECT_TIMEOUT_SECS = 2  # libpq's floor: connect_timeout=1 means 2 s
KEEPALIVE_PROBES = 3  # unanswered TCP keepalives before an idle connection counts as dead
# Past statement_timeout, the client waits this much longer before giving up itself, so
# a live but slow server's own cancellation (a clean error, the connection kept) wins.
CLIENT_GRACE_SECS = 1.0
IDLE = 0  # libpq's PQTRANS_IDLE: no transaction open on the connection
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 16  # connections one process opens at most
# A connection that worked this recently is lent without a test query first; an
# older one is tested, so the first use after a server restart does not fail.
FRESH_CONNECTION_SECS = 1.0
BATCH_MIN_ROWS = 4  # a submit or settle of this many jobs or more: one statement a table
INSTALL_HINT = 'the PostgreSQL backend needs psycopg 3: pip install "nuvom[postgres]"'


def import_psycopg() -> Any:
    """``psycopg``, or a ``BackendError`` saying which extra to install."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401 - checked here so the error names the extra
    except ImportError:
        raise BackendError(INSTALL_HINT, backend="postgres") from None
    return psycopg


def require_dsn(settings: Settings) -> str:
    """``NUVOM_POSTGRES_DSN``, or a ``ConfigError`` saying it is needed and what it looks like."""
    if not settings.postgres_dsn:
        raise ConfigError(
            "NUVOM_POSTGRES_DSN: the postgres backend needs it "
            "(e.g. postgresql://user@host:5432/dbname)",
            variable="NUVOM_POSTGRES_DSN",
        )
    return settings.postgres_dsn


def connection_params(dsn: str, timeout_secs: float) -> dict[str, Any]:
    """libpq parameters that notice a dead server or network: each unless the DSN sets it.

    Keepalives find a peer gone while the connection is idle (the LISTEN one most of
    the time), ``tcp_user_timeout`` one that stops acknowledging what was sent.
    """
    from psycopg.conninfo import conninfo_to_dict

    whole_secs = max(1, math.ceil(timeout_secs))
    wanted: dict[str, Any] = {
        "connect_timeout": max(MIN_CONNECT_TIMEOUT_SECS, whole_secs),
        "keepalives": 1,
        "keepalives_idle": whole_secs,
        "keepalives_interval": max(1, math.ceil(timeout_secs / KEEPALIVE_PROBES)),
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": math.ceil(timeout_secs * 1000),  # milliseconds
    }
    try:
        given = conninfo_to_dict(dsn)
    except Exception:  # a bad DSN fails at connect, with libpq's own message
        return wanted
    return {name: value for name, value in wanted.items() if name not in given}


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable DSN>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)  # type: ignore[arg-type]


class Watchdog:
    """Shuts down the socket of a connection whose server has not answered in time.

    A stopped server (SIGSTOP, a frozen VM) still has a kernel that accepts and
    ACKs TCP: keepalives and ``tcp_user_timeout`` never fire, and its own
    ``statement_timeout`` cannot run. Only the client can give up. Shutting the
    socket down wakes libpq's wait with end-of-file, so the waiting call fails
    (in its own thread: nothing of libpq is touched here) and the connection is
    broken, never lent again. One thread per store sleeps until the next deadline.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._deadlines: dict[int, tuple[float, int]] = {}  # token -> (monotonic, socket fd)
        self._fired: set[int] = set()  # tokens whose socket was shut
        self._tokens = itertools.count()
        self._wake_at: float | None = None  # when the thread looks next; None: when told
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, fd: int, secs: float) -> int:
        """Shut socket ``fd`` down in ``secs`` unless ``unwatch`` comes first; a token."""
        deadline = time.monotonic() + secs
        with self._cond:
            token = next(self._tokens)
            self._deadlines[token] = (deadline, fd)
            if self._thread is None or not self._thread.is_alive():  # first use, or forked
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif self._wake_at is None or deadline < self._wake_at:
                self._cond.notify()
        return token

    def unwatch(self, token: int) -> bool:
        """Stop watching; True when the deadline passed and the socket was shut down."""
        with self._cond:
            self._deadlines.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for token, (deadline, fd) in list(self._deadlines.items()):
                    if deadline <= now:
                        # Under the lock: the owner is still inside its watch, so fd is its.
                        del self._deadlines[token]
                        self._fired.add(token)
                        _shut_down(fd)
                self._wake_at = min((d for d, _ in self._deadlines.values()), default=None)
                self._cond.wait(None if self._wake_at is None else self._wake_at - now)


def _shut_down(fd: int) -> None:
    """Shut down a socket another object owns, leaving its file descriptor open."""
    try:
        borrowed = socket.socket(fileno=fd)
    except OSError:
        log.debug("cannot reach socket %d to shut it down", fd, exc_info=True)
        return
    try:
        borrowed.shutdown(socket.SHUT_RDWR)
    except OSError:  # already disconnected: the waiting call fails by itself
        log.debug("shutting socket %d down failed", fd, exc_info=True)
    finally:
        borrowed.detach()  # libpq owns and closes it


class PostgresStore:
    """Pooled connections, schema migrations and transactions for one schema of one database.

    ``timeout_secs`` bounds every wait on the server (see ``NUVOM_POSTGRES_TIMEOUT_SECS``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        migrate: bool = True,
        timeout_secs: float = DEFAULT_POSTGRES_TIMEOUT_SECS,
    ) -> None:
        psycopg = import_psycopg()
        from psycopg import sql
        from psycopg_pool import ConnectionPool

        if not schema or len(schema) > 63:
            raise BackendError(f"bad PostgreSQL schema name {schema!r}", backend="postgres")
        if not timeout_secs > 0:
            raise BackendError(
                f"the PostgreSQL timeout must be above 0 seconds, not {timeout_secs!r}",
                backend="postgres",
            )
        self.dsn = dsn
        self.schema = schema
        self.timeout_secs = timeout_secs
        self._params = connection_params(dsn, timeout_secs)
        self._watchdog = Watchdog(f"nuvom-{schema}-watchdog")
        timeout_ms = str(math.ceil(timeout_secs * 1000))
        self._timeouts = ("statement_timeout", timeout_ms, "lock_timeout", timeout_ms)
        self.channel = f"nuvom_{schema}"[:63]  # LISTEN/NOTIFY channel for this schema's queue
        self._psycopg = psycopg
        self._search_path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))
        self._lock = threading.Lock()
        self._closed = False
        self._used_at: dict[int, float] = {}  # id(connection) -> monotonic time of last success
        self.pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            timeout=timeout_secs,
            kwargs=self._params,
            configure=self._configure,
            check=self._check,
            open=False,
            name=f"nuvom-{schema}",
        )
        self.pool.open(wait=False)
        if migrate:
            self.migrate()

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r}, schema={self.schema!r})"

    def same_schema(self, other: PostgresStore) -> bool:
        """True when ``other`` reaches the same tables: one transaction here covers both."""
        return other is self or (other.dsn, other.schema) == (self.dsn, self.schema)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        with self._answering(conn):
            conn.execute(self._search_path)
            # nuvom's statements are short and index-driven; re-planning them on every
            # call (PostgreSQL's default for the first executions and whenever a custom
            # plan looks cheaper) costs more than running them: about 0.4 ms per claim.
            conn.execute("SET plan_cache_mode = force_generic_plan")
            # A slow statement or a lock wait ends on the server, with a clean error.
            conn.execute(
                "SELECT set_config(%s, %s, false), set_config(%s, %s, false)", self._timeouts
            )
            conn.commit()

    @contextmanager
    def _answering(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Bound how long the block waits for the server on ``conn``; past the bound the
        connection is shut and closed, and a call still waiting raises ``BackendUnavailable``."""
        token = self._watchdog.watch(conn.pgconn.socket, self.timeout_secs + CLIENT_GRACE_SECS)
        failed = True
        try:
            yield
            failed = False
        finally:
            if self._watchdog.unwatch(token):
                self._used_at.pop(id(conn), None)
                conn.close()  # its socket is shut: never lend it again
                if failed:
                    log.warning(
                        "PostgreSQL at %s did not answer within %gs; connection dropped",
                        redact(self.dsn),
                        self.timeout_secs,
                    )
                    raise BackendUnavailable(
                        f"PostgreSQL at {redact(self.dsn)} did not answer within "
                        f"{self.timeout_secs:g}s",
                        backend="postgres",
                    ) from None

    def explain(self, exc: BaseException) -> BackendError:
        """A driver or pool error as a nuvom error."""
        from psycopg_pool import PoolClosed, PoolTimeout

        where = redact(self.dsn)
        if isinstance(exc, PoolTimeout | self._psycopg.OperationalError):
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return BackendUnavailable(
                f"PostgreSQL at {where} is unavailable: {detail}", backend="postgres"
            )
        if isinstance(exc, PoolClosed):
            return BackendError(f"the PostgreSQL store for {where} is closed", backend="postgres")
        return BackendError(f"PostgreSQL error on {where}: {exc}", backend="postgres")

    # -- transactions ----------------------------------------------------
    @contextmanager
    def transaction(self, *, pipelined: bool = True) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor inside one transaction: commits on success, rolls back on error.

        Statements are pipelined: they go out together and the server answers
        once, when a result is read or at commit, so a short transaction costs
        one round trip, plus one per result read on the way (a settle reads which
        acked jobs others wait for). BEGIN and COMMIT are sent as statements of the
        pipeline, on a connection in autocommit mode for the while: psycopg's own
        BEGIN waits for its answer, a round trip more. Commit included, it must end
        within the timeout (plus ``CLIENT_GRACE_SECS``): a server that stops
        answering fails it with ``BackendUnavailable``.
        """
        try:
            with self.pool.connection() as conn:
                with self._answering(conn):
                    conn.autocommit = pipelined
                    try:
                        with conn.pipeline() if pipelined else nullcontext(), conn.cursor() as cur:
                            if pipelined:
                                cur.execute("BEGIN", prepare=False)
                            yield cur
                            if pipelined:
                                cur.execute("COMMIT", prepare=False)
                        conn.commit()  # here, not on leaving the pool's block: bounded too
                    except BaseException:
                        self._roll_back(conn)
                        raise
                    finally:
                        self._end_autocommit(conn)
                self._used_at[id(conn)] = time.monotonic()
        except (self._psycopg.Error, *_pool_errors()) as exc:
            raise self.explain(exc) from None

    @staticmethod
    def _end_autocommit(conn: psycopg.Connection[Any]) -> None:
        """Give the pool its connection back as it lent it; one still in a transaction (its
        rollback failed) is closed, so the pool drops it rather than lend it in autocommit."""
        if conn.closed or not conn.autocommit:
            return
        if conn.pgconn.transaction_status == IDLE:
            conn.autocommit = False
        else:
            conn.close()

    @staticmethod
    def _roll_back(conn: psycopg.Connection[Any]) -> None:
        """Roll back after an error, keeping the error: a broken connection is discarded anyway."""
        if conn.closed:
            return
        try:
            conn.rollback()
        except Exception:
            log.debug("rollback after an error failed", exc_info=True)

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """Before lending a connection: skip the test query if it worked a moment ago."""
        used = self._used_at.get(id(conn))
        if used is not None and time.monotonic() - used < FRESH_CONNECTION_SECS:
            return
        from psycopg_pool import ConnectionPool

        with self._answering(conn):
            ConnectionPool.check_connection(conn)

    def execute_alone(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement as its own transaction and return its rows: one round trip.

        No BEGIN/COMMIT of ours: in autocommit mode the server wraps the single
        statement in an implicit transaction, so it is still all or nothing.
        """
        try:
            with self.pool.connection() as conn:
                with self._answering(conn):
                    conn.autocommit = True
                    try:
                        rows: list[tuple[Any, ...]] = conn.execute(
                            query, params, prepare=True
                        ).fetchall()
                    finally:
                        if not conn.closed:
                            conn.autocommit = False
                self._used_at[id(conn)] = time.monotonic()
        except (self._psycopg.Error, *_pool_errors()) as exc:
            raise self.explain(exc) from None
        return rows

    def read(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.transaction() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def reads(self, *queries: tuple[str, Any]) -> list[list[tuple[Any, ...]]]:
        """Several reads in one transaction (pipelined)."""
        with self.transaction() as cur:
            return [cur.execute(query, params or None).fetchall() for query, params in queries]

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool (the LISTEN connection).

        It has the pool's keepalives, so a listener on a vanished server notices, but
        no statement timeout: LISTEN waits idle, which no statement timeout limits.
        """
        try:
            conn = self._psycopg.connect(self.dsn, autocommit=autocommit, **self._params)
        except self._psycopg.Error as exc:
            raise self.explain(exc) from None
        return conn  # type: ignore[no-any-return]

    # -- schema ------------------------------------------------------------
    def migrate(self) -> tuple[int, int]:
        """Create the schema or bring it up to date; return (version before, version after)."""
        from psycopg import sql

        # Not pipelined: reading the version after several unread statements (the lock
        # among them) can return an earlier statement's result in pipeline mode.
        with self.transaction(pipelined=False) as cur:
            # One migrator at a time, even across hosts racing on first use.
            cur.execute(q.MIGRATION_LOCK, (f"nuvom-migrate:{self.schema}",))
            cur.execute(sql.SQL(q.CREATE_SCHEMA).format(schema=sql.Identifier(self.schema)))
            cur.execute(self._search_path)
            cur.execute(q.CREATE_META)
            cur.execute(q.GET_SCHEMA_VERSION)
            row = cur.fetchone()
            before = int(row[0]) if row else 0
            if before > q.SCHEMA_VERSION:
                raise BackendError(
                    f"schema {self.schema!r} was written by a newer nuvom (version {before}, "
                    f"this one knows {q.SCHEMA_VERSION}); upgrade nuvom",
                    backend="postgres",
                )
            for version in range(before + 1, q.SCHEMA_VERSION + 1):
                for statement in q.MIGRATIONS[version - 1]:
                    cur.execute(statement)
                log.info("PostgreSQL schema %s migrated to version %d", self.schema, version)
            if before != q.SCHEMA_VERSION:
                cur.execute(q.SET_SCHEMA_VERSION, (str(q.SCHEMA_VERSION),))
        return before, q.SCHEMA_VERSION

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.pool.close()
        self._watchdog.close()


def _pool_errors() -> tuple[type[BaseException], ...]:
    from psycopg_pool import PoolClosed, PoolTimeout

    return (PoolTimeout, PoolClosed)


class PostgresBackend(SQLBackend):
    """How the PostgreSQL queue and results are both built: on a DSN and schema, or on a
    ``store`` given; the current settings (or the ``runtime``'s) fill in the rest. Built by a
    runtime, every backend on one schema shares one pool, so their steps commit together."""

    sql: ClassVar[ModuleType] = q
    store: PostgresStore

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        store: PostgresStore | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
        runtime: Runtime | None = None,
    ) -> None:

        def where(settings: Settings) -> tuple[Any, Callable[[], PostgresStore]]:
            url, name = dsn or require_dsn(settings), schema or settings.postgres_schema
            secs = settings.postgres_timeout_secs
            return ("postgres", url, name), lambda: PostgresStore(
                url, schema=name, timeout_secs=secs
            )

        self.attach(store, Defaults(runtime), codec, clock, where)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    def run_many(self, cur: Any, statement: str, rows: Sequence[Any]) -> None:
        """Rows of a ``sql.BATCHED`` statement as one statement over one jsonb array of them
        (``BATCH_MIN_ROWS`` or more, ids distinct: one statement cannot touch a row twice);
        else one pipelined statement per row."""
        batch = self._batch(statement, rows)
        if batch is None:
            cur.executemany(statement, rows)
        else:
            cur.execute(*batch)

    def returned(self, cur: psycopg.Cursor[Any], statement: str, rows: Sequence[Any]) -> list[Row]:
        """One pipelined ``executemany`` (or one statement for a batch, as ``run_many``), its
        results read in one round trip; on a cursor of its own (in a pipeline, ``cur`` still
        holds the result of what it ran last)."""
        if not rows:
            return []
        batch = self._batch(statement, rows)
        with cur.connection.cursor() as reader:
            if batch is not None:
                reader.execute(*batch)
                return reader.fetchall()
            reader.executemany(statement, rows, returning=True)
            found: list[Row] = []
            while True:
                found += reader.fetchall()
                if not reader.nextset():
                    return found

    def _batch(self, statement: str, rows: Sequence[Any]) -> tuple[str, tuple[str, ...]] | None:
        """The one statement and its jsonb parameter (each of its parameters) for ``rows``;
        None: run them one by one."""
        batched = q.BATCHED.get(statement)
        if batched is None or len(rows) < BATCH_MIN_ROWS:
            return None
        batch, types, names = batched
        ids = {row[0] for row in rows} if names is None else {row["id"] for row in rows}
        if len(ids) != len(rows):
            return None
        if names is not None:  # named rows: their fields in the batch statement's order
            rows = [[row[name] for name in names] for row in rows]
        blobs = [i for i, kind in enumerate(types) if kind == "bytea"]
        if blobs:
            rows = [_hexed(row, blobs) for row in rows]
        return batch, (json.dumps(rows, allow_nan=False),) * batch.count("%s")


def _hexed(row: Sequence[Any], blobs: list[int]) -> list[Any]:
    """``row`` with its bytea columns (at ``blobs``) as hex text, as JSON carries them."""
    out = list(row)
    for i in blobs:
        if out[i] is not None:
            out[i] = bytes(out[i]).hex()
    return out
