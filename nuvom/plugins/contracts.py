"""The plugin contract: what a plugin declares, and what nuvom calls on it, in which order.

``start(settings)`` (or ``start(settings, extras)``, or ``start(settings, **extras)``:
whatever the plugin's signature takes) when a worker (or a producer that needs a
plugin backend) starts, ``update_runtime(extras)`` when more of the runtime becomes
known, ``on_event(event)`` for each job event, ``stop()`` on shutdown. Any object
with the members of ``PluginProtocol`` is a plugin; ``Plugin`` is the convenient base.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

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


@runtime_checkable
class PluginProtocol(Protocol):
    """What nuvom needs of a plugin, subclass of ``Plugin`` or not.

    Optional members: ``requires`` and ``version`` (as on ``Plugin``),
    ``update_runtime(extras)`` and ``on_event(event)``.
    """

    @property
    def api_version(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def provides(self) -> Sequence[str]: ...

    # Takes ``settings`` and, if its signature says so, the extras (see ``start_call``).
    @property
    def start(self) -> Callable[..., None]: ...

    def stop(self) -> None: ...


class Plugin(ABC):
    """Subclass this, declare the class attributes, and implement ``start`` and ``stop``."""

    api_version: ClassVar[str] = API_VERSION
    name: ClassVar[str] = ""
    provides: ClassVar[Sequence[str]] = ()
    # Other plugins' names, or importable modules, this one needs; if one is missing it fails to load.
    requires: ClassVar[Sequence[str]] = ()
    version: ClassVar[str | None] = None  # shown by `plugin status`; an entry point's dist wins

    if TYPE_CHECKING:
        # Loose for type checkers, so ``start(self, settings)`` (the documented form) and
        # ``start(self, settings, extras=None)`` are both valid overrides.
        start: Callable[..., None]
    else:

        @abstractmethod
        def start(self, settings: Settings, extras: Extras | None = None) -> None:
            """Get ready: register backends, open servers. Raise to report a failure.

            ``def start(self, settings)`` is enough for a plugin that needs no extras;
            nuvom passes ``extras`` only when the signature takes them (``start_call``).
            """

    @abstractmethod
    def stop(self) -> None:
        """Release what ``start`` took. Called once per start, in reverse start order."""

    def update_runtime(self, extras: Extras) -> None:  # noqa: B027 - optional hook
        """More of the runtime is known (a worker started after this plugin did)."""

    def on_event(self, event: JobEvent) -> None:  # noqa: B027 - optional hook
        """A job event (enqueued, started, succeeded, failed, retried). Must be quick."""


#: The members every plugin has, in the order an error names the missing ones.
MEMBERS = ("api_version", "name", "provides", "start", "stop")
OPTIONAL_HOOKS = ("update_runtime", "on_event")


def major(version: object) -> str:
    return str(version).strip().split(".", 1)[0]


def _listing(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _is_names(value: object) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(item, str) for item in value)
    )


def not_a_plugin(spec: str, what: str, missing: Sequence[str]) -> PluginError:
    """The error for an object without the members of a plugin, naming those it lacks."""
    lacks = "none of them" if len(missing) == len(MEMBERS) else f"no {_listing(missing)}"
    return PluginError(
        f"{spec}: {what} is not a nuvom plugin: a plugin has {_listing(MEMBERS)} "
        f"(or subclasses nuvom.plugins.contracts.Plugin), and it has {lacks}",
        spec=spec,
    )


def check_contract(plugin: object, spec: str) -> PluginProtocol:
    """Return ``plugin`` if it keeps the contract; else raise ``PluginError`` saying what is wrong.

    Checked by shape, not by class: a plugin need not subclass ``Plugin``.
    """
    if not isinstance(plugin, PluginProtocol):
        missing = [member for member in MEMBERS if not hasattr(plugin, member)]
        raise not_a_plugin(spec, type(plugin).__name__, missing)
    got = plugin.api_version
    if not isinstance(got, str):
        raise PluginError(
            f'{spec}: api_version must be a "MAJOR.MINOR" string such as "{API_VERSION}", '
            f"got {got!r}",
            spec=spec,
        )
    if major(got) != major(API_VERSION):
        raise PluginError(
            f"{spec}: plugin targets plugin API {got} but this nuvom provides {API_VERSION} "
            "(the major versions must match)",
            spec=spec,
        )
    if not isinstance(plugin.name, str) or not plugin.name.strip():
        raise PluginError(
            f"{spec}: the plugin has no name (set the class attribute `name`)", spec=spec
        )
    provides = plugin.provides
    if not _is_names(provides):
        raise PluginError(f"{spec}: provides must be a list of names, got {provides!r}", spec=spec)
    unknown = [p for p in provides if p not in KINDS]
    if unknown:
        raise PluginError(
            f"{spec}: provides {unknown[0]!r}, which is not one of {', '.join(KINDS)}", spec=spec
        )
    _check_optional_members(plugin, spec)
    return plugin


def _check_optional_members(plugin: PluginProtocol, spec: str) -> None:
    for method in ("start", "stop", *OPTIONAL_HOOKS):
        if hasattr(plugin, method) and not callable(getattr(plugin, method)):
            raise PluginError(f"{spec}: the plugin's {method} is not a method", spec=spec)
    requires = getattr(plugin, "requires", ())
    if not _is_names(requires):
        raise PluginError(f"{spec}: requires must be a list of names, got {requires!r}", spec=spec)
    version = getattr(plugin, "version", None)
    if version is not None and not isinstance(version, str):
        raise PluginError(f"{spec}: version must be a string, got {version!r}", spec=spec)


def overrides(plugin: object, method: str) -> bool:
    """True when the plugin has ``method`` of its own rather than ``Plugin``'s no-op (or none)."""
    if not callable(getattr(plugin, method, None)):
        return False
    return getattr(type(plugin), method, None) is not getattr(Plugin, method)


def extras_fields(extras: Extras) -> dict[str, Any]:
    """``extras`` as keywords, for a hook declared ``**extras`` (values kept as they are)."""
    return {item.name: getattr(extras, item.name) for item in dataclasses.fields(extras)}


def start_call(plugin: PluginProtocol, spec: str) -> Callable[[Settings, Extras], None]:
    """``start`` as ``f(settings, extras)``, passing extras only as its signature takes them.

    ``start(settings)`` gets settings alone, ``start(settings, extras)`` (or ``*args``)
    the ``Extras``, ``start(settings, *, extras)`` them by keyword, and
    ``start(settings, **extras)`` their fields as keywords. The signature is read
    once, here; raises ``PluginError`` when ``start`` cannot take ``settings``.
    """
    start = plugin.start
    try:
        params = list(inspect.signature(start).parameters.values())
    except (TypeError, ValueError):  # no readable signature (a builtin): the full call
        return lambda settings, extras: start(settings, extras)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    star_args = any(p.kind is p.VAR_POSITIONAL for p in params)
    star_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not positional and not star_args:
        raise PluginError(
            f"{spec}: start() must take the settings: def start(self, settings)", spec=spec
        )
    if len(required) > 2 or any(p.kind is p.KEYWORD_ONLY and p.name != "extras" for p in required):
        names = ", ".join(p.name for p in required)
        raise PluginError(
            f"{spec}: start({names}) asks for more than nuvom passes "
            "(settings, and optionally extras)",
            spec=spec,
        )
    if len(positional) >= 2 or star_args:
        return lambda settings, extras: start(settings, extras)
    if any(p.kind is p.KEYWORD_ONLY and p.name == "extras" for p in params):
        return lambda settings, extras: start(settings, extras=extras)
    if star_kwargs:
        return lambda settings, extras: start(settings, **extras_fields(extras))
    return lambda settings, extras: start(settings)


def call_update_runtime(plugin: object, extras: Extras) -> None:
    """Call the plugin's ``update_runtime`` with ``extras`` as its signature takes them."""
    update = getattr(plugin, "update_runtime", None)
    if not callable(update):
        return
    try:
        params = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):
        update(extras)
        return
    takes_positional = any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )
    if not takes_positional and any(p.kind is p.VAR_KEYWORD for p in params):
        update(**extras_fields(extras))
    else:
        update(extras)
