"""One settings object for every process, read from ``JUDGESERVE_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Every knob judgeserve reads; each maps to ``JUDGESERVE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="JUDGESERVE_", extra="forbid", env_file=None)

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding the sample stream.")
    database_url: str = Field(
        "sqlite:///judgeserve.db",
        description="SQLAlchemy URL of the store; SQLite file by default, PostgreSQL for many workers.",
    )
    api_url: str = Field("http://127.0.0.1:8000", description="Where the SDK sends samples.")
    host: str = Field("127.0.0.1", description="Address `judgeserve up/api` bind to.")
    port: int = Field(8000, description="Port `judgeserve up/api` listen on.")
    stream_prefix: str = Field("js", description="Prefix of every Redis key judgeserve writes.")
    consumer_group: str = Field("workers", description="Redis consumer group the workers share.")
    worker_batch: int = Field(64, ge=1, le=10_000, description="Entries a worker reads per batch.")
    claim_idle_ms: int = Field(
        60_000, ge=1, description="Entries pending longer than this on a consumer are reclaimed."
    )
    max_deliveries: int = Field(
        5, ge=1, description="Deliveries after which a failing entry moves to the dead-letter stream."
    )
    max_backlog: int = Field(
        1_000_000, ge=1, description="Unprocessed entries above which the API answers 429."
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Request bodies over this are refused (413) unread."
    )
    scorers: list[str] = Field(
        default_factory=list,
        description="Extra scorers as 'module:attr' (built-ins and entry points load anyway).",
    )
    disabled_scorers: list[str] = Field(
        default_factory=list, description="Scorer names not to run, e.g. ['reference']."
    )
    index_dir: Path = Field(
        Path("judgeserve-indexes"), description="Where memorization indexes are stored, one per run."
    )
    spool_dir: Path = Field(
        Path.home() / ".cache" / "judgeserve" / "spool",
        description="Where the SDK keeps batches it could not send yet.",
    )
    api_token: str | None = Field(None, description="Token the SDK sends (Authorization: Bearer).")
    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        description="API tokens required: 'auto' turns them on when binding beyond loopback.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
