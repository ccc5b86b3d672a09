"""The quarterly audit report's content: every section as a DataFrame, read from the store
with set-based queries (no per-row round trips), as it stood at the end of the period.

The period: a calendar quarter ("2026Q3" = 2026-07-01 .. 2026-09-30), by default the quarter
that ended last. A quarter still running is reported "to date": up to today, or up to an
explicit as-of date inside the quarter. Everything "in the quarter" counts from the first
day of the quarter to the end of the as-of day (UTC); the license position and every "as of"
figure is the store's state at the end of the as-of day, rebuilt from history.

The rules (the README's analyst guide says the same for analysts):
- position: THE license position of the weekly reconciliation (tasks.reconciliation
  .position_as_of) on the as-of day; spend in force = the annual cost of the contracts in
  force; true-up exposure = shortfall x unit cost; reclaimable waste = reclaimable seats x
  unit cost. Amounts in different currencies are never added together.
- savings realised: seats of per_user and per_device products revoked in the quarter by
  offboarding (revoke reason "offboarding") or by reclamation (a reclaim candidate reclaimed,
  or a revoke reason starting "reclaim"), each worth the product's unit cost per seat and
  year (the position's price rule, tasks.reconciliation.entitlement).
- compliance risk by vendor: high when any of the vendor's products is under-licensed
  (shortfall) or installed without a contract in force or beyond its per-device seats
  (unlicensed installs); medium when denied software of the vendor is installed
  (unauthorised) or a contract of the vendor has an ownership gap; low otherwise.
- unlicensed and unauthorised installs: the discovery scan's rule
  (tasks.discovery.compliance_flags) over the installations present at the end of the day.
- renewals: undecided contracts whose deadline (the notice deadline of an auto-renewing
  contract) falls after the as-of day and by the end of the next quarter, with the
  renewals' right-size recommendation.
- reclamation: candidates detected by the end of the period and not closed before it began,
  with their state at the end of the period.
- a vendor's audit pack holds only rows of that vendor's products and contracts; the audit
  log verification and the data-quality check results (without their example values) are
  store-wide and shown as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.orm import Session

from licenseflow.errors import LicenseflowError
from schemas.store import (
    Assignment,
    AuditLog,
    BulkBatch,
    BulkBatchEvent,
    BulkBatchRow,
    Contract,
    Device,
    Installation,
    Person,
    Product,
    ReclaimCandidate,
    UsageDaily,
    Vendor,
)
from tasks import audit

SEAT_METRICS = ("per_user", "per_device")
OFFBOARDING_REASON = "offboarding"  # tasks.offboarding.REASON
RECLAIM_REASON_PREFIX = "reclaim"  # tasks.reclamation revokes with "reclaim <id>: ..."
TREND_DAYS = 364  # the usage trend: 52 weeks up to the as-of day
CHUNK = 2000
NO_VENDOR = "(no vendor)"


class ReportError(LicenseflowError):
    """The report cannot be made as asked (a bad quarter, date or vendor)."""


# --- the period ----------------------------------------------------------------------------

_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        found = _QUARTER.match(text or "")
        if not found:
            raise ReportError(f"a quarter is written like 2026Q3 (year, Q, 1 to 4); got {text!r}")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def containing(cls, day: dt.date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @property
    def start(self) -> dt.date:
        return dt.date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> dt.date:
        return self.next().start - dt.timedelta(days=1)

    def next(self) -> Quarter:
        return (
            Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)
        )

    def previous(self) -> Quarter:
        return (
            Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)
        )

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"


@dataclass(frozen=True)
class ReportPeriod:
    quarter: Quarter
    as_of: dt.date  # the last day the report covers

    @property
    def start(self) -> dt.date:
        return self.quarter.start

    @property
    def to_date(self) -> bool:
        """The quarter had not ended on the as-of day: a quarter-to-date report."""
        return self.as_of < self.quarter.end

    @property
    def begins(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time.min, tzinfo=dt.UTC)

    @property
    def ends(self) -> dt.datetime:
        """The first moment after the period (UTC)."""
        return dt.datetime.combine(self.as_of + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)

    @property
    def title(self) -> str:
        if self.to_date:
            return f"{self.quarter} (quarter to date, {self.start} to {self.as_of})"
        return f"{self.quarter} ({self.start} to {self.as_of})"

    @property
    def renewals_until(self) -> dt.date:
        return self.quarter.next().end


def report_period(
    quarter: str | None = None, as_of: dt.date | str | None = None, today: dt.date | None = None
) -> ReportPeriod:
    """The period a report covers.

    - no quarter, no date: the quarter that ended last before `today`, whole;
    - a quarter that has ended: the whole quarter;
    - a quarter still running: up to `today` (quarter to date);
    - an as-of date: up to that day, which must fall inside the quarter (without a quarter:
      the quarter containing it).
    """
    today = today or dt.datetime.now(dt.UTC).date()
    if isinstance(as_of, str):
        try:
            as_of = dt.date.fromisoformat(as_of.strip())
        except ValueError:
            raise ReportError(f"--as-of is a date written YYYY-MM-DD; got {as_of!r}") from None
    if quarter is None or not str(quarter).strip():
        q = Quarter.containing(as_of) if as_of else Quarter.containing(today).previous()
    else:
        q = Quarter.parse(str(quarter))
    if as_of is None:
        if today < q.start:
            raise ReportError(
                f"quarter {q} has not started yet (today is {today}); pass an as-of date "
                f"inside it to report it as of that day"
            )
        as_of = min(q.end, today)
    elif not q.start <= as_of <= q.end:
        raise ReportError(f"the as-of date {as_of} is not in quarter {q} ({q.start} to {q.end})")
    return ReportPeriod(q, as_of)


# --- the sections -----------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    key: str  # sheet name, CSV file name, HTML anchor
    title: str
    description: str
    html_rows: int | None = 100  # rows shown in the HTML (None: all); exports hold all


SECTIONS = [
    Section(
        "summary",
        "Executive summary",
        "Spend in force, true-up exposure, reclaimable waste and the savings realised in the "
        "quarter, per currency; compliance findings; the audit log's state.",
        None,
    ),
    Section(
        "vendor_risk",
        "Compliance risk by vendor",
        "high: a product under-licensed or installed without licence; medium: denied "
        "software installed or a contract without a valid owner; low: neither.",
        None,
    ),
    Section(
        "position",
        "License position by vendor and product",
        "Entitled against consumed by metric at the end of the as-of day (the weekly "
        "reconciliation's position, rebuilt from history).",
        None,
    ),
    Section(
        "contract_changes",
        "Purchases and contract changes",
        "Contracts whose term started in the quarter, and every contract recorded or changed "
        "in the store during it (from the audit log).",
    ),
    Section(
        "seat_changes",
        "Assignments and revocations by product",
        "Seats assigned and revoked in the quarter, revocations by cause.",
    ),
    Section(
        "seat_change_log",
        "Every assignment and revocation in the quarter",
        "One row per seat assigned or revoked, with who did it and why.",
    ),
    Section(
        "bulk_batches",
        "Bulk batches",
        "Bulk license changes active in the quarter, with requester, approver and outcome "
        "(the batch's state at the end of the period).",
    ),
    Section(
        "installs_flagged",
        "Unlicensed and unauthorised installs",
        "Per product, installations present at the end of the as-of day without the right "
        "to be: denied software (unauthorised), commercial software with no contract in force "
        "or on more devices than its per-device seats (unlicensed).",
    ),
    Section(
        "unauthorised_devices",
        "Where denied software is installed",
        "Each device with denied software present at the end of the as-of day.",
    ),
    Section(
        "reclamation",
        "Reclamation candidates and their outcomes",
        "Unused seats found by usage metering: open at some point in the quarter, with their "
        "state at the end of it.",
    ),
    Section(
        "savings",
        "Savings realised in the quarter",
        "Seats revoked by reclamation and offboarding, valued at the unit cost per seat and year.",
        None,
    ),
    Section(
        "renewals",
        "Renewals due by the end of next quarter",
        "Undecided contracts whose deadline falls after the as-of day and by the end of the "
        "next quarter, with the right-size recommendation.",
        None,
    ),
    Section(
        "ownership_gaps",
        "Ownership gaps",
        "Contracts in force or to come whose owner is missing, unknown, gone or away.",
    ),
    Section(
        "data_quality",
        "Data quality",
        "The latest data-quality suite run on or before the as-of day (weekly reconciliation).",
        None,
    ),
    Section(
        "audit_verification",
        "Audit log verification",
        "The hash chain of the audit log recomputed when the report was made. Keep the last "
        "hash: `slm audit verify` run later against it proves no entry was altered, removed "
        "or inserted since.",
        None,
    ),
    Section(
        "usage_trend",
        "Usage trend",
        "Seats in use per day (a person or device using a metered product that day), "
        "averaged per week, over the 52 weeks to the as-of day.",
        None,
    ),
]
SECTION_KEYS = [s.key for s in SECTIONS]


@dataclass
class ReportData:
    period: ReportPeriod
    vendor: str | None
    generated_at: dt.datetime
    sections: dict[str, pd.DataFrame]
    verification: audit.Verification
    data_quality: dict | None = None  # the summary read, as written by tasks.data_quality
    charts: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return str(self.period.quarter)


# --- reading the store --------------------------------------------------------------------


def _frame(session: Session, statement, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(session.execute(statement).all(), columns=columns)


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def read_catalog(session: Session) -> pd.DataFrame:
    """Every product with its vendor: product_id, product_code, product_name, vendor, metric,
    classification."""
    frame = _frame(
        session,
        select(
            Product.id,
            Product.code,
            Product.name,
            Vendor.name,
            Product.metric,
            Product.classification,
        ).outerjoin(Vendor, Vendor.id == Product.vendor_id),
        ["product_id", "product_code", "product_name", "vendor", "metric", "classification"],
    )
    frame["product_id"] = frame["product_id"].astype("int64")
    return frame


def _with_product(frame: pd.DataFrame, catalog: pd.DataFrame, columns=None) -> pd.DataFrame:
    columns = columns or ["product_code", "product_name", "vendor"]
    return frame.merge(catalog[["product_id", *columns]], on="product_id", how="left")


def resolve_vendor(session: Session, vendor: str | None) -> str | None:
    """The vendor's name as the store spells it (matched case-insensitively)."""
    if vendor is None or not vendor.strip():
        return None
    names = list(session.execute(select(Vendor.name).order_by(Vendor.name)).scalars())
    wanted = vendor.strip().casefold()
    for name in names:
        if name.casefold() == wanted:
            return name
    near = [n for n in names if wanted in n.casefold() or n.casefold() in wanted]
    hint = f"; did you mean {', '.join(near[:5])}?" if near else ""
    raise ReportError(f"no vendor named {vendor!r} in the store{hint}")


def contract_changes(session: Session, period: ReportPeriod, catalog: pd.DataFrame) -> pd.DataFrame:
    """Contracts whose term started in the period ("term starts") and contracts recorded or
    changed in the store during it (audit log: "recorded", "changed")."""
    columns = [
        "date",
        "change",
        "contract_number",
        "product_code",
        "product_name",
        "vendor",
        "seats",
        "unit_cost",
        "currency",
        "start_date",
        "end_date",
        "auto_renew",
        "owner_email",
        "detail",
        "actor",
    ]
    contracts = _frame(
        session,
        select(
            Contract.contract_number,
            Contract.product_id,
            Contract.seats,
            Contract.unit_cost,
            Contract.currency,
            Contract.start_date,
            Contract.end_date,
            Contract.auto_renew,
            Contract.owner_email,
        ),
        [
            "contract_number",
            "product_id",
            "seats",
            "unit_cost",
            "currency",
            "start_date",
            "end_date",
            "auto_renew",
            "owner_email",
        ],
    )
    if contracts.empty:
        return pd.DataFrame(columns=columns)
    contracts = _with_product(contracts, catalog)
    starts = pd.to_datetime(contracts["start_date"]).dt.date
    started = contracts[(starts >= period.start) & (starts <= period.as_of)].assign(
        date=lambda f: f["start_date"], change="term starts", detail="", actor=""
    )
    logged = _frame(
        session,
        select(
            AuditLog.at,
            AuditLog.action,
            AuditLog.entity_id,
            AuditLog.before,
            AuditLog.after,
            AuditLog.actor,
        )
        .where(
            AuditLog.entity == "contract",
            AuditLog.at >= period.begins,
            AuditLog.at < period.ends,
        )
        .order_by(AuditLog.id),
        ["at", "action", "contract_number", "before", "after", "actor"],
    )
    if not logged.empty:
        logged["date"] = _utc(logged["at"]).dt.date
        logged["change"] = np.where(logged["action"] == "create", "recorded", "changed")
        logged["detail"] = [
            _changed_fields(before, after)
            for before, after in zip(logged["before"], logged["after"], strict=True)
        ]
        logged = logged.drop(columns=["at", "action", "before", "after"]).merge(
            contracts, on="contract_number", how="inner"
        )
    parts = [f for f in (started, logged) if not f.empty]
    if not parts:  # no contract started or changed in the period
        return pd.DataFrame(columns=columns)
    frame = pd.concat(parts, ignore_index=True)
    frame["unit_cost"] = frame["unit_cost"].astype("float64")
    frame["seats"] = frame["seats"].astype("Int64")
    return frame.sort_values(["date", "contract_number", "change"], ignore_index=True)[columns]


def _changed_fields(before, after) -> str:
    if isinstance(before, str):
        before = json.loads(before)
    if isinstance(after, str):
        after = json.loads(after)
    if not before:
        return ""
    after = after or {}
    changed = [
        f"{name}: {before.get(name)} -> {after.get(name)}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
    return "; ".join(changed)


def seat_change_log(session: Session, period: ReportPeriod, catalog: pd.DataFrame) -> pd.DataFrame:
    """One row per seat assigned or revoked in the period: at, action, product, holder
    (email or hostname), by, reason, cause (revocations: offboarding, reclaimed, bulk,
    other), batch."""
    columns = [
        "at",
        "action",
        "cause",
        "product_code",
        "product_name",
        "vendor",
        "metric",
        "holder",
        "department",
        "by",
        "reason",
        "batch_id",
        "assignment_id",
        "product_id",
    ]
    in_period = or_(
        and_(Assignment.assigned_at >= period.begins, Assignment.assigned_at < period.ends),
        and_(Assignment.revoked_at >= period.begins, Assignment.revoked_at < period.ends),
    )
    seats = _frame(
        session,
        select(
            Assignment.id,
            Assignment.product_id,
            Person.email,
            Device.hostname,
            Person.department,
            Assignment.assigned_at,
            Assignment.assigned_by,
            Assignment.assign_reason,
            Assignment.revoked_at,
            Assignment.revoked_by,
            Assignment.revoke_reason,
            Assignment.batch_id,
        )
        .outerjoin(Person, Person.id == Assignment.person_id)
        .outerjoin(Device, Device.id == Assignment.device_id)
        .where(in_period),
        [
            "assignment_id",
            "product_id",
            "email",
            "hostname",
            "department",
            "assigned_at",
            "assigned_by",
            "assign_reason",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
            "batch_id",
        ],
    )
    if seats.empty:
        return pd.DataFrame(columns=columns)
    seats["holder"] = seats["email"].where(seats["email"].notna(), seats["hostname"])
    assigned_at, revoked_at = _utc(seats["assigned_at"]), _utc(seats["revoked_at"])
    begins, ends = pd.Timestamp(period.begins), pd.Timestamp(period.ends)
    assigned = seats[(assigned_at >= begins) & (assigned_at < ends)].assign(
        at=assigned_at,
        action="assign",
        cause="",
        by=seats["assigned_by"],
        reason=seats["assign_reason"],
    )
    revoked = seats[(revoked_at >= begins) & (revoked_at < ends)].assign(
        at=revoked_at,
        action="revoke",
        by=seats["revoked_by"],
        reason=seats["revoke_reason"],
    )
    revoked["batch_id"] = revoked["assignment_id"].map(_revoking_batches(session, period))
    reclaimed = _reclaimed_assignments(session, period)
    reason = revoked["reason"].fillna("").astype(str)
    revoked["cause"] = np.select(
        [
            reason == OFFBOARDING_REASON,
            revoked["assignment_id"].isin(reclaimed) | reason.str.startswith(RECLAIM_REASON_PREFIX),
            revoked["batch_id"].notna(),
        ],
        ["offboarding", "reclaimed", "bulk"],
        default="other",
    )
    log = pd.concat([assigned, revoked], ignore_index=True)
    log = _with_product(log, catalog, ["product_code", "product_name", "vendor", "metric"])
    log = log.sort_values(["at", "assignment_id", "action"], ignore_index=True)
    return log[columns]


def _revoking_batches(session: Session, period: ReportPeriod) -> pd.Series:
    """assignment id -> bulk batch of the revocations logged with a batch in the period."""
    rows = _frame(
        session,
        select(AuditLog.entity_id, AuditLog.batch_id).where(
            AuditLog.entity == "assignment",
            AuditLog.action == "revoke",
            AuditLog.batch_id.is_not(None),
            AuditLog.at >= period.begins,
            AuditLog.at < period.ends,
        ),
        ["assignment_id", "batch_id"],
    )
    rows = rows[rows["assignment_id"].astype(str).str.isdigit()]
    return (
        pd.Series(
            rows["batch_id"].to_numpy(), index=rows["assignment_id"].astype("int64").to_numpy()
        )
        .groupby(level=0)
        .last()
    )


def _reclaimed_assignments(session: Session, period: ReportPeriod) -> set[int]:
    return set(
        session.execute(
            select(ReclaimCandidate.assignment_id).where(
                ReclaimCandidate.state == "reclaimed",
                ReclaimCandidate.resolved_at >= period.begins,
                ReclaimCandidate.resolved_at < period.ends,
            )
        ).scalars()
    )


def seat_changes(log: pd.DataFrame) -> pd.DataFrame:
    """Per product: seats assigned and revoked in the period, revocations by cause, net."""
    columns = [
        "product_code",
        "product_name",
        "vendor",
        "metric",
        "assigned",
        "revoked",
        "offboarding",
        "reclaimed",
        "bulk",
        "other",
        "net",
    ]
    if log.empty:
        return pd.DataFrame(columns=columns)
    keys = ["product_code", "product_name", "vendor", "metric"]
    kind = log["action"].where(log["action"] == "assign", log["cause"])
    counts = pd.crosstab(
        [log[k].fillna(NO_VENDOR if k == "vendor" else "") for k in keys], kind
    ).reset_index()
    for name in ("assign", "offboarding", "reclaimed", "bulk", "other"):
        if name not in counts:
            counts[name] = 0
    counts = counts.rename(columns={"assign": "assigned"})
    counts["revoked"] = counts[["offboarding", "reclaimed", "bulk", "other"]].sum(axis=1)
    counts["net"] = counts["assigned"] - counts["revoked"]
    counts.columns.name = None
    counts = counts.sort_values(["vendor", "product_name"], ignore_index=True)
    return counts[columns]


def bulk_batches(session: Session, period: ReportPeriod, catalog: pd.DataFrame) -> pd.DataFrame:
    """Bulk batches with an event in the period: requester, approver, outcome (the state at
    the end of the period), the products they touch."""
    columns = [
        "batch_id",
        "file_name",
        "rows",
        "products",
        "vendors",
        "requester",
        "requested_at",
        "approver",
        "approved_at",
        "approval_comment",
        "override_reason",
        "outcome",
        "outcome_at",
    ]
    events = _frame(
        session,
        select(BulkBatchEvent.batch_id, BulkBatchEvent.state, BulkBatchEvent.at, BulkBatchEvent.id)
        .where(BulkBatchEvent.at < period.ends)
        .order_by(BulkBatchEvent.batch_id, BulkBatchEvent.at, BulkBatchEvent.id),
        ["batch_id", "state", "at", "id"],
    )
    if events.empty:
        return pd.DataFrame(columns=columns)
    events["at"] = _utc(events["at"])
    active = set(events.loc[events["at"] >= pd.Timestamp(period.begins), "batch_id"])
    events = events[events["batch_id"].isin(active)]
    if events.empty:
        return pd.DataFrame(columns=columns)
    last = events.drop_duplicates("batch_id", keep="last").set_index("batch_id")
    approved = (
        events[events["state"] == "approved"].drop_duplicates("batch_id").set_index("batch_id")
    )
    ids = sorted(active)
    batches, touched = [], []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        batches.append(
            _frame(
                session,
                select(
                    BulkBatch.id,
                    BulkBatch.file_name,
                    BulkBatch.row_count,
                    BulkBatch.requester,
                    BulkBatch.created_at,
                    BulkBatch.approver,
                    BulkBatch.approval_comment,
                    BulkBatch.override_reason,
                ).where(BulkBatch.id.in_(chunk)),
                [
                    "batch_id",
                    "file_name",
                    "rows",
                    "requester",
                    "requested_at",
                    "approver",
                    "approval_comment",
                    "override_reason",
                ],
            )
        )
        touched.append(
            _frame(
                session,
                select(BulkBatchRow.batch_id, BulkBatchRow.product_id)
                .where(BulkBatchRow.batch_id.in_(chunk))
                .distinct(),
                ["batch_id", "product_id"],
            )
        )
    frame = pd.concat(batches, ignore_index=True)
    products = _with_product(pd.concat(touched, ignore_index=True), catalog)
    frame["products"] = frame["batch_id"].map(_joined(products, "product_code"))
    frame["vendors"] = frame["batch_id"].map(_joined(products, "vendor"))
    frame["requested_at"] = _utc(frame["requested_at"])
    frame["approved_at"] = frame["batch_id"].map(approved["at"])
    frame["outcome"] = frame["batch_id"].map(last["state"])
    frame["outcome_at"] = frame["batch_id"].map(last["at"])
    frame["rows"] = frame["rows"].astype("int64")
    return frame.sort_values(["requested_at", "batch_id"], ignore_index=True)[columns]


def _joined(frame: pd.DataFrame, column: str) -> pd.Series:
    if frame.empty:
        return pd.Series(dtype=object)
    values = frame.assign(**{column: frame[column].fillna(NO_VENDOR)})
    return values.groupby("batch_id")[column].agg(lambda v: ", ".join(sorted(set(v))))


def installed_flags(
    installed: pd.DataFrame,
    denied: pd.DataFrame,
    contracts: pd.DataFrame,
    catalog: pd.DataFrame,
    day: dt.date,
) -> pd.DataFrame:
    """Per product, the discovery scan's compliance flags (tasks.discovery.compliance_flags)
    over the installations present at the end of `day`.

    installed: product_id, device_id of the commercial products present (the position's
    facts); denied: the unauthorised_devices frame (denied software present, with
    product_id); contracts: product_id, seats, start_date, end_date (all contracts)."""
    from tasks.discovery import compliance_flags

    columns = [
        "kind",
        "product_code",
        "product_name",
        "vendor",
        "metric",
        "classification",
        "installed_devices",
        "contracts",
        "seats",
        "excess",
        "reason",
    ]
    devices = pd.concat(
        [
            installed[["product_id", "device_id"]],
            denied[["product_id", "hostname"]].rename(columns={"hostname": "device_id"}),
        ],
        ignore_index=True,
    )
    if devices.empty:
        return pd.DataFrame(columns=columns)
    counts = devices.groupby("product_id")["device_id"].nunique().rename("installed_devices")
    start = pd.to_datetime(contracts["start_date"]).dt.date
    end = pd.to_datetime(contracts["end_date"]).dt.date
    live = contracts[(start <= day) & (end >= day)]
    entitled = live.groupby("product_id").agg(
        contracts=("product_id", "size"),
        seats=("seats", "sum"),
        unlimited=("seats", lambda s: int(s.isna().sum())),
    )
    frame = (
        counts.reset_index()
        .merge(catalog[catalog["classification"].isin(["commercial", "denied"])], on="product_id")
        .merge(entitled.reset_index(), on="product_id", how="left")
    )
    frame["contracts"] = frame["contracts"].fillna(0).astype("int64")
    frame["unlimited"] = frame["unlimited"].fillna(0).astype("int64")
    frame["seats"] = frame["seats"].astype("Float64").where(frame["contracts"] > 0)
    frame["unit_cost"] = np.nan
    flags = compliance_flags(frame)
    if flags.empty:
        return pd.DataFrame(columns=columns)
    flags["seats"] = flags["seats"].astype("Int64")
    flags = flags.sort_values(["kind", "excess", "product_code"], ascending=[True, False, True])
    return flags.reset_index(drop=True)[columns]


def unauthorised_devices(session: Session, day: dt.date, catalog: pd.DataFrame) -> pd.DataFrame:
    """Each installation of denied software present at the end of `day`."""
    columns = [
        "hostname",
        "primary_user",
        "product_code",
        "product_name",
        "vendor",
        "raw_title",
        "version",
        "source",
        "first_seen",
        "device_last_seen",
    ]
    ends = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    frame = _frame(
        session,
        select(
            Device.hostname,
            Device.primary_user_email,
            Installation.product_id,
            Installation.raw_title,
            Installation.version,
            Installation.source,
            Installation.first_seen,
            Device.last_seen,
        )
        .join(Device, Device.id == Installation.device_id)
        .join(Product, Product.id == Installation.product_id)
        .where(
            Product.classification == "denied",
            Installation.first_seen < ends,
            or_(Installation.removed_at.is_(None), Installation.removed_at >= ends),
        ),
        [
            "hostname",
            "primary_user",
            "product_id",
            "raw_title",
            "version",
            "source",
            "first_seen",
            "device_last_seen",
        ],
    )
    if frame.empty:
        return pd.DataFrame(columns=[*columns, "product_id"])
    frame = _with_product(frame, catalog)
    frame["first_seen"] = _utc(frame["first_seen"])
    frame["device_last_seen"] = _utc(frame["device_last_seen"])
    frame = frame.sort_values(["product_code", "hostname"], ignore_index=True)
    return frame[[*columns, "product_id"]]


def reclamation(
    session: Session, period: ReportPeriod, catalog: pd.DataFrame, prices: pd.DataFrame
) -> pd.DataFrame:
    """Candidates detected by the end of the period and not closed before it began, with
    their state at the end of it (outcome) and what the seat is worth a year."""
    columns = [
        "candidate_id",
        "product_code",
        "product_name",
        "vendor",
        "holder",
        "detected_at",
        "last_activity",
        "notified_at",
        "resolved_at",
        "outcome",
        "reason",
        "monthly_cost",
        "annual_cost",
        "currency",
    ]
    frame = _frame(
        session,
        select(
            ReclaimCandidate.id,
            ReclaimCandidate.product_id,
            Person.email,
            Device.hostname,
            ReclaimCandidate.detected_at,
            ReclaimCandidate.last_activity,
            ReclaimCandidate.notified_at,
            ReclaimCandidate.resolved_at,
            ReclaimCandidate.state,
            ReclaimCandidate.reason,
            ReclaimCandidate.monthly_cost,
        )
        .join(Assignment, Assignment.id == ReclaimCandidate.assignment_id)
        .outerjoin(Person, Person.id == Assignment.person_id)
        .outerjoin(Device, Device.id == Assignment.device_id)
        .where(
            ReclaimCandidate.detected_at < period.ends,
            or_(
                ReclaimCandidate.resolved_at.is_(None),
                ReclaimCandidate.resolved_at >= period.begins,
            ),
        ),
        [
            "candidate_id",
            "product_id",
            "email",
            "hostname",
            "detected_at",
            "last_activity",
            "notified_at",
            "resolved_at",
            "state",
            "reason",
            "monthly_cost",
        ],
    )
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["holder"] = frame["email"].where(frame["email"].notna(), frame["hostname"])
    for name in ("detected_at", "last_activity", "notified_at", "resolved_at"):
        frame[name] = _utc(frame[name])
    ends = pd.Timestamp(period.ends)
    resolved = frame["resolved_at"].notna() & (frame["resolved_at"] < ends)
    notified = frame["notified_at"].notna() & (frame["notified_at"] < ends)
    frame["outcome"] = np.where(
        resolved, frame["state"], np.where(notified, "notified", "candidate")
    )
    frame.loc[~resolved, "resolved_at"] = pd.NaT
    frame.loc[~notified, "notified_at"] = pd.NaT
    frame["monthly_cost"] = frame["monthly_cost"].astype("float64")
    frame = _with_product(frame, catalog).merge(
        prices[["product_id", "unit_cost", "currency"]], on="product_id", how="left"
    )
    frame["annual_cost"] = frame["unit_cost"].astype("float64").round(2)
    return frame.sort_values(["detected_at", "candidate_id"], ignore_index=True)[columns]


def unit_prices(contracts: pd.DataFrame, catalog: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """product_id, unit_cost, currency per product by the position's price rule."""
    from tasks.reconciliation import entitlement

    metrics = catalog.set_index("product_id")["metric"]
    prices = entitlement(contracts, metrics, day)
    prices = prices.reset_index()[["product_id", "unit_cost", "currency"]]
    prices["product_id"] = prices["product_id"].astype("int64")
    return prices


def savings(log: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Per product and cause (reclaimed, offboarding): seats of per_user/per_device products
    revoked in the period and what they are worth a year."""
    columns = [
        "cause",
        "product_code",
        "product_name",
        "vendor",
        "metric",
        "seats",
        "unit_cost",
        "currency",
        "annual_saving",
    ]
    freed = log[
        (log["action"] == "revoke")
        & log["cause"].isin(["reclaimed", "offboarding"])
        & log["metric"].isin(SEAT_METRICS)
    ]
    if freed.empty:
        return pd.DataFrame(columns=columns)
    keys = ["cause", "product_id", "product_code", "product_name", "vendor", "metric"]
    grouped = (
        freed.assign(vendor=freed["vendor"].fillna(NO_VENDOR))
        .groupby(keys, as_index=False)
        .size()
        .rename(columns={"size": "seats"})
        .merge(prices, on="product_id", how="left")
    )
    grouped["unit_cost"] = grouped["unit_cost"].astype("float64")
    grouped["annual_saving"] = (grouped["seats"] * grouped["unit_cost"]).round(2)
    grouped = grouped.sort_values(
        ["cause", "annual_saving", "product_code"], ascending=[True, False, True]
    )
    return grouped.reset_index(drop=True)[columns]


def savings_by_month(log: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """month, cause, currency, annual_saving (for the chart)."""
    freed = log[
        (log["action"] == "revoke")
        & log["cause"].isin(["reclaimed", "offboarding"])
        & log["metric"].isin(SEAT_METRICS)
    ]
    columns = ["month", "cause", "currency", "annual_saving"]
    if freed.empty:
        return pd.DataFrame(columns=columns)
    freed = freed.merge(prices, on="product_id", how="left")
    freed = freed.assign(month=freed["at"].dt.strftime("%Y-%m"))
    out = freed.groupby(["month", "cause", "currency"], as_index=False)["unit_cost"].sum()
    return out.rename(columns={"unit_cost": "annual_saving"})[columns]


def renewals_due(session: Session, period: ReportPeriod, catalog: pd.DataFrame) -> pd.DataFrame:
    """Undecided contracts whose deadline falls after the as-of day and by the end of the
    next quarter, with the renewals' right-size recommendation (tasks.renewals.upcoming)."""
    from tasks.renewals import upcoming

    columns = [
        "deadline",
        "days_left",
        "contract_number",
        "product_code",
        "product_name",
        "vendor",
        "metric",
        "owner_email",
        "end_date",
        "auto_renew",
        "notice_days",
        "seats",
        "recommended",
        "seats_change",
        "unit_cost",
        "currency",
        "annual_value",
        "saving",
        "extra_cost",
        "trend",
        "recommendation",
    ]
    within = (period.renewals_until - period.as_of).days
    frame = upcoming(session, period.as_of, within)
    frame = frame[pd.to_datetime(frame["deadline"]).dt.date > period.as_of]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.merge(catalog[["product_id", "vendor"]], on="product_id", how="left")
    frame["recommendation"] = frame["recommendation"].map(str)
    for name in ("unit_cost", "annual_value", "saving", "extra_cost"):
        frame[name] = frame[name].astype("float64")
    for name in ("seats", "recommended", "seats_change"):
        frame[name] = frame[name].astype("Int64")
    return frame.reset_index(drop=True)[columns]


def ownership(session: Session, day: dt.date, catalog: pd.DataFrame) -> pd.DataFrame:
    from tasks.ownership import ownership_gaps

    columns = [
        "contract_number",
        "product_code",
        "product_name",
        "vendor",
        "end_date",
        "gap",
        "owner_email",
        "owner_name",
        "owner_status",
        "suggested_owner",
    ]
    gaps = ownership_gaps(session, day)
    if gaps.empty:
        return pd.DataFrame(columns=columns)
    gaps = gaps.drop(columns=["product_code"]).merge(catalog, on="product_id", how="left")
    return gaps.reset_index(drop=True)[columns]


def usage_trend(session: Session, day: dt.date, vendor: str | None = None) -> pd.DataFrame:
    """Seats in use per day of the 52 weeks to `day`: (person or device, product) pairs
    with activity that day, of every product or of one vendor's."""
    since = day - dt.timedelta(days=TREND_DAYS - 1)
    # a count per day only: SQLite answers it from the index on day alone
    query = select(UsageDaily.day, func.count()).where(
        UsageDaily.day >= since, UsageDaily.day <= day
    )
    if vendor is not None:
        query = (
            query.join(Product, Product.id == UsageDaily.product_id)
            .join(Vendor, Vendor.id == Product.vendor_id)
            .where(Vendor.name == vendor)
        )
    frame = _frame(session, query.group_by(UsageDaily.day), ["day", "seats"])
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def weekly_trend(daily: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """week_start, seats_in_use (average per day of the week): the 52 weeks to `day` (the
    last week ends on it)."""
    columns = ["week_start", "seats_in_use"]
    since = pd.Timestamp(day - dt.timedelta(days=TREND_DAYS - 1))
    weeks = pd.DataFrame({"week_start": pd.date_range(since, periods=TREND_DAYS // 7, freq="7D")})
    if daily.empty:
        out = weeks.assign(seats_in_use=0.0)
    else:
        index = ((pd.to_datetime(daily["day"]) - since).dt.days // 7).astype("int64")
        seats = daily.groupby(index)["seats"].sum().reindex(weeks.index).fillna(0)
        out = weeks.assign(seats_in_use=(seats / 7).round(1))
    out["week_start"] = out["week_start"].dt.date
    return out[columns]


def data_quality(reports_dir: Path, day: dt.date) -> dict | None:
    """The newest data-quality summary written for a day on or before `day` (the weekly
    reconciliation keeps one per day under <reports>/data_quality/)."""
    from tasks.data_quality import FOLDER, latest_data_quality

    folder = Path(reports_dir) / FOLDER
    best, best_day = None, None
    for path in folder.glob("summary_*.json"):
        try:
            found = dt.date.fromisoformat(path.stem.removeprefix("summary_"))
        except ValueError:
            continue
        if found <= day and (best_day is None or found > best_day):
            best, best_day = path, found
    if best is not None:
        return json.loads(best.read_text(encoding="utf-8"))
    latest = latest_data_quality(reports_dir)
    if latest and dt.date.fromisoformat(str(latest.get("day"))[:10]) <= day:
        return latest
    return None


def data_quality_frame(summary: dict | None, with_examples: bool = True) -> pd.DataFrame:
    """One row per expectation of the data-quality summary (examples: the first unexpected
    values, left out of a vendor's pack: they are store-wide)."""
    columns = ["run_day", "check", "expectation", "columns", "rows", "unexpected", "result"]
    columns += ["examples"] if with_examples else []
    if not summary:
        return pd.DataFrame(columns=columns)
    rows = []
    if summary.get("error"):
        rows.append({"check": "(the suite could not run)", "result": str(summary["error"])})
    for c in summary.get("checks", []):
        kwargs = c.get("kwargs", {})
        rows.append(
            {
                "check": c["check"],
                "expectation": c["expectation"],
                "columns": ", ".join(
                    str(kwargs[k]) for k in ("column", "column_A", "column_B") if k in kwargs
                ),
                "rows": int(c.get("rows") or 0),
                "unexpected": int(c.get("unexpected") or 0),
                "result": "ok" if c["success"] else "FAILED",
                "examples": ", ".join(str(e) for e in c.get("examples", [])),
            }
        )
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame["run_day"] = dt.date.fromisoformat(str(summary["day"])[:10])
    for name in ("rows", "unexpected"):
        frame[name] = frame[name].astype("Int64")
    return frame


def verification_frame(result: audit.Verification, checked_at: dt.datetime) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "checked_at": checked_at,
                "chain": "intact" if result.ok else "BROKEN",
                "entries": int(result.entries),
                "last_hash": result.last_hash or "",
                "first_bad_entry": result.first_bad_id,
                "problem": result.problem or "",
            }
        ]
    ).astype({"first_bad_entry": "Int64"})


# --- the pure summaries -------------------------------------------------------------------


def _by_currency(frame: pd.DataFrame, amount: str) -> dict[str, float]:
    if frame.empty:
        return {}
    priced = frame[frame[amount].notna() & frame["currency"].notna()]
    totals = priced.groupby("currency")[amount].sum().round(2)
    return {str(k): float(v) for k, v in totals.items()}


def vendor_risk(position: pd.DataFrame, flags: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """One row per vendor and currency (a vendor priced in two currencies has two rows; its
    counts that are not money are on the first): products, annual spend, shortfall,
    true-up cost, reclaimable seats and waste, unlicensed and unauthorised installs,
    ownership gaps, risk."""
    columns = [
        "vendor",
        "risk",
        "currency",
        "products",
        "annual_spend",
        "products_short",
        "shortfall_seats",
        "true_up_cost",
        "reclaimable_seats",
        "waste",
        "unlicensed_installs",
        "unauthorised_installs",
        "ownership_gaps",
    ]
    pos = position.assign(
        vendor=position["vendor"].fillna(NO_VENDOR), currency=position["currency"].fillna("")
    )
    money = pos.groupby(["vendor", "currency"], as_index=False).agg(
        products=("product_code", "size"),
        annual_spend=("annual_cost", "sum"),
        products_short=("shortfall", lambda s: int((s > 0).sum())),
        shortfall_seats=("shortfall", "sum"),
        true_up_cost=("true_up_cost", "sum"),
        reclaimable_seats=("reclaimable", "sum"),
        waste=("waste", "sum"),
    )
    counts = pd.DataFrame(index=pd.Index([], name="vendor"))
    if not flags.empty:
        f = flags.assign(vendor=flags["vendor"].fillna(NO_VENDOR))
        counts = f.pivot_table(
            index="vendor", columns="kind", values="excess", aggfunc="sum", fill_value=0
        )
    unlicensed = counts.get("unlicensed_install", pd.Series(dtype="int64"))
    unauthorised = counts.get("unauthorised_software", pd.Series(dtype="int64"))
    gap_counts = (
        gaps.assign(vendor=gaps["vendor"].fillna(NO_VENDOR)).groupby("vendor").size()
        if not gaps.empty
        else pd.Series(dtype="int64")
    )
    vendors = sorted(set(money["vendor"]) | set(counts.index) | set(gap_counts.index))
    missing = pd.DataFrame({"vendor": [v for v in vendors if v not in set(money["vendor"])]})
    frame = pd.concat([money, missing.assign(currency="")], ignore_index=True)
    frame = frame.sort_values(["vendor", "annual_spend"], ascending=[True, False])
    first = ~frame["vendor"].duplicated()
    for name, series in (
        ("unlicensed_installs", unlicensed),
        ("unauthorised_installs", unauthorised),
        ("ownership_gaps", gap_counts),
    ):
        frame[name] = frame["vendor"].map(series).fillna(0).where(first, 0).astype("int64")
    for name in ("products", "products_short", "shortfall_seats", "reclaimable_seats"):
        frame[name] = frame[name].fillna(0).astype("int64")
    for name in ("annual_spend", "true_up_cost", "waste"):
        frame[name] = frame[name].astype("float64").fillna(0.0).round(2)
    by_vendor = frame.groupby("vendor")
    high = (by_vendor["shortfall_seats"].transform("sum") > 0) | (
        by_vendor["unlicensed_installs"].transform("sum") > 0
    )
    medium = (by_vendor["unauthorised_installs"].transform("sum") > 0) | (
        by_vendor["ownership_gaps"].transform("sum") > 0
    )
    frame["risk"] = np.where(high, "high", np.where(medium, "medium", "low"))
    order = frame["risk"].map({"high": 0, "medium": 1, "low": 2})
    vendor_exposure = by_vendor["true_up_cost"].transform("sum")
    frame = frame.assign(_o=order, _e=vendor_exposure).sort_values(
        ["_o", "_e", "vendor", "annual_spend"], ascending=[True, False, True, False]
    )
    return frame.reset_index(drop=True)[columns]


def executive_summary(
    position: pd.DataFrame,
    savings_frame: pd.DataFrame,
    flags: pd.DataFrame,
    renewals: pd.DataFrame,
    gaps: pd.DataFrame,
    candidates: pd.DataFrame,
    verification: audit.Verification,
) -> pd.DataFrame:
    """measure, currency, value, detail: one row per measure and currency."""
    rows = []

    def money(measure: str, frame: pd.DataFrame, amount: str, detail: str = "") -> None:
        totals = _by_currency(frame, amount)
        if not totals:
            rows.append((measure, "", 0.0, detail))
        for currency, value in sorted(totals.items()):
            rows.append((measure, currency, value, detail))

    money("Spend in force (per year)", position, "annual_cost", "contracts in force, per year")
    money(
        "True-up exposure",
        position,
        "true_up_cost",
        f"{int(position['shortfall'].sum())} seats short on "
        f"{int((position['shortfall'] > 0).sum())} product(s)",
    )
    money(
        "Reclaimable waste (per year)",
        position,
        "waste",
        f"{int(position['reclaimable'].sum())} reclaimable seat(s)",
    )
    for cause, measure in (
        ("reclaimed", "Savings realised: reclaimed seats (per year)"),
        ("offboarding", "Savings realised: offboarded seats (per year)"),
    ):
        part = savings_frame[savings_frame["cause"] == cause]
        money(measure, part, "annual_saving", f"{int(part['seats'].sum())} seat(s) revoked")
    money(
        "Renewal savings recommended (per year)",
        renewals,
        "saving",
        f"{len(renewals)} renewal deadline(s) by the end of next quarter",
    )
    kinds = flags["kind"] if not flags.empty else pd.Series(dtype=str)
    excess = flags["excess"] if not flags.empty else pd.Series(dtype="int64")
    rows += [
        (
            "Unlicensed installs",
            "",
            float(excess[kinds == "unlicensed_install"].sum()),
            f"{int((kinds == 'unlicensed_install').sum())} product(s)",
        ),
        (
            "Unauthorised installs (denied software)",
            "",
            float(excess[kinds == "unauthorised_software"].sum()),
            f"{int((kinds == 'unauthorised_software').sum())} product(s)",
        ),
        ("Ownership gaps", "", float(len(gaps)), "contracts in force or to come"),
        (
            "Reclamation candidates open at the end of the period",
            "",
            float(candidates["outcome"].isin(["candidate", "notified"]).sum())
            if not candidates.empty
            else 0.0,
            "",
        ),
        (
            "Audit log entries",
            "",
            float(verification.entries),
            (
                f"chain intact; last hash {verification.last_hash}"
                if verification.ok
                else f"chain BROKEN at entry {verification.first_bad_id}: {verification.problem}"
            ),
        ),
    ]
    return pd.DataFrame(rows, columns=["measure", "currency", "value", "detail"])


# --- gathering ------------------------------------------------------------------------


def _only_vendor(frame: pd.DataFrame, vendor: str, codes: set[str]) -> pd.DataFrame:
    """The rows of `vendor` (codes: its product codes)."""
    if "vendor" in frame.columns:
        return frame[frame["vendor"] == vendor].reset_index(drop=True)
    if "vendors" in frame.columns:  # bulk batches: those that touched the vendor's products
        mine = frame[frame["vendors"].fillna("").str.split(", ").map(lambda v: vendor in v)]
        return mine.assign(
            products=mine["products"].map(
                lambda text: ", ".join(c for c in text.split(", ") if c in codes)
            ),
            vendors=vendor,
        ).reset_index(drop=True)
    return frame


@contextmanager
def timed(timings: dict[str, tuple[float, float]] | None, step: str):
    """Record how long `step` took in `timings` (when given): (wall, CPU of this process)
    seconds, added up when a step runs more than once."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    if timings is not None:
        before = timings.get(step, (0.0, 0.0))
        timings[step] = (
            before[0] + time.perf_counter() - wall,
            before[1] + time.process_time() - cpu,
        )


def gather(
    engine: Engine,
    period: ReportPeriod,
    vendor: str | None = None,
    *,
    reports_dir: Path | None = None,
    now: dt.datetime | None = None,
    timings: dict[str, tuple[float, float]] | None = None,
) -> ReportData:
    """Every section of the report (of one vendor's products when `vendor` is given).

    Every section is read in one read-only transaction, so the report is one consistent
    snapshot of the store, and the daily flows writing meanwhile are not kept waiting."""
    from licenseflow.db import read_only
    from licenseflow.settings import get_settings
    from tasks.reconciliation import license_position, rules_from_settings
    from tasks.reconciliation_store import read_facts

    now = now or dt.datetime.now(dt.UTC)
    reports_dir = reports_dir or get_settings().path("reports_dir")
    day = period.as_of

    def step(name: str, read, *args):
        with timed(timings, name):
            return read(session, *args)

    with read_only(engine) as session:  # one snapshot, no write lock held
        vendor = step("catalog", resolve_vendor, vendor)
        catalog = step("catalog", read_catalog)
        rules = rules_from_settings()
        # THE license position: what tasks.reconciliation.position_as_of computes, from facts
        # read once so the installs flagged below come from the same read
        facts = step("position (reconciliation facts)", read_facts, day, rules)
        with timed(timings, "position (reconciliation rules)"):
            position = license_position(facts, rules)
            prices = unit_prices(facts.contracts, catalog, day)
        log = step("seat change log", seat_change_log, period, catalog)
        denied = step("unauthorised devices", unauthorised_devices, day, catalog)
        flags = installed_flags(facts.installed, denied, facts.contracts, catalog, day)
        gaps = step("ownership gaps", ownership, day, catalog)
        candidates = step("reclamation", reclamation, period, catalog, prices)
        renewals = step("renewals", renewals_due, period, catalog)
        changes = step("contract changes", contract_changes, period, catalog)
        batches = step("bulk batches", bulk_batches, period, catalog)
        daily_use = step("usage trend", usage_trend, day, vendor)
        verification = step("audit log verification", audit.verify)
    quality = data_quality(reports_dir, day)

    with timed(timings, "summaries"):
        sections = {
            "position": position.drop(columns=["product_id"]),
            "contract_changes": changes,
            "seat_change_log": log,
            "bulk_batches": batches,
            "installs_flagged": flags,
            "unauthorised_devices": denied,
            "reclamation": candidates,
            "savings": savings(log, prices),
            "renewals": renewals,
            "ownership_gaps": gaps,
        }
        if vendor is not None:
            codes = set(catalog.loc[catalog["vendor"] == vendor, "product_code"])
            sections = {k: _only_vendor(f, vendor, codes) for k, f in sections.items()}
        months = savings_by_month(sections["seat_change_log"], prices)
        pos = sections["position"]
        sections["seat_changes"] = seat_changes(sections["seat_change_log"])
        sections["seat_change_log"] = sections["seat_change_log"].drop(
            columns=["assignment_id", "product_id"]
        )
        sections["unauthorised_devices"] = sections["unauthorised_devices"].drop(
            columns=["product_id"]
        )
        sections["vendor_risk"] = vendor_risk(
            pos, sections["installs_flagged"], sections["ownership_gaps"]
        )
        sections["summary"] = executive_summary(
            pos,
            sections["savings"],
            sections["installs_flagged"],
            sections["renewals"],
            sections["ownership_gaps"],
            sections["reclamation"],
            verification,
        )
        sections["data_quality"] = data_quality_frame(quality, with_examples=vendor is None)
        sections["audit_verification"] = verification_frame(verification, now)
        sections["usage_trend"] = weekly_trend(daily_use, day)
    ordered = {key: sections[key].reset_index(drop=True) for key in SECTION_KEYS}
    return ReportData(
        period=period,
        vendor=vendor,
        generated_at=now,
        sections=ordered,
        verification=verification,
        data_quality=quality,
        charts={"savings_by_month": months},
    )


@task(cache_policy=NO_CACHE)
def gather_task(period: ReportPeriod, vendor: str | None = None) -> ReportData:
    from licenseflow.db import get_engine

    return gather(get_engine(), period, vendor)
