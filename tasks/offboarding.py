"""HR offboarding: a terminated person's seats come back the same day; a person on leave keeps
theirs and is flagged.

Seats are revoked only through the assignment service (reason "offboarding"), so capacity,
history and the audit log stay the service's business. A rehired person gets no seat back
automatically: nothing here assigns.

Monthly cost recovered: for each revoked seat, the unit cost per seat per year of the
product's contract in force on `today` (start_date <= today <= end_date; with several in force,
the one that started last, then the highest id), divided by 12; summed per product and
rounded to cents. A product with no contract in force recovers 0 (its currency is empty).
Amounts in different currencies are never added together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from schemas.store import Assignment, Contract, Person, PersonStatusHistory, Product
from tasks.assignments import AssignmentService
from tasks.ownership import insert_alerts, resolve_alerts

REASON = "offboarding"
LEAVE_KIND = "person_on_leave"
CENT = Decimal("0.01")
RECLAIMED_COLUMNS = [
    "product_id",
    "product_code",
    "product_name",
    "seats_reclaimed",
    "unit_cost",
    "currency",
    "monthly_cost_recovered",
]


def people_to_offboard(session: Session, today: dt.date) -> list[int]:
    """Everyone terminated (or past their termination date) who still holds an open seat:
    not only today's leavers, so seats imported later for people already gone come back too
    and a re-run finds nothing left to do."""
    gone = or_(
        Person.status == "terminated",
        and_(Person.termination_date.is_not(None), Person.termination_date <= today),
    )
    return list(
        session.execute(
            select(Person.id)
            .join(Assignment, Assignment.person_id == Person.id)
            .where(Assignment.revoked_at.is_(None), gone)
            .distinct()
            .order_by(Person.id)
        ).scalars()
    )


def offboard(
    session: Session,
    person_ids: Iterable[int],
    today: dt.date,
    actor: str,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Revoke every open seat of each person (stamped `now`, default the clock); returns the
    reclaimed seats per product with the monthly cost recovered (columns RECLAIMED_COLUMNS)."""
    service = AssignmentService(session, actor, now=now)
    revoked: list[int] = []  # product id per revoked seat
    for person_id in dict.fromkeys(person_ids):
        outcomes = service.revoke_all_for_person(int(person_id), reason=REASON)
        revoked += [o.change.product_id for o in outcomes if o.status == "revoked"]
    if not revoked:
        return pd.DataFrame(columns=RECLAIMED_COLUMNS)
    seats = pd.Series(revoked).value_counts().rename("seats_reclaimed")
    return reclaimed_cost(
        seats, contracts_in_force(session, seats.index, today), products(session, seats.index)
    )


def reclaimed_cost(
    seats: pd.Series, contracts: pd.DataFrame, catalog: pd.DataFrame
) -> pd.DataFrame:
    """The rule (pure): seats per product (index product_id) x unit cost per year / 12.

    contracts: product_id, unit_cost (Decimal), currency (the one in force per product);
    catalog: product_id, product_code, product_name.
    """
    frame = (
        seats.rename_axis("product_id")
        .rename("seats_reclaimed")
        .reset_index()
        .merge(catalog, on="product_id", how="left")
        .merge(contracts, on="product_id", how="left")
    )
    frame["unit_cost"] = [
        Decimal(0) if not isinstance(c, Decimal) else c for c in frame["unit_cost"]
    ]
    frame["monthly_cost_recovered"] = [
        (cost * int(n) / 12).quantize(CENT, rounding=ROUND_HALF_UP)
        for cost, n in zip(frame["unit_cost"], frame["seats_reclaimed"], strict=True)
    ]
    frame["currency"] = frame["currency"].astype(object).where(frame["currency"].notna(), "")
    frame["seats_reclaimed"] = frame["seats_reclaimed"].astype("int64")
    return frame[RECLAIMED_COLUMNS].sort_values("product_code").reset_index(drop=True)


def contracts_in_force(
    session: Session, product_ids: Iterable[int], today: dt.date
) -> pd.DataFrame:
    """The contract in force on `today` per product: product_id, unit_cost, currency."""
    rows = session.execute(
        select(Contract.product_id, Contract.unit_cost, Contract.currency)
        .where(
            Contract.product_id.in_([int(p) for p in product_ids]),
            Contract.start_date <= today,
            Contract.end_date >= today,
        )
        .order_by(Contract.product_id, Contract.start_date.desc(), Contract.id.desc())
    ).all()
    frame = pd.DataFrame(rows, columns=["product_id", "unit_cost", "currency"])
    return frame.drop_duplicates("product_id", keep="first")


def products(session: Session, product_ids: Iterable[int]) -> pd.DataFrame:
    rows = session.execute(
        select(Product.id, Product.code, Product.name).where(
            Product.id.in_([int(p) for p in product_ids])
        )
    ).all()
    return pd.DataFrame(rows, columns=["product_id", "product_code", "product_name"])


def total_recovered(reclaimed: pd.DataFrame) -> dict[str, Decimal]:
    """Monthly cost recovered per currency."""
    totals: dict[str, Decimal] = {}
    for currency, amount in zip(
        reclaimed["currency"], reclaimed["monthly_cost_recovered"], strict=True
    ):
        if currency:
            totals[currency] = totals.get(currency, Decimal(0)) + amount
    return totals


def flag_people_on_leave(
    session: Session, *, actor: str, now: dt.datetime | None = None
) -> pd.DataFrame:
    """Everyone on leave who still holds seats, with an alert each (once per leave); alerts of
    people back from leave are resolved. Returns person_id, employee_id, email, full_name,
    manager_email, since, seats_held, alert_created."""
    now = now or dt.datetime.now(dt.UTC)
    columns = [
        "person_id",
        "employee_id",
        "email",
        "full_name",
        "manager_email",
        "since",
        "seats_held",
        "alert_created",
    ]
    since = (
        select(
            PersonStatusHistory.person_id,
            func.max(PersonStatusHistory.effective_date).label("since"),
        )
        .where(PersonStatusHistory.status == "leave")
        .group_by(PersonStatusHistory.person_id)
        .subquery()
    )
    held = (
        select(Assignment.person_id, func.count().label("seats_held"))
        .where(Assignment.revoked_at.is_(None), Assignment.person_id.is_not(None))
        .group_by(Assignment.person_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Person.id,
            Person.employee_id,
            Person.email,
            Person.full_name,
            Person.manager_email,
            since.c.since,
            held.c.seats_held,
        )
        .join(held, held.c.person_id == Person.id)
        .outerjoin(since, since.c.person_id == Person.id)
        .where(Person.status == "leave")
        .order_by(Person.employee_id)
    ).all()
    flagged = pd.DataFrame(rows, columns=columns[:-1])
    keys = [
        f"{LEAVE_KIND}:{p}:{s or ''}"
        for p, s in zip(flagged["person_id"], flagged["since"], strict=True)
    ]
    alerts = [
        {
            "kind": LEAVE_KIND,
            "dedupe_key": key,
            "subject": f"{r.full_name} ({r.email}) is on leave and holds {r.seats_held} seat(s): "
            "kept, not revoked; decide whether to reclaim them",
            "owner_email": r.manager_email,
            "payload": {
                "person_id": int(r.person_id),
                "employee_id": r.employee_id,
                "since": None if r.since is None else str(r.since),
                "seats_held": int(r.seats_held),
            },
            "created_at": now,
        }
        for key, r in zip(keys, flagged.itertuples(index=False), strict=True)
    ]
    created = insert_alerts(session, alerts, actor)
    resolve_alerts(session, LEAVE_KIND, keep=set(keys), actor=actor, now=now)
    flagged["alert_created"] = [k in set(created["dedupe_key"]) for k in keys]
    return flagged
