"""The policy units the runner calls: option resolution, retries, back-off, timeouts, poison."""

from __future__ import annotations

import pytest

from nuvom.config import load_settings
from nuvom.execution.policies import (
    MAX_BACKOFF_SECS,
    RunOptions,
    retry_or_fail,
    timed_out,
    too_many_lost_attempts,
)
from nuvom.job import Job, JobStatus
from nuvom.options import RUN_OPTIONS, run_defaults
from nuvom.records import ErrorInfo
from nuvom.task import Task


def noop() -> None: ...


def options(**fields: object) -> RunOptions:
    defaults: dict[str, object] = {
        "retries": 0,
        "retry_delay_secs": 5.0,
        "retry_backoff": False,
        "timeout_secs": 30.0,
        "timeout_policy": "fail",
        "store_result": True,
    }
    return RunOptions(**{**defaults, **fields})  # type: ignore[arg-type]


def test_settings_fill_in_when_job_and_task_say_nothing():
    settings = load_settings(retry_delay_secs=7, job_timeout_secs=12, timeout_policy="ignore")

    opts = RunOptions.resolve(Job("noop"), None, run_defaults(settings))

    assert opts == options(retry_delay_secs=7, timeout_secs=12, timeout_policy="ignore")


def test_task_options_win_over_settings():
    settings = load_settings(retry_delay_secs=7, job_timeout_secs=12)
    task = Task(noop, retries=2, retry_delay_secs=1, timeout_secs=3, timeout_policy="retry",
                store_result=False, retry_backoff=True)  # fmt: skip

    opts = RunOptions.resolve(Job("noop"), task, run_defaults(settings))

    assert opts == options(
        retries=2, retry_delay_secs=1, retry_backoff=True, timeout_secs=3,
        timeout_policy="retry", store_result=False,
    )  # fmt: skip


def test_job_overrides_win_over_task_options():
    task = Task(noop, retries=2, retry_delay_secs=1, timeout_secs=3, timeout_policy="retry")
    job = Job("noop", max_retries=0, retry_delay_secs=0, timeout_secs=9, timeout_policy="fail",
              store_result=False)  # fmt: skip

    opts = RunOptions.resolve(job, task, run_defaults(load_settings()))

    assert (opts.retries, opts.retry_delay_secs, opts.timeout_secs) == (0, 0, 9)
    assert (opts.timeout_policy, opts.store_result) == ("fail", False)


@pytest.mark.parametrize(
    ("retries", "attempts", "left"), [(0, 1, 0), (2, 1, 2), (2, 2, 1), (2, 3, 0), (2, 9, 0)]
)
def test_retries_left(retries, attempts, left):
    assert options(retries=retries).retries_left(attempts) == left


def test_delay_without_backoff_is_constant():
    opts = options(retry_delay_secs=4)

    assert [opts.delay_before(n) for n in (1, 2, 10)] == [4, 4, 4]


def test_backoff_doubles_with_jitter_and_is_capped():
    opts = options(retry_delay_secs=2, retry_backoff=True)

    for attempt, base in ((1, 2), (2, 4), (3, 8), (5, 32)):
        for _ in range(20):
            assert base * 0.5 <= opts.delay_before(attempt) <= base
    assert opts.delay_before(100) <= MAX_BACKOFF_SECS


def test_retry_or_fail_retries_while_retries_remain():
    job = Job("noop", attempts=1)
    error = ErrorInfo("ValueError", "x")

    outcome = retry_or_fail(job, options(retries=1, retry_delay_secs=3), error,
                            started=100.0, now=110.0, worker_id="w")  # fmt: skip

    assert outcome.status is JobStatus.RETRYING
    assert outcome.retry_at == 113.0
    assert outcome.error is error
    assert (outcome.started_at, outcome.finished_at, outcome.worker_id) == (100.0, 110.0, "w")


def test_retry_or_fail_fails_when_retries_are_spent():
    job = Job("noop", attempts=2)

    outcome = retry_or_fail(job, options(retries=1), ErrorInfo("ValueError", "x"),
                            started=None, now=1.0, worker_id="w")  # fmt: skip

    assert outcome.status is JobStatus.FAILED
    assert outcome.retry_at is None


@pytest.mark.parametrize(
    ("policy", "retries", "expected"),
    [
        ("fail", 3, JobStatus.FAILED),
        ("retry", 3, JobStatus.RETRYING),
        ("retry", 0, JobStatus.FAILED),
    ],
)
def test_timed_out_follows_the_timeout_policy(policy, retries, expected):
    job = Job("noop", attempts=1)

    outcome = timed_out(job, options(timeout_policy=policy, retries=retries, timeout_secs=2),
                        started=0.0, now=2.0, worker_id="w")  # fmt: skip

    assert outcome.status is expected
    assert outcome.error is not None
    assert outcome.error.type == "JobTimeout"
    assert "2s" in outcome.error.message


@pytest.mark.parametrize(
    ("attempts", "poisoned"), [(1, False), (3, False), (5, False), (6, True), (9, True)]
)
def test_too_many_lost_attempts(attempts, poisoned):
    # retries=2 allows 3 attempts, plus LOST_ATTEMPT_ALLOWANCE deliveries lost with their worker
    error = too_many_lost_attempts(Job("noop", attempts=attempts), options(retries=2))

    assert (error is not None) is poisoned
    if error is not None:
        assert error.type == "LostAttempts"
        assert f"attempt {attempts}" in error.message


def test_run_options_are_exactly_the_options_the_table_marks_as_run():
    import dataclasses

    assert [f.name for f in dataclasses.fields(RunOptions)] == [o.name for o in RUN_OPTIONS]
