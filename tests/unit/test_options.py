"""One definition of every task option (``nuvom.options``), and what derives from it."""

from __future__ import annotations

import dataclasses
from typing import get_args

import pytest

from nuvom.config import Settings, TimeoutPolicy, load_settings
from nuvom.discovery import scanner
from nuvom.errors import InvalidJob
from nuvom.job import Job
from nuvom.options import JOB_OVERRIDES, OPTIONS, TASK_OPTIONS, TIMEOUT_POLICIES
from nuvom.task import TASK_OPTIONS as DECORATOR_OPTIONS


def test_the_decorator_accepts_exactly_the_table_and_a_name():
    assert set(DECORATOR_OPTIONS) == {"name", *OPTIONS}


def test_each_per_job_override_is_a_job_field():
    fields = {f.name for f in dataclasses.fields(Job)}
    assert set(JOB_OVERRIDES) <= fields
    assert set(Job("t", max_retries=1, timeout_secs=2, store_result=False).overrides()) == {
        "max_retries",
        "timeout_secs",
        "store_result",
    }


def test_settings_take_their_option_defaults_from_the_table():
    settings = load_settings()
    for option in TASK_OPTIONS:
        if option.setting is not None:
            assert getattr(settings, option.setting) == option.setting_default, option.name
            assert option.setting in Settings.model_fields
    assert get_args(TimeoutPolicy) == TIMEOUT_POLICIES


def test_discovery_reads_the_options_the_table_marks():
    assert {o.name for o in TASK_OPTIONS if o.in_source == "literal"} == scanner.LITERAL_OPTIONS
    assert {"before_job", "after_job", "on_error"} == scanner.TEXT_OPTIONS


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeout_secs", "30"), ("max_retries", "x"), ("max_retries", -1), ("retry_delay_secs", -1),
     ("timeout_policy", "explode"), ("store_result", "yes"), ("timeout_secs", float("nan"))],
)  # fmt: skip
def test_a_job_override_is_checked_as_its_option_is(field, value):
    with pytest.raises(InvalidJob, match=field) as refused:
        Job("t", **{field: value})
    assert refused.value.field == field
