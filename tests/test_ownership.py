"""Contract ownership gaps and their alerts, on SQLite and PostgreSQL (people from
tests/data/hr; contracts arranged here)."""

import datetime as dt
from decimal import Decimal

import pandas as pd
from conftest import TESTS_DATA
from sqlalchemy import select, update

from licenseflow.db import unit_of_work
from schemas.store import Alert, AuditLog, Contract, Product
from tasks.ownership import (
    find_ownership_gaps,
    ownership_gaps,
    subject,
    write_ownership_alerts,
)
from tasks.people import apply_roster

HR = TESTS_DATA / "hr"
D2 = dt.date(2026, 3, 3)

CONTRACTS = [  # number, product, owner, end
    ("C-050", "WINRAR", None, dt.date(2025, 12, 31)),  # expired: not flagged
    ("C-100", "ADOBE-ACROBAT-PRO", "ana.ruiz@example.com", dt.date(2026, 12, 31)),
    ("C-200", "MS-VISIO-PLAN2", None, dt.date(2026, 12, 31)),
    ("C-300", "JETBRAINS-PYCHARM-PRO", "emma.schulz@example.com", dt.date(2026, 12, 31)),
    ("C-400", "ADOBE-PHOTOSHOP", "Grace.Lee@Example.com", dt.date(2027, 6, 30)),
    ("C-500", "ZOOM-WORKPLACE", "someone@elsewhere.com", dt.date(2026, 12, 31)),
    ("C-600", "TABLEAU-DESKTOP", "hugo.silva@example.com", dt.date(2026, 12, 31)),
]


def arrange(engine):
    for name, today in (("roster_day1.csv", dt.date(2026, 3, 2)), ("roster_day2.csv", D2)):
        with unit_of_work(engine) as session:
            apply_roster(session, HR / name, today=today, actor="test")
    with unit_of_work(engine) as session:
        for number, code, owner, end in CONTRACTS:
            product = Product(code=code, name=code.title(), metric="per_user")
            session.add(product)
            session.flush()
            session.add(
                Contract(
                    contract_number=number,
                    product_id=product.id,
                    seats=10,
                    unit_cost=Decimal("120.00"),
                    currency="EUR",
                    start_date=dt.date(2025, 1, 1),
                    end_date=end,
                    owner_email=owner,
                )
            )


def test_gaps_name_the_contract_the_problem_and_the_manager(engine):
    arrange(engine)
    with unit_of_work(engine) as session:
        gaps = ownership_gaps(session, D2)

    got = gaps[["contract_number", "gap", "owner_email", "owner_status", "suggested_owner"]]
    assert got.astype(object).where(got.notna(), None).values.tolist() == [
        ["C-200", "no_owner", None, None, None],
        ["C-300", "owner_terminated", "emma.schulz@example.com", "terminated",
         "dev.patel@example.com"],
        ["C-400", "owner_on_leave", "grace.lee@example.com", "leave", "ana.ruiz@example.com"],
        ["C-500", "owner_unknown", "someone@elsewhere.com", None, None],
    ]  # fmt: skip


def test_alerts_are_written_once_and_resolved_when_the_gap_closes(engine):
    arrange(engine)
    with unit_of_work(engine) as session:
        created = write_ownership_alerts(session, ownership_gaps(session, D2), actor="test")
    assert len(created) == 4

    with unit_of_work(engine) as session:  # a re-run adds nothing
        again = write_ownership_alerts(session, ownership_gaps(session, D2), actor="test")
    assert again.empty

    with unit_of_work(engine) as session:
        alerts = session.execute(select(Alert).order_by(Alert.id)).scalars().all()
        created_entries = session.execute(
            select(AuditLog.entity_id).where(AuditLog.action == "alert.created")
        ).scalars()
        assert sorted(created_entries) == sorted(str(a.id) for a in alerts)
    leave = next(a for a in alerts if a.payload["gap"] == "owner_on_leave")
    assert leave.kind == "ownership_gap"
    assert leave.owner_email == "ana.ruiz@example.com"  # addressed to the suggested owner
    assert leave.subject == (
        "Contract C-400 (ADOBE-PHOTOSHOP) owner Grace Lee (grace.lee@example.com) is on "
        "leave; suggested owner: ana.ruiz@example.com (their manager)"
    )

    # C-200 gets an owner: its alert is resolved, nothing new is created
    with unit_of_work(engine) as session:
        session.execute(
            update(Contract)
            .where(Contract.contract_number == "C-200")
            .values(owner_email="ben.okafor@example.com")
        )
    with unit_of_work(engine) as session:
        third = write_ownership_alerts(session, ownership_gaps(session, D2), actor="test")
        resolved = session.execute(
            select(Alert.payload).where(Alert.resolved_at.is_not(None))
        ).scalars()
        assert [p["contract_number"] for p in resolved] == ["C-200"]
    assert third.empty


def test_the_suggestion_climbs_past_managers_who_are_away():
    contracts = pd.DataFrame(
        {
            "contract_id": [1],
            "contract_number": ["C-1"],
            "product_id": [7],
            "product_code": ["TABLEAU-DESKTOP"],
            "end_date": [dt.date(2026, 12, 31)],
            "owner_email": ["a@x.com"],
        }
    )
    people = pd.DataFrame(
        {
            "email": ["a@x.com", "b@x.com", "c@x.com", "d@x.com"],
            "full_name": ["A", "B", "C", "D"],
            "status": ["terminated", "leave", "terminated", "active"],
            "manager_email": ["b@x.com", "c@x.com", "d@x.com", None],
        },
        dtype="string",
    )
    gaps = find_ownership_gaps(contracts, people, D2)
    assert gaps[["gap", "suggested_owner"]].values.tolist() == [["owner_terminated", "d@x.com"]]
    assert subject(gaps.iloc[0].to_dict()) == (
        "Contract C-1 (TABLEAU-DESKTOP) owner A (a@x.com) has left (terminated); suggested "
        "owner: d@x.com (the first active manager above them)"
    )
