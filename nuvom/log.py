"""Logging: library code logs to the ``nuvom.*`` loggers and prints nothing; what runs
nuvom (the CLI, a process-pool child) attaches the one handler the lines go to."""

from __future__ import annotations

import logging

ROOT = "nuvom"  # every logger nuvom writes to is below this one
_ATTACHED = "_nuvom_attached"  # marks the handler ``attach`` put there


def attach(handler: logging.Handler, level: str | int) -> None:
    """Send nuvom's log lines to ``handler`` at ``level``, in place of one attached before.

    Lines stop at nuvom's logger: an application's own root handlers do not print them twice.
    """
    root = logging.getLogger(ROOT)
    for old in [h for h in root.handlers if getattr(h, _ATTACHED, False)]:
        root.removeHandler(old)
    setattr(handler, _ATTACHED, True)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
