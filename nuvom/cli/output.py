"""Rendering shared by the commands: tables that fit the terminal, JSON for scripts, one-line errors.

Interpolated values are escaped before they reach Rich markup, so text such as
``[plugins]`` in a message or a job's error prints as written.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import json
import logging
import math
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"


# -- JSON --------------------------------------------------------------------------------
MAX_JSON_DEPTH = 300  # containers inside containers; stored data nests at most 256 deep
BYTES_MARKER = "$bytes"  # {"$bytes": "<base64>"} stands for a bytes value


def _to_json(value: Any, depth: int) -> Any:
    """``value`` as plain JSON data, whatever a job stored (the README's "What the CLI prints").

    Dicts with a key that is not a string become a list of ``[key, value]``
    pairs; tuples become lists; sets become lists, sorted when their items
    sort; bytes become ``{"$bytes": "<base64>"}``; dates and times become ISO
    8601 strings; timedeltas their seconds; UUIDs and Decimals strings; NaN and
    infinities the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; anything
    else its ``repr``. Raises ``ValueError`` only past ``MAX_JSON_DEPTH`` (a cycle, say).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return _to_json(value.value, depth + 1)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep")
        return _container(value, depth + 1)
    return _leaf(value)


def _container(value: Any, depth: int) -> Any:
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value):
            return {str.__str__(key): _to_json(item, depth) for key, item in value.items()}
        return [[_to_json(key, depth), _to_json(item, depth)] for key, item in value.items()]
    if isinstance(value, set | frozenset):
        value = _sorted(value)
    return [_to_json(item, depth) for item in value]


def _leaf(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_MARKER: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | decimal.Decimal | PurePath):
        return str(value)
    return _repr(value)


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return float(value)
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _sorted(items: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:  # mixed types: an order that at least repeats from run to run
        return sorted(items, key=_repr)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the rest of the record
        return f"<{type(value).__name__} object: repr failed with {type(exc).__name__}>"


def json_record(item: Any) -> Any:
    """One listed record as JSON, or an entry that says why it cannot be shown."""
    try:
        return _to_json(item, 0)
    except Exception as exc:  # whatever is wrong with one record, the others still show
        entry: dict[str, Any] = {}
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            entry["id"] = item["id"]
        entry["render_error"] = f"cannot show this record as JSON: {exc}"
        return entry


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON (``_to_json``); in a list, a record that cannot be
    shown becomes ``{"id": ..., "render_error": ...}`` and the rest still print."""
    if isinstance(data, list | tuple):
        rendered: Any = [json_record(item) for item in data]
    else:
        rendered = json_record(data)
    text = json.dumps(rendered, indent=2, ensure_ascii=False, allow_nan=False)
    sys.stdout.write(text + "\n")


# -- tables ------------------------------------------------------------------------------
CUT_FLOOR_CHARS = 10  # a column of cut text keeps at least this much before others go
ELLIPSIS = "…"
Fit = Literal["keep", "cut", "wrap"]


@dataclass(frozen=True, slots=True)
class Col:
    """One column of a command's table, and how it gives way when the terminal is narrow.

    ``fit``: ``keep`` is never shortened (ids, statuses, numbers, times);
    ``cut`` stays on one line and ends in an ellipsis when it does not fit
    (error text, results); ``wrap`` wraps within its share (values that must
    be read whole). ``drop``: 0 is always shown; otherwise the column is left
    out when the rest would not fit, highest number first.
    """

    header: str
    fit: Fit = "keep"
    drop: int = 0
    justify: Literal["left", "right"] = "left"


def _plan(
    columns: Sequence[Col], natural: Sequence[int], width: int, *, gap: int, edge: int
) -> list[int | None]:
    """Each column's width within ``width`` cells, ``None`` for one left out.

    ``natural`` is what each column's widest cell needs; ``gap`` is what a
    column costs besides its text (padding, border), ``edge`` what a line costs once.
    """
    floors = [
        size if col.fit == "keep" else min(size, max(len(col.header), CUT_FLOOR_CHARS))
        for col, size in zip(columns, natural, strict=True)
    ]

    def cost(indexes: Sequence[int], sizes: Sequence[int]) -> int:
        return sum(sizes[i] for i in indexes) + gap * len(indexes) + edge

    kept = list(range(len(columns)))
    while cost(kept, floors) > width:
        droppable = [i for i in kept if columns[i].drop]
        if not droppable:
            break  # too narrow for even the essentials: Rich squeezes what is left
        kept.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    whole = [i for i in kept if columns[i].fit == "keep"]
    flexible = sorted((i for i in kept if columns[i].fit != "keep"), key=lambda i: natural[i])
    widths: list[int | None] = [None] * len(columns)
    for i in whole:
        widths[i] = natural[i]
    room = width - cost(whole, natural) - gap * len(flexible)
    # Narrowest first: one that needs less than an even share leaves the rest to the others.
    for place, i in enumerate(flexible):
        size = max(1, min(natural[i], room // (len(flexible) - place)))
        widths[i] = size
        room -= size
    return widths


def _as_text(cell: str | Text, one_line: bool) -> Text:
    from rich.text import Text

    text = Text.from_markup(cell) if isinstance(cell, str) else cell
    if one_line and "\n" in text.plain:
        text = Text(" ").join(line for line in text.split("\n") if line.plain.strip())
    return text


def fit_table(
    title: str | None,
    columns: Sequence[Col],
    rows: Sequence[Sequence[str | Text]],
    *,
    width: int | None = None,
    title_justify: Literal["left", "center"] = "center",
) -> Table:
    """A Rich table of ``rows`` (markup strings, values escaped, or ``Text``) no wider than
    ``width`` (the console's): columns are dropped and text is cut as ``columns`` allow."""
    from rich.table import Table

    cells = [
        [_as_text(cell, col.fit == "cut") for cell, col in zip(row, columns, strict=True)]
        for row in rows
    ]
    natural = [
        max([len(col.header)] + [_widest_line(row[i]) for row in cells])
        for i, col in enumerate(columns)
    ]
    # Default box: each column costs its padding (2) and a border (1), plus the left border.
    widths = _plan(columns, natural, width or console.width, gap=3, edge=1)
    kept = [i for i, w in enumerate(widths) if w is not None]
    table = Table(title=title, title_justify=title_justify)
    for i in kept:
        col = columns[i]
        table.add_column(
            col.header,
            justify=col.justify,
            width=widths[i],
            no_wrap=col.fit != "wrap",
            overflow="fold" if col.fit == "wrap" else "ellipsis",
        )
    for row in cells:
        table.add_row(*(row[i] for i in kept))
    return table


def _widest_line(text: Text) -> int:
    return max((line.cell_len for line in text.split("\n")), default=0)


def fit_lines(
    columns: Sequence[Col], rows: Sequence[Sequence[str]], *, width: int | None = None
) -> list[str]:
    """Plain text columns two spaces apart, header first, fitted to ``width`` like
    ``fit_table``: for listings too long to measure with Rich."""
    table = [[c.header for c in columns], *([_one_line(cell) for cell in row] for row in rows)]
    natural = [max(_cells(row[i]) for row in table) for i in range(len(columns))]
    widths = _plan(columns, natural, width or console.width, gap=2, edge=-2)
    kept = [(i, w, columns[i].justify == "right") for i, w in enumerate(widths) if w is not None]
    lines = []
    for row in table:
        lines.append("  ".join([_fit(row[i], w, right) for i, w, right in kept]).rstrip())
    return lines


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\t" in text or "\r" in text else text


def _cells(text: str) -> int:
    """Terminal cells ``text`` takes: its length, unless it holds wide characters."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _fit(text: str, width: int, right: bool) -> str:
    """``text`` padded to ``width`` cells, or cut to them with an ellipsis."""
    size = _cells(text)
    if size > width:
        if width <= 1:
            return ELLIPSIS[:width]
        if text.isascii():
            return text[: width - 1] + ELLIPSIS
        from rich.cells import set_cell_size

        return set_cell_size(text, width - 1) + ELLIPSIS
    padding = " " * (width - size)
    return padding + text if right else text + padding


# -- small formats -----------------------------------------------------------------------
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
    return f"[{STATUS_STYLE.get(status, 'white')}]{escape(status)}[/]"


def print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


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
