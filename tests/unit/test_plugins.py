"""Plugins in one process: loading from TOML and entry points, the start/stop lifecycle,
job events, failures reported with spec and reason, and backend registration.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nuvom
import nuvom.runtime
from nuvom.backends.names import NAMES
from nuvom.cli.output import OutputFormat
from nuvom.errors import BackendError, ConfigError, JobFailed, PluginError
from nuvom.plugins.contracts import API_VERSION, Plugin
from nuvom.plugins.loader import PluginManager, PluginSpec, import_plugin, manager_for
from nuvom.plugins.registry import register_queue_backend, register_result_backend
from nuvom.registry import TaskRegistry
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.task import task
from nuvom.worker import Worker

PLUGINS = """
from nuvom.plugins.contracts import Plugin
from nuvom.plugins.registry import register_result_backend
from nuvom.result_backends.memory_backend import MemoryResultBackend

CALLS = []


class Recorder(Plugin):
    name = "recorder"
    provides = ["lifecycle"]

    def __init__(self):
        self.events = []

    def start(self, settings, extras=None):
        CALLS.append(("start", self.name, extras.role))

    def update_runtime(self, extras):
        CALLS.append(("update", self.name, extras.role))

    def on_event(self, event):
        self.events.append((event.name, event.job.func_name))

    def stop(self):
        CALLS.append(("stop", self.name))


class Second(Recorder):
    name = "second"


class MemoryResults(Plugin):
    name = "memresults"
    provides = ["result_backend"]

    def start(self, settings, extras=None):
        register_result_backend("plugmem", MemoryResultBackend)
        CALLS.append(("start", self.name, extras.role))

    def stop(self):
        CALLS.append(("stop", self.name))


class FromTheFuture(Recorder):
    name = "future"
    api_version = "2.0"


class Exploding(Recorder):
    name = "exploding"

    def start(self, settings, extras=None):
        raise RuntimeError("boom at start")


class ExplodingBackend(MemoryResults):
    name = "explodingbackend"

    def start(self, settings, extras=None):
        raise RuntimeError("cannot reach the store")


class NeedsRecorder(Recorder):
    name = "needsrecorder"
    requires = ["recorder"]


class NeedsGhost(Recorder):
    name = "needsghost"
    requires = ["ghost_plugin_nobody_wrote"]


class NoStop(Plugin):
    name = "nostop"

    def start(self, settings, extras=None):
        pass


class OnlySettings(Recorder):
    name = "onlysettings"

    def start(self, settings):
        CALLS.append(("start", self.name, type(settings).__name__))


class KeywordExtras(Recorder):
    name = "keywordextras"

    def start(self, settings, **extras):
        CALLS.append(("start", self.name, extras["role"], sorted(extras)))

    def update_runtime(self, **extras):
        CALLS.append(("update", self.name, extras["role"]))


# The members of a plugin without subclassing Plugin, and no optional hooks.
class Structural:
    api_version = "1.0"
    name = "structural"
    provides = ["lifecycle"]

    def start(self, settings):
        CALLS.append(("start", self.name))

    def stop(self):
        CALLS.append(("stop", self.name))


# The 0.9 README's result backend: four methods, no base class.
class PlainResults:
    STORE = {}

    def set_result(self, job_id, result):
        self.STORE[job_id] = ("result", result)

    def get_result(self, job_id):
        kind, value = self.STORE.get(job_id, (None, None))
        return value if kind == "result" else None

    def set_error(self, job_id, error):
        self.STORE[job_id] = ("error", str(error))

    def get_error(self, job_id):
        kind, value = self.STORE.get(job_id, (None, None))
        return value if kind == "error" else None


class PlainBackendPlugin:
    api_version = "1.0"
    name = "plainbackend"
    provides = ["result_backend"]

    def start(self, settings):
        register_result_backend("plain", PlainResults)

    def stop(self):
        pass
"""


@pytest.fixture(autouse=True)
def clean_backend_tables() -> Iterator[None]:
    """Plugin backends registered by a test vanish with it."""
    with NAMES.kept():
        yield


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of test plugins under a name no other test uses; forgotten afterwards."""
    name = f"plugmod_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(PLUGINS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path.resolve()))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / ".nuvom_plugins.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def calls(module: str) -> list[tuple[str, ...]]:
    return list(sys.modules[module].CALLS)


def manager_of(runtime: nuvom.runtime.Runtime) -> PluginManager:
    manager = manager_for(runtime)
    assert manager.records, "no plugin was loaded"
    return manager


def record_named(manager: PluginManager, name: str) -> dict[str, object]:
    (found,) = [r.describe() for r in manager.records if r.name == name or r.spec.spec == name]
    return found


def test_toml_plugins_start_for_the_backend_then_the_worker_and_stop_in_reverse(
    plugin_module, write_toml
):
    write_toml(f"""
        [plugins]
        result_backend = ["{plugin_module}:MemoryResults"]
        lifecycle = ["{plugin_module}:Recorder", "{plugin_module}:Second"]
    """)
    runtime = nuvom.configure(
        queue_backend="memory", result_backend="plugmem", registry=TaskRegistry()
    )

    @task
    def add(x: int, y: int) -> int:
        return x + y

    job = add.delay(2, 3)  # the producer needs the plugin's backend: only that plugin starts
    assert calls(plugin_module) == [("start", "memresults", "producer")]
    assert isinstance(runtime.results, MemoryResultBackend)

    Worker(workers=1).run(burst=True)

    assert job.get(timeout=5) == 5
    assert calls(plugin_module)[1:] == [
        ("start", "recorder", "worker"),
        ("start", "second", "worker"),
        ("stop", "second"),
        ("stop", "recorder"),
        ("stop", "memresults"),
    ]
    recorder = next(r.plugin for r in manager_of(runtime).records if r.name == "recorder")
    assert recorder.events == [("started", "add"), ("succeeded", "add")]  # type: ignore[union-attr]
    assert record_named(manager_of(runtime), "memresults")["backends"] == ["result:plugmem"]


def test_a_second_worker_restarts_the_plugins_and_update_runtime_reaches_running_ones(
    plugin_module, write_toml
):
    write_toml(f"""
        [plugins]
        lifecycle = ["{plugin_module}:Recorder"]
    """)
    runtime = nuvom.configure(queue_backend="memory", result_backend="memory")
    manager = runtime.shared(PluginManager, lambda: PluginManager(runtime.settings, runtime.events))
    from nuvom.plugins.contracts import Extras

    manager.start(Extras(role="producer"))
    manager.start(Extras(role="worker"))
    manager.stop()
    Worker(workers=1).run(burst=True)

    assert calls(plugin_module) == [
        ("start", "recorder", "producer"),
        ("update", "recorder", "worker"),
        ("stop", "recorder"),
        ("start", "recorder", "worker"),
        ("stop", "recorder"),
    ]


def test_an_api_version_from_another_major_is_refused_with_spec_and_reason(
    plugin_module, write_toml, caplog
):
    spec = f"{plugin_module}:FromTheFuture"
    with pytest.raises(PluginError) as raised:
        import_plugin(spec)
    assert spec in str(raised.value)
    assert f"plugin API 2.0 but this nuvom provides {API_VERSION}" in str(raised.value)

    write_toml(f"""
        [plugins]
        lifecycle = ["{spec}", "{plugin_module}:Recorder"]
    """)
    runtime = nuvom.configure(queue_backend="memory", result_backend="memory")
    with caplog.at_level(logging.ERROR, logger="nuvom.plugins"):
        Worker(workers=1).run(burst=True)

    future = record_named(manager_of(runtime), spec)
    assert future["state"] == "failed"
    assert "plugin API 2.0" in str(future["error"])
    assert record_named(manager_of(runtime), "recorder")["state"] == "loaded"  # started, stopped
    assert any(spec in r.getMessage() and "2.0" in r.getMessage() for r in caplog.records)


def test_a_plugin_raising_in_start_is_reported_and_the_worker_still_runs(
    plugin_module, write_toml, caplog
):
    write_toml(f"""
        [plugins]
        lifecycle = ["{plugin_module}:Exploding", "{plugin_module}:Recorder"]
    """)
    runtime = nuvom.configure(
        queue_backend="memory", result_backend="memory", registry=TaskRegistry()
    )

    @task
    def double(x: int) -> int:
        return 2 * x

    job = double.delay(21)
    with caplog.at_level(logging.ERROR, logger="nuvom.plugins"):
        stats = Worker(workers=1).run(burst=True)

    assert stats.succeeded == 1
    assert job.get(timeout=5) == 42
    exploding = record_named(manager_of(runtime), "exploding")
    assert exploding["state"] == "failed"
    assert exploding["error"] == "start failed: RuntimeError: boom at start"
    assert calls(plugin_module) == [("start", "recorder", "worker"), ("stop", "recorder")]
    logged = [r.getMessage() for r in caplog.records]
    spec = f"{plugin_module}:Exploding"
    assert any(spec in line and "boom at start" in line for line in logged), logged


def test_the_worker_refuses_to_start_when_the_failing_plugin_provides_its_backend(
    plugin_module, write_toml
):
    write_toml(f"""
        [plugins]
        result_backend = ["{plugin_module}:ExplodingBackend"]
    """)
    nuvom.configure(queue_backend="memory", result_backend="plugmem")

    with pytest.raises(ConfigError) as raised:
        Worker(workers=1)

    message = str(raised.value)
    assert raised.value.variable == "NUVOM_RESULT_BACKEND"
    assert f"{plugin_module}:ExplodingBackend" in message
    assert "start failed: RuntimeError: cannot reach the store" in message


def test_a_backend_plugin_that_cannot_be_imported_is_named_in_the_backend_error(write_toml):
    write_toml("""
        [plugins]
        result_backend = ["no_such_module_here:Plugin"]
    """)
    nuvom.configure(queue_backend="memory", result_backend="custom")

    with pytest.raises(ConfigError) as raised:
        nuvom.runtime.current().results  # noqa: B018 - building it is the point

    assert "no_such_module_here:Plugin" in str(raised.value)
    assert "cannot import" in str(raised.value)


def test_an_unknown_backend_with_no_plugins_is_the_usual_one_line_error():
    nuvom.configure(queue_backend="nosuch", result_backend="memory")

    with pytest.raises(ConfigError, match="NUVOM_QUEUE_BACKEND: unknown queue backend 'nosuch'"):
        nuvom.runtime.current().queue  # noqa: B018


def test_a_bad_plugins_file_is_reported_and_nothing_else_breaks(write_toml):
    path = write_toml("[plugins\nresult_backend = 3\n")
    runtime = nuvom.configure(queue_backend="memory", result_backend="memory")
    manager = PluginManager(runtime.settings)

    assert manager.load() == []
    assert manager.file_error is not None
    assert str(path.name) in manager.file_error
    assert "not valid TOML" in manager.file_error

    write_toml("[plugins]\nresult_backend = 3\n")
    manager = PluginManager(runtime.settings)
    manager.load()
    assert manager.file_error is not None
    assert "result_backend must be" in manager.file_error


def test_the_plugins_file_path_comes_from_settings(plugin_module, tmp_path):
    elsewhere = tmp_path / "conf" / "plugins.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f'[plugins]\nlifecycle = "{plugin_module}:Recorder"\n', encoding="utf-8")
    runtime = nuvom.configure(plugins_file=elsewhere)

    (record,) = PluginManager(runtime.settings).load()

    assert record.describe()["source"] == f"{elsewhere}: plugins.lifecycle"
    assert record.state == "loaded"


def _install_distribution(site: Path, module: str) -> None:
    """A distribution as pip leaves it: a dist-info with METADATA and entry_points.txt."""
    info = site / "nuvom_testplugins-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nuvom-testplugins\nVersion: 1.2.3\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[nuvom.plugins]\nmemresults = {module}:MemoryResults\n", encoding="utf-8"
    )


def test_an_entry_point_plugin_provides_the_backend_and_says_where_it_came_from(
    plugin_module, tmp_path, monkeypatch, caplog
):
    site = tmp_path / "site"
    _install_distribution(site, plugin_module)
    monkeypatch.syspath_prepend(str(site))
    runtime = nuvom.configure(
        queue_backend="memory", result_backend="plugmem", registry=TaskRegistry()
    )

    @task
    def add(x: int, y: int) -> int:
        return x + y

    with caplog.at_level(logging.INFO, logger="nuvom.plugins"):
        job = add.delay(1, 2)
        Worker(workers=1).run(burst=True)

    assert job.get(timeout=5) == 3
    found = record_named(manager_of(runtime), "memresults")
    assert found["source"] == "entry point 'memresults' of nuvom-testplugins 1.2.3"
    assert found["version"] == "1.2.3"
    assert any(
        "memresults" in r.getMessage() and "nuvom-testplugins 1.2.3" in r.getMessage()
        for r in caplog.records
    )


def test_autoload_off_ignores_entry_points(plugin_module, tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install_distribution(site, plugin_module)
    monkeypatch.syspath_prepend(str(site))

    on = PluginManager(nuvom.configure().settings).load()
    off = PluginManager(nuvom.configure(plugins_autoload=False).settings).load()

    assert [r.name for r in on] == ["memresults"]
    assert off == []


def test_requires_names_other_plugins_or_modules(plugin_module, write_toml):
    write_toml(f"""
        [plugins]
        lifecycle = [
            "{plugin_module}:NeedsRecorder",
            "{plugin_module}:Recorder",
            "{plugin_module}:NeedsGhost",
        ]
    """)
    manager = PluginManager(nuvom.configure().settings)
    manager.load()

    assert record_named(manager, "needsrecorder")["state"] == "loaded"
    ghost = record_named(manager, "needsghost")
    assert ghost["state"] == "failed"
    assert "requires 'ghost_plugin_nobody_wrote'" in str(ghost["error"])


def test_a_plugin_without_stop_cannot_be_created(plugin_module):
    with pytest.raises(PluginError, match="cannot create the plugin"):
        import_plugin(PluginSpec(f"{plugin_module}:NoStop", "test"))


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no_colon_here", "module:Class"),
        ("json:loads", "function is not a nuvom plugin: .* it has none of them"),
        ("json:JSONDecoder", "JSONDecoder is not a nuvom plugin"),
        ("json:NoSuchThing", "has no 'NoSuchThing'"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, needle):
    with pytest.raises(PluginError, match=needle):
        import_plugin(spec)


class _NotABackend:
    pass


def test_registration_refuses_built_in_names_and_non_backends():
    with pytest.raises(PluginError, match="built in"):
        register_result_backend("sqlite", MemoryResultBackend)
    with pytest.raises(PluginError, match="does not subclass"):
        register_queue_backend("odd", _NotABackend)


def test_a_registered_class_gets_the_runtime_clock_and_a_factory_is_checked():
    register_result_backend("mem2", MemoryResultBackend)
    register_queue_backend("broken", lambda runtime: object())
    runtime = nuvom.configure(queue_backend="broken", result_backend="mem2")

    assert isinstance(runtime.results, MemoryResultBackend)
    assert runtime.results.clock is runtime.clock  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="returned object, not a BaseJobQueue"):
        runtime.queue  # noqa: B018


def test_plugin_status_json_lists_loaded_and_failed_plugins(plugin_module, write_toml, capsys):
    from nuvom.cli.plugin_cmd import show_status

    write_toml(f"""
        [plugins]
        result_backend = ["{plugin_module}:MemoryResults", "{plugin_module}:FromTheFuture"]
    """)
    nuvom.configure()

    assert show_status(OutputFormat.json) == 0

    shown = json.loads(capsys.readouterr().out)
    states = {p["spec"].split(":")[1]: (p["state"], p["provides"]) for p in shown["plugins"]}
    assert states == {
        "MemoryResults": ("loaded", ["result_backend"]),
        "FromTheFuture": ("failed", ["result_backend"]),  # from the key it was listed under
    }


def test_plugin_test_passes_a_good_backend_plugin_and_fails_a_bad_one(plugin_module, capsys):
    from nuvom.cli.plugin_cmd import run_plugin_test

    assert run_plugin_test(f"{plugin_module}:MemoryResults", OutputFormat.json) == 0
    good = json.loads(capsys.readouterr().out)
    assert good["ok"] is True
    names = [step["name"] for step in good["steps"]]
    assert "result backend 'plugmem': outcomes_are_stored" in names
    assert names[-1] == "stop"
    assert NAMES.factory("result", "plugmem") is None, "plugin test must clean up"

    assert run_plugin_test(f"{plugin_module}:Exploding", OutputFormat.table) == 1
    out = capsys.readouterr().out
    assert "start failed" not in out  # the CLI reports the step, with the plugin's reason
    assert "boom at start" in out


class _Inline(Plugin):
    name = "inline"

    def start(self, settings, extras=None):  # type: ignore[no-untyped-def]
        pass

    def stop(self):  # type: ignore[no-untyped-def]
        pass


def test_a_plugin_instance_is_accepted_as_well_as_a_class():
    plugin = import_plugin(f"{__name__}:INLINE")

    assert plugin is INLINE


INLINE = _Inline()


# -- the contract users were given: start's signature, plugins by shape, four-method backends
def test_start_gets_what_its_signature_takes_and_loaded_is_logged_after_it(
    plugin_module, write_toml, caplog
):
    write_toml(f"""
        [plugins]
        lifecycle = [
            "{plugin_module}:OnlySettings",
            "{plugin_module}:KeywordExtras",
            "{plugin_module}:Exploding",
        ]
    """)
    runtime = nuvom.configure(queue_backend="memory", result_backend="memory")
    manager = manager_for(runtime)
    from nuvom.plugins.contracts import Extras

    with caplog.at_level(logging.INFO, logger="nuvom.plugins"):
        manager.load()
        assert not [r for r in caplog.records if "loaded" in r.getMessage()], "before start"
        manager.start(Extras(role="producer"))
        manager.start(Extras(role="worker"))
    manager.stop()

    assert calls(plugin_module)[:4] == [
        ("start", "onlysettings", "Settings"),
        ("start", "keywordextras", "producer", ["events", "metrics", "role", "worker_id"]),
        ("update", "onlysettings", "worker"),
        ("update", "keywordextras", "worker"),  # update_runtime(**extras) too
    ]
    logged = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("plugin onlysettings loaded from") for line in logged), logged
    assert not any("exploding loaded" in line for line in logged), logged
    assert record_named(manager, "exploding")["error"] == (
        "start failed: RuntimeError: boom at start"
    )


@pytest.mark.parametrize(
    ("signature", "call", "expected"),
    [
        ("settings", "(settings)", ("S",)),
        ("settings, extras=None", "(settings, extras)", ("S", "E")),
        ("settings, extras", "(settings, extras)", ("S", "E")),
        ("*args", "args", ("S", "E")),
        ("settings, *, extras=None", "(settings, extras)", ("S", "E")),
        ("settings, **extras", "(settings, extras['role'])", ("S", "producer")),
    ],
)
def test_start_call_reads_the_signature(signature, call, expected):
    from nuvom.plugins.contracts import Extras, start_call

    namespace: dict[str, object] = {}
    exec(f"def start({signature}):\n    return {call}", namespace)
    plugin = type("P", (), {"start": staticmethod(namespace["start"])})()
    extras = Extras(role="producer")

    got = start_call(plugin, "x:P")("S", extras)

    assert tuple("E" if item is extras else item for item in got) == expected


@pytest.mark.parametrize(
    ("signature", "needle"),
    [("", r"start\(\) must take the settings"), ("settings, extras, port", "asks for more")],
)
def test_a_start_that_cannot_take_the_settings_is_refused_at_load(signature, needle):
    from nuvom.plugins.contracts import start_call

    namespace: dict[str, object] = {}
    exec(f"def start({signature}):\n    pass", namespace)
    plugin = type("P", (), {"start": staticmethod(namespace["start"])})()

    with pytest.raises(PluginError, match=needle):
        start_call(plugin, "x:P")


def test_a_plugin_that_does_not_subclass_plugin_runs_in_a_worker(plugin_module, write_toml):
    write_toml(f"""
        [plugins]
        lifecycle = ["{plugin_module}:Structural"]
    """)
    runtime = nuvom.configure(
        queue_backend="memory", result_backend="memory", registry=TaskRegistry()
    )

    @task
    def add(x: int, y: int) -> int:
        return x + y

    job = add.delay(1, 2)
    Worker(workers=1).run(burst=True)

    assert job.get(timeout=5) == 3
    assert calls(plugin_module) == [("start", "structural"), ("stop", "structural")]
    assert record_named(manager_of(runtime), "structural")["error"] is None


class _Shaped:
    api_version: object = "1.0"
    name: object = "shaped"
    provides: object = ["lifecycle"]
    requires: object = ()
    version: object = None

    def start(self, settings):
        pass

    def stop(self):
        pass


@pytest.mark.parametrize(
    ("attribute", "value", "needle"),
    [
        ("api_version", 1.0, 'api_version must be a "MAJOR.MINOR" string'),
        ("api_version", "2.1", "plugin API 2.1 but this nuvom provides"),
        ("name", "", "has no name"),
        ("provides", "lifecycle", "provides must be a list of names"),
        ("provides", ["metrics"], "provides 'metrics', which is not one of"),
        ("requires", "other", "requires must be a list of names"),
        ("version", 3, "version must be a string"),
        ("stop", "not callable", "stop is not a method"),
    ],
)
def test_a_structural_plugin_has_its_members_checked(attribute, value, needle):
    from nuvom.plugins.contracts import check_contract

    plugin = _Shaped()
    setattr(plugin, attribute, value)

    with pytest.raises(PluginError, match=needle):
        check_contract(plugin, "x:Shaped")


def test_a_plugin_without_some_members_is_told_which():
    from nuvom.plugins.contracts import check_contract

    class Half:
        name = "half"

        def start(self, settings):
            pass

    with pytest.raises(PluginError) as raised:
        check_contract(Half(), "x:Half")

    assert "Half is not a nuvom plugin" in str(raised.value)
    assert "it has no api_version, provides and stop" in str(raised.value)


def test_a_plain_four_method_result_backend_is_wrapped_and_works(plugin_module, write_toml):
    from nuvom.plugins.registry import PlainResults

    write_toml(f"""
        [plugins]
        result_backend = ["{plugin_module}:PlainBackendPlugin"]
    """)
    runtime = nuvom.configure(
        queue_backend="memory", result_backend="plain", registry=TaskRegistry()
    )

    @task
    def add(x: int, y: int) -> int:
        return x + y

    @task
    def boom() -> None:
        raise ValueError("bad input")

    ok, bad = add.delay(2, 3), boom.delay()
    Worker(workers=1).run(burst=True)

    assert isinstance(runtime.results, PlainResults)
    assert runtime.results.name == "plain"
    assert ok.get(timeout=5) == 5
    with pytest.raises(JobFailed) as raised:
        bad.get(timeout=5)
    assert (raised.value.error_type, raised.value.error_message) == ("ValueError", "bad input")
    assert sys.modules[plugin_module].PlainResults.STORE[bad.id] == (
        "error",
        "ValueError: bad input",
    )
    with pytest.raises(BackendError, match="'plain' result backend keeps no job history"):
        runtime.results.list_jobs()


def test_a_plain_backend_missing_a_method_is_refused_naming_it():
    class ThreeMethods:
        def set_result(self, job_id, result): ...
        def get_result(self, job_id): ...
        def set_error(self, job_id, error): ...

    with pytest.raises(PluginError, match=r"has no get_error\(\)"):
        register_result_backend("three", ThreeMethods)


def test_a_factory_may_return_a_plain_backend_and_a_base_one_gets_its_registered_name():
    from nuvom.backends.contract import BaseResultBackend
    from nuvom.plugins.registry import JobError, PlainResults

    class FourMethods:
        def __init__(self) -> None:
            self.errors: dict[str, object] = {}

        def set_result(self, job_id, result): ...
        def get_result(self, job_id): ...

        def set_error(self, job_id, error):
            self.errors[job_id] = error

        def get_error(self, job_id):
            return self.errors.get(job_id)

    class Unnamed(BaseResultBackend):
        set_result = get_result = set_error = get_error = lambda *a: None

    register_result_backend("fromfactory", lambda runtime: FourMethods())
    register_result_backend("unnamed", Unnamed)
    plain = NAMES.factory("result", "fromfactory")(nuvom.configure())
    unnamed = NAMES.factory("result", "unnamed")(nuvom.configure())

    assert isinstance(plain, PlainResults)
    plain.set_error("j1", ValueError("bad input"))
    given = plain.store.errors["j1"]
    assert isinstance(given, JobError)  # an exception, as 0.9 documented, reading "Type: message"
    assert (str(given), given.type, given.message) == (
        "ValueError: bad input",
        "ValueError",
        "bad input",
    )
    record = plain.get_full("j1")
    assert record is not None
    assert (record.status.value, record.error_type) == ("FAILED", "ValueError")
    assert unnamed.name == "unnamed"


def test_the_default_get_full_reads_an_error_without_a_type():
    from nuvom.records import ErrorInfo
    from nuvom.result_backends.memory_backend import MemoryResultBackend as Base

    class Bare(Base):
        def get_full(self, job_id):
            return super(Base, self).get_full(job_id)  # the BaseResultBackend default

        def get_error(self, job_id):
            return "the disk is full"

    record = Bare().get_full("j1")

    assert record is not None
    assert (record.error_type, record.error_message) == ("Error", "the disk is full")
    assert str(ErrorInfo("KeyError", "'x'")) == "KeyError: 'x'"
