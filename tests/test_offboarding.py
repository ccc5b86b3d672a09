"""HR offboarding through the assignment service, on SQLite and PostgreSQL, with figures
computed by hand.

Contracts (unit cost per seat per year, EUR):
  ADOBE-ACROBAT-PRO      240.00  in force 2026-01-01..2026-12-31  -> 20.00 a month
  MS-VISIO-PLAN2         600.00  in force 2025-07-01..2026-06-30  -> 50.00 a month
  JETBRAINS-PYCHARM-PRO  120.00  2025 (expired), 90.00 in 2026    ->  7.50 a month
  ZOOM-WORKPLACE         150.00  in force 2026                    -> 12.50 a month
Seats: Emma (E005) Acrobat + Visio + PyCharm; Farid (E006) Acrobat + PyCharm; Dev (E004) Visio;
Hugo (E008) Zoom. Day 2 terminates Emma, puts Farid on leave, gives Hugo a termination date
2026-03-20; day 3 rehires Emma.
"""

import datetime as dt
from decimal import Decimal

import pytest
from conftest import TESTS_DATA
from sqlalchemy import select

from licenseflow.db import unit_of_work
from schemas.store import Alert, Assignment, AuditLog, Contract, Person, Product
from tasks.assignments import AssignmentService, SeatChange
from tasks.offboarding import (
    flag_people_on_leave,
    offboard,
    people_to_offboard,
    total_recovered,
)
from tasks.people import apply_due_terminations, apply_roster

HR = TESTS_DATA / "hr"
D1, D2, D3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 10)
MORNING = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

CONTRACTS = [  # number, product, unit cost, start, end
    ("A-2026", "ADOBE-ACROBAT-PRO", "240.00", dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
    ("V-2026", "MS-VISIO-PLAN2", "600.00", dt.date(2025, 7, 1), dt.date(2026, 6, 30)),
    ("P-2025", "JETBRAINS-PYCHARM-PRO", "120.00", dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
    ("P-2026", "JETBRAINS-PYCHARM-PRO", "90.00", dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
    ("Z-2026", "ZOOM-WORKPLACE", "150.00", dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
]
SEATS = {
    "E005": ["ADOBE-ACROBAT-PRO", "MS-VISIO-PLAN2", "JETBRAINS-PYCHARM-PRO"],
    "E006": ["ADOBE-ACROBAT-PRO", "JETBRAINS-PYCHARM-PRO"],
    "E004": ["MS-VISIO-PLAN2"],
    "E008": ["ZOOM-WORKPLACE"],
}


def roster(engine, name, today):
    with unit_of_work(engine) as session:
        return apply_roster(session, HR / name, today=today, actor="test")


def arrange(engine):
    roster(engine, "roster_day1.csv", D1)
    with unit_of_work(engine) as session:
        products = {}
        for number, code, cost, start, end in CONTRACTS:
            if code not in products:
                products[code] = Product(code=code, name=code.title(), metric="per_user")
                session.add(products[code])
                session.flush()
            session.add(
                Contract(
                    contract_number=number,
                    product_id=products[code].id,
                    seats=10,
                    unit_cost=Decimal(cost),
                    currency="EUR",
                    start_date=start,
                    end_date=end,
                )
            )
        session.flush()
        people = dict(session.execute(select(Person.employee_id, Person.id)).all())
        AssignmentService(session, "test", now=MORNING).apply(
            [
                SeatChange("assign", products[code].id, person_id=people[employee])
                for employee, codes in SEATS.items()
                for code in codes
            ]
        )


def open_seats(engine, employee_id):
    with unit_of_work(engine) as session:
        return sorted(
            session.execute(
                select(Product.code)
                .join(Assignment, Assignment.product_id == Product.id)
                .join(Person, Person.id == Assignment.person_id)
                .where(Person.employee_id == employee_id, Assignment.revoked_at.is_(None))
            ).scalars()
        )


def run_offboarding(engine, today):
    with unit_of_work(engine) as session:
        return offboard(session, people_to_offboard(session, today), today, "hr-sync")


def test_a_termination_revokes_exactly_that_persons_seats_and_prices_them(engine):
    arrange(engine)
    roster(engine, "roster_day2.csv", D2)

    reclaimed = run_offboarding(engine, D2)

    columns = ["product_code", "seats_reclaimed", "unit_cost", "currency"]
    assert reclaimed[columns].values.tolist() == [
        ["ADOBE-ACROBAT-PRO", 1, Decimal("240.00"), "EUR"],
        ["JETBRAINS-PYCHARM-PRO", 1, Decimal("90.00"), "EUR"],  # the 2026 contract, not 2025's
        ["MS-VISIO-PLAN2", 1, Decimal("600.00"), "EUR"],
    ]  # fmt: skip
    assert reclaimed["monthly_cost_recovered"].tolist() == [
        Decimal("20.00"),
        Decimal("7.50"),
        Decimal("50.00"),
    ]
    assert total_recovered(reclaimed) == {"EUR": Decimal("77.50")}
    assert open_seats(engine, "E005") == []
    assert open_seats(engine, "E006") == ["ADOBE-ACROBAT-PRO", "JETBRAINS-PYCHARM-PRO"]  # leave
    assert open_seats(engine, "E004") == ["MS-VISIO-PLAN2"]
    with unit_of_work(engine) as session:
        revoked = session.execute(
            select(Assignment.revoke_reason, Assignment.revoked_by, Person.employee_id)
            .join(Person, Person.id == Assignment.person_id)
            .where(Assignment.revoked_at.is_not(None))
        ).all()
        entries = session.execute(
            select(AuditLog.action).where(AuditLog.actor == "hr-sync")
        ).scalars()
        assert list(entries) == ["revoke"] * 3
    assert sorted(revoked) == [("offboarding", "hr-sync", "E005")] * 3

    # nothing is left to do on a re-run
    assert run_offboarding(engine, D2).empty


def test_a_person_on_leave_keeps_seats_and_is_flagged_once(engine):
    arrange(engine)
    roster(engine, "roster_day2.csv", D2)
    run_offboarding(engine, D2)

    with unit_of_work(engine) as session:
        flagged = flag_people_on_leave(session, actor="hr-sync")
    # Grace (E007) is on leave too but holds no seat
    assert flagged[["employee_id", "since", "seats_held", "alert_created"]].values.tolist() == [
        ["E006", D2, 2, True]
    ]
    with unit_of_work(engine) as session:
        assert flag_people_on_leave(session, actor="hr-sync")["alert_created"].tolist() == [False]
        [alert] = session.execute(select(Alert).where(Alert.kind == "person_on_leave")).scalars()
    assert alert.owner_email == "dev.patel@example.com"  # their manager
    assert alert.subject.startswith("Farid Haddad (farid.haddad@example.com) is on leave and ")
    assert open_seats(engine, "E006") == ["ADOBE-ACROBAT-PRO", "JETBRAINS-PYCHARM-PRO"]


def test_a_rehire_gets_no_seats_back(engine):
    arrange(engine)
    roster(engine, "roster_day2.csv", D2)
    run_offboarding(engine, D2)

    rehire = roster(engine, "roster_day3.csv", D3)

    assert [(c.employee_id, c.new_status) for c in rehire.status_changes] == [("E005", "active")]
    assert run_offboarding(engine, D3).empty
    assert open_seats(engine, "E005") == []


def test_a_future_termination_revokes_nothing_until_its_day(engine):
    arrange(engine)
    roster(engine, "roster_day2.csv", D2)  # Hugo (E008): termination_date 2026-03-20
    run_offboarding(engine, D2)

    eve = dt.date(2026, 3, 19)
    with unit_of_work(engine) as session:
        apply_due_terminations(session, today=eve, actor="hr-sync")
    assert run_offboarding(engine, eve).empty
    assert open_seats(engine, "E008") == ["ZOOM-WORKPLACE"]

    day = dt.date(2026, 3, 20)
    with unit_of_work(engine) as session:
        apply_due_terminations(session, today=day, actor="hr-sync")
    reclaimed = run_offboarding(engine, day)
    columns = ["product_code", "seats_reclaimed", "monthly_cost_recovered"]
    assert reclaimed[columns].values.tolist() == [["ZOOM-WORKPLACE", 1, Decimal("12.50")]]
    assert open_seats(engine, "E008") == []


@pytest.mark.parametrize("seats", [1, 3])
def test_a_seat_imported_for_someone_already_gone_is_revoked(sqlite_engine, seats):
    """Ines (E009) left in 2023; an assignment-state import recorded seats for her anyway."""
    arrange(sqlite_engine)
    codes = ["ADOBE-ACROBAT-PRO", "MS-VISIO-PLAN2", "ZOOM-WORKPLACE"][:seats]
    with unit_of_work(sqlite_engine) as session:
        ines = session.execute(select(Person.id).where(Person.employee_id == "E009")).scalar()
        product = dict(session.execute(select(Product.code, Product.id)).all())
        AssignmentService(session, "import", now=MORNING).apply(
            [SeatChange("assign", product[c], person_id=ines) for c in codes],
            override_reason="imported from state.csv",
            allow_terminated=True,
        )
    reclaimed = run_offboarding(sqlite_engine, D1)
    assert int(reclaimed["seats_reclaimed"].sum()) == seats
    assert open_seats(sqlite_engine, "E009") == []
