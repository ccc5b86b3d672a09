"""The small store every bulk test starts from, and helpers to compare seat states.

Other test_bulk_* modules import from here (`from test_bulk_world import ...`).

    product             metric      owned  unit cost/yr  open seats (assigned_at)
    MS-VISIO-PLAN2      per_user    5      120 EUR       ann (2026-01-10), bob (2026-01-11)
    MS-M365-E3          per_user    4      360 EUR       ann, bob, cat (2026-01-05)
    WINRAR              per_device  3       30 EUR       pc-1 (2026-01-20)
    MATHWORKS-MATLAB    concurrent  (2, not seat-limited)  -
    UTORRENT            per_device  denied               -

People ann, bob, cat, dan, fay, gus (active; employee ids E-ann, ...), eve (terminated
2026-02-01); devices pc-1 .. pc-4.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from licenseflow.db import unit_of_work
from schemas.store import Assignment, AuditLog, Contract, Device, Person, Product
from tasks.assignments import AssignmentService, SeatChange

BULK_DATA = Path(__file__).parent / "data" / "bulk"
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
START, END = dt.date(2020, 1, 1), dt.date(2099, 12, 31)

PRODUCTS = {
    # code: (metric, seats, unit cost, classification)
    "MS-VISIO-PLAN2": ("per_user", 5, "120", "commercial"),
    "MS-M365-E3": ("per_user", 4, "360", "commercial"),
    "WINRAR": ("per_device", 3, "30", "commercial"),
    "MATHWORKS-MATLAB": ("concurrent", 2, "1500", "commercial"),
    "UTORRENT": ("per_device", None, "0", "denied"),
}
PEOPLE = ["ann", "bob", "cat", "dan", "fay", "gus"]
DEVICES = ["pc-1", "pc-2", "pc-3", "pc-4"]
SEATS = [
    ("MS-VISIO-PLAN2", "ann", None, dt.datetime(2026, 1, 10, 8, 30, tzinfo=dt.UTC)),
    ("MS-VISIO-PLAN2", "bob", None, dt.datetime(2026, 1, 11, 8, 30, tzinfo=dt.UTC)),
    ("MS-M365-E3", "ann", None, dt.datetime(2026, 1, 5, tzinfo=dt.UTC)),
    ("MS-M365-E3", "bob", None, dt.datetime(2026, 1, 5, tzinfo=dt.UTC)),
    ("MS-M365-E3", "cat", None, dt.datetime(2026, 1, 5, tzinfo=dt.UTC)),
    ("WINRAR", None, "pc-1", dt.datetime(2026, 1, 20, 12, 0, 0, 123456, tzinfo=dt.UTC)),
]


def build_world(engine) -> dict:
    """Products, contracts, people, devices; the open seats above (through the service)."""
    ids: dict[str, int] = {}
    with unit_of_work(engine) as session:
        for code, (metric, seats, cost, classification) in PRODUCTS.items():
            product = Product(code=code, name=code.title(), metric=metric)
            product.classification = classification
            session.add(product)
            session.flush()
            ids[code] = product.id
            if classification == "commercial":
                session.add(
                    Contract(
                        contract_number=f"C-{code}",
                        product_id=product.id,
                        seats=seats,
                        unit_cost=Decimal(cost),
                        currency="EUR",
                        start_date=START,
                        end_date=END,
                    )
                )
        for name in [*PEOPLE, "eve"]:
            person = Person(
                employee_id=f"E-{name}",
                email=f"{name}@example.com",
                full_name=name.title(),
                status="terminated" if name == "eve" else "active",
                termination_date=dt.date(2026, 2, 1) if name == "eve" else None,
            )
            session.add(person)
            session.flush()
            ids[name] = person.id
        for host in DEVICES:
            device = Device(hostname=host)
            session.add(device)
            session.flush()
            ids[host] = device.id
        service = AssignmentService(session, "seed", now=NOW)
        service.apply(
            [
                SeatChange(
                    "assign",
                    ids[code],
                    ids[person] if person else None,
                    ids[device] if device else None,
                    reason="seed",
                    assigned_at=at,
                )
                for code, person, device, at in SEATS
            ]
        )
    return ids


@pytest.fixture
def world(engine):
    return build_world(engine)


def approved_batch(engine, file, requester="alice", approver="bob", **options) -> str:
    """A batch submitted, backed up and approved, as the flow leaves it before the pilot."""
    from tasks.bulk import back_up, submit
    from tasks.bulk_approval import decide, open_for_approval

    submitted = submit(engine, file, requester, **options)
    assert submitted.state == "validated", submitted.errors
    back_up(engine, submitted.batch_id)
    open_for_approval(engine, submitted.batch_id, None)
    decide(engine, submitted.batch_id, "approve", approver)
    return submitted.batch_id


def seat_state(engine, product_ids=None) -> set[tuple]:
    """The assignment state compared by every bulk test: the set of open seats as
    (product_id, person_id, device_id, assigned_at in UTC)."""
    with unit_of_work(engine) as session:
        frame = AssignmentService(session, "test").open_assignments(product_ids)
    return {
        (
            int(p),
            None if pd.isna(a) else int(a),
            None if pd.isna(d) else int(d),
            at.isoformat(),
        )
        for p, a, d, at in frame[
            ["product_id", "person_id", "device_id", "assigned_at"]
        ].itertuples(index=False)
    }


def store_fingerprint(engine) -> tuple:
    """Everything a refused batch must leave alone: every assignment row and the number of
    seat changes in the audit log."""
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(
                Assignment.id,
                Assignment.product_id,
                Assignment.person_id,
                Assignment.device_id,
                Assignment.revoked_at,
            ).order_by(Assignment.id)
        ).all()
        changes = session.execute(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action.in_(["assign", "revoke"]))
        ).scalar()
    return tuple(tuple(r) for r in rows), changes


def test_world_has_the_seats_described(engine):
    ids = build_world(engine)
    state = seat_state(engine)
    assert len(state) == 6
    assert (ids["WINRAR"], None, ids["pc-1"], "2026-01-20T12:00:00.123456+00:00") in state
    with unit_of_work(engine) as session:
        cap = AssignmentService(session, "t", now=NOW).capacity([ids["MS-M365-E3"]])
    assert (cap[ids["MS-M365-E3"]].owned, cap[ids["MS-M365-E3"]].used) == (4, 3)
