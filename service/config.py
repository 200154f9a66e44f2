"""Service settings: one pydantic-settings class read from ``LCW_*`` environment variables.

Reach them through :func:`get_settings` (cached; tests pass their own ``Settings`` to
``create_app`` instead). Nothing here runs at import time.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _http_url(value: str, setting: str) -> str:
    """`value` when it is an http(s) URL with a host; ValueError naming `setting` else."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{setting}: {value!r} is not an http(s) URL (e.g. https://hooks.example.org/lcw)"
        )
    return value


class Settings(BaseSettings):
    """Configuration of one service process (API server, `db upgrade`, embedded dispatcher)."""

    # hide_input_in_errors: an error about LCW_API_TOKENS must never print the tokens.
    model_config = SettingsConfigDict(env_prefix="LCW_", extra="ignore", hide_input_in_errors=True)

    # Where the default SQLite file lives; unused when database_url names another database.
    data_home: Path = Path("./data")
    # None: sqlite:///<data_home>/lcw.db. PostgreSQL: postgresql+psycopg://user@host/db
    # (a plain postgresql:// URL is read as psycopg 3).
    database_url: str | None = None
    # Bearer tokens allowed to write (comma-separated in LCW_API_TOKENS), each a plain token or
    # ``name:token`` (the studies it submits record the owner `name`). Empty: writes are open.
    # SecretStr so that a logged or printed Settings never shows them.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, repr=False)
    max_trials_per_study: int = Field(default=5000, ge=1)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)  # 1 MiB: a spec is a few hundred bytes
    # How long a claimed trial stays leased without a renewal before it returns to the queue.
    lease_seconds: float = Field(default=60.0, gt=0)
    # Dispatcher (workers/): the Ray cluster to join ("host:port", "auto"); None: the
    # RAY_ADDRESS environment variable if set, else a local Ray started in-process.
    ray_address: str | None = None
    # CPUs of a local Ray started by the dispatcher; None: every CPU of the machine.
    ray_num_cpus: int | None = Field(default=None, ge=1)
    # Trials the dispatcher runs at once; None: as many as the cluster's CPUs allow.
    worker_slots: int | None = Field(default=None, ge=1)
    # Most trials the dispatcher trains as one fused model (lcw.train_pack); None: chosen from
    # the device and memory (up to 16 on a CPU, 64 on a GPU; workers/packing.py); 1: no packing.
    pack_size: int | None = Field(default=None, ge=1)
    # Origins allowed by CORS (comma-separated); empty: no CORS headers, cross-site calls refused.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # SQLite waits this long for another writer instead of failing with "database is locked".
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    # Upgrade the schema to the newest Alembic revision when the API starts.
    migrate_on_start: bool = True
    # Where trials save their checkpoints (lcw.checkpoint): a path every Ray node sees (a shared
    # filesystem on a cluster) or an fsspec URL (s3://bucket/prefix); None: <data_home>/checkpoints.
    checkpoint_dir: str | None = None
    # Webhooks (service.notify, sent by the API process): where to POST when a study finishes,
    # for studies whose spec names no notify.webhook; None: only those studies are told.
    webhook_url: str | None = None
    # Signs every call: X-LCW-Signature, the HMAC-SHA256 of "<X-LCW-Timestamp>.<body>" with
    # this key; None: calls go unsigned.
    webhook_secret: SecretStr | None = Field(default=None, repr=False)
    # How long after the finish a failing call is retried (backoff 1 s doubling to 5 min).
    webhook_retry_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)  # each call's timeout
    # Where clients reach this API: a webhook's summary_url and page_url start with it.
    public_url: str = "http://127.0.0.1:8000"

    @field_validator("api_tokens", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("api_tokens")
    @classmethod
    def _token_entries(cls, value: list[SecretStr]) -> list[SecretStr]:
        for i, entry in enumerate(value):
            _owner_token(entry.get_secret_value(), position=i + 1)
        return value

    @field_validator("webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("webhook_url", "public_url")
    @classmethod
    def _http_urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        url = _http_url(value, f"LCW_{(info.field_name or '').upper()}")
        return url.rstrip("/") if info.field_name == "public_url" else url

    @field_validator("checkpoint_dir")
    @classmethod
    def _checkpoint_location(cls, value: str | None) -> str | None:
        from lcw.checkpoint import check_location

        if value is not None and (problem := check_location(value)):
            raise ValueError(f"LCW_CHECKPOINT_DIR: {problem}")
        return value or None

    @property
    def effective_checkpoint_dir(self) -> str:
        """Where checkpoints go: ``checkpoint_dir``, else ``<data_home>/checkpoints``."""
        return self.checkpoint_dir or str(self.data_home / "checkpoints")

    @property
    def effective_database_url(self) -> str:
        """The database URL in use, defaults and driver names resolved."""
        return normalize_database_url(self.database_url or f"sqlite:///{self.data_home / 'lcw.db'}")

    def token_values(self) -> list[str]:
        """The configured API tokens as plain strings (for comparison only; never log them)."""
        return [token for _name, token in self.token_owners()]

    def token_owners(self) -> list[tuple[str | None, str]]:
        """(owner name or None, token) of each LCW_API_TOKENS entry (``name:token`` or a plain
        token)."""
        return [_owner_token(t.get_secret_value()) for t in self.api_tokens]


OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


def _owner_token(entry: str, *, position: int | None = None) -> tuple[str | None, str]:
    """An LCW_API_TOKENS entry as (owner, token): ``alice:s3cret`` names its owner, a plain
    token has none. ValueError naming the setting (never the token) when malformed."""
    name, sep, token = entry.partition(":")
    if not sep:
        return None, entry
    where = f"LCW_API_TOKENS entry {position}" if position else "LCW_API_TOKENS entry"
    if not OWNER_NAME.match(name):
        raise ValueError(
            f"{where}: the owner name before ':' must be 1-100 letters, digits or _.@- "
            "(starting with a letter or digit); give name:token or a token without ':'"
        )
    if not token:
        raise ValueError(f"{where}: '{name}:' has no token after the ':'")
    return name, token


def normalize_database_url(url: str) -> str:
    """`url` with PostgreSQL's driver made explicit: postgres:// and postgresql:// become
    postgresql+psycopg:// (the driver this service installs); other URLs are returned as is."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
