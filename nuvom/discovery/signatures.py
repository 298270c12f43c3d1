"""A task's parameters as ``ast`` reads them, and a call bound to them without an import.

Discovery records each task's parameters in the manifest (``read_params``): name, kind,
the default as a literal where it is one (else its source text), the annotation as
source text. ``bind`` checks a call against them with ``inspect.Signature.bind``'s
rules, so a producer that cannot import a task still refuses ``charge(42)`` when
``charge`` needs two arguments; ``signature_hash`` tells a changed signature apart.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

from nuvom.errors import SignatureMismatch

#: ``inspect.Parameter`` kinds by the names the manifest stores.
KINDS = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}
_NAMES = {kind: name for name, kind in KINDS.items()}


def _param(arg: ast.arg, kind: str, default: ast.expr | None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": arg.arg, "kind": kind}
    if default is not None:
        param["default_text"] = ast.unparse(default)
        try:  # kept as a value only when it is a literal the manifest's JSON can hold
            value = ast.literal_eval(default)
            json.dumps(value)
        except (ValueError, TypeError, SyntaxError):
            pass  # computed when the module is imported, or bytes: its text says what
        else:
            param["default"] = value
    if arg.annotation is not None:
        param["annotation"] = ast.unparse(arg.annotation)
    return param


def read_params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[dict[str, Any]]:
    """The parameters of a ``def``, in order, as JSON-ready dicts."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    params = [
        _param(arg, "positional_only" if i < len(args.posonlyargs) else "positional_or_keyword",
               default)
        for i, (arg, default) in enumerate(zip(positional, defaults, strict=True))
    ]  # fmt: skip
    if args.vararg is not None:
        params.append(_param(args.vararg, "var_positional", None))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(_param(arg, "keyword_only", default))
    if args.kwarg is not None:
        params.append(_param(args.kwarg, "var_keyword", None))
    return params


def params_of(func: Any) -> list[dict[str, Any]]:
    """The same description of an imported function's parameters (``inspect``)."""
    params = []
    for p in inspect.signature(func).parameters.values():
        entry: dict[str, Any] = {"name": p.name, "kind": _NAMES[p.kind]}
        if p.default is not inspect.Parameter.empty:
            entry["default"] = p.default
            entry["default_text"] = repr(p.default)
        if p.annotation is not inspect.Parameter.empty:
            annotation = p.annotation
            entry["annotation"] = annotation if isinstance(annotation, str) else getattr(
                annotation, "__name__", repr(annotation)
            )  # fmt: skip
        params.append(entry)
    return params


def signature_hash(params: Sequence[Mapping[str, Any]]) -> str:
    """What identifies a call shape: names, kinds, defaults and annotations, as 16 hex digits."""
    shape = [[p["name"], p["kind"], p.get("default_text"), p.get("annotation")] for p in params]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def signature_text(params: Sequence[Mapping[str, Any]]) -> str:
    """``(order_id: int, amount_cents: int, currency: str = 'EUR')``, for listings."""
    return str(_signature(params))


def _signature(params: Sequence[Mapping[str, Any]]) -> inspect.Signature:
    built = []
    for p in params:
        default: Any = inspect.Parameter.empty
        if "default_text" in p:
            default = p["default"] if "default" in p else _Text(p["default_text"])
        annotation = _Text(p["annotation"]) if "annotation" in p else inspect.Parameter.empty
        built.append(
            inspect.Parameter(p["name"], KINDS[p["kind"]], default=default, annotation=annotation)
        )
    return inspect.Signature(built)


class _Text(str):
    """Source text shown as itself (``currency: str = DEFAULT``), not quoted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def bind(task: str, params: Sequence[Mapping[str, Any]], args: Sequence[Any],
         kwargs: Mapping[str, Any]) -> None:  # fmt: skip
    """Raise ``SignatureMismatch`` when ``task(*args, **kwargs)`` does not fit ``params``."""
    try:
        _signature(params).bind(*args, **kwargs)
    except TypeError as exc:
        raise SignatureMismatch(task, str(exc), parameter=named_parameter(str(exc))) from None


def named_parameter(message: str) -> str | None:
    """The parameter a ``Signature.bind`` error names (``missing a required argument: 'x'``)."""
    _, quote, rest = message.partition("'")
    return rest.partition("'")[0] if quote and rest else None
