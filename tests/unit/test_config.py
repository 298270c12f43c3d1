"""Settings: defaults, NUVOM_* variables, .env files, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

import nuvom
from nuvom.config import (
    DEFAULT_JOB_TIMEOUT_SECS,
    DEFAULT_LEASE_SECS,
    load_settings,
    setting_sources,
)
from nuvom.errors import ConfigError, NuvomError


def write_env(text: str) -> None:
    Path(".env").write_text(text, encoding="utf-8")


def assert_one_clear_line(error: ConfigError, variable: str) -> None:
    message = str(error)
    assert variable in message
    assert "\n" not in message
    assert "pydantic" not in message.lower()
    assert "validation error" not in message.lower()


def test_defaults():
    settings = load_settings()

    assert settings.job_timeout_secs == DEFAULT_JOB_TIMEOUT_SECS == 30
    assert settings.lease_secs == DEFAULT_LEASE_SECS == 30
    assert settings.queue_backend == "sqlite"
    assert settings.result_backend == "sqlite"
    assert settings.serialization_backend == "msgpack"
    assert settings.timeout_policy == "fail"
    assert settings.prometheus_port == 9150
    assert settings.manifest_path == Path(".nuvom/manifest.json")
    assert settings.effective_sqlite_queue_path == settings.sqlite_db_path


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("NUVOM_LEASE_SECS", "5")
    monkeypatch.setenv("NUVOM_QUEUE_BACKEND", " Memory ")
    monkeypatch.setenv("NUVOM_TIMEOUT_POLICY", "RETRY")
    monkeypatch.setenv("NUVOM_LOG_LEVEL", "debug")
    monkeypatch.setenv("NUVOM_SQLITE_QUEUE_PATH", "q.db")

    settings = load_settings()

    assert settings.lease_secs == 5.0
    assert settings.queue_backend == "memory"
    assert settings.timeout_policy == "retry"
    assert settings.log_level == "DEBUG"
    assert settings.effective_sqlite_queue_path == Path("q.db")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NUVOM_LEASE_SECS", "soon"),
        ("NUVOM_LEASE_SECS", "-1"),
        ("NUVOM_LEASE_SECS", "0"),
        ("NUVOM_MAX_WORKERS", "0"),
        ("NUVOM_BATCH_SIZE", "many"),
        ("NUVOM_TIMEOUT_POLICY", "explode"),
        ("NUVOM_LOG_LEVEL", "LOUD"),
        ("NUVOM_SERIALIZATION_BACKEND", "pickle"),
        ("NUVOM_PROMETHEUS_PORT", "70000"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert caught.value.variable == variable
    assert_one_clear_line(caught.value, variable)
    assert isinstance(caught.value, NuvomError)


def test_a_bad_value_in_dotenv_names_the_variable():
    write_env("NUVOM_JOB_TIMEOUT_SECS=forever\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert caught.value.variable == "NUVOM_JOB_TIMEOUT_SECS"
    assert_one_clear_line(caught.value, "NUVOM_JOB_TIMEOUT_SECS")


def test_an_unknown_variable_suggests_the_right_name(monkeypatch):
    monkeypatch.setenv("NUVOM_LEASE_SEC", "5")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert caught.value.variable == "NUVOM_LEASE_SEC"
    assert "did you mean NUVOM_LEASE_SECS?" in str(caught.value)
    assert_one_clear_line(caught.value, "NUVOM_LEASE_SEC")


def test_an_unknown_variable_in_dotenv_is_reported_with_the_file():
    write_env("NUVOM_QUEUE_BAKEND=memory\n")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert ".env" in message
    assert "NUVOM_QUEUE_BACKEND" in message


def test_dotenv_values_are_read():
    write_env("NUVOM_LEASE_SECS=7\nNUVOM_RESULT_BACKEND=memory\n")

    settings = load_settings()

    assert settings.lease_secs == 7
    assert settings.result_backend == "memory"


def test_a_real_environment_variable_wins_over_dotenv(monkeypatch):
    write_env("NUVOM_LEASE_SECS=7\nNUVOM_BATCH_SIZE=3\n")
    monkeypatch.setenv("NUVOM_LEASE_SECS", "9")

    settings = load_settings()

    assert settings.lease_secs == 9
    assert settings.batch_size == 3


def test_overrides_win_over_every_source(monkeypatch):
    write_env("NUVOM_LEASE_SECS=7\n")
    monkeypatch.setenv("NUVOM_LEASE_SECS", "9")

    assert load_settings(lease_secs=11).lease_secs == 11


def test_dotenv_shared_with_other_apps_is_fine():
    write_env(
        "# the app's own settings\n"
        "DATABASE_URL=postgres://user:secret@db/app\n"
        "SECRET_KEY=abc\n"
        "DEBUG=true\n"
        "NUVOM_MAX_WORKERS=2\n"
    )

    settings = load_settings()

    assert settings.max_workers == 2
    assert not hasattr(settings, "database_url")


def test_setting_sources_say_where_each_value_came_from(monkeypatch):
    write_env("NUVOM_JOB_TIMEOUT_SECS=12\nNUVOM_LEASE_SECS=7\n")
    monkeypatch.setenv("NUVOM_LEASE_SECS", "9")
    overrides = {"batch_size": 4}
    settings = load_settings(**overrides)

    sources = setting_sources(settings, overrides)

    assert sources["lease_secs"] == "environment"
    assert sources["job_timeout_secs"] == ".env"
    assert sources["batch_size"] == "configure()"
    assert sources["max_workers"] == "default"
    assert set(sources) == set(type(settings).model_fields)


def test_settings_are_frozen():
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.lease_secs = 1  # type: ignore[misc]


def test_configure_rejects_an_unknown_setting():
    with pytest.raises(ConfigError, match="lease_sec"):
        nuvom.configure(lease_sec=3)


def test_configure_rejects_a_bad_value_by_variable_name():
    with pytest.raises(ConfigError) as caught:
        nuvom.configure(max_workers=0)

    assert caught.value.variable == "NUVOM_MAX_WORKERS"


def test_an_unknown_backend_name_is_a_config_error_naming_the_variable():
    runtime = nuvom.configure(queue_backend="rabbit", result_backend="memory")

    with pytest.raises(ConfigError) as caught:
        _ = runtime.queue

    assert caught.value.variable == "NUVOM_QUEUE_BACKEND"
    assert "rabbit" in str(caught.value)
    assert "memory" in str(caught.value), "the error lists the built-in backends"


def test_configure_reads_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("NUVOM_QUEUE_BACKEND", "memory")
    monkeypatch.setenv("NUVOM_RESULT_BACKEND", "memory")
    monkeypatch.setenv("NUVOM_LEASE_SECS", "4")

    runtime = nuvom.configure()

    assert runtime.settings.lease_secs == 4
    assert runtime.queue.name == "memory"
    assert runtime.results.name == "memory"
