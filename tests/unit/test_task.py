"""``@task``: declaring, checking options, calling directly, enqueueing and scheduling."""

from __future__ import annotations

import datetime as dt

import pytest

import nuvom
from nuvom.errors import SerializationError, TaskDefinitionError
from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.registry import TaskRegistry
from nuvom.task import TASK_OPTIONS, Task, task


def test_bare_decorator_registers_and_keeps_the_function(runtime):
    @task
    def add(x: int, y: int) -> int:
        """Add two numbers."""
        return x + y

    assert isinstance(add, Task)
    assert add.name == "add"
    assert runtime.registry.get("add") is add
    assert add(2, 3) == 5, "the decorated function stays directly callable"
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert add.description == "Add two numbers."
    assert runtime.queue.qsize() == 0, "calling directly enqueues nothing"


def test_nuvom_task_is_the_decorator(runtime):
    @nuvom.task(retries=1)
    def via_package() -> str:
        return "ok"

    assert via_package() == "ok"
    assert runtime.registry.get("via_package").retries == 1


def test_options_are_kept(runtime):
    def before(job: Job) -> None: ...

    def after(job: Job, result: object) -> None: ...

    def error(job: Job, exc: BaseException) -> None: ...

    @task(
        name="reports.build",
        retries=3,
        retry_delay_secs=1.5,
        timeout_secs=2,
        timeout_policy="retry",
        store_result=False,
        tags=["reports", "slow"],
        description="Builds reports",
        queue="reports",
        priority=5,
        before_job=before,
        after_job=after,
        on_error=error,
    )
    def build(day: str) -> str:
        return day

    assert build.name == "reports.build"
    assert runtime.registry.get("reports.build") is build
    assert build.options() == {
        "retries": 3,
        "retry_delay_secs": 1.5,
        "retry_backoff": False,
        "timeout_secs": 2,
        "timeout_policy": "retry",
        "store_result": False,
        "queue": "reports",
        "priority": 5,
        "tags": ["reports", "slow"],
    }
    assert build.description == "Builds reports"
    assert (build.before_job, build.after_job, build.on_error) == (before, after, error)
    assert build("mon") == "mon"


def test_every_documented_option_is_accepted():
    documented = {
        "retries", "retry_delay_secs", "timeout_secs", "timeout_policy", "store_result",
        "tags", "description", "queue", "priority", "before_job", "after_job", "on_error",
    }  # fmt: skip

    assert documented <= set(TASK_OPTIONS)


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("retry", "retries"), ("timeout_sec", "timeout_secs"), ("prority", "priority")],
)
def test_unknown_option_is_an_error_with_a_suggestion(typo, suggestion):
    with pytest.raises(TaskDefinitionError) as caught:
        task(**{typo: 1})

    assert repr(typo) in str(caught.value)
    assert f"did you mean {suggestion!r}?" in str(caught.value)


def test_unknown_option_without_a_close_match_names_it():
    with pytest.raises(TaskDefinitionError, match="'frobnicate'") as caught:
        task(frobnicate=True)

    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retries", -1),
        ("retries", 1.5),
        ("retries", True),
        ("retry_delay_secs", -0.1),
        ("retry_delay_secs", "5"),
        ("timeout_secs", 0),
        ("timeout_secs", -3),
        ("timeout_policy", "explode"),
        ("priority", "high"),
        ("queue", ""),
        ("tags", "urgent"),
        ("before_job", 42),
        ("on_error", "log"),
    ],
)
def test_bad_option_values_are_errors_naming_the_option(runtime, option, value):
    with pytest.raises(TaskDefinitionError, match=option):

        @task(**{option: value})
        def bad() -> None: ...

    assert "bad" not in runtime.registry


def test_bare_decorator_with_options_is_refused():
    def f() -> None: ...

    with pytest.raises(TaskDefinitionError, match="not both"):
        task(f, retries=1)  # type: ignore[call-overload]


def test_task_registers_in_the_registry_given():
    reg = TaskRegistry()

    @task(registry=reg, name="only.here")
    def here() -> None: ...

    assert reg.get("only.here") is here


def test_delay_enqueues_a_pending_job(runtime):
    @task(retries=2, queue="math", priority=4)
    def add(x: int, y: int = 0) -> int:
        return x + y

    job = add.delay(2, y=3)

    assert isinstance(job, JobHandle), "a handle apart from the Job record"
    assert isinstance(job.job, Job)
    assert job.status is JobStatus.PENDING
    assert (job.func_name, tuple(job.args), job.kwargs) == ("add", (2,), {"y": 3})
    assert (job.queue, job.priority) == ("math", 4)
    assert job.retries_left == 2
    assert job.attempts == 0
    assert runtime.queue.qsize("math") == 1
    record = runtime.results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.PENDING


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_delay_rejects_an_unserializable_argument_by_position(backend):
    runtime = nuvom.configure(
        queue_backend=backend, result_backend=backend, registry=TaskRegistry()
    )

    @task
    def store(x: object, y: object = None) -> None: ...

    with pytest.raises(SerializationError) as caught:
        store.delay(1, object())

    assert caught.value.argument == "argument 1"
    assert "argument 1 of store()" in str(caught.value)
    assert runtime.queue.qsize() == 0


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_delay_rejects_an_unserializable_argument_by_name(backend):
    runtime = nuvom.configure(
        queue_backend=backend, result_backend=backend, registry=TaskRegistry()
    )

    @task
    def store(x: object, y: object = None) -> None: ...

    with pytest.raises(SerializationError) as caught:
        store.delay(1, y={"handle": open})

    assert caught.value.argument == "argument 'y'"
    assert "argument 'y'" in str(caught.value)
    assert runtime.queue.qsize() == 0


def test_delay_rejects_an_oversized_payload():
    runtime = nuvom.configure(
        queue_backend="memory",
        result_backend="memory",
        registry=TaskRegistry(),
        max_payload_bytes=1024,
    )

    @task
    def upload(blob: bytes) -> None: ...

    with pytest.raises(SerializationError, match="over the limit"):
        upload.delay(b"x" * 4096)
    assert runtime.queue.qsize() == 0


def test_map_accepts_tuples_lists_dicts_and_scalars(runtime):
    @task
    def power(base: int, exp: int = 2) -> int:
        return base**exp

    jobs = power.map([(2, 3), [4], {"base": 5, "exp": 0}, 7])

    assert [(tuple(j.args), j.kwargs) for j in jobs] == [
        ((2, 3), {}),
        ((4,), {}),
        ((), {"base": 5, "exp": 0}),
        ((7,), {}),
    ]
    assert {j.status for j in jobs} == {JobStatus.PENDING}
    assert len({j.id for j in jobs}) == 4
    assert runtime.queue.qsize() == 4


def test_map_is_all_or_nothing(runtime):
    @task
    def echo(value: object) -> object:
        return value

    with pytest.raises(SerializationError):
        echo.map([1, 2, object(), 4])

    assert runtime.queue.qsize() == 0


def test_map_of_nothing_enqueues_nothing(runtime):
    @task
    def noop() -> None: ...

    assert noop.map([]) == []
    assert runtime.queue.qsize() == 0


def test_apply_async_in_schedules_the_job(fake_runtime, fake_clock):
    @task
    def remind(who: str) -> str:
        return who

    job = remind.apply_async(("ada",), in_=60)

    assert job.status is JobStatus.SCHEDULED
    assert job.due_at == fake_clock.time() + 60
    record = fake_runtime.results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.SCHEDULED
    assert fake_runtime.queue.pop_batch(1, worker_id="w", lease_secs=5) == []
    fake_clock.advance(60)
    assert [j.id for j in fake_runtime.queue.pop_batch(1, worker_id="w", lease_secs=5)] == [job.id]


def test_schedule_takes_a_timedelta_and_keyword_arguments(fake_runtime, fake_clock):
    @task
    def report(day: int, *, fmt: str = "pdf") -> str:
        return fmt

    job = report.schedule(7, in_=dt.timedelta(minutes=2), fmt="csv")

    assert job.status is JobStatus.SCHEDULED
    assert job.due_at == fake_clock.time() + 120
    assert (tuple(job.args), job.kwargs) == ((7,), {"fmt": "csv"})


def test_apply_async_at_a_datetime(fake_runtime, fake_clock):
    @task
    def ping() -> None: ...

    later = dt.datetime.fromtimestamp(fake_clock.time() + 30, tz=dt.timezone.utc)
    earlier = dt.datetime.fromtimestamp(fake_clock.time() - 30, tz=dt.timezone.utc)

    future = ping.apply_async(at=later)
    past = ping.apply_async(at=earlier)

    assert future.status is JobStatus.SCHEDULED
    assert future.due_at == pytest.approx(fake_clock.time() + 30)
    assert past.status is JobStatus.PENDING


def test_apply_async_routes_to_another_queue_and_priority(runtime):
    @task(queue="default")
    def route() -> None: ...

    job = route.apply_async(queue="urgent", priority=9)

    assert (job.queue, job.priority) == ("urgent", 9)
    assert runtime.queue.qsize("urgent") == 1


def test_at_and_in_together_are_refused(runtime):
    @task
    def both() -> None: ...

    with pytest.raises(TaskDefinitionError, match="not both"):
        both.apply_async(at=1.0, in_=1.0)


def test_enqueue_a_hand_built_job(runtime):
    job = enqueue(Job("unstable", args=[1]))

    assert job.status is JobStatus.PENDING
    assert runtime.queue.qsize() == 1


def test_is_async(runtime):
    @task
    async def fetch() -> int:
        return 1

    @task
    def compute() -> int:
        return 1

    assert fetch.is_async is True
    assert compute.is_async is False
