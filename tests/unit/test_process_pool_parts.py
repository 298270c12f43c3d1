"""Pieces of the process pool that need no child process: settings it passes, exit wording, RSS."""

from __future__ import annotations

import signal
import sys

import pytest

from nuvom.config import Settings, load_settings
from nuvom.execution.child import current_rss_bytes
from nuvom.execution.process_pool import describe_exit
from nuvom.options import RUN_OPTIONS, TASK_OPTIONS, run_defaults


def test_children_get_the_default_of_every_option_a_setting_backs():
    defaults = run_defaults(load_settings(job_timeout_secs=12, retry_delay_secs=0))

    assert set(defaults) == {o.name for o in RUN_OPTIONS if o.setting}
    assert (defaults["timeout_secs"], defaults["retry_delay_secs"]) == (12, 0)
    assert {o.setting for o in TASK_OPTIONS if o.setting} <= set(Settings.model_fields)


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
