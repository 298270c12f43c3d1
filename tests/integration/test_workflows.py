"""Workflows in real processes on every engine that shares a store: a chain through a
group holding a chord (three deep) completes under a burst worker, and cancelling a
workflow cascades to every member still waiting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nuvom.job import JobStatus

from .helpers import Project
from .servers import engine_env

TASKS = """
from nuvom import task


@task
def add(x, y):
    return x + y


@task
def total(values):
    return sum(values)
"""


@pytest.fixture(params=["sqlite", "file", "postgres", "redis"])
def engine(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    with engine_env(request.param) as env:
        yield env


def _runtime(project: Project, engine: dict[str, str]):  # type: ignore[no-untyped-def]
    project.write("tasks.py", TASKS)
    settings = {name.removeprefix("NUVOM_").lower(): value for name, value in engine.items()}
    return project.configure(**settings)


@pytest.mark.timeout(120)
def test_a_chain_through_a_group_holding_a_chord_completes(
    project: Project, engine: dict[str, str]
) -> None:
    _runtime(project, engine)
    from nuvom.workflow import Signature, chain, chord, group

    def s(name: str, *args: int, fed: bool = True) -> Signature:
        return Signature(name, args, immutable=not fed)

    flow = chain(
        s("add", 1, 2),  # 3
        group(
            s("add", 10),  # 13
            s("add", 20),  # 23
            chain(s("add", 0), chord([s("add", 1, 1, fed=False), s("add", 2, 2, fed=False)],
                                     s("total"))),  # 2 + 4
        ),
        s("total"),
    )  # fmt: skip
    handle = flow.delay()
    result = project.nuvom("runworker", "--burst", env=engine)
    assert result.returncode == 0, result.stderr

    assert handle.get(timeout=30) == 13 + 23 + 6
    records = handle.records()
    assert len(records) == 8
    assert {r.status for r in records} == {JobStatus.SUCCESS}


@pytest.mark.timeout(120)
def test_cancelling_a_workflow_cascades_to_every_waiting_member(
    project: Project, engine: dict[str, str]
) -> None:
    runtime = _runtime(project, engine)
    from nuvom.workflow import cancel_workflow, chain, chord, signature

    handle = chain(
        chord([signature("add", i, i) for i in range(20)], signature("total")),
        signature("add", 1),
    ).delay()
    assert len(cancel_workflow(handle.id)) >= 20
    result = project.nuvom("runworker", "--burst", env=engine)
    assert result.returncode == 0, result.stderr

    statuses = {r.status for r in handle.records()}
    assert statuses == {JobStatus.CANCELLED}
    assert runtime.queue.qsize() == 0
    assert runtime.queue.parked_jobs() == []
