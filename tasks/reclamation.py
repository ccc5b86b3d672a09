"""Stage 5, reclamation: seats nobody uses come back.

The rule (per product; defaults from the settings):
- a seat is a reclaim CANDIDATE when its holder shows no activity on the product for
  `inactivity_days` (product.inactivity_days, else the inactivity_days setting, 90), counted
  back from now, and the seat is at least `grace_days` old (setting, 30): a seat given
  recently is never a candidate, however unused;
- only seat-licensed products (per_user, per_device) whose usage is metered at all (any
  usage_daily row): a product no usage feed reports on cannot be judged by usage;
- seats of terminated people are not candidates: offboarding reclaims those;
- last activity of a person's seat: their own usage of the product, and usage on devices
  whose primary user they are; of a device's seat: usage on the device.

Candidates move through states (schemas.store.RECLAIM_STATES):

    candidate --notify--> notified --(answer / auto after N days)--> reclaimed | kept
         \\______________________________________________________/--> cancelled

- notified: the usage_metering flow writes one alert per new candidate (kind
  "reclaim_candidate", to the seat holder) and marks it notified;
- kept: an operator answered "still needed" (`slm reclaim keep ID --reason`); the reason is
  required and kept; the seat is not judged again for one inactivity period from then;
- reclaimed: the seat was revoked through the assignment service (`slm reclaim apply`, or
  automatically `auto_reclaim_after_days` after notification when that setting is set);
- cancelled: activity reappeared (newer than the candidate's last activity), or the seat was
  closed elsewhere (offboarding, a bulk change).

Monthly cost of a candidate: the unit cost per seat per year of the product's contract in
force (as offboarding counts it) / 12, in that contract's currency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from licenseflow.errors import LicenseflowError
from schemas.store import (
    Assignment,
    Contract,
    Device,
    Person,
    Product,
    ReclaimCandidate,
    UsageDaily,
)
from tasks import audit
from tasks.assignments import AssignmentService, SeatChange
from tasks.ownership import insert_alerts

OPEN_STATES = ("candidate", "notified")
FINAL_STATES = ("reclaimed", "kept", "cancelled")
TRANSITIONS = {
    "candidate": {"notified", "reclaimed", "kept", "cancelled"},
    "notified": {"reclaimed", "kept", "cancelled"},
    "reclaimed": set(),
    "kept": set(),
    "cancelled": set(),
}
RECLAIMABLE_METRICS = ("per_user", "per_device")
ALERT_KIND = "reclaim_candidate"
ENTITY = "reclaim_candidate"
CENT = Decimal("0.01")
CHUNK = 2000


class ReclaimStateError(LicenseflowError):
    """A reclaim candidate is not in a state that allows the requested step."""


@dataclass(frozen=True)
class Rule:
    inactivity_days: int = 90
    grace_days: int = 30


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _ts(moment: dt.datetime) -> pd.Timestamp:
    return pd.Timestamp(_utc(moment))


# --- the rules (pure) ---------------------------------------------------------------------


def find_candidates(seats: pd.DataFrame, now: dt.datetime, rule: Rule) -> pd.DataFrame:
    """The seats that are reclaim candidates now.

    seats: one row per open seat with assignment_id, product_id, assigned_at, last_activity
    (NaT = never), status (the person's; None for device seats), inactivity_days (the
    product's override or NaN), metric, metered (bool), blocked (bool: an open candidate or a
    recent 'kept' answer exists). Returns the candidate rows with `inactive_days` added
    (days since last activity; NaN when never used)."""
    if seats.empty:
        return seats.assign(inactive_days=pd.Series(dtype="float64"))
    now_ts = _ts(now)
    days = seats["inactivity_days"].astype("float64").fillna(rule.inactivity_days)
    cutoff = now_ts - pd.to_timedelta(days, unit="D")
    last = pd.to_datetime(seats["last_activity"], utc=True)
    assigned = pd.to_datetime(seats["assigned_at"], utc=True)
    inactive = last.isna() | (last < cutoff)
    old_enough = assigned <= now_ts - pd.Timedelta(days=rule.grace_days)
    eligible = (
        seats["metric"].isin(RECLAIMABLE_METRICS)
        & seats["metered"].astype(bool)
        & (seats["status"].fillna("") != "terminated")
        & ~seats["blocked"].astype(bool)
    )
    found = seats[inactive & old_enough & eligible].copy()
    found["inactive_days"] = (now_ts - last[found.index]).dt.total_seconds() / 86400
    return found


def to_cancel(open_candidates: pd.DataFrame, seats: pd.DataFrame) -> pd.DataFrame:
    """Open candidates to cancel, with the reason: their seat closed elsewhere, or activity
    newer than the candidate's last activity.

    open_candidates: id, assignment_id, last_activity; seats: assignment_id, last_activity
    of every OPEN seat (others are closed)."""
    if open_candidates.empty:
        return open_candidates.assign(reason=pd.Series(dtype=object))
    merged = open_candidates.merge(
        seats[["assignment_id", "last_activity"]].rename(columns={"last_activity": "now_last"}),
        on="assignment_id",
        how="left",
        indicator=True,
    )
    closed = merged["_merge"] == "left_only"
    before = pd.to_datetime(merged["last_activity"], utc=True)
    latest = pd.to_datetime(merged["now_last"], utc=True)
    active = latest.notna() & (before.isna() | (latest > before))
    merged["reason"] = None
    merged.loc[active, "reason"] = "activity reappeared on " + latest[active].dt.strftime(
        "%Y-%m-%d"
    )
    merged.loc[closed, "reason"] = "the seat was closed elsewhere"
    return merged.loc[closed | active, ["id", "assignment_id", "reason", "now_last"]]


def check_transition(candidate_id: int, current: str, wanted: str) -> None:
    if wanted not in TRANSITIONS.get(current, set()):
        raise ReclaimStateError(
            f"reclaim candidate {candidate_id} is {current}: it cannot become {wanted}"
            + (" (it is closed)" if current in FINAL_STATES else "")
        )


def monthly_cost(unit_cost: Decimal | None) -> Decimal | None:
    """Unit cost per seat per year / 12, to the cent."""
    if unit_cost is None:
        return None
    return (Decimal(unit_cost) / 12).quantize(CENT, rounding=ROUND_HALF_UP)


# --- reading the store --------------------------------------------------------------------


def open_seats(session: Session, now: dt.datetime, rule: Rule) -> pd.DataFrame:
    """Every open seat of a seat-licensed product with what the rule needs (see
    find_candidates), including its holder's last activity on the product."""
    person_last = (
        select(UsageDaily.last_activity)
        .where(
            UsageDaily.product_id == Assignment.product_id,
            UsageDaily.person_id == Assignment.person_id,
            UsageDaily.device_id.is_(None),
        )
        .order_by(UsageDaily.day.desc())
        .limit(1)
        .scalar_subquery()
    )
    device_last = (
        select(UsageDaily.last_activity)
        .where(
            UsageDaily.product_id == Assignment.product_id,
            UsageDaily.device_id == Assignment.device_id,
            UsageDaily.person_id.is_(None),
        )
        .order_by(UsageDaily.day.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Assignment.id.label("assignment_id"),
            Assignment.product_id,
            Assignment.person_id,
            Assignment.device_id,
            Assignment.assigned_at,
            Person.status,
            Person.email,
            Product.code,
            Product.metric,
            Product.inactivity_days,
            person_last.label("person_last"),
            device_last.label("device_last"),
        )
        .join(Product, Product.id == Assignment.product_id)
        .outerjoin(Person, Person.id == Assignment.person_id)
        .where(
            Assignment.revoked_at.is_(None),
            Product.metric.in_(RECLAIMABLE_METRICS),
        )
    ).all()
    columns = [
        "assignment_id",
        "product_id",
        "person_id",
        "device_id",
        "assigned_at",
        "status",
        "email",
        "code",
        "metric",
        "inactivity_days",
        "person_last",
        "device_last",
    ]
    seats = pd.DataFrame(rows, columns=columns)
    for column in ("assigned_at", "person_last", "device_last"):
        seats[column] = pd.to_datetime(seats[column], utc=True)
    seats["last_activity"] = seats[["person_last", "device_last"]].max(axis=1)
    seats = _with_primary_device_use(session, seats)
    metered = _metered_products(session, seats["product_id"].unique())
    seats["metered"] = seats["product_id"].isin(metered)
    seats["blocked"] = seats["assignment_id"].isin(_blocked(session, now, rule))
    return seats


def _with_primary_device_use(session: Session, seats: pd.DataFrame) -> pd.DataFrame:
    """A person's seat also counts usage on the devices whose primary user they are."""
    persons = seats["person_id"].notna()
    if not persons.any():
        return seats
    rows = session.execute(
        select(
            UsageDaily.product_id,
            func.lower(Device.primary_user_email),
            func.max(UsageDaily.last_activity),
        )
        .join(Device, Device.id == UsageDaily.device_id)
        .where(UsageDaily.person_id.is_(None), Device.primary_user_email.is_not(None))
        .group_by(UsageDaily.product_id, func.lower(Device.primary_user_email))
    ).all()
    if not rows:
        return seats
    device_use = pd.DataFrame(rows, columns=["product_id", "email_key", "primary_last"])
    device_use["primary_last"] = pd.to_datetime(device_use["primary_last"], utc=True)
    merged = seats.assign(email_key=seats["email"].str.lower()).merge(
        device_use, on=["product_id", "email_key"], how="left"
    )
    merged["last_activity"] = merged[["last_activity", "primary_last"]].max(axis=1)
    return merged.drop(columns=["email_key", "primary_last"])


def _metered_products(session: Session, product_ids: Iterable[int]) -> set[int]:
    ids = [int(p) for p in product_ids]
    found: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found |= set(
            session.execute(
                select(Product.id).where(
                    Product.id.in_(chunk),
                    select(UsageDaily.id).where(UsageDaily.product_id == Product.id).exists(),
                )
            ).scalars()
        )
    return found


def _blocked(session: Session, now: dt.datetime, rule: Rule) -> set[int]:
    """Seats not to judge now: an open candidate exists, or a 'kept' answer is younger than
    one inactivity period (the product's, else the default)."""
    days = func.coalesce(Product.inactivity_days, rule.inactivity_days)
    rows = session.execute(
        select(
            ReclaimCandidate.assignment_id,
            ReclaimCandidate.state,
            ReclaimCandidate.resolved_at,
            days,
        )
        .join(Product, Product.id == ReclaimCandidate.product_id)
        .where(
            or_(
                ReclaimCandidate.state.in_(OPEN_STATES),
                and_(ReclaimCandidate.state == "kept", ReclaimCandidate.resolved_at.is_not(None)),
            )
        )
    ).all()
    now = _utc(now)
    return {
        assignment_id
        for assignment_id, state, resolved_at, hold_days in rows
        if state in OPEN_STATES or _utc(resolved_at) > now - dt.timedelta(days=int(hold_days))
    }


def contract_costs(session: Session, product_ids: Iterable[int], today: dt.date) -> pd.DataFrame:
    """The contract in force per product (the one that started last, then the highest id):
    product_id, unit_cost, currency."""
    ids = [int(p) for p in product_ids]
    rows = []
    for start in range(0, len(ids), CHUNK):
        rows += session.execute(
            select(Contract.product_id, Contract.unit_cost, Contract.currency)
            .where(
                Contract.product_id.in_(ids[start : start + CHUNK]),
                Contract.start_date <= today,
                Contract.end_date >= today,
            )
            .order_by(Contract.product_id, Contract.start_date.desc(), Contract.id.desc())
        ).all()
    frame = pd.DataFrame(rows, columns=["product_id", "unit_cost", "currency"])
    return frame.drop_duplicates("product_id", keep="first")


def candidates_frame(
    session: Session, states: Sequence[str] | None = None, ids: Iterable[int] | None = None
) -> pd.DataFrame:
    """Reclaim candidates with their seat's holder and product, newest first."""
    query = (
        select(
            ReclaimCandidate.id,
            ReclaimCandidate.state,
            Product.code,
            Person.email.label("person"),
            Device.hostname.label("device"),
            ReclaimCandidate.last_activity,
            ReclaimCandidate.detected_at,
            ReclaimCandidate.notified_at,
            ReclaimCandidate.resolved_at,
            ReclaimCandidate.monthly_cost,
            ReclaimCandidate.reason,
            ReclaimCandidate.assignment_id,
            ReclaimCandidate.product_id,
            Assignment.person_id,
            Assignment.device_id,
        )
        .join(Assignment, Assignment.id == ReclaimCandidate.assignment_id)
        .join(Product, Product.id == ReclaimCandidate.product_id)
        .outerjoin(Person, Person.id == Assignment.person_id)
        .outerjoin(Device, Device.id == Assignment.device_id)
        .order_by(ReclaimCandidate.id.desc())
    )
    if states:
        query = query.where(ReclaimCandidate.state.in_(list(states)))
    if ids is not None:
        query = query.where(ReclaimCandidate.id.in_([int(i) for i in ids]))
    result = session.execute(query)
    frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    for column in ("last_activity", "detected_at", "notified_at", "resolved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


# --- changing candidates --------------------------------------------------------------------


def _set_state(
    session: Session,
    actor: str,
    rows: list[dict],
    action: str,
    now: dt.datetime,
) -> None:
    """Write state changes (id, state, from, + columns) set-based, with one audit call."""
    if not rows:
        return
    session.execute(
        update(ReclaimCandidate),
        [{k: v for k, v in r.items() if k != "from"} for r in rows],
    )
    audit.record_many(
        session,
        actor,
        [
            audit.Change(
                action,
                ENTITY,
                r["id"],
                {"state": r["from"]},
                {k: v for k, v in r.items() if k not in ("id", "from")},
            )
            for r in rows
        ],
        at=now,
    )


@dataclass
class Detection:
    new: pd.DataFrame  # id, assignment_id, code, holder, last_activity, monthly_cost, currency
    cancelled: pd.DataFrame  # id, assignment_id, reason
    seats_judged: int


def detect(
    session: Session, now: dt.datetime, rule: Rule, actor: str = "usage_metering"
) -> Detection:
    """Cancel open candidates whose seat is used again or closed; record new candidates."""
    now = _utc(now)
    seats = open_seats(session, now, rule)
    open_rows = session.execute(
        select(
            ReclaimCandidate.id,
            ReclaimCandidate.assignment_id,
            ReclaimCandidate.last_activity,
            ReclaimCandidate.state,
        ).where(ReclaimCandidate.state.in_(OPEN_STATES))
    ).all()
    open_candidates = pd.DataFrame(
        open_rows, columns=["id", "assignment_id", "last_activity", "state"]
    )
    cancel = to_cancel(open_candidates, seats)
    states = dict(zip(open_candidates["id"], open_candidates["state"], strict=True))
    _set_state(
        session,
        actor,
        [
            {
                "id": int(i),
                "from": states[i],
                "state": "cancelled",
                "resolved_at": now,
                "reason": reason,
            }
            for i, reason in zip(cancel["id"], cancel["reason"], strict=True)
        ],
        "reclaim.cancelled",
        now,
    )
    # a seat whose candidate was just cancelled is judged again only on the next run
    seats.loc[seats["assignment_id"].isin(cancel["assignment_id"]), "blocked"] = True
    found = find_candidates(seats, now, rule)
    costs = contract_costs(session, found["product_id"].unique(), now.date())
    found = found.merge(costs, on="product_id", how="left")
    found["monthly_cost"] = [
        monthly_cost(c) if isinstance(c, Decimal) else None for c in found["unit_cost"]
    ]
    new = _insert_candidates(session, found, now, actor)
    return Detection(new, cancel[["id", "assignment_id", "reason"]], len(seats))


def _insert_candidates(
    session: Session, found: pd.DataFrame, now: dt.datetime, actor: str
) -> pd.DataFrame:
    columns = [
        "id",
        "assignment_id",
        "product_id",
        "code",
        "holder",
        "last_activity",
        "monthly_cost",
        "currency",
    ]
    if found.empty:
        return pd.DataFrame(columns=columns)
    rows = [
        {
            "assignment_id": int(r.assignment_id),
            "product_id": int(r.product_id),
            "state": "candidate",
            "last_activity": None if pd.isna(r.last_activity) else r.last_activity.to_pydatetime(),
            "detected_at": now,
            "monthly_cost": r.monthly_cost,
        }
        for r in found.itertuples(index=False)
    ]
    ids = session.execute(
        insert(ReclaimCandidate).returning(ReclaimCandidate.id, ReclaimCandidate.assignment_id),
        rows,
    ).all()
    id_of = {a: i for i, a in ids}
    found = found.assign(id=found["assignment_id"].map(id_of))
    holders = _holders(session, found)
    found["holder"] = found["assignment_id"].map(holders)
    audit.record_many(
        session,
        actor,
        [
            audit.Change(
                "reclaim.detected",
                ENTITY,
                int(r.id),
                None,
                {
                    "state": "candidate",
                    "assignment_id": int(r.assignment_id),
                    "product": r.code,
                    "holder": r.holder,
                    "last_activity": None if pd.isna(r.last_activity) else r.last_activity,
                    "monthly_cost": r.monthly_cost,
                    "currency": None if pd.isna(r.currency) else r.currency,
                },
            )
            for r in found.itertuples(index=False)
        ],
        at=now,
    )
    found["last_activity"] = pd.to_datetime(found["last_activity"], utc=True)
    return found[columns].sort_values("id", ignore_index=True)


def _holders(session: Session, seats: pd.DataFrame) -> dict[int, str]:
    """Assignment id -> the seat holder's email or hostname."""
    ids = [int(a) for a in seats["assignment_id"]]
    holders: dict[int, str] = {}
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(Assignment.id, Person.email, Device.hostname)
            .outerjoin(Person, Person.id == Assignment.person_id)
            .outerjoin(Device, Device.id == Assignment.device_id)
            .where(Assignment.id.in_(ids[start : start + CHUNK]))
        ).all()
        holders |= {a: email or host for a, email, host in rows}
    return holders


def notify(session: Session, now: dt.datetime, actor: str = "usage_metering") -> pd.DataFrame:
    """Write one alert per candidate not yet notified (kind reclaim_candidate, to the seat
    holder: a person, or a device's primary user) and mark them notified."""
    now = _utc(now)
    pending = candidates_frame(session, ["candidate"])
    if pending.empty:
        return pending
    primary = _primary_users(session, pending["device_id"].dropna().astype(int).tolist())
    costs = contract_costs(session, pending["product_id"].unique(), now.date())
    currency = dict(zip(costs["product_id"], costs["currency"], strict=True))
    alerts = []
    for r in pending.itertuples(index=False):
        holder = r.person if isinstance(r.person, str) else r.device
        owner = r.person if isinstance(r.person, str) else primary.get(r.device_id)
        since = (
            "never used" if pd.isna(r.last_activity) else f"last used {r.last_activity:%Y-%m-%d}"
        )
        cost = (
            ""
            if r.monthly_cost is None
            else f", {r.monthly_cost} {currency.get(r.product_id, '')}/month"
        )
        alerts.append(
            {
                "kind": ALERT_KIND,
                "dedupe_key": f"{ALERT_KIND}:{r.id}",
                "subject": f"{r.code} seat of {holder} will be reclaimed ({since}{cost}); "
                f"answer to keep it: slm reclaim keep {r.id} --reason ...",
                "owner_email": owner,
                "contract_id": None,
                "product_id": int(r.product_id),
                "deadline": None,
                "payload": {
                    "candidate_id": int(r.id),
                    "holder": holder,
                    "last_activity": None
                    if pd.isna(r.last_activity)
                    else r.last_activity.isoformat(),
                    "monthly_cost": None if r.monthly_cost is None else str(r.monthly_cost),
                },
                "created_at": now,
            }
        )
    insert_alerts(session, alerts, actor)
    _set_state(
        session,
        actor,
        [
            {"id": int(i), "from": "candidate", "state": "notified", "notified_at": now}
            for i in pending["id"]
        ],
        "reclaim.notified",
        now,
    )
    return pending.assign(state="notified", notified_at=pd.Timestamp(now))


def _primary_users(session: Session, device_ids: list[int]) -> dict[int, str]:
    if not device_ids:
        return {}
    return dict(
        session.execute(
            select(Device.id, Device.primary_user_email).where(Device.id.in_(device_ids))
        ).all()
    )


def keep(
    session: Session, candidate_id: int, reason: str, actor: str, now: dt.datetime | None = None
) -> None:
    """The seat is still needed: the candidate is closed as kept, with the reason."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    if not (reason or "").strip():
        raise ReclaimStateError("keeping a seat needs a reason (--reason)")
    current = _state_of(session, candidate_id)
    check_transition(candidate_id, current, "kept")
    _set_state(
        session,
        actor,
        [
            {
                "id": int(candidate_id),
                "from": current,
                "state": "kept",
                "resolved_at": now,
                "reason": reason.strip()[:500],
            }
        ],
        "reclaim.kept",
        now,
    )


def _state_of(session: Session, candidate_id: int) -> str:
    state = session.execute(
        select(ReclaimCandidate.state).where(ReclaimCandidate.id == int(candidate_id))
    ).scalar_one_or_none()
    if state is None:
        raise ReclaimStateError(f"no reclaim candidate with id {candidate_id}")
    return state


@dataclass
class Reclaimed:
    reclaimed: pd.DataFrame  # candidates whose seat was revoked
    cancelled: pd.DataFrame  # candidates found used again or already closed (id, reason)


def apply(
    session: Session,
    actor: str,
    *,
    ids: Iterable[int] | None = None,
    states: Sequence[str] = OPEN_STATES,
    notified_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
    rule: Rule = Rule(),
) -> Reclaimed:
    """Reclaim candidates: revoke their seats through the assignment service (one set-based
    apply, audit-logged there), then close them as reclaimed (audit-logged here).

    ids: these candidates (each must be open: ReclaimStateError otherwise); None: every
    candidate in `states` (notified before `notified_before`, for auto-reclaim). A candidate
    whose seat was used again since detection, or closed elsewhere, is cancelled instead."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    if ids is not None:
        ids = [int(i) for i in ids]
        frame = candidates_frame(session, ids=ids)
        missing = sorted(set(ids) - set(frame["id"]))
        if missing:
            raise ReclaimStateError(f"no reclaim candidate with id {', '.join(map(str, missing))}")
        for r in frame.itertuples(index=False):
            check_transition(r.id, r.state, "reclaimed")
    else:
        frame = candidates_frame(session, list(states))
        if notified_before is not None:
            notified = frame["notified_at"]
            frame = frame[notified.notna() & (notified <= _ts(notified_before))]
    empty = pd.DataFrame(columns=["id", "reason"])
    if frame.empty:
        return Reclaimed(frame, empty)

    seats = open_seats(session, now, rule)
    cancel = to_cancel(frame[["id", "assignment_id", "last_activity"]], seats)
    states_of = dict(zip(frame["id"], frame["state"], strict=True))
    _set_state(
        session,
        actor,
        [
            {
                "id": int(i),
                "from": states_of[i],
                "state": "cancelled",
                "resolved_at": now,
                "reason": why,
            }
            for i, why in zip(cancel["id"], cancel["reason"], strict=True)
        ],
        "reclaim.cancelled",
        now,
    )
    todo = frame[~frame["id"].isin(cancel["id"])]
    if todo.empty:
        return Reclaimed(todo, cancel[["id", "reason"]])
    changes = [
        SeatChange(
            "revoke",
            int(r.product_id),
            person_id=None if pd.isna(r.person_id) else int(r.person_id),
            device_id=None if pd.isna(r.device_id) else int(r.device_id),
            reason=f"reclaim {r.id}: "
            + (
                "never used"
                if pd.isna(r.last_activity)
                else f"no use since {r.last_activity:%Y-%m-%d}"
            ),
        )
        for r in todo.itertuples(index=False)
    ]
    outcomes = AssignmentService(session, actor, now=now).apply(changes)
    revoked = [o.status == "revoked" for o in outcomes]
    rows = []
    for r, done in zip(todo.itertuples(index=False), revoked, strict=True):
        row = {"id": int(r.id), "from": r.state, "resolved_at": now}
        if done:
            rows.append(row | {"state": "reclaimed", "reason": "reclaimed by " + actor})
        else:
            rows.append(row | {"state": "cancelled", "reason": "the seat was closed elsewhere"})
    _set_state(
        session, actor, [r for r in rows if r["state"] == "reclaimed"], "reclaim.reclaimed", now
    )
    _set_state(
        session, actor, [r for r in rows if r["state"] == "cancelled"], "reclaim.cancelled", now
    )
    done_ids = {r["id"] for r in rows if r["state"] == "reclaimed"}
    closed = pd.DataFrame(
        [(r["id"], r["reason"]) for r in rows if r["state"] == "cancelled"],
        columns=["id", "reason"],
    )
    return Reclaimed(
        todo[todo["id"].isin(done_ids)].assign(state="reclaimed"),
        pd.concat([cancel[["id", "reason"]], closed], ignore_index=True),
    )


def auto_reclaim(
    session: Session, now: dt.datetime, after_days: int | None, rule: Rule = Rule()
) -> Reclaimed | None:
    """Reclaim what was notified at least `after_days` ago and got no answer (None: off)."""
    if after_days is None:
        return None
    now = _utc(now)
    return apply(
        session,
        "auto-reclaim",
        states=("notified",),
        notified_before=now - dt.timedelta(days=after_days),
        now=now,
        rule=rule,
    )


def total_monthly_cost(candidates: pd.DataFrame) -> dict[str, Decimal]:
    """Monthly cost per currency (amounts in different currencies are never added)."""
    totals: dict[str, Decimal] = {}
    for cost, currency in zip(candidates["monthly_cost"], candidates["currency"], strict=True):
        if isinstance(cost, Decimal) and isinstance(currency, str):
            totals[currency] = totals.get(currency, Decimal(0)) + cost
    return totals
