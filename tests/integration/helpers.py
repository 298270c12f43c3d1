"""Real processes for the integration and e2e tests: a project folder, workers, bounded waits.

Every wait has a deadline; every process started here is killed when its test ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

IS_WINDOWS = sys.platform == "win32"
posix_only = pytest.mark.skipif(IS_WINDOWS, reason="sends POSIX signals (SIGTERM/SIGINT)")

DEFAULT_WAIT_SECS = 30.0  # the longest any single condition in these tests may take
# The worker logs "worker <id> started: ..." once its signal handlers are in.
STARTED_TEXT = "started:"
STOPPING_TEXT = "stopping:"  # logged when the first SIGINT/SIGTERM arrives


def wait_for(
    predicate: Callable[[], T], timeout: float = DEFAULT_WAIT_SECS, *, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A CLI failure as users should see it: one ``error:`` line on stderr, no traceback."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def nuvom_command() -> list[str]:
    """The installed ``nuvom`` console script, else ``python -m nuvom``."""
    script = Path(sys.executable).parent / ("nuvom.exe" if IS_WINDOWS else "nuvom")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nuvom"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any NUVOM_* variable, plus ``extra``.

    Wide, colourless, unbuffered output so tests can match whole lines.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NUVOM_")}
    env.pop("FORCE_COLOR", None)
    env.update(NO_COLOR="1", COLUMNS="250", PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            # Keep pytest's own CTRL+C away from it; the test decides what it receives.
            start_new_session=not IS_WINDOWS,
        )
        self.pid = self.popen.pid
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.popen.stdout, self.out), (self.popen.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._cond:
                lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def stdout(self) -> str:
        with self._cond:
            return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.err)

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}  (exit {self.popen.poll()})\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def wait_for_output(self, text: str, timeout: float = DEFAULT_WAIT_SECS) -> str:
        """Block until a line of stdout or stderr contains ``text``; return that line."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.err + self.out:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (
                    self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)
                ):
                    break
                self._cond.wait(min(left, 0.1))
        raise AssertionError(f"no line containing {text!r} within {timeout:g}s\n{self.describe()}")

    def send(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = DEFAULT_WAIT_SECS) -> int:
        """The exit code; fails the test if the process is still running after ``timeout``."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout:g}s\n{self.describe()}") from None
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(10)
        finally:
            for reader in self._readers:
                reader.join(timeout=5)
            for stream in (self.popen.stdout, self.popen.stderr):
                if stream is not None:
                    stream.close()


class Project:
    """An empty folder with a ``tasks.py``, the way a user starts: workers, CLI calls, producers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = clean_env()
        self.procs: list[Proc] = []

    @property
    def db_path(self) -> Path:
        return self.root / ".nuvom" / "nuvom.db"

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    def _env(self, env: dict[str, str] | None, extra: dict[str, str]) -> dict[str, str]:
        merged = dict(self.env if env is None else env)
        merged.update(extra)
        return merged

    def start(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        **extra: str,
    ) -> Proc:
        proc = Proc(args, cwd=cwd or self.root, env=self._env(env, extra))
        self.procs.append(proc)
        return proc

    def start_worker(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        cwd: Path | None = None,
        **extra: str,
    ) -> Proc:
        """``nuvom runworker ARGS``; with ``wait``, returns once its signal handlers are in."""
        proc = self.start([*nuvom_command(), "runworker", *args], env=env, cwd=cwd, **extra)
        if wait:
            proc.wait_for_output(STARTED_TEXT)
        return proc

    def run(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float = DEFAULT_WAIT_SECS,
        cwd: Path | None = None,
        **extra: str,
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                args,
                cwd=cwd or self.root,
                env=self._env(env, extra),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(args)} ran over {timeout:g}s: {exc.stderr}") from None

    def nuvom(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run one ``nuvom`` command to completion."""
        return self.run([*nuvom_command(), *args], **kwargs)

    def python(self, code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``python -c CODE`` in the project folder (so ``import tasks`` works)."""
        return self.run([sys.executable, "-c", textwrap.dedent(code)], **kwargs)

    def configure(self, **settings: Any) -> Any:
        """Point this test process at the project's store, with a registry of its own."""
        import nuvom
        from nuvom.registry import TaskRegistry

        settings.setdefault("sqlite_db_path", self.db_path)
        return nuvom.configure(registry=TaskRegistry(), **settings)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()


def project_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """The body of the ``project`` fixture both test folders register.

    Works with or without the top-level conftest: chdir into ``tmp_path``, no
    NUVOM_* variables, a fresh nuvom runtime before and after.
    """
    import nuvom

    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("NUVOM_"):
            monkeypatch.delenv(name)
    nuvom.reset()
    project = Project(tmp_path)
    try:
        yield project
    finally:
        project.close()
        nuvom.reset()


def runs(folder: Path, task_name: str) -> int:
    """How many times a task from ``TASKS`` has started (one line per execution)."""
    path = folder / f"{task_name}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def produce_jobs(db_path: str, count: int, go: Any, reports: Any, name: str) -> None:
    """A spawned producer: once ``go`` is set, enqueue ``count`` jobs one at a time.

    Reports ``(name, [job ids])``, or ``(name, "Error: message")`` if anything escaped.
    """
    try:
        import nuvom
        from nuvom.job import Job
        from nuvom.queue import enqueue

        nuvom.configure(sqlite_db_path=db_path)
        if not go.wait(DEFAULT_WAIT_SECS):
            raise TimeoutError("the test never said go")
        ids = [enqueue(Job("add", args=[i, i])).id for i in range(count)]
        nuvom.reset()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, ids))


# The tasks the integration tests run. Each execution appends a line to
# <folder>/<task>.runs, so tests count executions across processes.
TASKS = """
import os
import time
from pathlib import Path

from nuvom import task

HOLD_CAP_SECS = 60  # a held task never outlives a broken test by much


def _record_run(folder, name):
    with open(Path(folder) / f"{name}.runs", "a", encoding="utf-8") as runs:
        runs.write(f"{os.getpid()}\\n")


@task
def hold(folder):
    \"\"\"Runs until the test creates <folder>/go.\"\"\"
    _record_run(folder, "hold")
    go = Path(folder) / "go"
    deadline = time.monotonic() + HOLD_CAP_SECS
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never created the go marker")
        time.sleep(0.01)
    return "done"


@task(retries=2, retry_delay_secs=0)
def always_fails(folder):
    _record_run(folder, "always_fails")
    raise RuntimeError("this task always fails")


@task
def add(x, y):
    return x + y
"""
