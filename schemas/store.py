"""The store schema: every table licenseflow keeps, as SQLAlchemy 2 models.

Changes go through Alembic (migrations/). Names follow the field: an entitlement is a
contract's seats; a seat in use is an assignment; an installation is what discovery saw.
History is never deleted: assignments are closed (revoked_at), installs are marked removed,
person status changes are appended, the audit log is append-only and hash-chained.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

METRICS = ("per_user", "per_device", "concurrent", "per_core", "site")
CLASSIFICATIONS = ("commercial", "freeware", "denied")
PERSON_STATUSES = ("active", "leave", "terminated")
BATCH_STATES = (
    "invalid",
    "validated",
    "backed_up",
    "awaiting_approval",
    "approved",
    "rejected",
    "expired",
    "pilot",
    "pilot_ok",
    "rolling_out",
    "rolled_out",
    "failed",
    "rolled_back",
)
RECLAIM_STATES = ("candidate", "notified", "reclaimed", "kept", "cancelled")

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 2)
# BigInteger ids autoincrement on SQLite only as INTEGER; this variant keeps both happy.
Id = BigInteger().with_variant(Integer(), "sqlite")
UtcDateTime = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# --- stage 1-2: inventory -------------------------------------------------------------


class Vendor(Base):
    __tablename__ = "vendor"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Product(Base):
    """A licensable or recognisable product. Codes come from the catalog or from contracts."""

    __tablename__ = "product"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    code: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    vendor_id: Mapped[int | None] = mapped_column(ForeignKey("vendor.id"))
    metric: Mapped[str] = mapped_column(String(20), default="per_device")
    classification: Mapped[str] = mapped_column(String(20), default="commercial")
    usage_threshold: Mapped[float | None] = mapped_column(
        doc="alert when active users fall below this share of assigned seats"
    )
    inactivity_days: Mapped[int | None] = mapped_column(doc="reclaim rule override per product")


class Contract(Base):
    """A purchase: the entitlement to `seats` of a product for a term."""

    __tablename__ = "contract"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contract_number: Mapped[str] = mapped_column(String(100), unique=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), index=True)
    seats: Mapped[int | None] = mapped_column(doc="NULL for site licenses (unlimited)")
    unit_cost: Mapped[Decimal] = mapped_column(Money, doc="per seat per year")
    currency: Mapped[str] = mapped_column(String(3))
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    notice_days: Mapped[int] = mapped_column(default=0)
    cost_center: Mapped[str | None] = mapped_column(String(50))
    owner_email: Mapped[str | None] = mapped_column(String(320))
    source_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_run.id"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


# --- stage 4: people and devices ------------------------------------------------------


class Person(Base):
    __tablename__ = "person"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(String(100))
    cost_center: Mapped[str | None] = mapped_column(String(50))
    manager_email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default="active")
    hire_date: Mapped[dt.date | None] = mapped_column(Date)
    termination_date: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class PersonStatusHistory(Base):
    """Who was active when: one row each time a person's status changes."""

    __tablename__ = "person_status_history"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    effective_date: Mapped[dt.date] = mapped_column(Date)
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    source_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_run.id"))


class Device(Base):
    __tablename__ = "device"
    __table_args__ = {"postgresql_with": {"fillfactor": 50}}  # migration 0005: HOT updates
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), unique=True, doc="lower-cased")
    serial: Mapped[str | None] = mapped_column(String(100))
    os: Mapped[str | None] = mapped_column(String(200))
    primary_user_email: Mapped[str | None] = mapped_column(String(320))
    cores: Mapped[int | None] = mapped_column()
    source: Mapped[str | None] = mapped_column(String(50))
    first_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


# --- stage 3: installations -----------------------------------------------------------


class Installation(Base):
    """One title seen on one device. install_key = hash(hostname, raw title, publisher) is the
    natural key the daily diff joins on; row_hash covers the mutable fields (version...)."""

    __tablename__ = "installation"
    __table_args__ = {"postgresql_with": {"fillfactor": 85}}  # migration 0005: HOT updates
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    install_key: Mapped[str] = mapped_column(String(40), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id"), index=True)
    raw_title: Mapped[str] = mapped_column(String(500))
    publisher: Mapped[str | None] = mapped_column(String(300))
    version: Mapped[str | None] = mapped_column(String(100))
    normalized_title: Mapped[str | None] = mapped_column(String(500), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"), index=True)
    source: Mapped[str] = mapped_column(String(50))
    install_date: Mapped[dt.date | None] = mapped_column(Date)
    row_hash: Mapped[str] = mapped_column(String(40))
    first_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


# --- assignments: the seats in use ------------------------------------------------------


class Assignment(Base):
    """A seat of a product given to a person or a device. Closed, never deleted."""

    __tablename__ = "assignment"
    __table_args__ = (
        Index("ix_assignment_open_person", "product_id", "person_id", "revoked_at"),
        Index("ix_assignment_open_device", "product_id", "device_id", "revoked_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id"), index=True)
    assigned_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    assigned_by: Mapped[str] = mapped_column(String(200))
    assign_reason: Mapped[str | None] = mapped_column(String(500))
    override_reason: Mapped[str | None] = mapped_column(String(500))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoke_reason: Mapped[str | None] = mapped_column(String(500))
    batch_id: Mapped[str | None] = mapped_column(String(40), index=True)


# --- stage 5: usage -------------------------------------------------------------------


class UsageDaily(Base):
    """Daily aggregate of activity per person (or device) and product.

    A row is a person's (device_id NULL) or a device's (person_id NULL). NULLs never conflict
    in a unique key, so each kind has its own partial unique index; the usage upsert's
    ON CONFLICT names the one it targets. Product first: "last use per seat" scans them.
    """

    __tablename__ = "usage_daily"
    __table_args__ = (
        Index(
            "uq_usage_daily_person",
            "product_id",
            "person_id",
            "day",
            unique=True,
            sqlite_where=text("device_id IS NULL"),
            postgresql_where=text("device_id IS NULL"),
        ),
        Index(
            "uq_usage_daily_device",
            "product_id",
            "device_id",
            "day",
            unique=True,
            sqlite_where=text("person_id IS NULL"),
            postgresql_where=text("person_id IS NULL"),
        ),
        CheckConstraint("(person_id IS NULL) <> (device_id IS NULL)", name="person_or_device"),
        Index("ix_usage_daily_product_day", "product_id", "day"),  # right-sizing counts
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id"))
    sessions: Mapped[int] = mapped_column(default=0)
    minutes: Mapped[float] = mapped_column(default=0.0)
    last_activity: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ConcurrentPeak(Base):
    """Peak simultaneous use and denials of a concurrent (floating) license per day."""

    __tablename__ = "concurrent_peak"
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), primary_key=True)
    peak: Mapped[int] = mapped_column(default=0)
    denials: Mapped[int] = mapped_column(default=0)


class ReclaimCandidate(Base):
    __tablename__ = "reclaim_candidate"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    state: Mapped[str] = mapped_column(String(20), default="candidate")
    last_activity: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    detected_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    monthly_cost: Mapped[Decimal | None] = mapped_column(Money)


# --- audit, bulk changes, ingestion, alerts, snapshots ---------------------------------


class AuditLog(Base):
    """Append-only; hash = sha256(prev_hash + canonical JSON of the entry)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50), index=True)
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str | None] = mapped_column(String(100))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    batch_id: Mapped[str | None] = mapped_column(String(40), index=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(40))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class BulkBatch(Base):
    __tablename__ = "bulk_batch"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    requester: Mapped[str] = mapped_column(String(200))
    approver: Mapped[str | None] = mapped_column(String(200))
    approval_comment: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(String(500))
    file_checksum: Mapped[str] = mapped_column(String(64), index=True)
    row_count: Mapped[int] = mapped_column(default=0)
    pilot_size: Mapped[int] = mapped_column(default=10)
    override_reason: Mapped[str | None] = mapped_column(String(500))
    backup_path: Mapped[str | None] = mapped_column(String(500))
    backup_checksum: Mapped[str | None] = mapped_column(String(64))
    impact: Mapped[dict | None] = mapped_column(JSON)
    not_before: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    flow_run_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class BulkBatchEvent(Base):
    """The batch's state history."""

    __tablename__ = "bulk_batch_event"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("bulk_batch.id"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)


class BulkBatchRow(Base):
    """A validated row of a batch, resolved to ids; applied_at marks progress for resume."""

    __tablename__ = "bulk_batch_row"
    batch_id: Mapped[str] = mapped_column(ForeignKey("bulk_batch.id"), primary_key=True)
    row_number: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(10))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("device.id"))
    pilot: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(String(500))
    applied_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class AssignmentBackup(Base):
    """Snapshot of the open assignments of the products a batch touches, taken before it."""

    __tablename__ = "assignment_backup"
    __table_args__ = (Index("ix_assignment_backup_batch_seat", "batch_id", "assignment_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("bulk_batch.id"))
    assignment_id: Mapped[int] = mapped_column()
    product_id: Mapped[int] = mapped_column()
    person_id: Mapped[int | None] = mapped_column()
    device_id: Mapped[int | None] = mapped_column()
    assigned_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    assigned_by: Mapped[str] = mapped_column(String(200))


class IngestionRun(Base):
    """What a feed delivered and when: one row per file read (sync history)."""

    __tablename__ = "ingestion_run"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    feed: Mapped[str] = mapped_column(String(50), doc="installs, usage, hr, contracts, ...")
    source_format: Mapped[str | None] = mapped_column(String(50))
    file_name: Mapped[str] = mapped_column(String(500))
    file_checksum: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), doc="applied | rejected | failed")
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    rows_read: Mapped[int] = mapped_column(default=0)
    rows_accepted: Mapped[int] = mapped_column(default=0)
    rows_rejected: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(40))


class RejectedRow(Base):
    __tablename__ = "rejected_row"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ingestion_run_id: Mapped[int] = mapped_column(ForeignKey("ingestion_run.id"), index=True)
    row_number: Mapped[int | None] = mapped_column()
    column_name: Mapped[str | None] = mapped_column(String(100))
    value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


class Alert(Base):
    """Anything a person should act on. dedupe_key makes each alert exist once."""

    __tablename__ = "alert"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    subject: Mapped[str] = mapped_column(String(500))
    owner_email: Mapped[str | None] = mapped_column(String(320))
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contract.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    deadline: Mapped[dt.date | None] = mapped_column(Date)
    payload: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    send_attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class ReconciliationSnapshot(Base):
    """The license position of one product in one reconciliation run, for drift and trends."""

    __tablename__ = "reconciliation_snapshot"
    __table_args__ = (UniqueConstraint("run_key", "product_id", name="uq_recon_snapshot_key"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_key: Mapped[str] = mapped_column(String(60), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    taken_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    entitled: Mapped[int | None] = mapped_column()
    consumed: Mapped[int] = mapped_column(default=0)
    assigned: Mapped[int] = mapped_column(default=0)
    installed: Mapped[int] = mapped_column(default=0)
    active: Mapped[int] = mapped_column(default=0)
    shortfall: Mapped[int] = mapped_column(default=0)
    surplus: Mapped[int] = mapped_column(default=0)
    reclaimable: Mapped[int] = mapped_column(default=0)
    true_up_cost: Mapped[Decimal] = mapped_column(Money, default=0)
    waste: Mapped[Decimal] = mapped_column(Money, default=0)
