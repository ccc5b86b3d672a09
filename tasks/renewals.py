"""Stage 7, renewals: alerts before each renewal deadline, auto-renew traps, right-sizing.

The rules (plain functions, `today` an argument):
- deadline: the day by which the owner must act. A contract that renews itself
  (auto_renew) with a notice period must be cancelled `notice_days` before it ends, so its
  deadline is end_date - notice_days: that is the trap. Otherwise the deadline is end_date.
- windows: a reminder when 90, 60 and 30 days (settings.renewal_windows) remain to the
  deadline, each once per contract, deadline and window (dedupe key
  "renewal:<contract>:<deadline>:<window>"). A run after missed days sends each window that
  opened meanwhile once; those a later window has already overtaken are marked late. When
  the end date moves (a renewal was signed), the deadline moves and the windows start over;
  open alerts of the old deadline are resolved.
- flags, each once: an auto-renewing contract whose notice deadline passed before its end
  (notice_deadline_missed: it will renew itself); a contract past its end with no contract
  of the same product in force or to come (contract_expired); a contract whose dates make no
  sense (contract_invalid: ends before it starts, notice longer than the term), which gets
  no windows until it is fixed.
- a decision (`slm renewals decide`: renew, cancel or lapse, with a reason) closes the
  contract's renewal alerts for that deadline and stops further reminders and flags for it.
- right-sizing: for each contract in a window, the seats to renew = the peak daily
  consumption over the trailing 90 days plus the buffer (settings.rightsize_buffer, rounded
  up), never below the seats held now unless those holders are reclaimable; minus the seats
  of the product's other contracts that continue past this one's end. Consumption per
  metric: per_user distinct people active per day (usage_daily); per_device distinct devices
  with the product installed; concurrent the daily concurrent peak. With no usage data at
  all, per_user and per_device fall back to the seats held (none held: no recommendation);
  concurrent, per_core and site contracts get no seat recommendation. Saving = seats
  dropped x unit cost (per year). Trend: average daily consumption of the last 30 days
  against the 30 before.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_CEILING, Decimal

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from licenseflow.db import chunks, unit_of_work
from licenseflow.errors import LicenseflowError
from licenseflow.settings import get_settings
from schemas.store import (
    Alert,
    Assignment,
    ConcurrentPeak,
    Contract,
    Installation,
    Person,
    Product,
    ReclaimCandidate,
    UsageDaily,
)
from tasks import audit
from tasks.ownership import insert_alerts, resolve_alerts

ACTOR = "renewals"
WINDOW = "renewal_window"
NOTICE_MISSED = "notice_deadline_missed"
EXPIRED = "contract_expired"
INVALID = "contract_invalid"
DECISION = "renewal_decision"
KINDS = (WINDOW, NOTICE_MISSED, EXPIRED, INVALID)  # what the renewals flow delivers
DECISIONS = ("renew", "cancel", "lapse")
OPEN_RECLAIM_STATES = ("candidate", "notified")
SEAT_METRICS = ("per_user", "per_device")
LOOKBACK_DAYS = 90  # right-sizing: trailing peak
TREND_DAYS = 30  # trend: last 30 days against the 30 before
TREND_FLAT_PCT = 5.0  # a change smaller than this (either way) is flat
CHUNK = 2000

CONTRACT_COLUMNS = [
    "contract_id",
    "contract_number",
    "product_id",
    "product_code",
    "product_name",
    "metric",
    "seats",
    "unit_cost",
    "currency",
    "start_date",
    "end_date",
    "auto_renew",
    "notice_days",
    "owner_email",
]


class UnknownContract(LicenseflowError):
    """A contract number that is not in the store."""


class DecisionExists(LicenseflowError):
    """A renewal decision for this contract and deadline was already recorded."""


# --- the rules: pure ---------------------------------------------------------------------


def notice_deadline(end_date: dt.date, auto_renew: bool, notice_days: int | None) -> dt.date:
    """The last day to act: end_date - notice_days for an auto-renewing contract (after it,
    the contract renews itself), else the end date."""
    if auto_renew and notice_days and notice_days > 0:
        return end_date - dt.timedelta(days=int(notice_days))
    return end_date


def term_problem(start_date: dt.date, end_date: dt.date, notice_days: int | None) -> str | None:
    """Why a contract's dates make no sense, or None. (The contracts feed refuses these at
    load; rows that reached the store another way are flagged, never a crash.)"""
    if end_date < start_date:
        return f"it ends ({end_date}) before it starts ({start_date})"
    notice = int(notice_days or 0)
    if notice < 0:
        return f"its notice period is negative ({notice} days)"
    term = (end_date - start_date).days
    if notice > term:
        return (
            f"its notice period ({notice} days) is longer than its term ({term} days from "
            f"{start_date} to {end_date}): the notice deadline would fall before it starts"
        )
    return None


@dataclass(frozen=True)
class DueWindow:
    window: int  # days before the deadline
    opens_on: dt.date  # deadline - window
    late: bool  # a later (smaller) window has opened too: this reminder was missed


def due_windows(deadline: dt.date, today: dt.date, windows: Iterable[int]) -> list[DueWindow]:
    """The reminder windows open on `today`: every window w with 0 <= deadline - today <= w,
    largest first. Which of them were already sent is the store's business (dedupe key); a
    window overtaken by a smaller open one is late (runs were missed)."""
    days_left = (deadline - today).days
    if days_left < 0:
        return []
    opened = sorted({int(w) for w in windows if days_left <= int(w)}, reverse=True)
    if not opened:
        return []
    current = opened[-1]
    return [DueWindow(w, deadline - dt.timedelta(days=w), w != current) for w in opened]


def current_window(days_left: int, windows: Iterable[int]) -> int | None:
    """The smallest window that has opened, or None when the deadline is further away."""
    opened = [int(w) for w in windows if 0 <= days_left <= int(w)]
    return min(opened) if opened else None


def window_key(contract_number: str, deadline: dt.date, window: int) -> str:
    return f"renewal:{contract_number}:{deadline.isoformat()}:{window}"[:300]


def decision_key(contract_number: str, deadline: dt.date) -> str:
    return f"{DECISION}:{contract_number}:{deadline.isoformat()}"[:300]


def flag_key(kind: str, contract_number: str, day: dt.date, extra: str = "") -> str:
    return f"{kind}:{contract_number}:{day.isoformat()}{extra}"[:300]


@dataclass(frozen=True)
class Trend:
    """Average daily consumption of the last 30 days against the 30 days before."""

    direction: str  # rising | flat | falling | n/a
    last_avg: float | None = None
    previous_avg: float | None = None
    change_pct: float | None = None

    def __str__(self) -> str:
        if self.direction == "n/a":
            return "n/a (no usage data)"
        averages = f"avg {self.last_avg:.1f}/day last {TREND_DAYS} days vs {self.previous_avg:.1f}"
        if self.change_pct is None:  # from nothing to something
            return f"{self.direction} ({averages})"
        return f"{self.direction} {self.change_pct:+.1f}% ({averages})"


def usage_trend(daily: pd.Series | None, today: dt.date, days: int = TREND_DAYS) -> Trend:
    """daily: consumption per day (index: dates; missing days count as 0)."""
    if daily is None:
        return Trend("n/a")
    last = _window_mean(daily, today - dt.timedelta(days=days - 1), today)
    before_end = today - dt.timedelta(days=days)
    previous = _window_mean(daily, before_end - dt.timedelta(days=days - 1), before_end)
    if previous == 0:
        return Trend("flat" if last == 0 else "rising", last, previous, None if last else 0.0)
    change = (last - previous) / previous * 100
    direction = "flat" if abs(change) < TREND_FLAT_PCT else ("rising" if change > 0 else "falling")
    return Trend(direction, last, previous, round(change, 1))


def _window_mean(daily: pd.Series, first: dt.date, last: dt.date) -> float:
    days = pd.date_range(first, last, freq="D").date
    values = daily.reindex(days, fill_value=0)
    return float(values.sum()) / len(days)


def with_buffer(peak: int, buffer: float) -> int:
    """peak plus the buffer share, rounded up (exact decimal arithmetic: 10 x 1.1 is 11)."""
    grown = Decimal(int(peak)) * (1 + Decimal(str(buffer)))
    return int(grown.to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Recommendation:
    """The seat count to renew one contract with, and why."""

    metric: str
    basis: str  # what consumption was measured from
    current: int | None  # the contract's seats (None: site)
    recommended: int | None  # None: no seat recommendation (see note)
    peak: int | None = None  # peak daily consumption, trailing 90 days
    with_buffer: int | None = None
    held: int = 0  # people/devices holding a seat now
    reclaimable: int = 0  # of those, reclaim candidates or terminated people
    other_seats: int = 0  # the product's other contracts that continue past this one
    needed: int | None = None  # product-wide seats needed
    seats_change: int | None = None  # recommended - current
    saving: Decimal = Decimal("0.00")  # per year, seats dropped x unit cost
    extra_cost: Decimal = Decimal("0.00")  # per year, seats added x unit cost
    trend: Trend = field(default_factory=lambda: Trend("n/a"))
    note: str = ""

    def __str__(self) -> str:
        if self.recommended is None:
            return f"no seat recommendation: {self.note}"
        text = f"renew {self.recommended} of {self.current} seats"
        if self.saving:
            text += f", saving {self.saving}/year"
        if self.extra_cost:
            text += f", {self.extra_cost}/year more"
        return f"{text} (peak {self.peak} {self.basis}; trend {self.trend})"

    def as_json(self) -> dict:
        out = asdict(self)
        out["saving"], out["extra_cost"] = str(self.saving), str(self.extra_cost)
        out["trend"] = asdict(self.trend) | {"text": str(self.trend)}
        out["summary"] = str(self)
        return out


BASIS = {
    "per_user": "people active per day",
    "per_device": "devices with it installed",
    "concurrent": "concurrent peak",
}


def right_size(
    *,
    metric: str,
    seats: int | None,
    unit_cost: Decimal,
    daily: pd.Series | None,
    held: int,
    reclaimable: int,
    other_seats: int,
    buffer: float,
    today: dt.date,
) -> Recommendation:
    """The recommendation for one contract (see the module docstring for the rule).

    daily: consumption per day over the trailing 90 days (None: no usage data at all);
    held / reclaimable: distinct people or devices holding a seat now / of those, the
    reclaimable ones; other_seats: seats of the product's other contracts continuing past
    this one's end."""
    unit_cost = Decimal(str(unit_cost))
    trend = usage_trend(daily, today)
    common = {"metric": metric, "current": seats, "held": held, "reclaimable": reclaimable}
    if metric == "site" or seats is None:
        return Recommendation(
            basis="site license", recommended=None, note="site license: unlimited seats", **common
        )
    if metric not in BASIS:
        return Recommendation(
            basis="-",
            recommended=None,
            note=f"{metric} contracts are not right-sized from usage",
            trend=trend,
            **common,
        )
    basis = BASIS[metric]
    if daily is None:
        if metric == "concurrent":
            return Recommendation(
                basis=basis,
                recommended=None,
                note="no concurrent peaks recorded: nothing to size it on",
                **common,
            )
        if held == 0:
            return Recommendation(
                basis=basis,
                recommended=None,
                note="no usage data and no seats held: nothing to size it on",
                **common,
            )
        basis, peak = "seats held (no usage data)", held
    else:
        start = today - dt.timedelta(days=LOOKBACK_DAYS - 1)
        window = daily[(daily.index >= start) & (daily.index <= today)]
        peak = int(window.max()) if len(window) else 0
    buffered = with_buffer(peak, buffer)
    floor = max(held - reclaimable, 0) if metric in SEAT_METRICS else 0
    needed = max(buffered, floor)
    recommended = max(needed - other_seats, 0)
    change = recommended - int(seats)
    cents = Decimal("0.01")
    return Recommendation(
        basis=basis,
        recommended=recommended,
        peak=peak,
        with_buffer=buffered,
        other_seats=other_seats,
        needed=needed,
        seats_change=change,
        saving=(Decimal(max(-change, 0)) * unit_cost).quantize(cents),
        extra_cost=(Decimal(max(change, 0)) * unit_cost).quantize(cents),
        trend=trend,
        note="kept at the seats held (none reclaimable)" if floor > buffered else "",
        **common,
    )


def annual_value(seats, unit_cost) -> Decimal:
    """What a contract costs per year: seats x unit cost (a site license: its yearly price)."""
    cost = Decimal(str(unit_cost))
    count = 1 if seats is None or pd.isna(seats) else int(seats)
    return (count * cost).quantize(Decimal("0.01"))


def plan(
    contracts: pd.DataFrame,
    today: dt.date,
    windows: Sequence[int],
    decided: set[str] | frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """What each contract calls for on `today`, over plain rows (CONTRACT_COLUMNS).

    One row per contract with: deadline, days_left, problem (invalid dates), decided,
    window (the current one), due (list of DueWindow), notice_missed, expired.
    decided: decision_key()s recorded."""
    rows = []
    in_force_or_later = _products_covered(contracts, today)
    for c in contracts.to_dict("records"):
        start, end = _date(c["start_date"]), _date(c["end_date"])
        notice = 0 if pd.isna(c["notice_days"]) else int(c["notice_days"])
        auto = bool(c["auto_renew"])
        problem = term_problem(start, end, notice)
        deadline = end if problem else notice_deadline(end, auto, notice)
        days_left = (deadline - today).days
        is_decided = decision_key(c["contract_number"], deadline) in decided
        live = not problem and not is_decided
        others = in_force_or_later.get(c["product_id"], set()) - {c["contract_id"]}
        rows.append(
            c
            | {
                "start_date": start,
                "end_date": end,
                "notice_days": notice,
                "auto_renew": auto,
                "deadline": deadline,
                "days_left": days_left,
                "problem": problem,
                "decided": is_decided,
                "window": current_window(days_left, windows) if live else None,
                "due": due_windows(deadline, today, windows) if live and end >= today else [],
                "notice_missed": live and auto and deadline < today <= end,
                "expired": live and end < today and not others,
            }
        )
    return pd.DataFrame(rows, columns=[*contracts.columns, *_PLAN_COLUMNS])


_PLAN_COLUMNS = [
    "deadline",
    "days_left",
    "problem",
    "decided",
    "window",
    "due",
    "notice_missed",
    "expired",
]


def _products_covered(contracts: pd.DataFrame, today: dt.date) -> dict[int, set[int]]:
    """product_id -> ids of its contracts in force on `today` or starting later."""
    covered: dict[int, set[int]] = {}
    for c in contracts.to_dict("records"):
        if _date(c["end_date"]) >= today and _date(c["end_date"]) >= _date(c["start_date"]):
            covered.setdefault(c["product_id"], set()).add(c["contract_id"])
    return covered


def continuing_seats(contracts: pd.DataFrame) -> dict[int, int]:
    """contract_id -> seats of the same product's other contracts in force on the day after
    this one ends (they carry on: the renewal needs that many fewer)."""
    terms: dict[int, list[tuple]] = {}
    for c in contracts.to_dict("records"):
        seats = 0 if pd.isna(c["seats"]) else int(c["seats"])
        term = (c["contract_id"], _date(c["start_date"]), _date(c["end_date"]), seats)
        terms.setdefault(c["product_id"], []).append(term)
    out = {}
    for same_product in terms.values():
        for contract_id, _, end, _ in same_product:
            after = end + dt.timedelta(days=1)
            out[contract_id] = sum(
                seats
                for other, start, other_end, seats in same_product
                if other != contract_id and start <= after <= other_end
            )
    return out


def _date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


# --- reading the store -------------------------------------------------------------------


def contract_terms(session: Session) -> pd.DataFrame:
    """Every contract with its product (CONTRACT_COLUMNS), by contract number."""
    rows = session.execute(
        select(
            Contract.id,
            Contract.contract_number,
            Contract.product_id,
            Product.code,
            Product.name,
            Product.metric,
            Contract.seats,
            Contract.unit_cost,
            Contract.currency,
            Contract.start_date,
            Contract.end_date,
            Contract.auto_renew,
            Contract.notice_days,
            Contract.owner_email,
        )
        .join(Product, Product.id == Contract.product_id)
        .order_by(Contract.contract_number)
    ).all()
    frame = pd.DataFrame(rows, columns=CONTRACT_COLUMNS)
    frame["seats"] = frame["seats"].astype("Int64")
    return frame


def recorded_decisions(session: Session) -> set[str]:
    return set(session.scalars(select(Alert.dedupe_key).where(Alert.kind == DECISION)))


def daily_consumption(
    session: Session, products: pd.DataFrame, today: dt.date, days: int = LOOKBACK_DAYS
) -> dict[int, pd.Series | None]:
    """product_id -> consumption per day over the `days` up to `today` (index: dates, every
    day present), or None when there is no usage data for the product at all.
    products: product_id, metric."""
    first = today - dt.timedelta(days=days - 1)
    span = pd.date_range(first, today, freq="D").date
    out: dict[int, pd.Series | None] = {}
    by_metric = products.drop_duplicates("product_id").groupby("metric")["product_id"]
    for metric, ids in by_metric:
        ids = [int(i) for i in ids]
        if metric == "per_user":
            frame, metered = _active_people(session, ids, first, today)
        elif metric == "per_device":
            frame, metered = _installed_devices(session, ids, first, today)
        elif metric == "concurrent":
            frame, metered = _concurrent_peaks(session, ids, first, today)
        else:
            continue
        for product_id in ids:
            if product_id not in metered:
                out[product_id] = None
                continue
            mine = frame[frame["product_id"] == product_id].set_index("day")["consumed"]
            out[product_id] = mine.groupby(level=0).sum().reindex(span, fill_value=0).astype(int)
    return out


def _active_people(session, ids, first, last) -> tuple[pd.DataFrame, set[int]]:
    """Distinct people active per day (a device-only row counts its device once). A
    usage_daily row is one person's or one device's day (its partial unique indexes), so
    counting rows counts holders (COUNT(DISTINCT) took a third longer on the reference store)."""
    rows, metered = [], set()
    for chunk in chunks(ids, CHUNK):
        rows += session.execute(
            select(UsageDaily.product_id, UsageDaily.day, func.count())
            .where(UsageDaily.product_id.in_(chunk), UsageDaily.day.between(first, last))
            .group_by(UsageDaily.product_id, UsageDaily.day)
        ).all()
        metered |= set(
            session.scalars(
                select(UsageDaily.product_id)
                .where(UsageDaily.product_id.in_(chunk), UsageDaily.day <= last)
                .distinct()
            )
        )
    return pd.DataFrame(rows, columns=["product_id", "day", "consumed"]), metered


def _concurrent_peaks(session, ids, first, last) -> tuple[pd.DataFrame, set[int]]:
    rows, metered = [], set()
    for chunk in chunks(ids, CHUNK):
        rows += session.execute(
            select(ConcurrentPeak.product_id, ConcurrentPeak.day, ConcurrentPeak.peak).where(
                ConcurrentPeak.product_id.in_(chunk), ConcurrentPeak.day.between(first, last)
            )
        ).all()
        metered |= set(
            session.scalars(
                select(ConcurrentPeak.product_id)
                .where(ConcurrentPeak.product_id.in_(chunk), ConcurrentPeak.day <= last)
                .distinct()
            )
        )
    return pd.DataFrame(rows, columns=["product_id", "day", "consumed"]), metered


def _installed_devices(session, ids, first, last) -> tuple[pd.DataFrame, set[int]]:
    """Distinct devices with the product installed per day: an installation counts from
    the day it was first seen to the day before it was found removed."""
    rows, metered = [], set()
    end_of_last = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    for chunk in chunks(ids, CHUNK):
        rows += session.execute(
            select(
                Installation.product_id,
                Installation.device_id,
                Installation.first_seen,
                Installation.removed_at,
            ).where(Installation.product_id.in_(chunk), Installation.first_seen < end_of_last)
        ).all()
    frame = pd.DataFrame(rows, columns=["product_id", "device_id", "first_seen", "removed_at"])
    metered = set(frame["product_id"].astype(int))
    return installed_per_day(frame, first, last), metered


def installed_per_day(installs: pd.DataFrame, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Distinct devices per product and day from install intervals (set-based sweep: each
    device's overlapping installs are merged, then +1 on the first day, -1 after the last).
    installs: product_id, device_id, first_seen, removed_at (NaT: still installed)."""
    columns = ["product_id", "day", "consumed"]
    if installs.empty:
        return pd.DataFrame(columns=columns)
    start = pd.to_datetime(installs["first_seen"], utc=True).dt.tz_localize(None).dt.normalize()
    stop = pd.to_datetime(installs["removed_at"], utc=True).dt.tz_localize(None).dt.normalize()
    lo, hi = pd.Timestamp(first), pd.Timestamp(last) + pd.Timedelta(days=1)
    spans = pd.DataFrame(
        {
            "product_id": installs["product_id"].astype(int),
            "device_id": installs["device_id"].astype(int),
            "start": start.clip(lower=lo),
            "stop": stop.fillna(hi).clip(upper=hi),  # exclusive
        }
    )
    spans = spans[spans["start"] < spans["stop"]].sort_values(["product_id", "device_id", "start"])
    if spans.empty:
        return pd.DataFrame(columns=columns)
    group = spans.groupby(["product_id", "device_id"])
    reach = group["stop"].cummax()
    previous_reach = reach.groupby([spans["product_id"], spans["device_id"]]).shift()
    new_block = previous_reach.isna() | (spans["start"] > previous_reach)
    spans["block"] = new_block.cumsum()
    merged = spans.groupby("block").agg(
        product_id=("product_id", "first"), start=("start", "min"), stop=("stop", "max")
    )
    steps = pd.concat(
        [
            merged[["product_id", "start"]].set_axis(["product_id", "day"], axis=1).assign(d=1),
            merged[["product_id", "stop"]].set_axis(["product_id", "day"], axis=1).assign(d=-1),
        ]
    )
    span = pd.date_range(lo, hi, freq="D")
    counts = (
        steps.groupby(["product_id", "day"])["d"]
        .sum()
        .unstack("product_id", fill_value=0)
        .reindex(span, fill_value=0)
        .cumsum()
        .iloc[:-1]  # hi is the exclusive end
    )
    out = counts.stack().rename("consumed").reset_index()
    out.columns = ["day", "product_id", "consumed"]
    out["day"] = out["day"].dt.date
    return out[columns]


def seat_holders(session: Session, product_ids: Iterable[int]) -> pd.DataFrame:
    """Per product: distinct people/devices holding an open seat (held) and, of those, the
    reclaimable ones (an open reclaim candidate, or a terminated person)."""
    open_candidates = (
        select(ReclaimCandidate.assignment_id)
        .where(ReclaimCandidate.state.in_(OPEN_RECLAIM_STATES))
        .distinct()
        .subquery()
    )
    rows = []
    for chunk in chunks([int(p) for p in product_ids], CHUNK):
        rows += session.execute(
            select(
                Assignment.product_id,
                Assignment.person_id,
                Assignment.device_id,
                open_candidates.c.assignment_id.is_not(None),
                Person.status,
            )
            .outerjoin(open_candidates, open_candidates.c.assignment_id == Assignment.id)
            .outerjoin(Person, Person.id == Assignment.person_id)
            .where(Assignment.product_id.in_(chunk), Assignment.revoked_at.is_(None))
        ).all()
    frame = pd.DataFrame(
        rows, columns=["product_id", "person_id", "device_id", "candidate", "status"]
    )
    if frame.empty:
        return pd.DataFrame(columns=["held", "reclaimable"], dtype=int)
    people, devices = frame["person_id"], frame["device_id"]
    frame["holder"] = [
        f"p{p}" if pd.notna(p) else f"d{d}" for p, d in zip(people, devices, strict=True)
    ]
    frame["reclaimable"] = frame["candidate"].astype(bool) | (frame["status"] == "terminated")
    held = frame.groupby("product_id")["holder"].nunique()
    reclaimable = frame[frame["reclaimable"]].groupby("product_id")["holder"].nunique()
    return pd.DataFrame({"held": held, "reclaimable": reclaimable}).fillna(0).astype(int)


# --- reviewing: the rules over the store -------------------------------------------------


@dataclass
class RenewalReview:
    """What one review found. in_window: contracts whose deadline is within the largest
    window, with the current window and the recommendation; flags: expired, notice missed,
    invalid; created: the alerts this review wrote (id, kind, dedupe_key, subject, ...)."""

    today: dt.date
    windows: tuple[int, ...]
    in_window: pd.DataFrame
    flags: pd.DataFrame
    created: pd.DataFrame
    resolved: int = 0

    def money_at_stake(self) -> pd.DataFrame:
        """Per window and currency: contracts, their yearly value, projected saving."""
        columns = ["window", "currency", "contracts", "annual_value", "projected_saving"]
        if self.in_window.empty:
            return pd.DataFrame(columns=columns)
        grouped = self.in_window.groupby(["window", "currency"], sort=True)
        out = grouped.agg(
            contracts=("contract_number", "count"),
            annual_value=("annual_value", lambda v: sum(v, Decimal("0.00"))),
            projected_saving=("saving", lambda v: sum(v, Decimal("0.00"))),
        ).reset_index()
        return out[columns]

    def summary(self) -> str:
        by_kind = self.created["kind"].value_counts().to_dict() if len(self.created) else {}
        return (
            f"renewals on {self.today}: {len(self.in_window)} contract(s) within "
            f"{max(self.windows)} days of their deadline; {by_kind.get(WINDOW, 0)} reminder(s), "
            f"{by_kind.get(NOTICE_MISSED, 0)} missed notice deadline(s), "
            f"{by_kind.get(EXPIRED, 0)} expired and {by_kind.get(INVALID, 0)} invalid "
            f"contract(s) newly flagged; {self.resolved} alert(s) resolved"
        )


def upcoming(
    session: Session,
    today: dt.date,
    within: int | None = None,
    *,
    windows: Sequence[int] | None = None,
    buffer: float | None = None,
) -> pd.DataFrame:
    """Contracts whose deadline falls in [today, today + within] (default the largest
    window), undecided, with the current window and the right-size recommendation."""
    settings = get_settings()
    windows = tuple(windows or settings.renewal_windows)
    buffer = settings.rightsize_buffer if buffer is None else buffer
    within = max(windows) if within is None else within
    contracts = contract_terms(session)
    planned = plan(contracts, today, windows, recorded_decisions(session))
    return _recommend(session, contracts, planned, today, within, buffer)


DEADLINE_COLUMNS = [
    "contract_number",
    "product_code",
    "product_name",
    "deadline",
    "end_date",
    "auto_renew",
    "notice_days",
    "owner_email",
    "seats",
    "unit_cost",
    "currency",
]


def upcoming_deadlines(session: Session, today: dt.date) -> pd.DataFrame:
    """Every deadline still ahead (deadline >= today) of a valid, undecided contract, by
    deadline (DEADLINE_COLUMNS): what the owners' calendar holds."""
    contracts = contract_terms(session)
    planned = plan(contracts, today, get_settings().renewal_windows, recorded_decisions(session))
    ahead = planned[
        planned["problem"].isna() & ~planned["decided"].astype(bool) & (planned["days_left"] >= 0)
    ]
    return ahead[DEADLINE_COLUMNS].sort_values(["deadline", "contract_number"], ignore_index=True)


IN_WINDOW_COLUMNS = [
    "window",
    "contract_number",
    "product_code",
    "product_name",
    "metric",
    "owner_email",
    "deadline",
    "days_left",
    "end_date",
    "auto_renew",
    "notice_days",
    "seats",
    "unit_cost",
    "currency",
    "annual_value",
    "recommended",
    "seats_change",
    "saving",
    "extra_cost",
    "trend",
    "recommendation",
    "contract_id",
    "product_id",
]


def _recommend(session, contracts, planned, today, within, buffer) -> pd.DataFrame:
    live = planned[
        planned["problem"].isna()
        & ~planned["decided"].astype(bool)
        & (planned["days_left"] >= 0)
        & (planned["days_left"] <= within)
    ]
    if live.empty:
        return pd.DataFrame(columns=IN_WINDOW_COLUMNS)
    daily = daily_consumption(session, live[["product_id", "metric"]], today)
    holders = seat_holders(session, live["product_id"].unique())
    continuing = continuing_seats(contracts)
    rows = []
    for c in live.to_dict("records"):
        seats = None if pd.isna(c["seats"]) else int(c["seats"])
        held = holders["held"].get(c["product_id"], 0) if len(holders) else 0
        reclaimable = holders["reclaimable"].get(c["product_id"], 0) if len(holders) else 0
        rec = right_size(
            metric=c["metric"],
            seats=seats,
            unit_cost=c["unit_cost"],
            daily=daily.get(c["product_id"]),
            held=int(held),
            reclaimable=int(reclaimable),
            other_seats=continuing[c["contract_id"]],
            buffer=buffer,
            today=today,
        )
        rows.append(
            c
            | {
                "seats": seats,
                "annual_value": annual_value(seats, c["unit_cost"]),
                "recommended": rec.recommended,
                "seats_change": rec.seats_change,
                "saving": rec.saving,
                "extra_cost": rec.extra_cost,
                "trend": str(rec.trend),
                "recommendation": rec,
            }
        )
    out = pd.DataFrame(rows)
    out["window"] = out["window"].astype("Int64")
    return out[IN_WINDOW_COLUMNS].sort_values(["deadline", "contract_number"], ignore_index=True)


def review(
    session: Session,
    today: dt.date,
    *,
    now: dt.datetime | None = None,
    windows: Sequence[int] | None = None,
    buffer: float | None = None,
    actor: str = ACTOR,
) -> RenewalReview:
    """Write the renewal alerts due on `today` (each once), resolve the ones that no longer
    apply (moved deadline, decision, renewed), in the caller's transaction."""
    settings = get_settings()
    windows = tuple(sorted({int(w) for w in (windows or settings.renewal_windows)}, reverse=True))
    buffer = settings.rightsize_buffer if buffer is None else buffer
    now = now or dt.datetime.now(dt.UTC)
    contracts = contract_terms(session)
    planned = plan(contracts, today, windows, recorded_decisions(session))
    in_window = _recommend(session, contracts, planned, today, max(windows), buffer)
    recs = dict(zip(in_window["contract_id"], in_window["recommendation"], strict=True))
    rows = []
    for c in planned.to_dict("records"):
        rec = recs.get(c["contract_id"])
        rows += [_window_alert(c, w, rec, now) for w in c["due"]]
        if c["notice_missed"]:
            rows.append(_notice_missed_alert(c, now))
        if c["expired"]:
            rows.append(_expired_alert(c, now))
        if isinstance(c["problem"], str):
            rows.append(_invalid_alert(c, now))
    created = insert_alerts(session, rows, actor)
    resolved = _resolve_stale(session, planned, today, windows, actor, now)
    flags = _flags(planned)
    return RenewalReview(today, windows, in_window, flags, created, resolved)


FLAG_COLUMNS = ["flag", "contract_number", "product_code", "owner_email", "end_date", "detail"]


def _flags(planned: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for c in planned.to_dict("records"):
        base = {k: c[k] for k in ("contract_number", "product_code", "owner_email", "end_date")}
        if isinstance(c["problem"], str):
            rows.append(base | {"flag": INVALID, "detail": c["problem"]})
        if c["notice_missed"]:
            rows.append(base | {"flag": NOTICE_MISSED, "detail": f"notice was due {c['deadline']}"})
        if c["expired"]:
            rows.append(base | {"flag": EXPIRED, "detail": f"ended {c['end_date']}"})
    return pd.DataFrame(rows, columns=FLAG_COLUMNS)


def _resolve_stale(session, planned, today, windows, actor, now) -> int:
    """Open renewal alerts that no longer apply: a moved deadline, a decision, a renewal,
    a contract past its end (the expired flag takes over), fixed contract data."""
    live = planned[
        planned["problem"].isna()
        & ~planned["decided"].astype(bool)
        & (planned["end_date"].map(_date) >= today)
    ]
    keep_windows = {
        window_key(c["contract_number"], c["deadline"], w)
        for c in live.to_dict("records")
        for w in windows
    }
    keep = {
        WINDOW: keep_windows,
        NOTICE_MISSED: {
            flag_key(NOTICE_MISSED, c["contract_number"], c["deadline"])
            for c in planned[planned["notice_missed"]].to_dict("records")
        },
        EXPIRED: {
            flag_key(EXPIRED, c["contract_number"], c["end_date"])
            for c in planned[planned["expired"]].to_dict("records")
        },
        INVALID: {_invalid_key(c) for c in planned[planned["problem"].notna()].to_dict("records")},
    }
    return sum(
        len(resolve_alerts(session, kind, keep=keys, actor=actor, now=now))
        for kind, keys in keep.items()
    )


# --- alert rows ----------------------------------------------------------------------------


def _what(c: dict) -> str:
    return f"{c['product_code']} contract {c['contract_number']}"


def _deadline_text(c: dict) -> str:
    if c["auto_renew"] and c["notice_days"]:
        return (
            f"notice deadline {c['deadline']} (it renews itself on {c['end_date']} unless "
            f"cancelled with {c['notice_days']} days' notice)"
        )
    if c["auto_renew"]:
        return f"deadline {c['deadline']} (it renews itself at its end)"
    return f"ends {c['end_date']}"


def _base(c: dict, kind: str, key: str, subject: str, deadline, now, payload: dict) -> dict:
    return {
        "kind": kind,
        "dedupe_key": key,
        "subject": subject[:500],
        "owner_email": None if pd.isna(c["owner_email"]) else c["owner_email"],
        "contract_id": int(c["contract_id"]),
        "product_id": int(c["product_id"]),
        "deadline": deadline,
        "payload": _json_safe(
            {
                "contract_number": c["contract_number"],
                "product_code": c["product_code"],
                "product_name": c["product_name"],
                "end_date": c["end_date"],
                "auto_renew": c["auto_renew"],
                "notice_days": c["notice_days"],
                "seats": None if pd.isna(c["seats"]) else int(c["seats"]),
                "unit_cost": c["unit_cost"],
                "currency": c["currency"],
            }
            | payload
        ),
        "created_at": now,
    }


def _window_alert(c: dict, due: DueWindow, rec: Recommendation | None, now) -> dict:
    days_left = c["days_left"]
    subject = f"Renewal, {due.window}-day reminder: {_what(c)} {_deadline_text(c)}"
    subject += f"; {days_left} day(s) left"
    if due.late:
        subject += f" (late: this reminder was due {due.opens_on})"
    if rec is not None and rec.recommended is not None:
        subject += f". Recommended: {rec.recommended} of {rec.current} seats"
        if rec.saving:
            subject += f", saving {rec.saving} {c['currency']}/year"
        if rec.extra_cost:
            subject += f", {rec.extra_cost} {c['currency']}/year more"
    payload = {
        "window": due.window,
        "late": due.late,
        "opens_on": due.opens_on,
        "days_left": days_left,
        "deadline_kind": "notice deadline" if c["auto_renew"] and c["notice_days"] else "end",
        "annual_value": annual_value(c["seats"], c["unit_cost"]),
        "recommendation": None if rec is None else rec.as_json(),
    }
    key = window_key(c["contract_number"], c["deadline"], due.window)
    return _base(c, WINDOW, key, subject, c["deadline"], now, payload)


def _notice_missed_alert(c: dict, now) -> dict:
    subject = (
        f"Notice deadline missed: {_what(c)} could be cancelled until {c['deadline']} "
        f"({c['notice_days']} days' notice); it renews itself on {c['end_date']} unless the "
        "vendor agrees otherwise"
    )
    key = flag_key(NOTICE_MISSED, c["contract_number"], c["deadline"])
    return _base(c, NOTICE_MISSED, key, subject, c["deadline"], now, {})


def _expired_alert(c: dict, now) -> dict:
    subject = f"Contract expired: {_what(c)} ended {c['end_date']} with no renewal in the store"
    if c["auto_renew"]:
        subject += " (it renews itself: load the renewed contract with its new end date)"
    subject += "; load the renewal or record a decision (slm renewals decide)"
    key = flag_key(EXPIRED, c["contract_number"], c["end_date"])
    return _base(c, EXPIRED, key, subject, c["end_date"], now, {})


def _invalid_key(c: dict) -> str:
    extra = f":{_date(c['start_date']).isoformat()}:{c['notice_days']}"
    return flag_key(INVALID, c["contract_number"], _date(c["end_date"]), extra)


def _invalid_alert(c: dict, now) -> dict:
    subject = (
        f"Contract data to fix: {_what(c)}: {c['problem']}; no renewal reminders until the "
        "contract is corrected"
    )
    return _base(c, INVALID, _invalid_key(c), subject, None, now, {"problem": c["problem"]})


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return None if isinstance(value, float) and math.isnan(value) else value
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else str(value)


# --- decisions -----------------------------------------------------------------------------


def record_decision(
    session: Session,
    contract_number: str,
    decision: str,
    reason: str,
    *,
    actor: str,
    now: dt.datetime | None = None,
) -> dict:
    """Record the owner's decision (renew, cancel, lapse) for the contract's current
    deadline: its open renewal alerts are resolved, no more reminders or flags for it.
    Kept as an alert row (kind renewal_decision, already resolved) and audit-logged."""
    if decision not in DECISIONS:
        raise LicenseflowError(f"decision must be one of {', '.join(DECISIONS)} (got {decision!r})")
    if not reason or not reason.strip():
        raise LicenseflowError("a decision needs a reason (--reason)")
    now = now or dt.datetime.now(dt.UTC)
    contracts = contract_terms(session)
    found = contracts[contracts["contract_number"] == contract_number]
    if found.empty:
        raise UnknownContract(f"no contract numbered {contract_number!r} in the store")
    c = found.iloc[0].to_dict()
    end, start = _date(c["end_date"]), _date(c["start_date"])
    notice = 0 if pd.isna(c["notice_days"]) else int(c["notice_days"])
    problem = term_problem(start, end, notice)
    deadline = end if problem else notice_deadline(end, bool(c["auto_renew"]), notice)
    key = decision_key(contract_number, deadline)
    earlier = session.scalars(select(Alert).where(Alert.dedupe_key == key)).first()
    if earlier is not None:
        raise DecisionExists(
            f"contract {contract_number}: a decision for the deadline {deadline} was already "
            f"recorded on {earlier.created_at:%Y-%m-%d}: {earlier.subject}"
        )
    c |= {"start_date": start, "end_date": end, "notice_days": notice}
    row = _base(
        c,
        DECISION,
        key,
        f"Renewal decision for {_what(c)} (deadline {deadline}): {decision} by {actor}: {reason}",
        deadline,
        now,
        {"decision": decision, "reason": reason, "decided_by": actor},
    )
    row["resolved_at"] = now  # a record, nothing left to act on
    insert_alerts(session, [row], actor)
    open_ids = list(
        session.scalars(
            select(Alert.id).where(
                Alert.contract_id == int(c["contract_id"]),
                Alert.kind.in_(KINDS),
                Alert.resolved_at.is_(None),
            )
        )
    )
    if open_ids:
        session.execute(update(Alert), [{"id": i, "resolved_at": now} for i in open_ids])
        audit.record_many(
            session,
            actor,
            [
                audit.Change("alert.resolved", "alert", i, None, {"resolved_at": now, "by": key})
                for i in open_ids
            ],
        )
    return {
        "contract": contract_number,
        "deadline": deadline,
        "decision": decision,
        "resolved": len(open_ids),
    }


# --- Prefect -------------------------------------------------------------------------------


@task(name="review-renewals", cache_policy=NO_CACHE)
def review_task(today: dt.date, now: dt.datetime) -> RenewalReview:
    """Write today's renewal alerts in one transaction."""
    with unit_of_work() as session:
        result = review(session, today, now=now)
    get_run_logger().info(result.summary())
    return result


@task(name="publish-renewals", cache_policy=NO_CACHE)
def publish_task(result: RenewalReview, delivery, calendar_path: str | None) -> dict:
    """The run's artifacts: summary, contracts per window, money at stake, recommendations,
    flags; returns the run's summary as plain values."""
    return publish(result, delivery, calendar_path)


ARTIFACT_KEYS = (
    "renewals-summary",
    "renewals-windows",
    "renewals-money-at-stake",
    "renewals-recommendations",
    "renewals-flags",
)


def publish(result: RenewalReview, delivery, calendar_path: str | None) -> dict:
    windows = result.in_window
    money = result.money_at_stake()
    create_markdown_artifact(
        key="renewals-summary",
        markdown=summary_markdown(result, delivery, calendar_path),
        description=f"Renewals on {result.today}",
    )
    create_table_artifact(
        key="renewals-windows",
        table=_cells(
            windows,
            [
                "window",
                "contract_number",
                "product_code",
                "owner_email",
                "deadline",
                "days_left",
                "end_date",
                "auto_renew",
                "notice_days",
                "seats",
                "annual_value",
                "currency",
            ],
        ),
        description="Contracts in each renewal window (deadline = notice deadline when the "
        "contract renews itself)",
    )
    create_table_artifact(
        key="renewals-money-at-stake",
        table=_cells(money, list(money.columns)),
        description="Yearly value of the contracts in each window, and the projected saving",
    )
    create_table_artifact(
        key="renewals-recommendations",
        table=_cells(
            windows.assign(recommendation=windows["recommendation"].map(str)),
            [
                "contract_number",
                "product_code",
                "metric",
                "seats",
                "recommended",
                "seats_change",
                "saving",
                "extra_cost",
                "currency",
                "trend",
                "recommendation",
            ],
        ),
        description="Seats to renew: trailing 90-day peak + buffer, never below the seats "
        "held unless reclaimable",
    )
    create_table_artifact(
        key="renewals-flags",
        table=_cells(result.flags, FLAG_COLUMNS),
        description="Expired contracts, missed notice deadlines, contracts with invalid dates",
    )
    return {
        "today": result.today.isoformat(),
        "in_window": {
            str(w): sorted(windows.loc[windows["window"] == w, "contract_number"])
            for w in result.windows
        },
        "alerts_created": len(result.created),
        "created_by_kind": {
            str(k): int(v) for k, v in result.created["kind"].value_counts().items()
        }
        if len(result.created)
        else {},
        "resolved": result.resolved,
        "money_at_stake": {
            f"{r.window}:{r.currency}": str(r.annual_value) for r in money.itertuples()
        },
        "projected_saving": {
            cur: str(sum(group, Decimal("0.00")))
            for cur, group in windows.groupby("currency")["saving"]
        }
        if len(windows)
        else {},
        "flags": {
            flag: sorted(result.flags.loc[result.flags["flag"] == flag, "contract_number"])
            for flag in (NOTICE_MISSED, EXPIRED, INVALID)
        },
        "delivery": None if delivery is None else delivery.as_dict(),
        "calendar": calendar_path,
    }


def summary_markdown(result: RenewalReview, delivery, calendar_path: str | None) -> str:
    lines = [f"# Renewals on {result.today}", "", result.summary(), ""]
    money = result.money_at_stake()
    if len(money):
        lines += ["## Money at stake (per year)", ""]
        lines += [
            f"- {r.window}-day window: {r.contracts} contract(s), {r.annual_value} "
            f"{r.currency}; projected saving {r.projected_saving} {r.currency}"
            for r in money.itertuples()
        ]
        lines.append("")
    traps = result.in_window[result.in_window["auto_renew"].astype(bool)]
    if len(traps):
        lines += ["## Auto-renew traps (act by the notice deadline)", ""]
        lines += [
            f"- {r.product_code} {r.contract_number}: notice deadline {r.deadline} "
            f"({r.days_left} days), renews itself {r.end_date}"
            for r in traps.itertuples()
        ]
        lines.append("")
    if len(result.flags):
        lines += ["## Flags", ""]
        lines += [
            f"- {r.flag}: {r.product_code} {r.contract_number} ({r.detail})"
            for r in result.flags.itertuples()
        ]
        lines.append("")
    if delivery is not None:
        lines += ["## Delivery", "", str(delivery), ""]
    if calendar_path:
        lines += [f"Calendar of upcoming deadlines: `{calendar_path}`", ""]
    return "\n".join(lines)


def _cells(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    out = []
    for record in frame[columns].to_dict("records") if len(frame) else []:
        out.append({k: _cell(v) for k, v in record.items()})
    return out


def _cell(value):
    if value is None or (not isinstance(value, str | Recommendation) and pd.isna(value)):
        return ""
    if isinstance(value, Decimal | dt.date):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value
