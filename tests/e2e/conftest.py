"""Fixtures for end-to-end tests: the ``nuvom`` command line against a fresh project folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Project, project_fixture


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """An empty project folder (the cwd) with no NUVOM_* settings; its processes die with the test."""
    yield from project_fixture(tmp_path, monkeypatch)
