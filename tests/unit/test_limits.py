"""Flow control from the producer's side: options checked at decoration, the limits a
submitted job carries, unique jobs deduplicated (or refused) at ``.delay()``."""

from __future__ import annotations

import pytest

from nuvom.errors import DuplicateJob, InvalidJob, TaskDefinitionError
from nuvom.job import Job, JobStatus
from nuvom.limits import describe_hold, parse_rate, task_of_tag
from nuvom.queue import enqueue
from nuvom.records import Outcome
from nuvom.task import task
from nuvom.workflow import chain


@pytest.mark.parametrize(
    ("text", "per_sec", "burst"),
    [("10/s", 10.0, 10), ("100/m", 100 / 60, 100), ("5000/h", 5000 / 3600, 5000),
     ("1/d", 1 / 86400, 1), ("3 / 2s", 1.5, 3), ("2.5/s", 2.5, 2)],
)  # fmt: skip
def test_a_rate_reads_as_tokens_a_second_and_a_burst(text: str, per_sec: float, burst: int):
    assert parse_rate(text) == (pytest.approx(per_sec), burst)


@pytest.mark.parametrize("text", ["10", "x/s", "10/fortnight", "", 10, None, "-1/s"])
def test_an_unreadable_rate_is_refused_by_name(text: object):
    with pytest.raises(TaskDefinitionError, match="rate_limit must read like '10/s'"):
        parse_rate(text)


def test_a_rate_of_nothing_is_refused():
    with pytest.raises(TaskDefinitionError, match="rate_limit must allow at least 1 per period"):
        parse_rate("0/s")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "ten per second"}, "task option rate_limit must read like"),
        ({"concurrency": 0}, "task option concurrency must be an int >= 1, not 0"),
        ({"concurrency": True}, "task option concurrency must be an int >= 1"),
        ({"concurrency": "2"}, "task option concurrency must be an int >= 1"),
        ({"concurrency": 2, "concurrency_key": "tenantt"},
         "concurrency_key 'tenantt' is not a parameter of export\\(\\) \\(its parameters: "
         "tenant, day\\)"),
        ({"concurrency_key": "tenant"}, "concurrency_key='tenant' needs concurrency="),
        ({"unique_for": 60}, "unique_for needs unique=True"),
        ({"unique": True, "unique_for": -1}, "task option unique_for must be a number of seconds"),
        ({"unique": "yes"}, "task option unique must be True or False"),
    ],
)  # fmt: skip
def test_bad_flow_options_are_refused_at_decoration(runtime, options, message):
    with pytest.raises(TaskDefinitionError, match=message):

        @task(**options)
        def export(tenant, day): ...


def test_a_job_with_a_malformed_limit_entry_is_refused_by_field():
    with pytest.raises(InvalidJob, match="Job field origin"):
        Job("t", origin={"rate": ["fast", 1]})
    with pytest.raises(InvalidJob, match="Job field origin"):
        Job("t", origin={"conc": ["k", 0]})
    with pytest.raises(InvalidJob, match="Job field origin"):
        Job("t", origin={"unique": ["", 0.0]})


def test_a_submitted_job_carries_its_tasks_limits(runtime):
    @task(rate_limit="10/s", concurrency=2, concurrency_key="tenant")
    def export(tenant, day="mon"): ...

    by_position = export.delay("acme").job
    assert by_position.rate_limit == ("export", 10.0, 10)
    assert by_position.concurrency_limit == ("export[tenant='acme']", 2)
    assert export.delay(tenant="zeta", day="tue").job.concurrency_limit.key == (
        "export[tenant='zeta']"
    )
    by_name = enqueue(Job("export", args=("acme",), kwargs={"day": "wed"})).job
    assert by_name.concurrency_limit == ("export[tenant='acme']", 2), "a hand-built job too"
    assert export.delay("acme").job.unique is None


def test_a_unique_task_returns_the_job_that_waits(runtime):
    @task(unique=True)
    def refresh(user_id): ...

    first = refresh.delay(7)
    again = refresh.delay(7)
    other = refresh.delay(8)
    assert again.id == first.id
    assert again.deduplicated
    assert not first.deduplicated
    assert other.id != first.id
    assert runtime.queue.qsize() == 2
    with pytest.raises(DuplicateJob, match=f"held by job {first.id}") as caught:
        refresh.apply_async((7,), on_conflict="raise")
    assert caught.value.existing_id == first.id

    [claimed] = [j for j in runtime.queue.claim(10, worker_id="w", lease_secs=30,
                                                results=runtime.results) if j.args == [7]
                 or j.args == (7,)]  # fmt: skip
    outcome = Outcome(claimed, JobStatus.SUCCESS, result=None, worker_id="w", finished_at=1.0)
    runtime.queue.settle([outcome], runtime.results)
    assert refresh.delay(7).id != first.id, "a finished job lets its key go"


def test_map_applies_uniqueness_per_item(runtime):
    @task(unique=True)
    def refresh(user_id): ...

    handles = refresh.map([1, 1, 2])
    assert handles[1].id == handles[0].id
    assert handles[1].deduplicated
    assert runtime.queue.qsize() == 2


def test_an_explicit_unique_key_and_how_long_it_is_kept(runtime):
    @task
    def send_mail(address): ...

    first = send_mail.apply_async(("a@b",), unique_key="welcome:42", unique_for=3600)
    assert first.job.unique == ("welcome:42", 3600.0)
    assert send_mail.apply_async(("c@d",), unique_key="welcome:42").id == first.id
    with pytest.raises(TaskDefinitionError, match="unique_for= needs unique_key="):
        send_mail.apply_async(("a@b",), unique_for=60)
    with pytest.raises(TaskDefinitionError, match="on_conflict must be 'return' or 'raise'"):
        send_mail.apply_async(("a@b",), unique_key="k", on_conflict="ignore")


def test_workflow_members_keep_their_limits_but_not_uniqueness(runtime):
    @task(concurrency=1, unique=True)
    def step(x): ...

    handle = chain(step.s(1), step.s()).delay()
    member = handle.job
    assert member.concurrency_limit == ("step", 1)
    assert member.unique is None, "a member's id is its workflow's; it is not deduplicated"


def test_a_ticks_job_gets_its_tasks_limits(runtime):
    from nuvom.calls import tick_preparer
    from nuvom.records import Schedule
    from nuvom.scheduler import Scheduler

    @task(rate_limit="5/m", unique=True)
    def report(): ...

    scheduler = Scheduler(runtime.queue, runtime.results, runtime.clock,
                          flow=tick_preparer(runtime))  # fmt: skip
    job = scheduler.job_for(Schedule(id="s", func_name="report", interval=60.0), 120.0)
    assert job.rate_limit == ("report", 5 / 60, 5)
    assert job.unique is None, "a tick is unique already"


def test_holds_read_as_words():
    assert describe_hold("rate:call_api", {"rate": [10.0, 10]}) == "rate limit 10/s"
    assert describe_hold("rate:call_api", {"rate": [100 / 60, 100]}) == "rate limit 100/m"
    assert describe_hold("concurrency:export[tenant='a']", {"conc": ["export[tenant='a']", 2]}) == (
        "concurrency limit 2 (export[tenant='a'])"
    )
    assert task_of_tag("concurrency:export[tenant='a']") == "export"
    assert task_of_tag("rate:call_api") == "call_api"


def test_a_queue_that_keeps_no_limits_refuses_limited_jobs_by_name():
    import nuvom
    from nuvom.errors import BackendError
    from nuvom.queue_backends.memory_queue import MemoryJobQueue
    from nuvom.registry import TaskRegistry

    class PlainQueue(MemoryJobQueue):  # as a plugin's queue: no flow control
        keeps_limits = False

    nuvom.configure(queue_backend=PlainQueue(), result_backend="memory", registry=TaskRegistry())

    @task(rate_limit="1/s")
    def call_api(): ...

    @task
    def plain(): ...

    with pytest.raises(BackendError, match="keeps no flow control"):
        call_api.delay()
    assert plain.delay().status is JobStatus.PENDING, "jobs without limits go in as before"
