"""nuvom: a background task queue that needs no broker to start.

``from nuvom import task``; ``nuvom.configure(...)`` replaces the process-wide
defaults. Heavy modules load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from nuvom.job import Job, JobStatus
    from nuvom.runtime import configure, reset
    from nuvom.task import task

__all__ = ["Job", "JobStatus", "__version__", "configure", "reset", "task"]

_LAZY = {
    "task": "nuvom.task",
    "Job": "nuvom.job",
    "JobStatus": "nuvom.job",
    "configure": "nuvom.runtime",
    "reset": "nuvom.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nuvom' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    # Importing the submodule nuvom.task binds the *module* as nuvom.task; keep the decorator.
    globals()[name] = value
    return value
