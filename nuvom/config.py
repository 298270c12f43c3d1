"""Typed settings from ``NUVOM_*`` environment variables and a ``.env`` file.

One settings object, validated once. A bad value or an unknown ``NUVOM_*`` name
becomes a ``ConfigError`` that names the variable, never a pydantic dump.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from nuvom.signing import Signer

from nuvom.errors import ConfigError
from nuvom.options import setting_default

ENV_PREFIX = "NUVOM_"
ENV_FILE = ".env"

DEFAULT_LEASE_SECS = 30.0  # seconds a claim lasts without a heartbeat
DEFAULT_JOB_TIMEOUT_SECS: float = setting_default("timeout_secs")  # see nuvom.options
DEFAULT_RETRY_DELAY_SECS: float = setting_default("retry_delay_secs")
DEFAULT_SHUTDOWN_GRACE_SECS = 10.0  # seconds in-flight jobs get to finish on SIGINT/SIGTERM
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # largest encoded args+kwargs accepted at enqueue
DEFAULT_SQLITE_BUSY_TIMEOUT_SECS = 10.0  # how long a writer waits for SQLite's lock before failing
# About the longest a call waits on PostgreSQL (to connect, for a pooled connection, for a
# statement, for any answer) before BackendUnavailable: a frozen server never hangs it.
DEFAULT_POSTGRES_TIMEOUT_SECS = 10.0
DEFAULT_PROMETHEUS_PORT = 9150  # TCP port of the Prometheus exporter plugin

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
TimeoutPolicy = Literal["fail", "retry", "ignore"]  # nuvom.options.TIMEOUT_POLICIES
WorkerPool = Literal["thread", "process", "async"]


class Settings(BaseSettings):
    """Every setting nuvom reads. Field ``x`` is read from ``NUVOM_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",  # a shared .env holds other apps' keys; NUVOM_* typos are checked below
        validate_default=True,
        frozen=True,
    )

    environment: str = "development"
    log_level: LogLevel = "INFO"

    queue_backend: str = "sqlite"
    result_backend: str = "sqlite"
    serialization_backend: Literal["msgpack", "json"] = "msgpack"

    max_workers: int = Field(default=4, ge=1, le=1024)
    worker_pool: WorkerPool = "thread"
    batch_size: int = Field(default=32, ge=1, le=10_000)
    job_timeout_secs: float = Field(default=DEFAULT_JOB_TIMEOUT_SECS, gt=0)
    timeout_policy: TimeoutPolicy = setting_default("timeout_policy")
    retry_delay_secs: float = Field(default=DEFAULT_RETRY_DELAY_SECS, ge=0)
    lease_secs: float = Field(default=DEFAULT_LEASE_SECS, gt=0)
    shutdown_grace_secs: float = Field(default=DEFAULT_SHUTDOWN_GRACE_SECS, ge=0)
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1024)
    result_ttl_secs: int | None = Field(default=None, gt=0)

    manifest_path: Path = Path(".nuvom/manifest.json")

    sqlite_db_path: Path = Path(".nuvom/nuvom.db")
    sqlite_queue_path: Path | None = None
    sqlite_synchronous: Literal["full", "normal"] = "full"
    sqlite_busy_timeout_secs: float = Field(default=DEFAULT_SQLITE_BUSY_TIMEOUT_SECS, gt=0)

    file_queue_dir: Path = Path(".nuvom/queue")
    file_synchronous: Literal["full", "normal"] = "full"
    postgres_dsn: str | None = None
    postgres_schema: str = Field(default="nuvom", min_length=1, max_length=63)
    postgres_timeout_secs: float = Field(default=DEFAULT_POSTGRES_TIMEOUT_SECS, gt=0)
    redis_url: str | None = None
    redis_prefix: str = Field(default="nuvom", min_length=1)  # every nuvom key starts with it
    # 0: any free port (the exporter logs the one it got)
    prometheus_port: int = Field(default=DEFAULT_PROMETHEUS_PORT, ge=0, le=65535)
    prometheus_host: str = "127.0.0.1"

    # strict: a worker runs only the task versions its code has (others wait for a worker
    # that has theirs); any: it runs whatever it claims.
    version_policy: Literal["strict", "any"] = "strict"

    # Signed job payloads (``nuvom.signing``): the key producers sign with and workers
    # verify with, and older keys still accepted when verifying (comma-separated).
    signing_key: SecretStr | None = None
    signing_keys_old: SecretStr | None = None

    # ``nuvom dashboard``: the token every request must carry; required off loopback.
    dashboard_token: SecretStr | None = None

    plugins_file: Path = Path(".nuvom_plugins.toml")
    # Also load the ``nuvom.plugins`` entry points of installed packages.
    plugins_autoload: bool = True

    @field_validator(
        "log_level", "timeout_policy", "serialization_backend", "worker_pool", mode="before"
    )
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value.upper() if value.upper() in get_args(LogLevel) else value.lower()
        return value

    @field_validator(
        "sqlite_synchronous",
        "file_synchronous",
        "queue_backend",
        "result_backend",
        "version_policy",
        mode="before",
    )
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def signer(self) -> Signer | None:
        """The payload signer ``NUVOM_SIGNING_KEY`` asks for, or None."""
        if self.signing_key is None or not self.signing_key.get_secret_value():
            return None
        from nuvom.signing import Signer

        old = self.signing_keys_old.get_secret_value() if self.signing_keys_old else ""
        return Signer(self.signing_key.get_secret_value(), [k.strip() for k in old.split(",")])

    @property
    def effective_sqlite_queue_path(self) -> Path:
        """The queue's SQLite file: the results file unless set apart."""
        return self.sqlite_queue_path or self.sqlite_db_path


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _check_unknown_names(names: list[str], where: str) -> None:
    known = {env_name(f) for f in Settings.model_fields}
    for name in names:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{name}: unknown setting in {where}{hint}", variable=name)


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # pydantic-settings depends on python-dotenv

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _describe(error: Mapping[str, Any]) -> ConfigError:
    loc = error.get("loc") or ("?",)
    field = str(loc[0])
    variable = env_name(field)
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "extra_forbidden":
        return ConfigError(f"{variable}: unknown setting", variable=variable)
    given = error.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    return ConfigError(f"{variable}: {message}{shown}", variable=variable)


def load_settings(**overrides: Any) -> Settings:
    """Read, validate and return the settings; ``overrides`` win over every source.

    Raises ``ConfigError`` naming the first bad variable.
    """
    _check_unknown_names(list(os.environ), "the environment")
    _check_unknown_names(list(_read_dotenv(Path(ENV_FILE))), ENV_FILE)
    unknown = set(overrides) - set(Settings.model_fields)
    if unknown:
        raise ConfigError(f"unknown setting {sorted(unknown)[0]!r} passed to configure()")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _describe(exc.errors()[0]) from None


def setting_sources(
    settings: Settings, overrides: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Where each effective value came from: override, env, .env or default."""
    dotenv = {k.upper(): v for k, v in _read_dotenv(Path(ENV_FILE)).items()}
    environ = {k.upper() for k in os.environ}
    sources: dict[str, str] = {}
    for field in Settings.model_fields:
        name = env_name(field)
        if overrides and field in overrides:
            sources[field] = "configure()"
        elif name in environ:
            sources[field] = "environment"
        elif name in dotenv:
            sources[field] = ENV_FILE
        else:
            sources[field] = "default"
    return sources
