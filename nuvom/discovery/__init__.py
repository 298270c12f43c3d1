"""Find tasks by reading source with ``ast`` — nothing is imported or executed.

``discover(root)`` returns a ``Manifest``; ``refresh_manifest`` keeps
``.nuvom/manifest.json`` current; the worker's ``TaskLoader`` imports a task's
module the first time a job for that task arrives. Submodules load on first
use, so ``nuvom list tasks`` pays only for reading the manifest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nuvom.discovery.index import discover, refresh_manifest
    from nuvom.discovery.manifest import (
        Manifest,
        ManifestDiff,
        Problem,
        ScanStats,
        TaskEntry,
        diff_manifests,
        load_manifest,
        save_manifest,
    )

_LAZY = {
    "discover": "nuvom.discovery.index",
    "refresh_manifest": "nuvom.discovery.index",
    "Manifest": "nuvom.discovery.manifest",
    "ManifestDiff": "nuvom.discovery.manifest",
    "Problem": "nuvom.discovery.manifest",
    "ScanStats": "nuvom.discovery.manifest",
    "TaskEntry": "nuvom.discovery.manifest",
    "diff_manifests": "nuvom.discovery.manifest",
    "load_manifest": "nuvom.discovery.manifest",
    "save_manifest": "nuvom.discovery.manifest",
}

__all__ = [
    "Manifest",
    "ManifestDiff",
    "Problem",
    "ScanStats",
    "TaskEntry",
    "diff_manifests",
    "discover",
    "load_manifest",
    "refresh_manifest",
    "save_manifest",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nuvom.discovery' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
