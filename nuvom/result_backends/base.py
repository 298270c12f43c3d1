"""The result contract; it lives in ``nuvom.backends.contract``."""

from nuvom.backends.contract import BaseResultBackend, JointWriter

__all__ = ["BaseResultBackend", "JointWriter"]
