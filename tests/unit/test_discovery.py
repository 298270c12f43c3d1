"""AST discovery: decorator forms, ignores, broken files, and the incremental manifest cache."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest

from nuvom.discovery import (
    Manifest,
    diff_manifests,
    discover,
    load_manifest,
    refresh_manifest,
    save_manifest,
)
from nuvom.discovery.manifest import MANIFEST_FORMAT
from nuvom.discovery.scanner import scan_source


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def names(manifest: Manifest) -> set[str]:
    return {entry.name for entry in manifest.tasks}


def bump_mtime(path: Path) -> None:
    """Move the file's mtime on by a second, as a later edit would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def scan(source: str) -> dict[str, int]:
    result = scan_source(textwrap.dedent(source), module="m", file="m.py")
    return {entry.name: entry.line for entry in result.tasks}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from nuvom import task\n@task\ndef a(): ...", {"a"}),
        ("from nuvom import task\n@task(retries=1)\ndef a(): ...", {"a"}),
        ("from nuvom.task import task\n@task()\ndef a(): ...", {"a"}),
        ("import nuvom\n@nuvom.task\ndef a(): ...", {"a"}),
        ("import nuvom\n@nuvom.task(retries=2)\ndef a(): ...", {"a"}),
        ("import nuvom.task\n@nuvom.task.task(tags=['x'])\ndef a(): ...", {"a"}),
        ("from nuvom.task import task as job\n@job\ndef a(): ...", {"a"}),
        ("from nuvom.task import task as job\n@job(queue='q')\ndef a(): ...", {"a"}),
        ("import nuvom as n\n@n.task\ndef a(): ...", {"a"}),
        ("import nuvom.task as t\n@t.task\ndef a(): ...\n@t\ndef b(): ...", {"a", "b"}),
        ("from nuvom import task\n@task\nasync def a(): ...", {"a"}),
        ("try:\n    from nuvom import task\nexcept ImportError:\n    pass\n"
         "if True:\n    @task\n    def a(): ...", {"a"}),
        ("from nuvom import task\n@task(name='renamed')\ndef a(): ...", {"renamed"}),
    ],
)  # fmt: skip
def test_every_decorator_form_is_found(source: str, expected: set[str]) -> None:
    assert set(scan(source)) == expected


@pytest.mark.parametrize(
    "source",
    [
        "from celery import task\n@task\ndef a(): ...",  # someone else's decorator
        "def task(f): return f\n@task\ndef a(): ...",  # a local function named task
        "import nuvom\n@nuvom.other\ndef a(): ...",
        "@task\ndef a(): ...  # nuvom not imported",
        # Registers only when outer() runs, so importing the module would not find it.
        "from nuvom import task\ndef outer():\n    @task\n    def inner(): ...",
        "from nuvom import task\nclass C:\n    @task\n    def method(self): ...",
    ],
)
def test_what_is_not_a_nuvom_task_is_ignored(source: str) -> None:
    assert scan(source) == {}


def test_literal_options_description_and_hooks_are_recorded(tmp_path: Path) -> None:
    write(
        tmp_path,
        "tasks.py",
        """
        from nuvom import task

        LIMIT = 3

        def log_it(job): ...

        @task(retries=2, timeout_secs=1.5, tags=("a", "b"), queue="mail", priority=5,
              retry_delay_secs=LIMIT, before_job=log_it, description="Sends it.")
        def send(to):
            \"\"\"Docstring loses to description=.\"\"\"

        @task
        def documented():
            \"\"\"First line.

            More.
            \"\"\"
        """,
    )
    manifest = discover(tmp_path)
    send = manifest.find("send")
    assert send is not None
    assert send.options == {
        "retries": 2,
        "timeout_secs": 1.5,
        "tags": ["a", "b"],
        "queue": "mail",
        "priority": 5,
        "retry_delay_secs": None,  # not a literal: known only at import
        "before_job": "log_it",
    }
    assert send.tags == ["a", "b"]
    assert send.description == "Sends it."
    assert (send.module, send.function, send.file, send.line) == ("tasks", "send", "tasks.py", 9)
    documented = manifest.find("documented")
    assert documented is not None
    assert documented.description == "First line.\n\nMore."


def test_a_non_literal_name_is_a_warning_not_a_guess(tmp_path: Path) -> None:
    write(tmp_path, "t.py", "from nuvom import task\nNAME = 'x'\n@task(name=NAME)\ndef f(): ...\n")
    manifest = discover(tmp_path)
    assert names(manifest) == {"f"}
    assert any("not a literal" in str(w) for w in manifest.warnings)


def test_duplicate_task_names_are_warned_about(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "from nuvom import task\n@task\ndef same(): ...\n")
    write(tmp_path, "b.py", "from nuvom import task\n@task(name='same')\ndef other(): ...\n")
    manifest = discover(tmp_path)
    found = manifest.find("same")
    assert found is not None
    assert found.file == "a.py"
    assert [str(w) for w in manifest.warnings] == [
        "b.py:3: task 'same' is also declared at a.py:3; workers load the first"
    ]


def test_module_names_follow_packages(tmp_path: Path) -> None:
    task_source = "from nuvom import task\n@task\ndef {name}(): ...\n"
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/deep/__init__.py", "")
    write(tmp_path, "pkg/deep/mod.py", task_source.format(name="triple"))
    write(tmp_path, "pkg/deep/__init__.py", task_source.format(name="in_init"))
    write(tmp_path, "src/app/__init__.py", "")
    write(tmp_path, "src/app/jobs.py", task_source.format(name="src_layout"))
    write(tmp_path, "scripts/run.py", task_source.format(name="script"))
    manifest = discover(tmp_path)
    modules = {e.name: e.module for e in manifest.tasks}
    assert modules == {
        "triple": "pkg.deep.mod",
        "in_init": "pkg.deep",
        "src_layout": "app.jobs",
        "script": "run",
    }
    # Discovering from inside a package keeps the full dotted name.
    inner = discover(tmp_path / "pkg" / "deep")
    assert {e.name: e.module for e in inner.tasks} == {
        "triple": "pkg.deep.mod",
        "in_init": "pkg.deep",
    }


def test_nothing_is_imported_or_executed(tmp_path: Path) -> None:
    marker = tmp_path / "side-effect.txt"
    write(
        tmp_path,
        "dangerous.py",
        f"""
        from nuvom import task

        open({str(marker)!r}, "w").write("ran")
        raise SystemExit("importing this module is fatal")

        @task
        def still_found(): ...
        """,
    )
    manifest = discover(tmp_path)
    assert names(manifest) == {"still_found"}
    assert not marker.exists()
    assert manifest.errors == []


def test_default_skips_and_nuvomignore(tmp_path: Path) -> None:
    task_source = "from nuvom import task\n@task\ndef {name}(): ...\n"
    write(tmp_path, "kept.py", task_source.format(name="kept"))
    write(tmp_path, "env/pyvenv.cfg", "home = /usr\n")
    write(tmp_path, "env/lib/site.py", task_source.format(name="in_venv"))
    for folder in (".git", "__pycache__", "node_modules", "lib/site-packages", ".tox"):
        write(tmp_path, f"{folder}/x.py", task_source.format(name=folder.replace("/", "_")[1:]))
    write(tmp_path, "generated/out.py", task_source.format(name="generated"))
    write(tmp_path, "sub/a_test.py", task_source.format(name="a_test"))
    write(tmp_path, "sub/keep_test.py", task_source.format(name="keep_test"))
    write(tmp_path, ".nuvomignore", "# comment\ngenerated/\n*_test.py\n!keep_test.py\n")
    assert names(discover(tmp_path)) == {"kept", "keep_test"}


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    task_source = "from nuvom import task\n@task\ndef {name}(): ...\n"
    write(tmp_path, "app/jobs.py", task_source.format(name="jobs"))
    write(tmp_path, "app/legacy/old.py", task_source.format(name="old"))
    write(tmp_path, "tools/t.py", task_source.format(name="tool"))
    assert names(discover(tmp_path, include=["app/"])) == {"jobs", "old"}
    assert names(discover(tmp_path, include=["app/"], exclude=["legacy/"])) == {"jobs"}
    assert names(discover(tmp_path, exclude=["*.py", "!tools/*.py"])) == {"tool"}


def test_a_broken_file_is_reported_with_its_line_and_skipped(tmp_path: Path) -> None:
    write(tmp_path, "good.py", "from nuvom import task\n@task\ndef good(): ...\n")
    write(tmp_path, "bad.py", "from nuvom import task\n\n@task\ndef bad(:\n    pass\n")
    (tmp_path / "binary.py").write_bytes(b"nuvom task \x00\xff\xfe")
    manifest = discover(tmp_path)
    assert names(manifest) == {"good"}
    problems = {p.file: p for p in manifest.errors}
    assert set(problems) == {"bad.py", "binary.py"}
    assert problems["bad.py"].line == 4
    assert str(problems["bad.py"]).startswith("bad.py:4: ")


def test_second_run_parses_nothing_unchanged(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path, f"t{i}.py", f"from nuvom import task\n@task\ndef t{i}(): ...\n")
    write(tmp_path, "plain.py", "x = 1\n")
    first = discover(tmp_path)
    assert (first.stats.files, first.stats.parsed) == (6, 5)  # plain.py never mentions nuvom

    second = discover(tmp_path, previous=first)
    assert second.stats.parsed == 0
    assert second.tasks == first.tasks

    # Once no file is racy, unchanged files are not even read.
    third = discover(tmp_path, previous=second)
    assert third.stats.parsed == 0

    # Same content, new mtime: read and hashed, not parsed.
    bump_mtime(tmp_path / "t0.py")
    touched = discover(tmp_path, previous=third)
    assert (touched.stats.hashed >= 1, touched.stats.parsed) == (True, 0)

    # Changed content: only that file is parsed.
    changed = write(tmp_path, "t1.py", "from nuvom import task\n@task\ndef renamed(): ...\n")
    bump_mtime(changed)
    fourth = discover(tmp_path, previous=touched)
    assert fourth.stats.parsed == 1
    assert names(fourth) == {"t0", "renamed", "t2", "t3", "t4"}


def test_unchanged_files_are_trusted_on_stat_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "t.py", "from nuvom import task\n@task\ndef t(): ...\n")
    old = path.stat().st_mtime_ns - 10 * 1_000_000_000  # well outside the racy window
    os.utime(path, ns=(old, old))
    first = discover(tmp_path)
    second = discover(tmp_path, previous=first)
    assert (second.stats.unchanged, second.stats.hashed, second.stats.parsed) == (1, 0, 0)


def test_a_new_package_marker_renames_modules_without_parsing(tmp_path: Path) -> None:
    write(tmp_path, "app/jobs.py", "from nuvom import task\n@task\ndef j(): ...\n")
    first = discover(tmp_path)
    assert first.tasks[0].module == "jobs"
    write(tmp_path, "app/__init__.py", "")
    second = discover(tmp_path, previous=first)
    assert second.tasks[0].module == "app.jobs"
    assert second.stats.parsed == 0


def test_manifest_round_trips_and_is_written_atomically(tmp_path: Path) -> None:
    write(tmp_path, "t.py", "from nuvom import task\n@task(tags=['x'])\ndef t(): ...\n")
    write(tmp_path, "bad.py", "from nuvom import task\ndef (\n")
    path = tmp_path / ".nuvom" / "manifest.json"
    manifest = discover(tmp_path)
    save_manifest(manifest, path)
    data = json.loads(path.read_text())
    assert data["format"] == MANIFEST_FORMAT
    assert data["root"] == str(tmp_path.resolve())
    sha256, mtime_ns, size, module = data["files"]["t.py"][:4]
    stat = (tmp_path / "t.py").stat()
    assert (mtime_ns, size, module) == (stat.st_mtime_ns, stat.st_size, "t")
    assert sha256 == hashlib.sha256((tmp_path / "t.py").read_bytes()).hexdigest()
    assert data["tasks"] == [
        {"name": "t", "function": "t", "module": "t", "file": "t.py", "line": 3,
         "description": None, "options": {"tags": ["x"]}, "params": []}
    ]  # fmt: skip
    assert data["files"]["bad.py"][4]["error_line"] == 2
    loaded = load_manifest(path)
    assert loaded is not None
    assert (loaded.files, loaded.tasks) == (manifest.files, manifest.tasks)
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temp file left


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": 999, "root": "/", "files": {}, "tasks": []}', "[]"]
)
def test_an_unusable_manifest_is_ignored_and_rebuilt(tmp_path: Path, content: str) -> None:
    write(tmp_path, "t.py", "from nuvom import task\n@task\ndef t(): ...\n")
    path = tmp_path / "manifest.json"
    path.write_text(content)
    assert load_manifest(path) is None
    previous, _, diff = refresh_manifest(tmp_path, path)
    assert previous is None
    assert [e.name for e in diff.added] == ["t"]
    assert load_manifest(path) is not None


def test_refresh_skips_the_write_when_nothing_changed(tmp_path: Path) -> None:
    path = write(tmp_path, "t.py", "from nuvom import task\n@task\ndef t(): ...\n")
    old = path.stat().st_mtime_ns - 10 * 1_000_000_000
    os.utime(path, ns=(old, old))
    manifest_path = tmp_path / ".nuvom" / "manifest.json"
    refresh_manifest(tmp_path, manifest_path)
    written = manifest_path.stat().st_mtime_ns
    os.utime(manifest_path, ns=(written - 5_000_000_000, written - 5_000_000_000))
    _, _, diff = refresh_manifest(None, manifest_path)  # root comes from the manifest
    assert not diff
    assert manifest_path.stat().st_mtime_ns == written - 5_000_000_000


def test_diff_reports_added_removed_and_changed(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "from nuvom import task\n@task\ndef keep(): ...\n@task\ndef gone(): ...\n")  # fmt: skip
    first = discover(tmp_path)
    changed = write(
        tmp_path,
        "a.py",
        "from nuvom import task\n@task(retries=3)\ndef keep(): ...\n@task\ndef new(): ...\n",
    )
    bump_mtime(changed)
    second = discover(tmp_path, previous=first)
    diff = diff_manifests(first, second)
    assert [e.name for e in diff.added] == ["new"]
    assert [e.name for e in diff.removed] == ["gone"]
    assert [(old.options, new.options) for old, new in diff.changed] == [({}, {"retries": 3})]


def test_progress_is_reported_for_every_file(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path, f"m{i}.py", "x = 1\n")
    seen: list[tuple[int, int]] = []
    discover(tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_a_rescan_without_patterns_keeps_the_previous_runs(tmp_path: Path) -> None:
    write(tmp_path, "app/jobs.py", "from nuvom import task\n@task\ndef jobs(): ...\n")
    write(tmp_path, "tools/t.py", "from nuvom import task\n@task\ndef tool(): ...\n")
    narrow = discover(tmp_path, include=["app/"])
    again = discover(tmp_path, previous=narrow)  # what a worker's rescan does
    assert (names(again), again.include) == ({"jobs"}, ["app/"])
    assert names(discover(tmp_path, previous=narrow, include=[])) == {"jobs", "tool"}
