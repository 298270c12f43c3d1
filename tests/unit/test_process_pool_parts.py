"""Pieces of the process pool that need no child process: settings it passes, exit wording, RSS."""

from __future__ import annotations

import dataclasses
import signal
import sys

import pytest

from nuvom.config import Settings
from nuvom.execution.child import ChildSettings, current_rss_bytes
from nuvom.execution.process_pool import CHILD_SETTINGS, describe_exit


def test_children_get_exactly_the_settings_their_runner_reads():
    names = {field.name for field in dataclasses.fields(ChildSettings)}
    assert names == set(CHILD_SETTINGS)
    assert names <= set(Settings.model_fields)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (3, "exited with code 3"),
        (-signal.SIGTERM, "was killed by SIGTERM"),
        (None, "vanished"),
    ],
)
def test_a_dead_child_is_described_plainly(code, text):
    assert describe_exit(code) == text


@pytest.mark.skipif(sys.platform == "win32", reason="Windows reports no RSS (documented)")
def test_rss_is_measured_in_bytes():
    rss = current_rss_bytes()
    assert rss is not None
    assert 1024 * 1024 < rss < 64 * 1024**3  # a Python process: over 1 MB, under 64 GB
