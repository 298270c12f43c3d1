"""``nuvom inspect workflow <id>``: a workflow's graph as a tree, each node's status and times.

The id is the workflow's last job (what ``chain(...).delay()`` returns). The tree starts
there and goes back along what each job waits for; its errback, if any, comes last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.tree import Tree

from nuvom.cli.output import OutputFormat, console, fail, print_json, seconds, styled_status

if TYPE_CHECKING:
    from nuvom.records import JobRecord

CHILDREN_SHOWN = 20  # of one node's dependencies; a 10,000-member chord lists the rest as a count


def show_workflow(workflow_id: str, fmt: OutputFormat) -> None:
    from nuvom.cli.jobs_cmd import reading
    from nuvom.workflow import walk

    with reading() as runtime:
        records = walk(workflow_id, runtime.results)
    if not records or (records[0].origin or {}).get("workflow") != workflow_id:
        raise fail(
            f"no workflow with id {workflow_id!r} (a workflow's id is the id of its last job, "
            "what chain(...).delay() returned)"
        )
    if fmt is OutputFormat.json:
        print_json({"id": workflow_id, "status": records[0].status.value,
                    "nodes": [_node(r) for r in records]})  # fmt: skip
        return
    by_id = {r.id: r for r in records}
    errback = (records[0].origin or {}).get("errback")
    tree = Tree(_label(records[0], "workflow"))
    _grow(tree, records[0], by_id, shown={records[0].id})
    if errback in by_id:
        tree.add(_label(by_id[errback], "on failure"))
    console.print(tree)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(f"{len(records)} job(s): {summary}", markup=False)


def _grow(branch: Tree, record: JobRecord, by_id: dict[str, JobRecord], shown: set[str]) -> None:
    after = [dep for dep in (record.origin or {}).get("after", ()) if dep in by_id]
    for dep in after[:CHILDREN_SHOWN]:
        if dep in shown:
            branch.add(f"[dim]{escape(dep)} (shown above)[/]")
            continue
        shown.add(dep)
        child = branch.add(_label(by_id[dep], "after"))
        _grow(child, by_id[dep], by_id, shown)
    if len(after) > CHILDREN_SHOWN:
        rest = after[CHILDREN_SHOWN:]
        done = sum(1 for dep in rest if by_id[dep].status.value == "SUCCESS")
        branch.add(f"[dim]… {len(rest)} more ({done} SUCCESS); --format json lists all[/]")


def _label(record: JobRecord, role: str) -> str:
    took = seconds(record.duration_secs)
    error = f"  [red]{escape(record.error_type or '')}: {escape(record.error_message or '')}[/]"
    return (
        f"[bold]{escape(record.func_name or '?')}[/] {styled_status(record.status.value)}  "
        f"{escape(record.id)}  [dim]{role}, took {took}[/]" + (error if record.error_type else "")
    )


def _node(record: JobRecord) -> dict[str, Any]:
    origin = record.origin or {}
    return {
        "id": record.id,
        "func_name": record.func_name,
        "status": record.status.value,
        "after": list(origin.get("after", ())),
        "feed": origin.get("feed"),
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration_secs": record.duration_secs,
        "worker_id": record.worker_id,
        "error_type": record.error_type,
        "error_message": record.error_message,
    }
