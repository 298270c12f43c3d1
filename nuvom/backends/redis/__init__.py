"""The Redis engine: Streams and consumer groups for the queue, hashes for results, Lua steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
    from nuvom.runtime import Runtime


def build_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.backends.redis.client import require_url
    from nuvom.backends.redis.queue import RedisJobQueue

    settings = runtime.settings
    return RedisJobQueue(
        require_url(settings),
        prefix=settings.redis_prefix,
        codec=runtime.codec,
        clock=runtime.clock,
    )


def build_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.backends.redis.client import require_url
    from nuvom.backends.redis.results import RedisResultBackend

    settings = runtime.settings
    return RedisResultBackend(
        require_url(settings),
        prefix=settings.redis_prefix,
        codec=runtime.codec,
        clock=runtime.clock,
        ttl_secs=settings.result_ttl_secs or 0,  # 0: kept for ever
    )
