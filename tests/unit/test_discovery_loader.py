"""The worker's TaskLoader (registry, then manifest, then a scan) and the dev reloader's apply()."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import nuvom.discovery.loader as loader_module
from nuvom.discovery import Manifest, refresh_manifest
from nuvom.discovery.loader import TaskLoader
from nuvom.errors import ConfigError, TaskNotFound
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.runtime import Runtime
from nuvom.worker import Worker

TRIPLE = "from nuvom import task\n\n\n@task\ndef triple(x):\n    return 3 * x\n"


@pytest.fixture(autouse=True)
def restore_imports() -> Iterator[None]:
    """Modules the test imports from its folder are forgotten afterwards."""
    modules = set(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    stat = path.stat()  # a later edit's mtime, past any earlier write of this file
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    return path


def manifest_path(root: Path) -> Path:
    return root / ".nuvom" / "manifest.json"


def forbid_scans(monkeypatch: pytest.MonkeyPatch) -> list[Manifest]:
    """Make any scan by the loader fail the test; returns the list it would append to."""

    def no_scan(*args: object, **kwargs: object) -> Manifest:
        raise AssertionError("the loader scanned the project")

    monkeypatch.setattr(loader_module, "discover", no_scan)
    return []


def count_scans(monkeypatch: pytest.MonkeyPatch) -> list[Manifest]:
    scans: list[Manifest] = []
    real = loader_module.discover

    def counting(*args: object, **kwargs: object) -> Manifest:
        manifest = real(*args, **kwargs)  # type: ignore[arg-type]
        scans.append(manifest)
        return manifest

    monkeypatch.setattr(loader_module, "discover", counting)
    return scans


def test_a_task_known_only_through_the_manifest_is_imported_on_first_use(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/deep/__init__.py", "")
    write(tmp_path, "pkg/deep/jobs.py", TRIPLE)
    refresh_manifest(tmp_path, manifest_path(tmp_path))
    forbid_scans(monkeypatch)
    loader = TaskLoader(runtime.registry, manifest_path=manifest_path(tmp_path))
    assert "pkg.deep.jobs" not in sys.modules
    task = loader.get("triple")
    assert task(2) == 6
    assert sys.modules["pkg.deep.jobs"].__file__ == str(tmp_path / "pkg" / "deep" / "jobs.py")
    assert loader.get("triple") is task


def test_the_worker_runs_a_task_known_only_through_the_manifest(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "app/__init__.py", "")
    write(tmp_path, "app/jobs.py", TRIPLE)
    refresh_manifest(tmp_path, manifest_path(tmp_path))
    forbid_scans(monkeypatch)
    job = enqueue(Job("triple", args=[5]))
    Worker(workers=1).run(burst=True)
    assert job.get(timeout=5) == 15


def test_a_name_missing_from_the_manifest_triggers_one_rescan(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "old.py", "from nuvom import task\n@task\ndef old(): return 'old'\n")
    refresh_manifest(tmp_path, manifest_path(tmp_path))
    write(tmp_path, "later.py", "from nuvom import task\n@task\ndef later(): return 'later'\n")
    scans = count_scans(monkeypatch)
    loader = TaskLoader(runtime.registry, manifest_path=manifest_path(tmp_path))
    assert loader.get("later")() == "later"
    assert len(scans) == 1
    assert scans[0].stats.parsed == 1  # only the new file: old.py came from the manifest

    # A miss within RESCAN_AFTER_SECS of the last scan does not scan again...
    with pytest.raises(TaskNotFound, match="nowhere"):
        loader.get("nowhere")
    assert len(scans) == 1
    # ...one after it does.
    monkeypatch.setattr(loader_module, "RESCAN_AFTER_SECS", 0.0)
    with pytest.raises(TaskNotFound, match="nowhere"):
        loader.get("nowhere")
    assert len(scans) == 2
    assert scans[1].stats.parsed == 0


def test_a_stale_manifest_entry_is_rescanned(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "first.py", TRIPLE)
    refresh_manifest(tmp_path, manifest_path(tmp_path))
    (tmp_path / "first.py").unlink()
    write(tmp_path, "second.py", TRIPLE)
    loader = TaskLoader(runtime.registry, manifest_path=manifest_path(tmp_path))
    assert loader.get("triple")(1) == 3
    assert sys.modules["second"].__file__ == str(tmp_path / "second.py")


def test_a_script_whose_name_is_taken_is_loaded_from_its_file(
    runtime: Runtime, tmp_path: Path
) -> None:
    # "string" is the standard library's, already imported: the file is loaded by path.
    write(tmp_path, "scripts/string.py", TRIPLE)
    loader = TaskLoader(runtime.registry, tmp_path, manifest_path=manifest_path(tmp_path))
    assert loader.get("triple")(3) == 9
    import string

    assert not hasattr(string, "triple")
    assert loader.manifest is not None
    assert loader.manifest.find("triple") is not None


def test_a_task_in_neither_registry_nor_manifest_fails_its_job_clearly(
    runtime: Runtime, tmp_path: Path
) -> None:
    job = enqueue(Job("ghost"))
    Worker(workers=1).run(burst=True)
    record = runtime.results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.FAILED
    assert record.error_type == "TaskNotFound"
    assert "'ghost'" in (record.error_message or "")


def test_a_declared_task_that_does_not_register_is_reported(
    runtime: Runtime, tmp_path: Path
) -> None:
    write(tmp_path, "t.py", "from nuvom import task\nif False:\n    @task\n    def never(): ...\n")
    loader = TaskLoader(runtime.registry, tmp_path, manifest_path=manifest_path(tmp_path))
    with pytest.raises(TaskNotFound, match=r"t\.py:4 declares it"):
        loader.get("never")


# -- dev reload ---------------------------------------------------------------


def test_dev_reload_replaces_changed_tasks_and_forgets_removed_ones(
    runtime: Runtime, tmp_path: Path
) -> None:
    from nuvom.watcher import DevReloader

    path = write(
        tmp_path,
        "jobs.py",
        "from nuvom import task\n@task\ndef version(): return 1\n@task\ndef doomed(): ...\n",
    )
    loader = TaskLoader(runtime.registry, tmp_path, manifest_path=manifest_path(tmp_path))
    old = loader.get("version")
    assert old() == 1
    reloader = DevReloader(loader)

    write(tmp_path, "jobs.py", "from nuvom import task\n@task\ndef version(): return 2\n")
    report = reloader.apply([path])
    assert report.reloaded == ["jobs"]
    assert [e.name for e in report.diff.removed] == ["doomed"]
    assert loader.get("version")() == 2
    assert old() == 1  # a job already running keeps the code it started with
    assert "doomed" not in runtime.registry

    write(tmp_path, "jobs.py", "from nuvom import task\n@task\ndef version(: return 3\n")
    broken = reloader.apply([path])
    assert len(broken.failed) == 1
    assert "SyntaxError" in broken.failed[0]
    assert loader.get("version")() == 2  # the last good code stays registered

    added = write(tmp_path, "extra.py", "from nuvom import task\n@task\ndef extra(): return 'x'\n")
    report = reloader.apply([added])
    assert [e.name for e in report.diff.added] == ["extra"]
    assert report.reloaded == []  # not loaded yet: imported when a job needs it
    assert loader.get("extra")() == "x"


def test_dev_reload_of_a_helper_reloads_the_task_modules_using_it(
    runtime: Runtime, tmp_path: Path
) -> None:
    from nuvom.watcher import DevReloader

    helper = write(tmp_path, "helper.py", "VALUE = 'before'\n")
    write(
        tmp_path,
        "jobs.py",
        "from nuvom import task\nfrom helper import VALUE\n@task\ndef value(): return VALUE\n",
    )
    loader = TaskLoader(runtime.registry, tmp_path, manifest_path=manifest_path(tmp_path))
    assert loader.get("value")() == "before"
    write(tmp_path, "helper.py", "VALUE = 'after'\n")
    report = DevReloader(loader).apply([helper])
    assert report.reloaded == ["helper", "jobs"]
    assert loader.get("value")() == "after"


def test_dev_reload_without_watchfiles_says_how_to_install_it(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nuvom.watcher import DevReloader

    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles -> ImportError
    loader = TaskLoader(runtime.registry, tmp_path, manifest_path=manifest_path(tmp_path))
    with pytest.raises(ConfigError, match=r"pip install 'nuvom\[dev-reload\]'"):
        DevReloader(loader).start()
