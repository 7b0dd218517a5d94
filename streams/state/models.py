"""The platform state as SQLAlchemy 2.0 models: registered apps, stream definitions and their releases."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, ForeignKey, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class StreamStatus(StrEnum):
    UNDEPLOYED = "undeployed"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    FAILED = "failed"


class ReleaseStatus(StrEnum):
    DEPLOYED = "deployed"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    UNDEPLOYED = "undeployed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect; SQLite, which keeps no offset, stores it as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: state timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON(none_as_null=True)}


class AppRegistration(Base):
    """One version of a registered app; exactly one version per (kind, name) is normally the default."""

    __tablename__ = "app_registrations"
    __table_args__ = (UniqueConstraint("kind", "name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    uri: Mapped[str] = mapped_column(String(1024))
    version: Mapped[str] = mapped_column(String(64))
    is_default: Mapped[bool] = mapped_column(default=False)
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)


class Stream(Base):
    """A stream definition, as given and canonical, with the deployment properties last given for it."""

    __tablename__ = "streams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    definition: Mapped[str] = mapped_column(Text)
    canonical: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=StreamStatus.UNDEPLOYED.value)
    deployment_properties_raw: Mapped[str | None] = mapped_column(Text)
    deployment_properties: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    releases: Mapped[list[Release]] = relationship(
        back_populates="stream", cascade="all, delete-orphan", passive_deletes=True, order_by="Release.number"
    )


class Release(Base):
    """Deployment number `number` of a stream: the manifest of fully resolved apps, properties and versions."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("stream_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"))
    number: Mapped[int]
    manifest: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    stream: Mapped[Stream] = relationship(back_populates="releases")


class MigrationStatus(StrEnum):
    PLANNING = "planning"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


class MigrationRun(Base):
    """One `tuneflow migrate` job: what it reads and writes, through which template, from which snapshot."""

    __tablename__ = "migration_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_path: Mapped[str] = mapped_column(String(1024))
    template_text: Mapped[str] = mapped_column(Text)
    source_url: Mapped[str] = mapped_column(Text)
    target_url: Mapped[str] = mapped_column(Text)
    database: Mapped[str] = mapped_column(String(64))
    collections: Mapped[list[str]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    snapshot: Mapped[dict[str, Any] | None]
    pid: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    chunks: Mapped[list[MigrationChunk]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(MigrationChunk.collection, MigrationChunk.number)",
    )


class MigrationChunk(Base):
    """A key range (after, upto] of one collection's root table; `done` once every document of it was written."""

    __tablename__ = "migration_chunks"

    run_id: Mapped[str] = mapped_column(ForeignKey("migration_runs.id", ondelete="CASCADE"), primary_key=True)
    collection: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    after: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    upto: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    planned_rows: Mapped[int]
    done: Mapped[bool] = mapped_column(default=False)
    reads: Mapped[int] = mapped_column(default=0)
    rows: Mapped[int] = mapped_column(default=0)
    written: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    version: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[datetime | None]

    run: Mapped[MigrationRun] = relationship(back_populates="chunks")


class VerifyRun(Base):
    """One `tuneflow verify` job: what it compares, through which template, and its verdict once finished.

    `position` is the oldest source change-log position any of its ranges was read at: a clean run says the target
    held the source's content as of at least that position.
    """

    __tablename__ = "verify_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_path: Mapped[str] = mapped_column(String(1024))
    template_text: Mapped[str] = mapped_column(Text)
    source_url: Mapped[str] = mapped_column(Text)
    target_url: Mapped[str] = mapped_column(Text)
    database: Mapped[str] = mapped_column(String(64))
    collections: Mapped[list[str]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    ok: Mapped[bool | None]
    position: Mapped[int | None] = mapped_column(BigInteger)
    snapshot: Mapped[dict[str, Any] | None]
    pid: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    ranges: Mapped[list[VerifyRange]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(VerifyRange.collection, VerifyRange.number)",
    )


class VerifyRange(Base):
    """A key range (after, upto] of one collection, compared once `done`; `findings` holds its keys and samples."""

    __tablename__ = "verify_ranges"

    run_id: Mapped[str] = mapped_column(ForeignKey("verify_runs.id", ondelete="CASCADE"), primary_key=True)
    collection: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    after: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    upto: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    planned_rows: Mapped[int]
    done: Mapped[bool] = mapped_column(default=False)
    reads: Mapped[int] = mapped_column(default=0)
    rows: Mapped[int] = mapped_column(default=0)
    source_documents: Mapped[int] = mapped_column(default=0)
    target_documents: Mapped[int] = mapped_column(default=0)
    missing: Mapped[int] = mapped_column(default=0)
    extra: Mapped[int] = mapped_column(default=0)
    different: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    mismatched: Mapped[int] = mapped_column(default=0)
    findings: Mapped[dict[str, Any] | None]
    position: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[datetime | None]

    run: Mapped[VerifyRun] = relationship(back_populates="ranges")
class MigrationSwitch(Base):
    """A migration's switch: the phase writers apply, the store readers read, the epoch of the last change, and the
    catch-up stream whose lag the go/no-go gate bounds."""

    __tablename__ = "migration_switches"

    migration: Mapped[str] = mapped_column(String(255), primary_key=True)
    phase: Mapped[str] = mapped_column(String(32))
    reads: Mapped[str] = mapped_column(String(16))
    epoch: Mapped[int]
    catch_up: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SwitchChange(Base):
    """One `tuneflow switch` change: from which phase to which, when, by whom, why, forced or not, what the gate
    found, and how it ended."""

    __tablename__ = "switch_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    migration: Mapped[str] = mapped_column(ForeignKey("migration_switches.migration", ondelete="CASCADE"))
    epoch: Mapped[int]
    from_phase: Mapped[str] = mapped_column(String(32))
    to_phase: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    who: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(default=False)
    gate: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    outcome: Mapped[str] = mapped_column(Text)


class SwitchAck(Base):
    """The switch state an app instance applies, as the state-polling view reports it (runs without Kafka)."""

    __tablename__ = "switch_acks"

    migration: Mapped[str] = mapped_column(String(255), primary_key=True)
    stream: Mapped[str] = mapped_column(String(255), primary_key=True)
    app: Mapped[str] = mapped_column(String(255), primary_key=True)
    instance: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[int]
    phase: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
