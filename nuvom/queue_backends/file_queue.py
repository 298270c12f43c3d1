"""The file queue; it lives in ``nuvom.backends.file``."""

from nuvom.backends.file.queue import FileJobQueue

__all__ = ["FileJobQueue"]
