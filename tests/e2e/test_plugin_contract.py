"""The plugin contract users were given by the 0.9 README, through the CLI on a real store:
``def start(self, settings)``, plugins by shape rather than by base class, and a result
backend of four methods used for ``.delay()``, ``runworker --burst``, ``job.get()``, ``status``.
"""

from __future__ import annotations

import json
import sys

import pytest

from .helpers import Project

TASKS = """
from nuvom import task


@task
def add(x, y):
    return x + y


@task
def boom():
    raise ValueError("bad input")
"""

# Each plugin writes <name>.started (what start was given) and <name>.stopped, so the
# test sees what the worker process called.
LIFECYCLE_PLUGINS = """
import json
from pathlib import Path

from nuvom.plugins.contracts import Plugin


def note(name, what, data=None):
    Path(f"{name}.{what}").write_text(json.dumps(data), encoding="utf-8")


class OnlySettings(Plugin):
    api_version = "1.0"
    name = "only_settings"
    provides = ["lifecycle"]

    def start(self, settings):
        note(self.name, "started", {"batch_size": settings.batch_size})

    def stop(self):
        note(self.name, "stopped")


class KeywordExtras(Plugin):
    api_version = "1.0"
    name = "keyword_extras"
    provides = ["lifecycle"]

    def start(self, settings, **extras):
        note(self.name, "started", {"role": extras["role"], "keys": sorted(extras)})

    def stop(self):
        note(self.name, "stopped")


class Exploding(Plugin):
    api_version = "1.0"
    name = "exploding"
    provides = ["lifecycle"]

    def start(self, settings):
        raise RuntimeError("cannot open the exporter")

    def stop(self):
        note(self.name, "stopped")
"""

# Not one of these subclasses nuvom's Plugin: they have its members, as the README says.
STRUCTURAL_PLUGINS = """
import json
from pathlib import Path


class TomlPlugin:
    api_version = "1.0"
    name = "toml_plugin"
    provides = ["lifecycle"]

    def start(self, settings, extras=None):
        Path("toml_plugin.started").write_text(json.dumps(extras.role), encoding="utf-8")

    def stop(self):
        Path("toml_plugin.stopped").write_text("", encoding="utf-8")


class NoProvides:
    api_version = "1.0"
    name = "no_provides"

    def start(self, settings):
        pass

    def stop(self):
        pass
"""

# The 0.9 README's "Registering a custom result backend plugin", filled in: a class with
# the four methods and no base, kept as one JSON file per job so processes share it.
README_RESULT_BACKEND = """
import json
from pathlib import Path

from nuvom.plugins.contracts import Plugin

FOLDER = Path("my_results")


def _path(job_id):
    return FOLDER / f"{job_id}.json"


def _read(job_id):
    return json.loads(_path(job_id).read_text()) if _path(job_id).exists() else {}


class MyResultBackend<BASE>:
    def set_result(self, job_id, result):
        FOLDER.mkdir(exist_ok=True)
        _path(job_id).write_text(json.dumps({"result": result}))

    def get_result(self, job_id):
        return _read(job_id).get("result")

    def set_error(self, job_id, error):
        FOLDER.mkdir(exist_ok=True)
        _path(job_id).write_text(json.dumps({"error": str(error)}))

    def get_error(self, job_id):
        return _read(job_id).get("error")


class MyPlugin(Plugin):
    api_version = "1.0"
    name = "my_plugin"
    provides = ["result_backend"]

    def start(self, settings):
        from nuvom.plugins.registry import register_result_backend
        register_result_backend("my_backend", MyResultBackend)

    def stop(self): pass
"""
README_TOML = '[plugins]\nresult_backend = ["my_plugin:MyPlugin"]\n'

# Holds the handles .delay() returned and waits on them while the test runs a worker.
PRODUCE_AND_WAIT = """
from nuvom.errors import JobFailed
from tasks import add, boom

ok, bad = add.delay(2, 3), boom.delay()
print("JOB-IDS", ok.id, bad.id, flush=True)
print("result", ok.get(timeout=60), flush=True)
try:
    bad.get(timeout=60)
except JobFailed as exc:
    print("failed", exc.error_type, exc.error_message, flush=True)
"""


def _noted(project: Project, name: str, what: str) -> object:
    path = project.root / f"{name}.{what}"
    assert path.exists(), f"{name} was never {what}"
    return json.loads(path.read_text(encoding="utf-8") or "null")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_start_is_called_with_what_its_signature_takes(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.write("lifecycle.py", LIFECYCLE_PLUGINS)
    project.write(
        ".nuvom_plugins.toml",
        '[plugins]\nlifecycle = ["lifecycle:OnlySettings", "lifecycle:KeywordExtras", '
        '"lifecycle:Exploding"]\n',
    )

    worker = project.nuvom("runworker", "--burst", NUVOM_BATCH_SIZE="7")

    assert worker.returncode == 0, worker.stderr
    assert "Traceback" not in worker.stderr
    assert _noted(project, "only_settings", "started") == {"batch_size": 7}
    assert _noted(project, "keyword_extras", "started") == {
        "role": "worker",
        "keys": ["events", "metrics", "role", "worker_id"],
    }
    for name in ("only_settings", "keyword_extras"):
        _noted(project, name, "stopped")
        assert f"plugin {name} loaded from .nuvom_plugins.toml" in worker.stderr
    # A plugin whose start raised is reported failed, with its error, and never "loaded".
    assert "plugin exploding loaded" not in worker.stderr
    assert (
        "plugin lifecycle:Exploding from .nuvom_plugins.toml: plugins.lifecycle failed: "
        "start failed: RuntimeError: cannot open the exporter"
    ) in worker.stderr
    assert not (project.root / "exploding.stopped").exists(), "stop() without a start()"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_plugin_need_not_subclass_plugin_only_have_its_members(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.write("structural.py", STRUCTURAL_PLUGINS)
    project.write(
        ".nuvom_plugins.toml",
        '[plugins]\nlifecycle = ["structural:TomlPlugin", "structural:NoProvides"]\n',
    )

    worker = project.nuvom("runworker", "--burst")

    assert worker.returncode == 0, worker.stderr
    assert _noted(project, "toml_plugin", "started") == "worker"
    _noted(project, "toml_plugin", "stopped")
    assert "plugin toml_plugin loaded from .nuvom_plugins.toml" in worker.stderr
    assert "not a nuvom.plugins.contracts.Plugin subclass" not in worker.stderr

    status = project.nuvom("plugin", "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    shown = {p["spec"]: p for p in json.loads(status.stdout)["plugins"]}
    assert shown["structural:TomlPlugin"]["state"] == "loaded"
    assert shown["structural:TomlPlugin"]["error"] is None
    refused = shown["structural:NoProvides"]
    assert refused["state"] == "failed"
    assert refused["error"].startswith("NoProvides is not a nuvom plugin")
    assert refused["error"].endswith("it has no provides")

    tested = project.nuvom("plugin", "test", "structural:TomlPlugin")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "every check passed" in tested.stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "base",
    [
        pytest.param("", id="plain-class-as-in-the-0.9-readme"),
        pytest.param("(BaseResultBackend)", id="base-result-backend-subclass"),
    ],
)
def test_a_four_method_result_backend_works_end_to_end(project: Project, base: str) -> None:
    project.write("tasks.py", TASKS)
    plugin = README_RESULT_BACKEND.replace("<BASE>", base)
    if base:
        plugin = "from nuvom.result_backends.base import BaseResultBackend\n" + plugin
    project.write("my_plugin.py", plugin)
    project.write(".nuvom_plugins.toml", README_TOML)
    env = {"NUVOM_RESULT_BACKEND": "my_backend"}

    producer = project.start([sys.executable, "-c", PRODUCE_AND_WAIT], **env)
    ok_id, bad_id = producer.wait_for_output("JOB-IDS ").split()[1:]

    worker = project.nuvom("runworker", "--burst", **env)
    assert worker.returncode == 0, worker.stderr
    assert "processed 2: 1 ok, 1 failed" in worker.stderr
    assert "results my_backend" in worker.stderr  # the worker's start line names the backend

    assert producer.wait() == 0, producer.describe()
    assert "result 5" in producer.stdout
    assert "failed ValueError bad input" in producer.stdout

    stored = project.root / "my_results"
    assert json.loads((stored / f"{ok_id}.json").read_text()) == {"result": 5}
    assert json.loads((stored / f"{bad_id}.json").read_text()) == {"error": "ValueError: bad input"}

    ok = project.nuvom("status", ok_id, **env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "5"
    bad = project.nuvom("status", bad_id, "--format", "json", **env)
    assert bad.returncode == 0, bad.stderr
    shown = json.loads(bad.stdout)
    assert (shown["status"], shown["error_type"], shown["error_message"]) == (
        "FAILED",
        "ValueError",
        "bad input",
    )

    # Four methods keep no history: the listing says so in one line instead of guessing.
    history = project.nuvom("history", "recent", **env)
    assert history.returncode == 1
    assert "Traceback" not in history.stderr
    last = history.stderr.strip().splitlines()[-1]  # after the plugin's own log lines
    assert last.startswith("error: the 'my_backend' result backend keeps no job history"), last
