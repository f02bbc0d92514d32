"""One typed Settings object, read from SWEEPS_* environment variables or a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR = Path(".sweeps")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWEEPS_", env_file=".env", extra="ignore")

    # Storage and queue. The defaults are the embedded stack `sweeps up` / `make run` starts.
    database_url: str = f"sqlite:///{STATE_DIR / 'sweeps.db'}"
    broker_url: str = f"redis+socket://{(STATE_DIR / 'redis.sock').absolute()}"
    # Bootstrap token: accepted by the API and stored (hashed) on start.
    api_token: str | None = None
    # Where client commands send requests.
    url: str = "http://127.0.0.1:8000"

    # Data and artifacts.
    data_dir: Path | None = None
    artifact_dir: Path = STATE_DIR / "artifacts"
    # Where checkpoints go, when set: s3://bucket/prefix (an S3-compatible store shared by
    # every worker host, so a run resumes anywhere; endpoint and keys from the standard AWS_*
    # variables) or a local path. Unset: artifact_dir.
    artifact_url: str | None = None

    # Limits.
    max_runs: int = Field(default=10_000, description="cap on runs one sweep may expand to")
    max_body_bytes: int = Field(default=2_000_000, description="largest accepted request body")

    # Worker behaviour.
    lease_seconds: int = Field(default=120, description="a running run is presumed dead after this")
    heartbeat_seconds: float = Field(
        default=10.0, description="how often a worker renews its lease"
    )
    reconcile_seconds: float = Field(
        default=30.0, description="how often lost runs are re-enqueued"
    )
    queued_grace_seconds: float = Field(
        default=60.0, description="a queued run older than this with no message is re-enqueued"
    )
    runs_per_gpu: int = 1
    max_attempts: int = Field(
        default=3, description="a run whose worker is lost this many times is failed, not re-queued"
    )
    metrics_flush_seconds: float = 2.0
    plugins: str = Field(
        default="",
        description="comma-separated modules whose names runs may use (docs/FORMAT.md, Plugins)",
    )
    # A checkout of the user's own project (e.g. nn-experiments): its trainers, schedulers and
    # helpers are what runs see (docs/FORMAT.md, "Your own project"); `${PATH}` in a file.
    project_root: Path | None = None

    # CORS is closed unless origins are listed.
    cors_origins: list[str] = []

    @property
    def artifact_location(self) -> str:
        return self.artifact_url or str(self.artifact_dir)


@lru_cache
def get_settings() -> Settings:
    return Settings()
