"""``quick_fit`` says a call fits only when ``Signature.bind`` takes it: every pairing of a
set of parameter shapes and calls, checked against bind itself."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from nuvom.calls import quick_fit


def plain(a, b): ...
def defaults(a, b=1, c=2): ...
def star(a, *rest): ...
def keywords(a, *, k, o=0): ...
def anything(*args, **kwargs): ...
def kw_and_more(a, b=0, **extra): ...
def nothing(): ...
def positional_only(a, /, b): ...


SHAPES = [plain, defaults, star, keywords, anything, kw_and_more, nothing]
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (args, kwargs)
    for args in [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)]
    for kwargs in [{}, {"a": 1}, {"b": 2}, {"c": 3}, {"k": 4}, {"o": 5}, {"zz": 6},
                   {"a": 1, "b": 2}, {"k": 4, "o": 5}, {"b": 2, "k": 4}]
]  # fmt: skip


def _binds(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        inspect.signature(func).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("func", SHAPES, ids=lambda f: f.__name__)
def test_a_quick_yes_is_a_call_that_binds_and_every_call_that_binds_is_a_quick_yes(func):
    fits = quick_fit(inspect.signature(func))
    assert fits is not None
    for args, kwargs in CALLS:
        assert fits(args, kwargs) == _binds(func, args, kwargs), (func.__name__, args, kwargs)


def test_positional_only_parameters_are_left_to_bind():
    assert quick_fit(inspect.signature(positional_only)) is None
    assert quick_fit(None) is None


def test_calls_through_a_task_are_still_refused_with_the_parameter_named():
    from nuvom.calls import TaskFacts, check_call
    from nuvom.errors import SignatureMismatch

    signature = inspect.signature(keywords)
    facts = TaskFacts(signature=signature, fits=quick_fit(signature))
    check_call("t.keywords", facts, (1,), {"k": 2})
    with pytest.raises(SignatureMismatch, match="k"):
        check_call("t.keywords", facts, (1,), {})
