"""The queue contract; it lives in ``nuvom.backends.contract``."""

from nuvom.backends.contract import ALL_QUEUES, BaseJobQueue, Claimed, QueueStats

__all__ = ["ALL_QUEUES", "BaseJobQueue", "Claimed", "QueueStats"]
