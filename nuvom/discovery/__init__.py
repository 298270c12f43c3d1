"""Find tasks by reading source with ``ast`` — nothing is imported or executed.

``discover(root)`` returns a ``Manifest``; the worker uses it to import a
task's module the first time a job for that task arrives.
"""

from nuvom.discovery.scanner import Manifest, TaskEntry, discover

__all__ = ["Manifest", "TaskEntry", "discover"]
