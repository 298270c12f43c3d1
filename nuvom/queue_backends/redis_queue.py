"""The Redis queue; it lives in ``nuvom.backends.redis``."""

from nuvom.backends.redis.queue import RedisJobQueue

__all__ = ["RedisJobQueue"]
