"""``.delay`` keeps the task's signature for type checkers (ParamSpec)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the dev extra")

SNIPPET = textwrap.dedent(
    """
    from nuvom.task import task

    @task
    def add(x: int, y: int) -> int:
        return x + y

    @task(retries=1)
    def greet(name: str) -> str:
        return name

    add.delay(1, 2)
    greet.delay("ok")
    reveal_type(add(1, 2))
    add.delay("x", 2)
    greet.delay(name=3)
    """
)


def test_delay_arguments_are_type_checked(tmp_path: Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET)
    stdout, _, status = mypy_api.run(
        ["--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 1
    assert any(":15:" in line and '"str"' in line for line in errors), stdout
    assert any(":16:" in line and '"int"' in line for line in errors), stdout
    assert len(errors) == 2, stdout
    assert ':14: note: Revealed type is "int"' in stdout or "builtins.int" in stdout
