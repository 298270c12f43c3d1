"""Logging: library code logs to ``nuvom.*`` loggers; only the CLI attaches a handler."""

from __future__ import annotations

import logging

logging.getLogger("nuvom").addHandler(logging.NullHandler())


def setup_cli_logging(level: str) -> None:
    """A Rich handler on stderr at ``level``. Per-job lines are DEBUG, so INFO stays quiet."""
    from rich.logging import RichHandler

    from nuvom.cli.output import err_console

    root = logging.getLogger("nuvom")
    for handler in list(root.handlers):
        if isinstance(handler, RichHandler):
            root.removeHandler(handler)
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
