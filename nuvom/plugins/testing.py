"""``nuvom plugin test``'s engine, usable from a plugin's own tests: import a plugin, check its
contract, start and stop it, and run the backend checks on every backend it registered.

``check_plugin("my_plugin:MyPlugin").ok`` is the one line a plugin's test needs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nuvom.clock import FakeClock
from nuvom.plugins.conformance import CheckResult, check_queue_backend, check_result_backend
from nuvom.plugins.contracts import BACKEND_KINDS, Extras, PluginProtocol, start_call


@dataclass
class PluginReport:
    spec: str
    plugin: PluginProtocol | None = None
    steps: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def add(self, name: str, status: str, detail: str = "") -> None:
        self.steps.append(CheckResult(name, status, detail))

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "name": self.plugin.name if self.plugin else None,
            "provides": list(self.plugin.provides) if self.plugin else [],
            "ok": self.ok,
            "steps": [vars(step) for step in self.steps],
        }


def _reason(exc: BaseException) -> str:
    from nuvom.errors import PluginError

    return str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"


def check_plugin(spec: str, *, search_path: Path | None = None) -> PluginReport:
    """Import, contract-check, start, run backend checks, stop. Never raises for a bad plugin."""
    import sys

    from nuvom.plugins.loader import PluginSpec, import_plugin

    report = PluginReport(spec)
    folder = (search_path or Path.cwd()).resolve()
    try:
        plugin = import_plugin(PluginSpec(spec, "the command line", search_path=folder))
        start = start_call(plugin, spec)
    except Exception as exc:
        report.add("import and contract", "failed", _reason(exc))
        return report
    report.plugin = plugin
    origin = getattr(sys.modules.get(type(plugin).__module__), "__file__", None) or "?"
    report.add("import and contract", "passed", f"{plugin.name} from {origin}")
    with tempfile.TemporaryDirectory(prefix="nuvom-plugin-test-") as scratch:
        _start_check_stop(report, plugin, start, Path(scratch))
    return report


def _start_check_stop(
    report: PluginReport,
    plugin: PluginProtocol,
    start: Callable[[Any, Extras], None],
    scratch: Path,
) -> None:
    from nuvom.config import load_settings
    from nuvom.events import EventBus
    from nuvom.plugins.registry import capture_registrations, unregister_backend

    try:
        settings = load_settings(
            sqlite_db_path=scratch / "nuvom.db",
            file_queue_dir=scratch / "queue",
            manifest_path=scratch / "manifest.json",
            prometheus_port=0,
        )
        with capture_registrations() as registered:
            start(settings, Extras(role="test", events=EventBus()))
    except Exception as exc:
        report.add("start", "failed", _reason(exc))
        return
    report.add("start", "passed", ", ".join(f"registered {k} backend {n!r}" for k, n in registered))
    try:
        for kind in BACKEND_KINDS:
            short = kind.removesuffix("_backend")
            names = [name for k, name in registered if k == short]
            if kind in plugin.provides and not names:
                report.add(f"{kind} registered", "failed", f"provides {kind} but registered none")
            for name in names:
                _run_backend_checks(report, settings, short, name)
    finally:
        try:
            plugin.stop()
            report.add("stop", "passed")
        except Exception as exc:
            report.add("stop", "failed", _reason(exc))
        for kind, name in registered:
            unregister_backend(kind, name)


def _run_backend_checks(report: PluginReport, settings: Any, kind: str, name: str) -> None:
    from nuvom.backends.names import NAMES
    from nuvom.runtime import Runtime

    factory = NAMES.factory(kind, name)
    assert factory is not None, f"{kind} backend {name!r} was registered a moment ago"

    def build(clock: FakeClock) -> Any:
        return factory(Runtime(settings, clock=clock))

    results = check_queue_backend(build) if kind == "queue" else check_result_backend(build)
    for result in results:
        report.add(f"{kind} backend {name!r}: {result.name}", result.status, result.detail)
