"""Probes for the real PostgreSQL and Redis servers the integration tests use.

A test that needs a server calls ``require_postgres()`` / ``require_redis()``:
when the server is absent it skips with the reason, unless ``CI`` is set, where
absence is a failure. Every test gets its own schema or key prefix. A test that
stops or freezes PostgreSQL starts a server of its own with ``own_postgres()``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from nuvom.backends.redis.queue import RedisJobQueue

POSTGRES_DSN = os.environ.get(
    "NUVOM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NUVOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROBE_TIMEOUT_SECS = 2  # how long a probe waits for a server before calling it absent


# Probed on every call, never cached: a server restarted by an outage test is back afterwards.
def _postgres_problem() -> str | None:
    try:
        import psycopg
    except ImportError:
        return 'psycopg is not installed (pip install "nuvom[postgres]")'
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=PROBE_TIMEOUT_SECS) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {POSTGRES_DSN}: {str(exc).strip()}"
    return None


def _redis_problem() -> str | None:
    try:
        import redis
    except ImportError:
        return 'redis-py is not installed (pip install "nuvom[redis]")'
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=PROBE_TIMEOUT_SECS)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {REDIS_URL}: {exc}"
    return None


def _require(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI is set, so this is a failure, not a skip)")
    pytest.skip(problem)


def require_postgres() -> str:
    """The test DSN, or skip/fail when PostgreSQL is absent."""
    _require(_postgres_problem())
    return POSTGRES_DSN


def require_redis() -> str:
    """The test Redis URL, or skip/fail when Redis is absent."""
    _require(_redis_problem())
    return REDIS_URL


# Tests using a server hold this lock shared; a test that restarts a server holds it
# exclusively, so nothing else (in this run or another on the machine) sees the outage.
SERVER_LOCK_PATH = Path(tempfile.gettempdir()) / "nuvom-test-servers.lock"


@contextmanager
def server_lock(*, exclusive: bool) -> Iterator[None]:
    if sys.platform == "win32":  # no server restarts on Windows, so nothing to guard
        yield
        return
    import fcntl

    with open(SERVER_LOCK_PATH, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unique_name(prefix: str) -> str:
    """A schema name or key prefix no other test (or xdist worker) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_postgres_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


class ServerBackend:
    """One server backend for a test: settings for this process, env for its children."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "postgres":
            self.location = require_postgres()
            self.namespace = unique_name("nuvom_test")
            self.settings = {
                "queue_backend": "postgres",
                "result_backend": "postgres",
                "postgres_dsn": self.location,
                "postgres_schema": self.namespace,
            }
        else:
            self.location = require_redis()
            self.namespace = unique_name("nuvom-test")
            self.settings = {
                "queue_backend": "redis",
                "result_backend": "redis",
                "redis_url": self.location,
                "redis_prefix": self.namespace,
            }
        self.env = {f"NUVOM_{name.upper()}": value for name, value in self.settings.items()}

    def drop(self) -> None:
        if self.kind == "postgres":
            drop_postgres_schema(self.namespace)
        else:
            drop_redis_prefix(self.namespace)


SERVER_KINDS = ["postgres", "redis"]


@contextmanager
def engine_env(kind: str, *, alone: bool = False) -> Iterator[dict[str, str]]:
    """The NUVOM_* variables putting queue and results on one engine, for worker processes:
    a folder engine's name, or a server's schema / key prefix of this test's own (dropped).
    ``alone``: the server lock held exclusively, for a test of dozens of processes whose
    connections would leave none for another test's (PostgreSQL's max_connections)."""
    if kind not in SERVER_KINDS:
        yield {"NUVOM_QUEUE_BACKEND": kind, "NUVOM_RESULT_BACKEND": kind}
        return
    with server_lock(exclusive=alone):
        backend = ServerBackend(kind)
        try:
            yield backend.env
        finally:
            backend.drop()


@pytest.fixture(params=SERVER_KINDS)
def server_backend(request: pytest.FixtureRequest) -> Iterator[ServerBackend]:
    """PostgreSQL, then Redis: a schema or key prefix of this test's own, dropped afterwards."""
    with server_lock(exclusive=False):
        backend = ServerBackend(request.param)
        yield backend
        backend.drop()


def require_command(name: str) -> str:
    """The path of a server tool (pg_ctlcluster, redis-server), or skip/fail when absent."""
    import shutil

    path = shutil.which(name)
    _require(None if path else f"{name} is not installed, so the server cannot be restarted")
    return path or name


def postgres_cluster_version() -> str:
    """The one cluster version under /etc/postgresql (what ``$(ls /etc/postgresql)`` gives)."""
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").iterdir())
        if Path("/etc/postgresql").is_dir()
        else []
    )
    _require(None if versions else "no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


# -- a Redis server of one test's own --------------------------------------------------
# A test that must stop or freeze Redis starts its own (own port, own data dir) and
# signals only that one, by PID: no other test sees the outage, so no lock is needed.
OWN_SERVER_START_SECS = 30.0  # how long a test's own server may take to answer PING
OWN_SERVER_STOP_SECS = 10.0  # how long it may take to exit after a signal, before SIGKILL
OWN_SERVER_PORT_TRIES = 3  # fresh ports tried when another process takes the free one first


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A ``redis-server`` of one test's own on 127.0.0.1, not daemonized: the test holds its
    PID. Nothing is kept on disk, so a restarted server starts empty."""

    def __init__(self, directory: Path) -> None:
        import importlib.util
        import subprocess

        _require(
            None
            if importlib.util.find_spec("redis")
            else 'redis-py is not installed (pip install "nuvom[redis]")'
        )
        self.command = require_command("redis-server")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / "redis.log"
        self.port = free_port()
        self.prefix = unique_name("nuvom-test")
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.popen is not None, "the server has not been started"
        return self.popen.pid

    @property
    def settings(self) -> dict[str, str]:
        """What ``ServerBackend("redis").settings`` holds, for this server."""
        return {
            "queue_backend": "redis",
            "result_backend": "redis",
            "redis_url": self.url,
            "redis_prefix": self.prefix,
        }

    @property
    def env(self) -> dict[str, str]:
        return {f"NUVOM_{name.upper()}": value for name, value in self.settings.items()}

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, *, first: bool = False) -> None:
        """Start it on its port (a fresh one if ``first`` and that is taken) and return once
        it answers PING. A restart keeps the port, so clients find it again."""
        assert not self.running(), f"redis-server {self.pid} is still running"
        for _ in range(OWN_SERVER_PORT_TRIES if first else 1):
            if self._launch():
                return
            self.port = free_port()
        raise AssertionError(f"redis-server did not start\n{self.log_tail()}")

    def _launch(self) -> bool:
        """True once it answers PING; False if it exited first (its port was taken)."""
        import subprocess

        from .helpers import wait_for

        self.popen = subprocess.Popen(
            [self.command, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--logfile", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        up = wait_for(
            lambda: "exited" if not self.running() else self.answers(),
            timeout=OWN_SERVER_START_SECS,
            what=f"redis-server {self.pid} to answer PING on port {self.port}",
        )
        return up is True

    def answers(self) -> bool:
        """Whether it answers PING within ``PROBE_TIMEOUT_SECS`` (sent once: redis-py's
        default retries would stretch a probe of a silent port to ~25 s)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=PROBE_TIMEOUT_SECS,
            socket_connect_timeout=PROBE_TIMEOUT_SECS,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self, signum: int | None = None) -> int | None:
        """Send ``signum`` (SIGTERM by default) to its PID only, then SIGCONT in case it is
        frozen; SIGKILL if it has not exited after ``OWN_SERVER_STOP_SECS``. The exit code."""
        import signal
        import subprocess

        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM if signum is None else signum)
            self.popen.send_signal(signal.SIGCONT)
            try:
                self.popen.wait(OWN_SERVER_STOP_SECS)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(OWN_SERVER_STOP_SECS)
        return self.popen.returncode

    def freeze(self) -> None:
        """SIGSTOP: it keeps its port and accepts connections, but answers nothing."""
        import signal

        from .helpers import wait_for

        assert self.running(), "the server is not running"
        assert self.popen is not None
        self.popen.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.pid}/stat")
        if stat.exists():  # Linux: wait until it is really stopped
            wait_for(
                lambda: stat.read_text().rsplit(")", 1)[1].split()[0] in "Tt",
                what=f"redis-server {self.pid} to stop",
            )

    def thaw(self) -> None:
        """SIGCONT: it carries on, first with whatever was sent to it while frozen."""
        import signal

        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return f"(no log at {self.log_path})"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A running ``redis-server`` of this test's own (data dir under ``tmp_path``); killed
    by its PID when the block ends, frozen or not."""
    import signal

    server = OwnRedis(tmp_path / "redis-server")
    try:
        server.start(first=True)
        yield server
    finally:
        server.stop(signal.SIGKILL)


# -- a PostgreSQL server of one test's own ---------------------------------------------
# A test that stops, freezes or restarts PostgreSQL does it to a server it started itself
# (initdb into a temporary folder, a free port) and signals only that one, by PID; the
# machine's shared server is never touched, so no lock is needed.
OWN_POSTGRES_USER = "postgres"  # the server's superuser, and who runs it when we are root
PG_CTL_TIMEOUT_SECS = 60  # initdb, start and stop each finish well within this


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program (initdb, pg_ctl) of the newest install, or skip/fail."""
    import shutil

    def version(path: Path) -> int:  # /usr/lib/postgresql/<version>/bin/<name>
        return int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0

    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=version)
    found = str(installed[-1]) if installed else shutil.which(name)
    _require(None if found else f"{name} is not installed, so no PostgreSQL server can be started")
    return found or name


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # it exited while we looked
        if ppid == pid:
            children.append(int(stat.parent.name))
    return children


class OwnPostgres:
    """A throwaway PostgreSQL server on 127.0.0.1 that only this test uses.

    ``settings`` / ``env`` point nuvom's queue and results at it, like
    ``ServerBackend``. initdb refuses to run as root, so as root the server runs as
    ``OWN_POSTGRES_USER`` in a folder of its own under the system temporary folder
    (pytest's ``tmp_path`` lies inside a folder only root may enter).
    """

    def __init__(self) -> None:
        import pwd

        self.initdb = postgres_bin("initdb")
        self.pg_ctl = postgres_bin("pg_ctl")
        owner: pwd.struct_passwd | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(OWN_POSTGRES_USER)
            except KeyError:
                _require(f"running as root, and there is no {OWN_POSTGRES_USER!r} user for initdb")
            self.as_user = [require_command("runuser"), "-u", OWN_POSTGRES_USER, "--"]
        self.root = Path(tempfile.mkdtemp(prefix="nuvom-pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return f"postgresql://{OWN_POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    @property
    def settings(self) -> dict[str, str]:
        """What ``ServerBackend("postgres").settings`` holds, for this server."""
        return {"queue_backend": "postgres", "result_backend": "postgres", "postgres_dsn": self.dsn}

    @property
    def env(self) -> dict[str, str]:
        return {f"NUVOM_{name.upper()}": value for name, value in self.settings.items()}

    @property
    def pid(self) -> int:
        """The postmaster's PID: the first line of ``postmaster.pid``."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def _run(self, *args: str) -> bool:
        import subprocess

        done = subprocess.run(
            [*self.as_user, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_SECS,
            check=False,
        )
        self.last_output = done.stdout + done.stderr
        return done.returncode == 0

    def create(self) -> None:
        """initdb: trust authentication (it listens on 127.0.0.1 only), nothing synced."""
        initdb = [self.initdb, "-D", str(self.data), "-U", OWN_POSTGRES_USER, "-A", "trust"]
        if not self._run(*initdb, "-E", "UTF8", "--no-sync"):
            raise AssertionError(f"initdb failed:\n{self.last_output}")

    def start(self, *, first: bool = False) -> None:
        """Start it on its port (a fresh one if ``first`` and that is taken) and return once
        it accepts connections. A restart keeps the port, so clients find it again."""
        for _ in range(OWN_SERVER_PORT_TRIES if first else 1):
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            if self._run(
                self.pg_ctl, "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                "-w", "-t", str(PG_CTL_TIMEOUT_SECS), "start",
            ):  # fmt: skip
                return
            self.port = free_port()
        raise AssertionError(f"PostgreSQL did not start:\n{self.last_output}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``: ``fast`` disconnects clients and shuts down cleanly, ``immediate``
        quits at once. A frozen server is thawed first, or it would never act on it."""
        self.thaw()
        if not self._run(
            self.pg_ctl, "-D", str(self.data), "-m", mode, "-w",
            "-t", str(PG_CTL_TIMEOUT_SECS), "stop",
        ):  # fmt: skip
            raise AssertionError(f"PostgreSQL did not stop:\n{self.last_output}")

    def pids(self) -> list[int]:
        """The postmaster, then its children (backends, checkpointer, WAL writer...)."""
        postmaster = self.pid
        return [postmaster, *child_pids(postmaster)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster, then its children: its kernel still accepts connections
        and ACKs what is sent, but nothing answers."""
        import signal

        postmaster = self.pid
        os.kill(postmaster, signal.SIGSTOP)  # first, so it forks no child we would miss
        for pid in child_pids(postmaster):
            _signal(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the children, then the postmaster (harmless when nothing is stopped)."""
        import signal

        if self.running():
            for pid in reversed(self.pids()):
                _signal(pid, signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return f"(no log at {self.log_path})"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def remove(self) -> None:
        """Stop it if it runs (``immediate``: nothing here must last) and delete its folder."""
        import shutil

        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _signal(pid: int, signum: int) -> None:
    from contextlib import suppress

    with suppress(ProcessLookupError):  # a child that exited meanwhile
        os.kill(pid, signum)


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A running PostgreSQL server of this test's own; stopped by ``pg_ctl stop -m immediate``
    and deleted when the block ends, frozen or not. Skips (fails when ``CI`` is set) when
    psycopg or the server programs are missing."""
    import importlib.util

    _require(
        None
        if importlib.util.find_spec("psycopg")
        else 'psycopg is not installed (pip install "nuvom[postgres]")'
    )
    server = OwnPostgres()
    try:
        server.create()
        server.start(first=True)
        yield server
    finally:
        server.remove()


@contextmanager
def redis_queue_on_fake_clock() -> Iterator[RedisJobQueue]:
    """A ``RedisJobQueue`` under a key prefix of its own, on a ``FakeClock`` at 1,000 s;
    the prefix is dropped afterwards."""
    from nuvom.backends.redis.queue import RedisJobQueue
    from nuvom.clock import FakeClock

    with server_lock(exclusive=False):
        prefix = unique_name("nuvom-test")
        queue = RedisJobQueue(require_redis(), prefix=prefix, clock=FakeClock(start=1_000.0))
        try:
            yield queue
        finally:
            queue.close()
            drop_redis_prefix(prefix)
