"""The task registry: lookups, duplicate names, and swapping it per test."""

from __future__ import annotations

import pytest

import nuvom
from nuvom.errors import DuplicateTaskError, TaskNotFound
from nuvom.registry import TaskRegistry, get_registry
from nuvom.task import Task, task


def first() -> str:
    return "first"


def second() -> str:
    return "second"


def test_register_and_look_up():
    reg = TaskRegistry()
    made = Task(first, name="jobs.first")

    reg.register(made)

    assert reg.get("jobs.first") is made
    assert reg.find("jobs.first") is made
    assert reg.find("jobs.other") is None
    assert "jobs.first" in reg
    assert len(reg) == 1
    assert reg.names() == ["jobs.first"]


def test_get_unknown_raises_task_not_found():
    with pytest.raises(TaskNotFound, match="'missing'") as caught:
        TaskRegistry().get("missing")

    assert caught.value.name == "missing"


def test_a_different_function_under_a_taken_name_is_an_error_by_default():
    reg = TaskRegistry()
    task(registry=reg, name="dup")(first)

    with pytest.raises(DuplicateTaskError) as caught:
        task(registry=reg, name="dup")(second)

    message = str(caught.value)
    assert caught.value.name == "dup"
    assert "first" in message
    assert "second" in message
    assert "force=True" in message
    assert reg.get("dup").func is first


def test_force_replaces_the_registered_task():
    reg = TaskRegistry()
    task(registry=reg, name="dup")(first)

    replacement = task(registry=reg, name="dup", force=True)(second)

    assert reg.get("dup") is replacement
    assert reg.get("dup")() == "second"


def test_silent_keeps_the_first_task():
    reg = TaskRegistry()
    original = task(registry=reg, name="dup")(first)

    ignored = task(registry=reg, name="dup", silent=True)(second)

    assert reg.get("dup") is original
    assert ignored() == "second", "the ignored task is still a callable task"


def test_the_same_function_registered_twice_replaces_itself_quietly():
    reg = TaskRegistry()
    task(registry=reg, name="again")(first)

    latest = task(registry=reg, name="again")(first)  # a module imported twice

    assert reg.get("again") is latest
    assert len(reg) == 1


def test_unregister():
    reg = TaskRegistry()
    task(registry=reg)(first)

    reg.unregister("first")
    reg.unregister("first")  # idempotent

    assert "first" not in reg


def test_configure_swaps_the_registry_and_carries_it_over_otherwise():
    fresh = TaskRegistry()
    nuvom.configure(queue_backend="memory", result_backend="memory", registry=fresh)

    @task
    def registered_here() -> None: ...

    assert get_registry() is fresh
    assert "registered_here" in fresh

    nuvom.configure(queue_backend="memory", result_backend="memory")
    assert get_registry() is fresh, "configure() without registry= keeps the tasks"

    nuvom.configure(queue_backend="memory", result_backend="memory", registry=TaskRegistry())
    assert "registered_here" not in get_registry()


def test_reset_keeps_the_registered_tasks():
    fresh = TaskRegistry()
    nuvom.configure(queue_backend="memory", result_backend="memory", registry=fresh)

    nuvom.runtime.reset()

    assert get_registry() is fresh
