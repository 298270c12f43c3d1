"""Find, import, start and stop plugins from ``.nuvom_plugins.toml`` and the ``nuvom.plugins``
entry-point group, remembering where each came from and why any of them failed.

A failing plugin is reported (logged, and shown by ``nuvom plugin status``); it
stops nothing else unless it was to provide the backend the settings ask for. A
plugin is logged as loaded once its ``start`` returned, never before.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nuvom.errors import ConfigError, PluginError
from nuvom.plugins.contracts import (
    BACKEND_KINDS,
    KINDS,
    MEMBERS,
    Extras,
    MetricsProvider,
    Plugin,
    PluginProtocol,
    call_update_runtime,
    check_contract,
    not_a_plugin,
    overrides,
    start_call,
)

if TYPE_CHECKING:
    from nuvom.config import Settings
    from nuvom.events import EventBus
    from nuvom.runtime import Runtime
    from nuvom.worker import Worker

log = logging.getLogger("nuvom.plugins")

ENTRY_POINT_GROUP = "nuvom.plugins"
TOML_TABLE = "plugins"


@dataclass(frozen=True)
class PluginSpec:
    """One plugin to load: ``module:attribute`` and where that was written."""

    spec: str
    source: str  # "<file> [section]" or "entry point <name> of <dist> <version>"
    section: str | None = None  # the TOML key it was listed under
    distribution: str | None = None
    dist_version: str | None = None
    search_path: Path | None = None  # folder put on sys.path before importing (the TOML's)

    @property
    def declared_kinds(self) -> list[str]:
        """What the listing says it provides, for a plugin that failed before saying itself."""
        return [self.section] if self.section in KINDS else []


@dataclass
class LoadedPlugin:
    spec: PluginSpec
    plugin: PluginProtocol | None = None
    error: str | None = None
    started: bool = False
    reported: bool = False  # its failure has been logged
    announced: bool = False  # "loaded" has been logged (after its first start)
    start_with: Callable[[Settings, Extras], None] | None = None  # from ``start_call``
    backends: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) it registered
    _unsubscribe: Callable[[], None] | None = None

    @property
    def name(self) -> str:
        return self.plugin.name if self.plugin is not None else self.spec.spec

    @property
    def provides(self) -> list[str]:
        if self.plugin is not None:
            return list(self.plugin.provides)
        return self.spec.declared_kinds

    @property
    def version(self) -> str | None:
        if self.spec.dist_version:  # what pip installed is the truth for an entry point
            return self.spec.dist_version
        declared = getattr(self.plugin, "version", None)
        if declared:
            return str(declared)
        if self.plugin is not None:
            module = sys.modules.get(type(self.plugin).__module__.split(".")[0])
            found = getattr(module, "__version__", None)
            return str(found) if found is not None else None
        return None

    @property
    def state(self) -> str:
        if self.error is not None:
            return "failed"
        return "started" if self.started else "loaded"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.spec,
            "source": self.spec.source,
            "version": self.version,
            "provides": self.provides,
            "state": self.state,
            "backends": [f"{kind}:{name}" for kind, name in self.backends],
            "error": self.error,
        }


# -- finding specs -------------------------------------------------------------
def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise PluginError(f"{path}: not valid TOML: {exc}", path=str(path)) from None
    except OSError as exc:
        raise PluginError(f"{path}: cannot read it: {exc.strerror}", path=str(path)) from None


def read_plugins_file(path: Path) -> list[PluginSpec]:
    """The specs listed under ``[plugins]`` in ``path`` (none when the file does not exist).

    Each key is a free label (``result_backend``, ``prometheus``...) holding a
    spec string or a list of them. Raises ``PluginError`` naming the file and key.
    """
    if not path.is_file():
        return []
    data = _load_toml(path)
    table = data.get(TOML_TABLE, {})
    if not isinstance(table, dict):
        raise PluginError(f"{path}: [{TOML_TABLE}] must be a table", path=str(path))
    folder = path.resolve().parent
    specs: list[PluginSpec] = []
    for section, value in table.items():
        listed = [value] if isinstance(value, str) else value
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            raise PluginError(
                f'{path}: [{TOML_TABLE}] {section} must be a "module:Class" string or a list '
                f"of them, got {value!r}",
                path=str(path),
            )
        for spec in listed:
            source = f"{path}: {TOML_TABLE}.{section}"
            specs.append(PluginSpec(spec.strip(), source, section, search_path=folder))
    return specs


def entry_point_specs() -> list[PluginSpec]:
    """Every ``nuvom.plugins`` entry point of the installed distributions."""
    from importlib.metadata import entry_points

    specs = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(point, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        dist_version = dist.version if dist is not None else None
        where = f"{dist_name} {dist_version}" if dist_name else "an unknown distribution"
        specs.append(
            PluginSpec(
                point.value,
                f"entry point {point.name!r} of {where}",
                distribution=dist_name,
                dist_version=dist_version,
            )
        )
    return specs


def import_plugin(spec: PluginSpec | str) -> PluginProtocol:
    """Import ``module:attr`` and return the plugin (the class instantiated), contract checked.

    The class need not subclass ``Plugin``: it needs the members of ``PluginProtocol``.
    """
    if isinstance(spec, str):
        spec = PluginSpec(spec, "the command line")
    text = spec.spec
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f'{text!r} is not a plugin spec of the form "module:Class"', spec=text)
    if spec.search_path is not None and str(spec.search_path) not in sys.path:
        sys.path.insert(0, str(spec.search_path))
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except ImportError as exc:
        raise PluginError(f"{text}: cannot import: {exc}", spec=text) from exc
    except AttributeError:
        raise PluginError(f"{text}: module {module_name!r} has no {attr!r}", spec=text) from None
    if isinstance(target, type):
        if not issubclass(target, Plugin):
            _check_class_shape(target, text)  # before running a constructor of a non-plugin
        try:
            target = target()
        except TypeError as exc:  # abstract start/stop missing, or a constructor needing args
            raise PluginError(f"{text}: cannot create the plugin: {exc}", spec=text) from exc
    return check_contract(target, text)


def _check_class_shape(cls: type, spec: str) -> None:
    missing = [name for name in MEMBERS if not hasattr(cls, name)]
    if "start" in missing or "stop" in missing:  # data members may still come from __init__
        raise not_a_plugin(spec, cls.__name__, missing)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"


def _missing_requirement(plugin: PluginProtocol, loaded_names: set[str]) -> str | None:
    for needed in getattr(plugin, "requires", ()):
        if needed in loaded_names:
            continue
        try:
            found = importlib.util.find_spec(needed) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"requires {needed!r}, which is neither a loaded plugin nor importable"
    return None


# -- the manager -----------------------------------------------------------------
class PluginManager:
    """The plugins of one runtime: loaded once, started and stopped as workers come and go."""

    def __init__(
        self, settings: Settings, events: EventBus | None = None, *, announce: bool = True
    ) -> None:
        self.settings = settings
        self.events = events
        self.announce = announce  # log each plugin loaded (off for `plugin status`, a report)
        self.records: list[LoadedPlugin] = []
        self.file_error: str | None = None
        self._loaded = False
        self._file_reported = False
        self._started: list[LoadedPlugin] = []
        self._lock = threading.RLock()

    def specs(self) -> list[PluginSpec]:
        specs: list[PluginSpec] = []
        self.file_error = None
        try:
            specs.extend(read_plugins_file(self.settings.plugins_file))
        except PluginError as exc:
            self.file_error = str(exc)
        if self.settings.plugins_autoload:
            seen = {s.spec for s in specs}
            specs.extend(s for s in entry_point_specs() if s.spec not in seen)
        return specs

    def load(self) -> list[LoadedPlugin]:
        """Import every configured plugin once and check its contract; failures are kept, not raised."""
        with self._lock:
            if self._loaded:
                return self.records
            self._loaded = True
            for spec in self.specs():
                record = LoadedPlugin(spec)
                try:
                    record.plugin = import_plugin(spec)
                    record.start_with = start_call(record.plugin, spec.spec)
                except Exception as exc:
                    record.error = _reason(exc).removeprefix(f"{spec.spec}: ")
                self.records.append(record)
            names = {r.plugin.name for r in self.records if r.plugin is not None}
            for record in self.records:
                if record.plugin is not None and record.error is None:
                    record.error = _missing_requirement(record.plugin, names)
            return self.records

    def report_failures(self, level: int = logging.ERROR) -> None:
        """Log each failure not logged yet, with its spec, source and reason.

        Not done as they happen: when a failure means the configured backend is
        missing, the one ``ConfigError`` that says so is the whole story.
        """
        with self._lock:
            if self.file_error and not self._file_reported:
                self._file_reported = True
                log.log(level, "plugins file not loaded: %s", self.file_error)
            for record in self.records:
                if record.error is not None and not record.reported:
                    record.reported = True
                    log.log(
                        level,
                        "plugin %s from %s failed: %s",
                        record.spec.spec,
                        record.spec.source,
                        record.error,
                    )

    def start(self, extras: Extras, *, backends_only: bool = False) -> list[LoadedPlugin]:
        """Start loaded plugins not yet started (only backend providers with ``backends_only``).

        Plugins already running get ``update_runtime(extras)``. Returns those that failed.
        """
        from nuvom.plugins.registry import capture_registrations

        failed: list[LoadedPlugin] = []
        with self._lock:
            for record in self.load():
                plugin, start = record.plugin, record.start_with
                if plugin is None or start is None or record.error is not None:
                    failed.append(record)
                    continue
                if record.started:
                    if not backends_only:
                        self._update(record, plugin, extras)
                    continue
                if backends_only and not set(record.provides) & set(BACKEND_KINDS):
                    continue
                try:
                    with capture_registrations() as registered:
                        start(self.settings, extras)
                except Exception as exc:
                    record.error = f"start failed: {_reason(exc)}"
                    failed.append(record)
                    continue
                record.backends = registered
                record.started = True
                self._started.append(record)
                on_event = getattr(plugin, "on_event", None)
                if (
                    self.events is not None
                    and on_event is not None
                    and overrides(plugin, "on_event")
                ):
                    record._unsubscribe = self.events.subscribe(on_event)
                self._announce_started(record, extras)
        return failed

    def _announce_started(self, record: LoadedPlugin, extras: Extras) -> None:
        """The first start says where the plugin came from; later ones just that it started."""
        if record.announced or not self.announce:
            log.info("plugin %s started (%s)", record.name, extras.role)
            return
        record.announced = True
        version = f" {record.version}" if record.version else ""
        log.info(
            "plugin %s%s loaded from %s (provides %s), started (%s)",
            record.name,
            version,
            record.spec.source,
            ", ".join(record.provides) or "nothing",
            extras.role,
        )

    def _update(self, record: LoadedPlugin, plugin: PluginProtocol, extras: Extras) -> None:
        if not overrides(plugin, "update_runtime"):
            return
        try:
            call_update_runtime(plugin, extras)
        except Exception:
            log.exception("plugin %s: update_runtime failed", record.name)

    def close(self) -> None:
        """The runtime closes: stop the plugins it started."""
        self.stop()

    def stop(self) -> None:
        """Stop every started plugin, last started first. A failing stop is logged, not raised."""
        with self._lock:
            while self._started:
                record = self._started.pop()
                record.started = False
                if record._unsubscribe is not None:
                    record._unsubscribe()
                    record._unsubscribe = None
                try:
                    if record.plugin is not None:
                        record.plugin.stop()
                    log.info("plugin %s stopped", record.name)
                except Exception:
                    log.exception("plugin %s: stop failed", record.name)

    def failures_for(self, kind: str) -> list[LoadedPlugin]:
        """Failed plugins that provide (or, failing to import, were listed as) ``kind``."""
        return [
            r
            for r in self.records
            if r.error is not None and (kind in r.provides or not r.provides)
        ]


def manager_for(runtime: Runtime) -> PluginManager:
    """The runtime's plugin manager, made on first use (and stopped when the runtime closes)."""
    return runtime.shared(PluginManager, lambda: PluginManager(runtime.settings, runtime.events))


def find_backend(runtime: Runtime, kind: str, name: str) -> Callable[[Runtime], Any]:
    """The factory for a backend name no engine has: start the backend plugins and look again.

    Raises ``ConfigError`` naming the variable and, when one failed, the plugin
    that should have provided it and why.
    """
    from nuvom.backends.names import NAMES

    manager = manager_for(runtime)
    manager.start(Extras(role="producer", events=runtime.events), backends_only=True)
    factory = NAMES.factory(kind, name)
    if factory is not None:
        manager.report_failures(logging.WARNING)  # they did not stop this process
        return factory
    error = NAMES.unknown(kind, name)
    reasons = [
        f"plugin {r.spec.spec} (from {r.spec.source}) failed: {r.error}"
        for r in manager.failures_for(f"{kind}_backend")
    ]
    if manager.file_error:
        reasons.insert(0, manager.file_error)
    if reasons:
        raise ConfigError(f"{error}; {'; '.join(reasons)}", variable=error.variable)
    raise error


def _queue_sizes(worker: Worker) -> dict[str, int]:
    if worker.queues:
        return {name: worker.queue.qsize(name) for name in worker.queues}
    return {"all": worker.queue.qsize()}


class WorkerPlugins:
    """What a worker holds while it runs: stop() stops the plugins on its way out."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    def stop(self) -> None:
        self.manager.stop()


def start_worker_plugins(worker: Worker) -> WorkerPlugins:
    """Start every plugin for ``worker`` with its metrics; failures are logged and skipped."""
    manager = manager_for(worker.runtime)
    metrics = MetricsProvider(
        queue_sizes=lambda: _queue_sizes(worker),
        inflight=lambda: worker.inflight,
        worker_count=lambda: worker.concurrency,
    )
    extras = Extras(
        role="worker", events=worker.events, metrics=metrics, worker_id=worker.worker_id
    )
    manager.start(extras)
    manager.report_failures()
    return WorkerPlugins(manager)
