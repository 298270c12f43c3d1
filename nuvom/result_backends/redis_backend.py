"""The Redis result backend; it lives in ``nuvom.backends.redis``."""

from nuvom.backends.redis.results import RedisResultBackend

__all__ = ["RedisResultBackend"]
