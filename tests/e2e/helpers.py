"""The shared process helpers of ``tests/integration``, reached whether or not ``tests/`` is a package."""

from __future__ import annotations

try:
    from ..integration.helpers import Project, assert_one_line_error, posix_only, project_fixture
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from integration.helpers import (  # type: ignore[no-redef]
        Project,
        assert_one_line_error,
        posix_only,
        project_fixture,
    )

__all__ = ["Project", "assert_one_line_error", "posix_only", "project_fixture"]
