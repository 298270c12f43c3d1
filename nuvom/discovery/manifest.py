"""The manifest: what discovery found, cached on disk so the next run reads only what changed.

``.nuvom/manifest.json`` (``NUVOM_MANIFEST_PATH``) holds a format version, per
file its content hash, mtime and size, and per task its name, module, file,
line and literal options. It is written atomically; an unreadable or
other-version manifest is simply ignored and rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("nuvom.discovery")

MANIFEST_FORMAT = 2  # bump when the JSON layout changes; older files are rebuilt (2: params)
FILE_ROW_LAYOUT = ["sha256", "mtime_ns", "size", "module", "{racy, error, error_line, warnings}?"]
FILE_ROW_FIELDS = 4  # a file's row: these, then an optional dict of the rest
REPLACE_RETRIES = 5  # Windows refuses os.replace while a reader holds the file open
REPLACE_RETRY_SECS = 0.05  # pause between those retries


@dataclass(slots=True)
class TaskEntry:
    """One ``@task`` as the source declares it."""

    name: str
    function: str
    module: str
    file: str  # relative to the manifest's root, "/"-separated
    line: int
    description: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Its parameters as ``ast`` read them (``nuvom.discovery.signatures``); None in a
    #: manifest written before they were recorded.
    params: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "function": self.function,
            "module": self.module,
            "file": self.file,
            "line": self.line,
            "description": self.description,
            "options": self.options,
            "params": self.params,
        }

    @property
    def version(self) -> int:
        """``@task(version=N)``, 1 when not given (or not a literal int)."""
        version = self.options.get("version")
        return version if type(version) is int and version >= 1 else 1

    @property
    def signature(self) -> str | None:
        """A hash of its parameters: a changed call shape changes it."""
        from nuvom.discovery.signatures import signature_hash

        return None if self.params is None else signature_hash(self.params)

    @property
    def tags(self) -> list[str]:
        tags = self.options.get("tags")
        return [str(t) for t in tags] if isinstance(tags, list | tuple) else []


@dataclass(slots=True)
class FileRecord:
    sha256: str
    mtime_ns: int
    size: int
    module: str
    # Modified so close to when it was read that a later edit could keep the same
    # mtime and size (coarse file-system clocks): the next run re-hashes it.
    racy: bool = False
    error: str | None = None  # why it was skipped, e.g. a syntax error
    error_line: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_row(self) -> list[Any]:
        """``[sha256, mtime_ns, size, module]`` plus a dict of whatever is not a default.

        A list, not an object: 10,000 of them load markedly faster.
        """
        row: list[Any] = [self.sha256, self.mtime_ns, self.size, self.module]
        extra: dict[str, Any] = {}
        if self.racy:
            extra["racy"] = True
        if self.error is not None:
            extra["error"] = self.error
            extra["error_line"] = self.error_line
        if self.warnings:
            extra["warnings"] = self.warnings
        if extra:
            row.append(extra)
        return row

    @classmethod
    def from_row(cls, row: list[Any]) -> FileRecord:
        if len(row) == FILE_ROW_FIELDS:
            return cls(row[0], row[1], row[2], row[3])
        return cls(row[0], row[1], row[2], row[3], **row[FILE_ROW_FIELDS])


@dataclass(slots=True)
class Problem:
    """A file discovery skipped or doubts, with where."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass(slots=True)
class ScanStats:
    """What one discovery run did; ``parsed`` counts ``ast`` parses (tests assert on it)."""

    files: int = 0  # .py files walked
    unchanged: int = 0  # trusted on mtime and size alone
    hashed: int = 0  # read and hashed
    parsed: int = 0  # parsed with ast
    elapsed_secs: float = 0.0


@dataclass
class Manifest:
    """Every task under ``root``, and the per-file facts that let the next run skip work."""

    root: str
    files: dict[str, FileRecord] = field(default_factory=dict)
    tasks: list[TaskEntry] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    scanned_at: float = 0.0
    stats: ScanStats = field(default_factory=ScanStats)
    _by_name: dict[str, TaskEntry] | None = field(default=None, repr=False, compare=False)

    def find(self, name: str) -> TaskEntry | None:
        if self._by_name is None:
            by_name: dict[str, TaskEntry] = {}
            for entry in self.tasks:
                by_name.setdefault(entry.name, entry)
            self._by_name = by_name
        return self._by_name.get(name)

    def path_of(self, entry: TaskEntry) -> Path:
        return Path(self.root, *entry.file.split("/"))

    @property
    def errors(self) -> list[Problem]:
        """Files skipped because they could not be read or parsed."""
        return [
            Problem(rel, record.error_line, record.error)
            for rel, record in self.files.items()
            if record.error is not None
        ]

    @property
    def warnings(self) -> list[Problem]:
        """Doubtful declarations, and task names declared more than once."""
        problems = [
            Problem(rel, None, warning)
            for rel, record in self.files.items()
            for warning in record.warnings
        ]
        first: dict[str, TaskEntry] = {}
        for entry in self.tasks:
            seen = first.setdefault(entry.name, entry)
            if seen is not entry:
                problems.append(
                    Problem(
                        entry.file,
                        entry.line,
                        f"task {entry.name!r} is also declared at {seen.file}:{seen.line}; "
                        "workers load the first",
                    )
                )
        return problems

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "root": self.root,
                "scanned_at": self.scanned_at,
                "include": self.include,
                "exclude": self.exclude,
                "tasks": [entry.to_dict() for entry in self.tasks],
                "files_layout": FILE_ROW_LAYOUT,
                "files": {rel: record.to_row() for rel, record in self.files.items()},
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str, *, files: bool = True) -> Manifest:
        """Raises ``ValueError`` (or ``KeyError``/``TypeError``) for anything but this format.

        ``files=False`` skips the per-file records: enough for listing tasks, and faster.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a format-{MANIFEST_FORMAT} nuvom manifest")
        return cls(
            root=data["root"],
            files={rel: FileRecord.from_row(r) for rel, r in data["files"].items()}
            if files
            else {},
            tasks=[TaskEntry(**t) for t in data["tasks"]],
            include=list(data.get("include") or []),
            exclude=list(data.get("exclude") or []),
            scanned_at=data.get("scanned_at", 0.0),
        )


def load_manifest(path: Path | str, *, files: bool = True) -> Manifest | None:
    """The manifest at ``path``, or ``None`` when it is missing, unreadable or another format.

    ``files=False`` leaves out the per-file records (see ``Manifest.from_json``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("ignoring manifest %s: %s", path, exc)
        return None
    try:
        return Manifest.from_json(text, files=files)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring manifest %s (%s); it will be rebuilt", path, exc)
        return None


def save_manifest(manifest: Manifest, path: Path | str) -> None:
    """Write ``manifest`` to ``path`` atomically: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(manifest.to_json())
        for attempt in range(REPLACE_RETRIES):
            try:
                os.replace(temp, path)
                break
            except PermissionError:
                if attempt == REPLACE_RETRIES - 1:
                    raise
                time.sleep(REPLACE_RETRY_SECS)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass(slots=True)
class ManifestDiff:
    """Tasks added, removed and changed between two manifests (by task name)."""

    added: list[TaskEntry] = field(default_factory=list)
    removed: list[TaskEntry] = field(default_factory=list)
    changed: list[tuple[TaskEntry, TaskEntry]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def what_changed(old: TaskEntry, new: TaskEntry) -> list[str]:
    """Human-readable differences between two declarations of one task."""
    notes = []
    if (old.module, old.function) != (new.module, new.function):
        notes.append(f"{old.module}:{old.function} → {new.module}:{new.function}")
    if old.file != new.file:
        notes.append(f"file {old.file} → {new.file}")
    elif old.line != new.line:
        notes.append(f"line {old.line} → {new.line}")
    for key in sorted(set(old.options) | set(new.options)):
        if old.options.get(key) != new.options.get(key):
            notes.append(f"{key} {old.options.get(key)!r} → {new.options.get(key)!r}")
    if old.params is not None and new.params is not None and old.signature != new.signature:
        from nuvom.discovery.signatures import signature_text

        notes.append(f"signature {signature_text(old.params)} → {signature_text(new.params)}")
    if old.description != new.description:
        notes.append("description")
    return notes


def diff_manifests(old: Manifest | None, new: Manifest) -> ManifestDiff:
    before = {e.name: e for e in reversed(old.tasks)} if old else {}
    after = {e.name: e for e in reversed(new.tasks)}
    diff = ManifestDiff()
    for name, entry in sorted(after.items()):
        previous = before.get(name)
        if previous is None:
            diff.added.append(entry)
        elif previous.to_dict() != entry.to_dict():
            diff.changed.append((previous, entry))
    diff.removed = [entry for name, entry in sorted(before.items()) if name not in after]
    return diff
