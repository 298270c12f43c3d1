"""One PostgreSQL schema, shared by the queue and the result backend when both point at it.

A ``psycopg_pool`` pool whose connections use nuvom's schema as ``search_path``;
the schema is created and migrated on first use. Connection failures surface as
``BackendUnavailable`` within a bounded time, never as a hang.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from nuvom.backends.common import Defaults
from nuvom.backends.postgres import sql as q
from nuvom.backends.sqlbase import SQLBackend
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
CONNECT_TIMEOUT_SECS = 5  # a TCP connect to the server gives up after this long
POOL_TIMEOUT_SECS = 10.0  # a caller waits this long for a pooled connection before failing
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 16  # connections one process opens at most
# A connection that worked this recently is lent without a test query first; an
# older one is tested, so the first use after a server restart does not fail.
FRESH_CONNECTION_SECS = 1.0
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


class PostgresStore:
    """Pooled connections, schema migrations and transactions for one schema of one database."""

    def __init__(self, dsn: str, *, schema: str = DEFAULT_SCHEMA, migrate: bool = True) -> None:
        psycopg = import_psycopg()
        from psycopg import sql
        from psycopg_pool import ConnectionPool

        if not schema or len(schema) > 63:
            raise BackendError(f"bad PostgreSQL schema name {schema!r}", backend="postgres")
        self.dsn = dsn
        self.schema = schema
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
            timeout=POOL_TIMEOUT_SECS,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_SECS},
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
        conn.execute(self._search_path)
        # nuvom's statements are short and index-driven; re-planning them on every
        # call (PostgreSQL's default for the first executions and whenever a custom
        # plan looks cheaper) costs more than running them: about 0.4 ms per claim.
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.commit()

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
        one or two round trips instead of one per statement.
        """
        try:
            with self.pool.connection() as conn:
                with conn.pipeline() if pipelined else nullcontext(), conn.cursor() as cur:
                    yield cur
                self._used_at[id(conn)] = time.monotonic()
        except (self._psycopg.Error, *_pool_errors()) as exc:
            raise self.explain(exc) from None

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """Before lending a connection: skip the test query if it worked a moment ago."""
        used = self._used_at.get(id(conn))
        if used is not None and time.monotonic() - used < FRESH_CONNECTION_SECS:
            return
        from psycopg_pool import ConnectionPool

        ConnectionPool.check_connection(conn)

    def execute_alone(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement as its own transaction and return its rows: one round trip.

        No BEGIN/COMMIT of ours: in autocommit mode the server wraps the single
        statement in an implicit transaction, so it is still all or nothing.
        """
        try:
            with self.pool.connection() as conn:
                conn.autocommit = True
                try:
                    rows: list[tuple[Any, ...]] = conn.execute(
                        query, params, prepare=True
                    ).fetchall()
                finally:
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
        """A connection of its own, outside the pool (the LISTEN connection)."""
        try:
            conn = self._psycopg.connect(
                self.dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_SECS
            )
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
            return ("postgres", url, name), lambda: PostgresStore(url, schema=name)

        self.attach(store, Defaults(runtime), codec, clock, where)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"
