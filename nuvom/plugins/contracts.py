"""The plugin contract: what a plugin declares, and what nuvom calls on it, in which order.

``start(settings, extras)`` when a worker (or a producer that needs a plugin
backend) starts, ``update_runtime(extras)`` when more of the runtime becomes
known, ``on_event(event)`` for each job event, ``stop()`` on shutdown.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nuvom.errors import PluginError

if TYPE_CHECKING:
    from nuvom.config import Settings
    from nuvom.events import JobEvent

#: The plugin API this nuvom provides, "MAJOR.MINOR". A plugin whose major differs is refused.
API_VERSION = "1.0"

#: What a plugin may declare in ``provides``.
KINDS = ("queue_backend", "result_backend", "monitoring", "lifecycle")
BACKEND_KINDS = ("queue_backend", "result_backend")


def _no_queues() -> dict[str, int]:
    return {}


def _zero() -> int:
    return 0


@dataclass(frozen=True)
class MetricsProvider:
    """Live numbers a monitoring plugin reads when it is scraped (``extras["metrics"]``).

    Each is a callable so the value is read when asked, never cached.
    """

    queue_sizes: Callable[[], Mapping[str, int]] = _no_queues  # waiting jobs per queue name
    inflight: Callable[[], int] = _zero  # jobs this worker holds
    worker_count: Callable[[], int] = _zero  # threads this worker runs jobs on


@dataclass(frozen=True)
class Extras:
    """What nuvom hands a plugin besides its settings.

    ``role`` is ``"worker"``, ``"producer"`` or ``"test"``; ``events`` is the
    runtime's ``EventBus``; ``metrics`` is set for workers.
    """

    role: str
    events: Any = None
    metrics: MetricsProvider = field(default_factory=MetricsProvider)
    worker_id: str | None = None


class Plugin(ABC):
    """Subclass this, declare the class attributes, and implement ``start`` and ``stop``."""

    api_version: ClassVar[str] = API_VERSION
    name: ClassVar[str] = ""
    provides: ClassVar[Sequence[str]] = ()
    # Other plugins' names, or importable modules, this one needs; if one is missing it fails to load.
    requires: ClassVar[Sequence[str]] = ()
    version: ClassVar[str | None] = None  # shown by `plugin status`; an entry point's dist wins

    @abstractmethod
    def start(self, settings: Settings, extras: Extras | None = None) -> None:
        """Get ready: register backends, open servers. Raise to report a failure."""

    @abstractmethod
    def stop(self) -> None:
        """Release what ``start`` took. Called once per start, in reverse start order."""

    def update_runtime(self, extras: Extras) -> None:  # noqa: B027 - optional hook
        """More of the runtime is known (a worker started after this plugin did)."""

    def on_event(self, event: JobEvent) -> None:  # noqa: B027 - optional hook
        """A job event (enqueued, started, succeeded, failed, retried). Must be quick."""


def major(version: object) -> str:
    return str(version).strip().split(".", 1)[0]


def check_contract(plugin: object, spec: str) -> Plugin:
    """Return ``plugin`` if it keeps the contract; else raise ``PluginError`` saying what is wrong."""
    if not isinstance(plugin, Plugin):
        raise PluginError(
            f"{spec}: {type(plugin).__name__} is not a nuvom.plugins.contracts.Plugin", spec=spec
        )
    got = getattr(plugin, "api_version", None)
    if major(got) != major(API_VERSION):
        raise PluginError(
            f"{spec}: plugin targets plugin API {got} but this nuvom provides {API_VERSION} "
            "(the major versions must match)",
            spec=spec,
        )
    if not isinstance(plugin.name, str) or not plugin.name.strip():
        raise PluginError(f"{spec}: the plugin has no name (set the class attribute `name`)")
    provides = plugin.provides
    if isinstance(provides, str) or not all(isinstance(p, str) for p in provides):
        raise PluginError(f"{spec}: provides must be a list of names, got {provides!r}", spec=spec)
    unknown = [p for p in provides if p not in KINDS]
    if unknown:
        raise PluginError(
            f"{spec}: provides {unknown[0]!r}, which is not one of {', '.join(KINDS)}", spec=spec
        )
    for method in ("start", "stop"):
        if not callable(getattr(plugin, method, None)):
            raise PluginError(f"{spec}: the plugin has no {method}() method", spec=spec)
    return plugin


def overrides(plugin: Plugin, method: str) -> bool:
    """True when the plugin's class defines ``method`` itself rather than inheriting the no-op."""
    return getattr(type(plugin), method, None) is not getattr(Plugin, method)
