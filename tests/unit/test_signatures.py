"""A task's parameters read from source with ``ast``, and calls checked against them
before they are queued — by name from the manifest, or against the imported function."""

from __future__ import annotations

import ast

import pytest

from nuvom.discovery.scanner import scan_source
from nuvom.discovery.signatures import bind, params_of, read_params, signature_hash
from nuvom.errors import SignatureMismatch, TaskDefinitionError
from nuvom.job import Job
from nuvom.queue import enqueue
from nuvom.task import task


def _params(source: str) -> list[dict[str, object]]:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    return read_params(node)


def test_every_kind_of_parameter_is_read():
    params = _params("def f(a, /, b: int, c='x', *args: str, d, e=CONST, **kw): ...")
    assert [(p["name"], p["kind"]) for p in params] == [
        ("a", "positional_only"), ("b", "positional_or_keyword"), ("c", "positional_or_keyword"),
        ("args", "var_positional"), ("d", "keyword_only"), ("e", "keyword_only"),
        ("kw", "var_keyword"),
    ]  # fmt: skip
    assert params[1]["annotation"] == "int"
    assert params[2]["default"] == "x"
    assert params[4].get("default_text") is None, "d is required"
    assert params[5] == {"name": "e", "kind": "keyword_only", "default_text": "CONST"}, (
        "a default computed at import is kept as its text"
    )
    assert params[3]["annotation"] == "str"


def test_an_async_def_and_a_bytes_default_are_read():
    params = _params("async def f(x=b'\\x00', y=(1, 2)): ...")
    assert params[0] == {"name": "x", "kind": "positional_or_keyword", "default_text": "b'\\x00'"}
    assert params[1]["default"] == (1, 2)


@pytest.mark.parametrize(
    ("args", "kwargs", "message", "parameter"),
    [
        ((42,), {}, "charge() missing a required argument: 'amount_cents'", "amount_cents"),
        ((1, 2, "EUR", 4), {}, "charge() too many positional arguments", None),
        ((1, 2), {"tip": 1}, "charge() got an unexpected keyword argument 'tip'", "tip"),
        ((1, 2), {"order_id": 1}, "charge() multiple values for argument 'order_id'", "order_id"),
    ],
)
def test_a_call_that_does_not_fit_names_the_parameter(args, kwargs, message, parameter):
    params = _params("def charge(order_id: int, amount_cents: int, currency: str = 'EUR'): ...")
    bind("charge", params, (42, 1999), {})
    with pytest.raises(SignatureMismatch) as caught:
        bind("charge", params, args, kwargs)
    assert str(caught.value) == message
    assert (caught.value.task, caught.value.parameter) == ("charge", parameter)


def test_positional_only_and_keyword_only_are_bound_as_python_would():
    params = _params("def f(a, /, *, b): ...")
    bind("f", params, (1,), {"b": 2})
    with pytest.raises(SignatureMismatch, match="'a' parameter is positional only"):
        bind("f", params, (), {"a": 1, "b": 2})
    with pytest.raises(SignatureMismatch, match="too many positional arguments"):
        bind("f", params, (1, 2), {})


def test_the_hash_changes_with_the_call_shape_only():
    base = signature_hash(_params("def f(a, b=1): ..."))
    assert signature_hash(_params("def f(a, b=1):\n    return a")) == base
    assert signature_hash(_params("def f(a, b=2): ...")) != base
    assert signature_hash(_params("def f(a, c=1): ...")) != base
    assert signature_hash(_params("def f(a: int, b=1): ...")) != base


def test_the_imported_function_reads_the_same():
    def charge(order_id: int, amount_cents: int, currency: str = "EUR"): ...

    read = _params("def charge(order_id: int, amount_cents: int, currency: str = 'EUR'): ...")
    assert [(p["name"], p["kind"]) for p in params_of(charge)] == [
        (p["name"], p["kind"]) for p in read
    ]


def test_a_method_marked_as_a_task_is_refused_and_discovery_says_so(runtime):
    with pytest.raises(TaskDefinitionError, match="a task is a module-level function"):

        class Billing:
            @task
            def charge(self, order_id): ...

    scanned = scan_source(
        "from nuvom import task\nclass Billing:\n    @task\n    def charge(self, o): ...\n",
        module="billing", file="billing.py",
    )  # fmt: skip
    assert scanned.tasks == []
    assert scanned.warnings == [
        "line 4: @task on method Billing.charge is not a task (a task is a module-level function)"
    ]


def test_delay_and_enqueue_by_name_check_the_call_the_same_way(runtime):
    @task
    def charge(order_id: int, amount_cents: int, currency: str = "EUR") -> None: ...

    assert charge.delay(42, 1999).func_name == "charge"
    with pytest.raises(SignatureMismatch, match="charge\\(\\) missing a required argument"):
        charge.delay(42)  # type: ignore[call-arg]
    with pytest.raises(SignatureMismatch, match="too many positional arguments"):
        enqueue(Job("charge", args=(1, 2, "EUR", 4)))
    assert runtime.queue.qsize() == 1, "a refused call stores nothing"
    enqueue(Job("unstable"))  # a task nothing declares: unchecked, as before


def test_a_declared_task_is_checked_from_the_manifest_alone(runtime, tmp_path):
    import nuvom
    from nuvom.discovery import discover, save_manifest

    (tmp_path / "billing.py").write_text(
        "from nuvom import task\n\n@task(version=2)\n"
        "def charge(order_id, amount_cents, currency='EUR'): ...\n"
    )
    manifest_path = tmp_path / "manifest.json"
    save_manifest(discover(tmp_path), manifest_path)
    nuvom.configure(queue_backend="memory", result_backend="memory",
                    manifest_path=manifest_path)  # fmt: skip

    handle = enqueue(Job("charge", args=(42, 1999)))
    assert (handle.job.origin or {}).get("version") == 2, "the job carries its task's version"
    with pytest.raises(SignatureMismatch, match="charge\\(\\) missing a required argument: "):
        enqueue(Job("charge", args=(42,)))


def test_a_workflow_member_is_checked_with_what_it_will_be_fed(runtime):
    from nuvom.workflow import chain

    @task
    def add(x: int, y: int) -> int:
        return x + y

    chain(add.s(1, 2), add.s(10)).delay()  # add(3, 10): the first argument is fed
    with pytest.raises(SignatureMismatch):
        chain(add.s(1, 2), add.s(10, 20)).delay()
