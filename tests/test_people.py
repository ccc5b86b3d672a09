"""The HR roster feed (tests/data/hr): upserts, status history, bad input, the mass-termination
guard. Runs on SQLite and PostgreSQL.

The files: roster_day1.csv (20 people; E007 on leave, E009 terminated 2023-12-31);
roster_day2.csv (E005 terminated 2026-03-03, E006 on leave, E009 rehired, E008 gets a
termination date 2026-03-20, E010 moves to Marketing/CC-600, E021 hired, Ben's email in other
letter case); roster_day3.csv (E005 rehired); truncated.csv (the first 10 people); one bad_*.csv
per kind of bad input, each roster_day1.csv with one fault.
"""

import datetime as dt

import pandas as pd
import pytest
from conftest import TESTS_DATA
from sqlalchemy import func, select

from licenseflow.db import unit_of_work
from licenseflow.errors import GuardTripped, InputRejected
from schemas.store import Assignment, AuditLog, IngestionRun, Person, PersonStatusHistory
from tasks.people import apply_due_terminations, apply_roster, effective_status, read_roster

HR = TESTS_DATA / "hr"
D1, D2, D3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 10)


def apply(engine, name, today, **options):
    with unit_of_work(engine) as session:
        return apply_roster(session, HR / name, today=today, actor="test", **options)


def ids(people):
    return [p.employee_id for p in people]


def person(engine, employee_id):
    with unit_of_work(engine) as session:
        return session.execute(select(Person).where(Person.employee_id == employee_id)).scalar_one()


def history(engine, employee_id):
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(PersonStatusHistory.status, PersonStatusHistory.effective_date)
            .join(Person, Person.id == PersonStatusHistory.person_id)
            .where(Person.employee_id == employee_id)
            .order_by(PersonStatusHistory.id)
        ).all()
    return [(status, day.isoformat()) for status, day in rows]


def snapshot(engine):
    """Everything a refused roster must leave as it was."""
    with unit_of_work(engine) as session:
        people = session.execute(
            select(Person.employee_id, Person.email, Person.status, Person.department).order_by(
                Person.employee_id
            )
        ).all()
        counts = [
            session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (PersonStatusHistory, Assignment, AuditLog)
        ]
    return people, counts


def audit_entries(engine, action):
    with unit_of_work(engine) as session:
        return session.execute(
            select(AuditLog.entity_id, AuditLog.before, AuditLog.after)
            .where(AuditLog.action == action)
            .order_by(AuditLog.id)
        ).all()


def test_first_roster_creates_everyone_with_their_status(engine):
    result = apply(engine, "roster_day1.csv", D1)

    assert len(result.created) == 20
    assert (result.updated, result.newly_terminated, result.missing) == ([], [], [])
    assert ids(result.on_leave) == ["E007"]
    ines = person(engine, "E009")
    assert (ines.status, ines.termination_date) == ("terminated", dt.date(2023, 12, 31))
    assert person(engine, "E003").full_name == "Chloé Martin"
    assert history(engine, "E009") == [("terminated", "2023-12-31")]
    assert history(engine, "E001") == [("active", "2015-01-05")]  # active since hired
    assert len(audit_entries(engine, "person.created")) == 20
    with unit_of_work(engine) as session:
        run = session.execute(select(IngestionRun)).scalar_one()
    assert (run.feed, run.status, run.rows_read, run.rows_accepted) == ("hr", "applied", 20, 20)


def test_next_day_roster_updates_and_keeps_status_history(engine):
    apply(engine, "roster_day1.csv", D1)
    result = apply(engine, "roster_day2.csv", D2)

    assert ids(result.created) == ["E021"]
    assert ids(result.updated) == ["E005", "E006", "E008", "E009", "E010"]  # not Ben (E002)
    assert [(c.employee_id, c.old_status, c.new_status, c.effective_date) for c in
            result.status_changes] == [
        ("E005", "active", "terminated", D2),
        ("E006", "active", "leave", D2),
        ("E009", "terminated", "active", D2),
    ]  # fmt: skip
    assert ids(result.newly_terminated) == ["E005"]
    assert ids(result.on_leave) == ["E006", "E007"]
    assert result.missing == []
    assert person(engine, "E002").email == "ben.okafor@example.com"
    hugo = person(engine, "E008")
    assert (hugo.status, hugo.termination_date) == ("active", dt.date(2026, 3, 20))
    assert history(engine, "E005") == [("active", "2020-02-03"), ("terminated", "2026-03-03")]
    assert history(engine, "E009") == [("terminated", "2023-12-31"), ("active", "2026-03-03")]
    jonas = [e for e in audit_entries(engine, "person.updated") if e.after.get("department")]
    assert [(e.before, e.after) for e in jonas] == [
        (
            {"department": "Sales", "cost_center": "CC-500"},
            {"department": "Marketing", "cost_center": "CC-600"},
        )
    ]


def test_the_same_roster_twice_changes_nothing(engine):
    apply(engine, "roster_day1.csv", D1)
    apply(engine, "roster_day2.csv", D2)
    before = snapshot(engine)

    again = apply(engine, "roster_day2.csv", D2)

    assert (again.created, again.updated, again.status_changes) == ([], [], [])
    assert again.newly_terminated == []
    assert snapshot(engine) == before


def test_a_future_termination_date_waits_until_it_is_reached(engine):
    apply(engine, "roster_day1.csv", D1)
    apply(engine, "roster_day2.csv", D2)  # Hugo (E008): termination_date 2026-03-20

    with unit_of_work(engine) as session:
        early = apply_due_terminations(session, today=dt.date(2026, 3, 19), actor="test")
    assert early.newly_terminated == []
    assert person(engine, "E008").status == "active"

    with unit_of_work(engine) as session:
        due = apply_due_terminations(session, today=dt.date(2026, 3, 20), actor="test")
    assert ids(due.newly_terminated) == ["E008"]
    assert person(engine, "E008").status == "terminated"
    assert history(engine, "E008") == [("active", "2022-01-10"), ("terminated", "2026-03-20")]

    with unit_of_work(engine) as session:  # and only once
        later = apply_due_terminations(session, today=dt.date(2026, 3, 21), actor="test")
    assert later.newly_terminated == []


def test_a_rehire_is_active_again(engine):
    apply(engine, "roster_day1.csv", D1)
    apply(engine, "roster_day2.csv", D2)
    result = apply(engine, "roster_day3.csv", D3)

    assert [(c.employee_id, c.old_status, c.new_status) for c in result.status_changes] == [
        ("E005", "terminated", "active")
    ]
    emma = person(engine, "E005")
    assert (emma.status, emma.hire_date, emma.termination_date) == (
        "active",
        dt.date(2026, 3, 10),
        None,
    )


def test_effective_status_rules():
    frame = pd.DataFrame(
        {
            "status": ["active", "terminated", "terminated", "leave", "terminated"],
            "termination_date": [None, "2026-03-03", "2026-04-01", "2026-03-01", None],
        },
        dtype="string",
    )
    before = pd.Series(["active", "active", "leave", "leave", None], dtype="string")
    assert list(effective_status(frame, D2, before)) == [
        "active",  # nothing says otherwise
        "terminated",  # the date is today
        "leave",  # terminated from April: stays as it was until then
        "terminated",  # the date has passed, whatever the status column says
        "terminated",  # terminated, no date: now
    ]


BAD = [
    ("bad_unknown_status.csv", [(4, "status", "Retired", "must be one of ['active', 'leave', "
                                 "'terminated']")]),
    ("bad_duplicate_id.csv", [
        (5, "employee_id", "E005", "duplicate employee id: also on row 6"),
        (6, "employee_id", "E005", "duplicate employee id: also on row 5"),
    ]),
    ("bad_email_collision.csv", [
        (3, "email", "chloe.martin@example.com",
         "email collides (emails compare case-insensitively): also on row 8 (employee_id E008)"),
        (8, "email", "Chloe.Martin@EXAMPLE.com",
         "email collides (emails compare case-insensitively): also on row 3 (employee_id E003)"),
    ]),
    ("bad_termination_before_hire.csv", [
        (10, "termination_date", "2023-07-31", "termination date is before the hire date "
         "2023-08-01"),
    ]),
    ("bad_unknown_manager.csv", [
        (6, "manager_email", "nobody@example.com",
         "manager not found: no person with this email in the roster or the store"),
    ]),
    ("bad_date.csv", [(3, "hire_date", "2019-02-30", "is not a date in the form YYYY-MM-DD")]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "expected"), BAD, ids=[name for name, _ in BAD])
def test_bad_rosters_are_refused_row_by_row_and_change_nothing(engine, name, expected):
    apply(engine, "roster_day1.csv", D1)
    before = snapshot(engine)

    with pytest.raises(InputRejected) as refused:
        apply(engine, name, D2)

    found = [(e.row, e.column, e.value, e.reason) for e in refused.value.errors]
    assert found == expected
    assert all(e.file == str(HR / name) for e in refused.value.errors)
    assert snapshot(engine) == before


def test_a_truncated_roster_is_refused_unless_confirmed(engine):
    apply(engine, "roster_day1.csv", D1)
    before = snapshot(engine)

    refusal = r"0 newly terminated and 10 missing from the roster, 10 of the 19 people .*\(53%"
    with pytest.raises(GuardTripped, match=refusal):
        apply(engine, "truncated.csv", D2)
    assert snapshot(engine) == before

    result = apply(engine, "truncated.csv", D2, confirm_mass_termination=True)

    assert result.mass_termination_confirmed
    assert ids(result.missing) == [f"E{n:03d}" for n in range(11, 21)]
    assert result.newly_terminated == []  # absence alone terminates nobody
    assert person(engine, "E015").status == "active"
    [entry] = audit_entries(engine, "roster.mass_termination_confirmed")
    assert entry.after == {
        "file": str(HR / "truncated.csv"),
        "newly_terminated": 0,
        "missing": 10,
        "share": 0.5263,
        "guard_share": 0.1,
    }


def test_the_guard_counts_terminations_too(sqlite_engine):
    apply(sqlite_engine, "roster_day1.csv", D1)
    # day 2 terminates Emma: 1 of 19 = 5.3%
    with pytest.raises(GuardTripped, match=r"1 newly terminated and 0 missing .*guard allows 5%"):
        apply(sqlite_engine, "roster_day2.csv", D2, guard_share=0.05)
    assert ids(apply(sqlite_engine, "roster_day2.csv", D2, guard_share=0.06).newly_terminated) == [
        "E005"
    ]


def _variant(tmp_path, edits, extra=()):
    """roster_day1.csv with some rows changed: {employee_id: {column: value}}."""
    frame = pd.read_csv(HR / "roster_day1.csv", dtype=str, keep_default_na=False)
    for employee_id, values in edits.items():
        for column, value in values.items():
            frame.loc[frame["employee_id"] == employee_id, column] = value
    frame = pd.concat([frame, pd.DataFrame(list(extra), columns=frame.columns)])
    path = tmp_path / "variant.csv"
    frame.to_csv(path, index=False)
    return path


def test_an_email_moves_to_another_person_only_when_given_up(sqlite_engine, tmp_path):
    apply(sqlite_engine, "roster_day1.csv", D1)
    hire = ["E022", "ines.novak@example.com", "Ines Novak", "Sales", "CC-500", "", "active",
            "2026-03-03", ""]  # fmt: skip
    # E009 (terminated) is in the file and keeps her email: refused
    taken = _variant(tmp_path, {}, [hire])
    with pytest.raises(InputRejected) as refused, unit_of_work(sqlite_engine) as session:
        apply_roster(session, taken, today=D2, actor="test")
    assert "email collides" in refused.value.errors[0].reason

    # E009 absent from the file: the store still holds her email for her
    frame = pd.read_csv(taken, dtype=str, keep_default_na=False)
    frame[frame["employee_id"] != "E009"].to_csv(taken, index=False)
    with pytest.raises(InputRejected) as refused, unit_of_work(sqlite_engine) as session:
        apply_roster(session, taken, today=D2, actor="test")
    [error] = refused.value.errors
    assert (error.row, error.column) == (20, "email")
    assert error.reason.startswith("email belongs to employee E009 in the store")

    # Chloé and Ben swap emails in one roster: allowed
    swap = _variant(
        tmp_path,
        {
            "E002": {"email": "chloe.martin@example.com"},
            "E003": {"email": "ben.okafor@example.com"},
        },
    )
    with unit_of_work(sqlite_engine) as session:
        apply_roster(session, swap, today=D2, actor="test")
    assert person(sqlite_engine, "E002").email == "chloe.martin@example.com"
    assert person(sqlite_engine, "E003").email == "ben.okafor@example.com"


def test_read_roster_normalises_case_and_keeps_row_numbers():
    frame, errors = read_roster(HR / "roster_day2.csv")
    assert errors == []
    ben = frame[frame["employee_id"] == "E002"].iloc[0]
    assert (ben["email"], ben["_row"]) == ("ben.okafor@example.com", 2)
