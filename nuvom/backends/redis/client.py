"""Connecting to Redis: clients with bounded timeouts, driver errors as nuvom errors.

The queue and the result backend both use these, so a server that goes away
surfaces the same way from either: ``BackendUnavailable`` within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from nuvom.backends.common import Defaults
from nuvom.errors import BackendError, BackendUnavailable, ConfigError
from nuvom.records import JobPayloadCodec

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.config import Settings
    from nuvom.runtime import Runtime
    from nuvom.serialization import Codec

T = TypeVar("T")

DEFAULT_PREFIX = "nuvom"
SOCKET_TIMEOUT_SECS = 10.0  # a command that gets no answer in this long fails (never hangs)
CONNECT_TIMEOUT_SECS = 5.0  # a TCP connect to Redis gives up after this long
HEALTH_CHECK_SECS = 30  # an idle connection is pinged before reuse after this long
SEND_ATTEMPTS = 3  # an idempotent command is sent at most this often when replies are lost
RETRY_FIRST_PAUSE_SECS = 0.2  # pause before sending it again; doubles each time
SEND_BUDGET_SECS = SOCKET_TIMEOUT_SECS  # no resend starts later than this after the first send
INSTALL_HINT = 'the Redis backend needs redis-py: pip install "nuvom[redis]"'


def import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise BackendError(INSTALL_HINT, backend="redis") from None
    return redis


def require_url(settings: Settings) -> str:
    """``NUVOM_REDIS_URL``, or a ``ConfigError`` saying it is needed and what it looks like."""
    if not settings.redis_url:
        raise ConfigError(
            "NUVOM_REDIS_URL: the redis backend needs it (e.g. redis://127.0.0.1:6379/0)",
            variable="NUVOM_REDIS_URL",
        )
    return settings.redis_url


def connect(url: str) -> Any:
    """A client with bounded timeouts; it reconnects by itself after the server comes back.

    It never sends a command again by itself: a command whose reply was lost may have
    run, and most of nuvom's are not safe to run twice. Enqueues carry a token and are
    retried by ``retried``; a lost claim comes back when its lease runs out.
    """
    redis = import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECS,
        health_check_interval=HEALTH_CHECK_SECS,
        retry=Retry(NoBackoff(), 0),
    )


def retried(url: str, send: Callable[[], T]) -> T:
    """``send()`` an idempotent command, again after a connection error or a time-out (up to
    ``SEND_ATTEMPTS`` in all, backing off), as ``translated`` errors once they run out."""
    pause = RETRY_FIRST_PAUSE_SECS
    give_up_at = time.monotonic() + SEND_BUDGET_SECS
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            with translated(url):
                return send()
        except BackendUnavailable:
            if attempt == SEND_ATTEMPTS or time.monotonic() + pause > give_up_at:
                raise  # a server that takes a whole time-out to fail gets no second one
        time.sleep(pause)  # back-off before sending the same command again
        pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def translated(url: str) -> Iterator[None]:
    """Driver errors as nuvom errors: unreachable -> ``BackendUnavailable``."""
    redis = import_redis()
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
        raise BackendUnavailable(
            f"Redis at {redact(url)} is unavailable: {exc}", backend="redis"
        ) from None
    except redis.RedisError as exc:
        raise BackendError(f"Redis error on {redact(url)}: {exc}", backend="redis") from None


def by_digest(client: Any, script: Any, args: Sequence[object]) -> Any:
    """Run a registered ``script`` as the one command of a pipeline, sending its SHA1 and
    not its source (which Redis would hash again on every call).

    ``EVALSHA`` on the pipeline itself, not through the script object: redis-py would
    ask ``SCRIPT EXISTS`` first (a round trip of its own). A server that lost its script
    cache (a restart) answers NOSCRIPT having run nothing, as the command is alone; the
    script is then loaded and sent again.
    """
    redis = import_redis()
    pipe = client.pipeline(transaction=False)
    pipe.evalsha(script.sha, 0, *args)
    try:
        return pipe.execute()[0]
    except redis.exceptions.NoScriptError:
        return script(args=args)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBackend:
    """How the Redis queue and results are both built: a server URL and a key prefix (from
    the current settings, or the ``runtime``'s, when not given), a client with bounded
    timeouts, a codec and a clock."""

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        defaults = Defaults(runtime)
        self.url = url or require_url(defaults.settings)
        self.prefix = prefix or defaults.settings.redis_prefix
        self.client = connect(self.url)
        self.codec, self.clock = defaults.codec(codec), defaults.clock(clock)
        self.payloads = JobPayloadCodec(self.codec)
        self.ready()

    def ready(self) -> None:
        """Called once built: set up what the subclass adds."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r}, prefix={self.prefix!r})"
