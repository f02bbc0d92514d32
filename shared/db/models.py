"""SQLAlchemy 2.0 models: sweeps, runs, long-form metrics, per-run latest values, API tokens."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """tz-aware timestamps on every backend (SQLite drops the zone; we put UTC back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored; use utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


JSONType = JSON().with_variant(JSONB(), "postgresql")
# Postgres BIGSERIAL for metrics; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REUSED = "reused"
    PRUNED = "pruned"  # stopped early: its rung's metric was outside the sweep's top fraction
    HELD = "held"  # waits for a person: its sweep's first runs all failed alike (holds.py)

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.REUSED,
        RunStatus.PRUNED,
    }
)
# A run in one of these is not over: its sweep stays active.
LIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
# Those `retry` queues again (a pruned run retried resumes and trains to its full budget).
RETRYABLE_STATUSES = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PRUNED)
SWEEP_NAME_MAX = 200  # sweeps.name's length


class SweepStatus(enum.StrEnum):
    ACTIVE = "active"  # some run queued or running
    FINISHED = "finished"  # every run ended
    HELD = "held"  # none queued or running, some held (shared/domain/holds.py)


class TokenRole(enum.StrEnum):
    """What an API token may do (shared/domain/access.py holds the rules)."""

    READ = "read"  # GET routes only
    WRITE = "write"  # also submit; cancel and retry its own sweeps
    ADMIN = "admin"  # also cancel and retry anyone's sweeps


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(SWEEP_NAME_MAX))
    yaml_text: Mapped[str] = mapped_column(Text)
    matrix_keys: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[SweepStatus] = mapped_column(
        _enum(SweepStatus, "sweep_status"), default=SweepStatus.ACTIVE
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The token that submitted it; None for sweeps from before roles (admins may change them).
    owner_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL")
    )
    # The file's `search` (shared/sweepfile/search.py, as Search.to_json), or None for a
    # sweep that enumerates its whole matrix up front.
    search: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Set while its queued runs are held (shared/domain/holds.py); released_at once a person
    # released them, after which the sweep is not held again.
    hold_reason: Mapped[str | None] = mapped_column(Text)
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    runs: Mapped[list[Run]] = relationship(
        back_populates="sweep", order_by="Run.id", foreign_keys="Run.sweep_id"
    )


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("sweep_id", "matrix_id"),
        Index("ix_runs_status_lease", "status", "lease_expires_at"),
        # Per-sweep status counts and "is any run live/held" stay index-only on 10,000 runs.
        Index("ix_runs_sweep_id_status", "sweep_id", "status"),
        # Runs linked to / reusing a run are found by it whenever a run ends (links.py).
        Index("ix_runs_reused_from_id", "reused_from_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    matrix_id: Mapped[str] = mapped_column(String(16))
    slug: Mapped[str] = mapped_column(Text)
    experiment_name: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    max_inputs: Mapped[int | None] = mapped_column(BigInteger)

    status: Mapped[RunStatus] = mapped_column(
        _enum(RunStatus, "run_status"), default=RunStatus.QUEUED
    )
    # A succeeded run with the same config_hash whose results this run shows (status reused).
    reused_from_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(default=0)

    # Lease: a worker owns a running run until lease_expires_at; heartbeats extend it.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker_host: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(200))
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    inputs_seen: Mapped[int] = mapped_column(BigInteger, default=0)

    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    # Where the run's wall time went: {phase: seconds}, written by the worker.
    phases: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    sweep: Mapped[Sweep] = relationship(back_populates="runs", foreign_keys=[sweep_id])
    reused_from: Mapped[Run | None] = relationship(remote_side=[id])


class Metric(Base):
    """One point of a learning curve: (run, key, step = inputs seen) -> value."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    # SQLite reads a NaN REAL back as NULL, so a NaN is stored as value 0 with this flag set.
    is_nan: Mapped[bool] = mapped_column(default=False, server_default=false())


class LatestMetric(Base):
    """The newest value of each key per run, kept beside `metrics` for fast tables."""

    __tablename__ = "latest_metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    # SQLite reads a NaN REAL back as NULL, so a NaN is stored as value 0 with this flag set.
    is_nan: Mapped[bool] = mapped_column(default=False, server_default=false())


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 hex of the secret; the secret itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    role: Mapped[TokenRole] = mapped_column(_enum(TokenRole, "token_role"), default=TokenRole.WRITE)
