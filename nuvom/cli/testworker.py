"""``nuvom runtestworker run job.json``: run one job synchronously, no queue involved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape

from nuvom.cli.output import OutputFormat, console, fail, print_json

_FIELDS = {"func_name", "args", "kwargs", "id", "queue", "priority", "timeout_secs", "max_retries"}


def _load(job_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(job_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"{job_file}: no such file", code=2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{job_file}: cannot read it ({exc})", code=2) from None
    except json.JSONDecodeError as exc:
        raise fail(f"{job_file}: not valid JSON (line {exc.lineno}: {exc.msg})", code=2) from None
    if not isinstance(data, dict):
        raise fail(
            f'{job_file}: expected a JSON object such as {{"func_name": "add", "args": [2, 3]}}',
            code=2,
        )
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise fail(
            f"{job_file}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})",
            code=2,
        )
    if not isinstance(data.get("func_name"), str) or not data["func_name"]:
        raise fail(f'{job_file}: "func_name" must name a task', code=2)
    if not isinstance(data.get("args", []), list):
        raise fail(f'{job_file}: "args" must be a list', code=2)
    if not isinstance(data.get("kwargs", {}), dict):
        raise fail(f'{job_file}: "kwargs" must be an object', code=2)
    return data


def run_job_file(job_file: Path, fmt: OutputFormat) -> int:
    from nuvom.discovery.loader import TaskLoader
    from nuvom.execution.runner import JobRunner
    from nuvom.job import Job, JobStatus
    from nuvom.options import run_defaults
    from nuvom.runtime import current

    data = _load(job_file)
    runtime = current()
    job = Job(data.pop("func_name"), **data)
    job.attempts = 1
    job.max_retries = 0  # one synchronous attempt: a retry would only repeat it here
    runner = JobRunner(
        TaskLoader(runtime.registry, manifest_path=runtime.settings.manifest_path),
        run_defaults(runtime.settings),
        runtime.codec,
        runtime.clock,
        "runtestworker",
    )
    outcome = runner.run(job)
    ok = outcome.status is JobStatus.SUCCESS
    if fmt is OutputFormat.json:
        error = outcome.error
        print_json({"status": outcome.status.value, "result": outcome.result,
                    "error_type": error.type if error else None,
                    "error_message": error.message if error else None,
                    "traceback": error.traceback if error else None})  # fmt: skip
    elif ok:
        console.print(escape(repr(outcome.result)), highlight=False)
    else:
        assert outcome.error is not None
        if outcome.error.traceback:
            console.print(escape(outcome.error.traceback.rstrip()), highlight=False)
        console.print(
            f"[red]FAILED[/] {escape(outcome.error.type)}: {escape(outcome.error.message)}",
            highlight=False,
        )
    return 0 if ok else 1
