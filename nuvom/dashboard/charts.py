"""The overview's charts as geometry: bars, ticks and labels in SVG user units, which the
templates draw as inline SVG (``templates/charts.html``). No chart library, no script.

Text is never built into markup here: the templates escape every label.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nuvom.backends.contract import Activity

#: The stacked series of the activity chart, bottom first: (status, CSS class, label).
SERIES = (("SUCCESS", "ok", "succeeded"), ("RETRYING", "retry", "retried"),
          ("FAILED", "fail", "failed"))  # fmt: skip
CHART_WIDTH, CHART_HEIGHT = 1160.0, 200.0  # the activity chart's view box
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 56.0, 14.0, 8.0, 24.0  # its margins
X_TICK_MINUTES = 15  # a time label every quarter of an hour
BAR_GAP = 0.18  # of each bucket's width left empty between bars


@dataclass(slots=True)
class Segment:
    y: float
    height: float
    css: str


@dataclass(slots=True)
class Bar:
    x: float
    width: float
    segments: list[Segment]
    title: str  # the tooltip: when, and how many of each


@dataclass(slots=True)
class Tick:
    at: float  # x or y in the view box
    label: str


@dataclass(slots=True)
class ActivityChart:
    """Jobs per second that ended succeeded, retried or failed, one bar per bucket."""

    width: float
    height: float
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    empty: bool = True


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 (times a power of ten) at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def rate_text(per_sec: float) -> str:
    """``0``, ``0.05/s``, ``12/s``: a jobs-per-second label."""
    if per_sec == 0:
        return "0"
    return f"{per_sec:.3g}/s"


def activity_chart(activity: Activity) -> ActivityChart:
    """The chart of ``activity`` (``BaseResultBackend.activity``)."""
    chart = ActivityChart(CHART_WIDTH, CHART_HEIGHT, PLOT_LEFT, CHART_WIDTH - PLOT_RIGHT,
                          PLOT_TOP, CHART_HEIGHT - PLOT_BOTTOM)  # fmt: skip
    buckets = activity.buckets or [{}]
    secs = activity.bucket_secs or 1.0
    chart.totals = {label: sum(b.get(status, 0) for b in buckets) for status, _, label in SERIES}
    chart.empty = not any(chart.totals.values())
    peak = max(sum(b.get(status, 0) for status, _, _ in SERIES) for b in buckets) / secs
    top = nice_ceiling(peak)
    plot_h = chart.plot_bottom - chart.plot_top
    step = (chart.plot_right - chart.plot_left) / len(buckets)
    for i, bucket in enumerate(buckets):
        start = activity.since + i * secs
        x = chart.plot_left + i * step
        y = chart.plot_bottom
        segments = []
        parts = []
        for status, css, label in SERIES:
            count = bucket.get(status, 0)
            if not count:
                continue
            height = (count / secs) / top * plot_h
            y -= height
            segments.append(Segment(y, height, css))
            parts.append(f"{count} {label}")
        title = f"{_clock(start)} to {_clock(start + secs)} UTC: " + (", ".join(parts) or "nothing")
        chart.bars.append(Bar(x + step * BAR_GAP / 2, step * (1 - BAR_GAP), segments, title))
    for fraction in (0.0, 0.5, 1.0):
        chart.y_ticks.append(Tick(chart.plot_bottom - fraction * plot_h, rate_text(top * fraction)))
    span = secs * len(buckets)
    for minutes in range(0, int(span // 60) + 1, X_TICK_MINUTES):
        ago = span - minutes * 60
        x = chart.plot_left + (minutes * 60 / span) * (chart.plot_right - chart.plot_left)
        chart.x_ticks.append(Tick(x, "now" if ago <= 0 else f"-{round(ago / 60)}m"))
    return chart


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%H:%M")


@dataclass(slots=True)
class RunTime:
    """One task's run times: p50 and p95 seconds, how many, and bar lengths (0..1)."""

    task: str
    p50: float
    p95: float
    count: int
    p50_share: float
    p95_share: float


def run_times(activity: Activity) -> list[RunTime]:
    """Per task, slowest p95 first, with bar lengths relative to the slowest."""
    rows = sorted(activity.run_times.items(), key=lambda item: (-item[1][1], item[0]))
    slowest = max((p95 for _, (_, p95, _) in rows), default=0.0) or 1.0
    return [RunTime(task, p50, p95, count, p50 / slowest, p95 / slowest)
            for task, (p50, p95, count) in rows]  # fmt: skip


#: The stacked parts of a queue's depth bar: (stats key, CSS class, label).
DEPTH_PARTS = (("pending", "pending", "pending"), ("scheduled", "scheduled", "scheduled"),
               ("parked", "parked", "parked"), ("running", "running", "running"))  # fmt: skip


@dataclass(slots=True)
class DepthPart:
    start: float  # 0..1 of the widest queue's bar
    share: float
    css: str
    label: str
    count: int


def depth_bars(rows: Sequence[dict[str, Any]]) -> dict[str, list[DepthPart]]:
    """Per queue (a ``collect_stats`` row), its bar's parts, scaled to the deepest queue."""
    deepest = max((sum(r[key] for key, _, _ in DEPTH_PARTS) for r in rows), default=0) or 1
    bars: dict[str, list[DepthPart]] = {}
    for row in rows:
        start = 0.0
        parts = []
        for key, css, label in DEPTH_PARTS:
            count = row[key]
            if count:
                share = count / deepest
                parts.append(DepthPart(start, share, css, label, count))
                start += share
        bars[row["queue"]] = parts
    return bars


# -- a workflow's graph ----------------------------------------------------------------------
NODE_WIDTH, NODE_HEIGHT = 262.0, 62.0
COLUMN_GAP, ROW_GAP, MARGIN = 64.0, 14.0, 12.0
NODES_PER_COLUMN = 20  # a 10,000-member chord shows this many and counts the rest


@dataclass(slots=True)
class GraphNode:
    id: str
    func_name: str
    status: str
    role: str  # "workflow" (its last job), "member", "on failure"
    x: float
    y: float
    took: float | None = None
    error: str | None = None


@dataclass(slots=True)
class GraphEdge:
    path: str  # an SVG path, dependency -> dependent
    dashed: bool = False


@dataclass(slots=True)
class Overflow:
    x: float
    y: float
    count: int
    succeeded: int


@dataclass(slots=True)
class Graph:
    width: float
    height: float
    node_width: float
    node_height: float
    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    more: list[Overflow] = field(default_factory=list)


def workflow_graph(records: Sequence[Any], workflow_id: str) -> Graph:
    """Lay out a workflow (``nuvom.workflow.walk``'s records) left to right: what runs first
    on the left, its last job on the right, the errback beyond it (dashed)."""
    by_id = {r.id: r for r in records}
    errback = (by_id[workflow_id].origin or {}).get("errback") if workflow_id in by_id else None
    members = [r for r in records if r.id != errback]
    after = {r.id: [d for d in (r.origin or {}).get("after", ()) if d in by_id and d != errback]
             for r in members}  # fmt: skip
    depth = _depths(members, after)
    deepest = max(depth.values(), default=0)
    columns: dict[int, list[Any]] = {}
    for record in members:
        columns.setdefault(deepest - depth.get(record.id, 0), []).append(record)
    if errback in by_id:
        columns[deepest + 1] = [by_id[errback]]
    graph = Graph(0.0, 0.0, NODE_WIDTH, NODE_HEIGHT)
    placed: dict[str, GraphNode] = {}
    row_of = {
        c: min(len(m), NODES_PER_COLUMN) + (len(m) > NODES_PER_COLUMN) for c, m in columns.items()
    }
    tallest = max(row_of.values(), default=0)
    for column in sorted(columns):
        shown = columns[column][:NODES_PER_COLUMN]
        rest = columns[column][NODES_PER_COLUMN:]
        x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
        top = MARGIN + (tallest - row_of[column]) * (NODE_HEIGHT + ROW_GAP) / 2  # centred
        for row, record in enumerate(shown):
            role = ("workflow" if record.id == workflow_id
                    else "on failure" if record.id == errback else "member")  # fmt: skip
            error = f"{record.error_type}: {record.error_message}" if record.error_type else None
            node = GraphNode(record.id, record.func_name or "?", record.status.value, role, x,
                             top + row * (NODE_HEIGHT + ROW_GAP), record.duration_secs, error)  # fmt: skip
            placed[record.id] = node
            graph.nodes.append(node)
        if rest:
            done = sum(1 for r in rest if r.status.value == "SUCCESS")
            y = top + len(shown) * (NODE_HEIGHT + ROW_GAP)
            graph.more.append(Overflow(x, y, len(rest), done))
    for record_id, deps in after.items():
        for dep in deps:
            if dep in placed and record_id in placed:
                graph.edges.append(GraphEdge(_curve(placed[dep], placed[record_id])))
    if errback in placed and workflow_id in placed:
        graph.edges.append(GraphEdge(_curve(placed[workflow_id], placed[errback]), dashed=True))
    graph.width = (
        MARGIN * 2 + (max(columns, default=0) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    )
    graph.height = MARGIN * 2 + tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    return graph


def _depths(members: Sequence[Any], after: dict[str, list[str]]) -> dict[str, int]:
    """How many steps each member is from the last job: the longest way back (Kahn's order,
    so a 10,000-step chain needs no recursion)."""
    dependents: dict[str, int] = {r.id: 0 for r in members}
    for deps in after.values():
        for dep in deps:
            dependents[dep] += 1
    depth = {r.id: 0 for r in members}
    ready = [job_id for job_id, count in dependents.items() if count == 0]
    while ready:
        job_id = ready.pop()
        for dep in after.get(job_id, ()):
            depth[dep] = max(depth[dep], depth[job_id] + 1)
            dependents[dep] -= 1
            if dependents[dep] == 0:
                ready.append(dep)
    return depth


def _curve(source: GraphNode, target: GraphNode) -> str:
    x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT / 2
    x2, y2 = target.x, target.y + NODE_HEIGHT / 2
    mid = (x1 + x2) / 2
    return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
