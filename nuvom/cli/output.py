"""Rendering shared by the commands: Rich tables, JSON for scripts, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from enum import Enum
from typing import Any

import typer
from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


STATUS_STYLE = {
    "SUCCESS": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
    "RUNNING": "cyan",
    "RETRYING": "yellow",
    "PENDING": "white",
    "SCHEDULED": "blue",
}


def styled_status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    print_error(message)
    return typer.Exit(code)


def setup_cli_logging(level: str) -> None:
    """A Rich handler on stderr at ``level``. Per-job lines are DEBUG, so INFO stays quiet."""
    from rich.logging import RichHandler

    from nuvom.log import attach

    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    attach(handler, level)
