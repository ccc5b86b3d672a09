"""The license position read from a real store (SQLite and PostgreSQL), today and as of a
past date rebuilt from history; chargeback; snapshots and drift.

The company of tests/test_position.py, written as history: on 2026-06-30 its position is
test_position.EXPECTED. On 2026-03-15 (window 2025-12-15..03-15, grace: seats given by
02-13) it was, by hand:
- SLACK-PRO: only the first contract (10 @ 100 EUR) had started; seats A B C H (H's was
  revoked 05-01, D's came 06-20); only A had used it (02-10): consumed 4, surplus 6;
  reclaimable B, C (not yet terminated, but unused) and H: 3, waste 300;
- WINRAR: installed on X Y Z and Q (removed 04-15; W came 06-01) plus V's seat: 5;
- MATHWORKS-MATLAB: the 03-01 peak of 14 was inside the window: shortfall 4, true-up 9,400;
- ATLASSIAN-JIRA: nobody had used it yet; AUTODESK-AUTOCAD: the contract (5 @ 2030) was
  still in force and G's seat (04-20) not given: surplus 5.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
from test_position import EXPECTED, as_expected

from licenseflow.db import unit_of_work
from schemas.store import (
    Assignment,
    ConcurrentPeak,
    Contract,
    Device,
    Installation,
    Person,
    PersonStatusHistory,
    Product,
    ReconciliationSnapshot,
    UsageDaily,
    Vendor,
)
from tasks import reconciliation_store
from tasks.reconciliation import Rules, chargeback, position_as_of

D = dt.date
JUNE, MARCH = D(2026, 6, 30), D(2026, 3, 15)
RULES = Rules(window_days=90, grace_days=30, default_cores=4)

EXPECTED_MARCH = {
    "SLACK-PRO": (10, 4, 4, 1, 1, 0, 6, 3, 100.0, "EUR", 0.0, 300.0),
    "ADOBE-ACROBAT-PRO": (2, 3, 3, 0, 0, 1, 0, 0, 240.0, "USD", 240.0, 0.0),
    "WINRAR": (3, 5, 1, 4, 0, 2, 0, 0, 30.0, "USD", 60.0, 0.0),
    "MATHWORKS-MATLAB": (10, 14, 0, 0, 0, 4, 0, 0, 2350.0, "USD", 9400.0, 0.0),
    "MS-SQL-SERVER-STD": (16, 12, 0, 2, 0, 0, 4, 0, 1859.0, "USD", 0.0, 0.0),
    "ATLASSIAN-JIRA": (None, 0, 0, 0, 0, 0, 0, 0, None, "USD", 0.0, 0.0),
    "AUTODESK-AUTOCAD": (5, 0, 0, 0, 0, 0, 5, 0, 2030.0, "USD", 0.0, 0.0),
}


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def arrange_company(engine) -> dict[str, int]:
    """Write the company's history; returns ids by name (people, devices, product codes)."""
    ids: dict[str, int] = {}
    with unit_of_work(engine) as s:
        vendors = {n: Vendor(name=n) for n in ("Salesforce", "Adobe", "Microsoft", "Autodesk")}
        s.add_all(vendors.values())
        s.flush()
        for code, name, vendor, metric, classification in (
            ("SLACK-PRO", "Slack Pro", "Salesforce", "per_user", "commercial"),
            ("ADOBE-ACROBAT-PRO", "Adobe Acrobat Pro", "Adobe", "per_user", "commercial"),
            ("WINRAR", "WinRAR", None, "per_device", "commercial"),
            ("MATHWORKS-MATLAB", "MATLAB", None, "concurrent", "commercial"),
            ("MS-SQL-SERVER-STD", "SQL Server Standard", "Microsoft", "per_core", "commercial"),
            ("ATLASSIAN-JIRA", "Jira Software Cloud", None, "site", "commercial"),
            ("AUTODESK-AUTOCAD", "Autodesk AutoCAD", "Autodesk", "per_user", "commercial"),
            ("TABLEAU-DESKTOP", "Tableau Desktop", "Salesforce", "per_user", "commercial"),
            ("GOOGLE-CHROME", "Google Chrome", None, "per_device", "freeware"),
        ):
            product = Product(
                code=code,
                name=name,
                vendor_id=vendors[vendor].id if vendor else None,
                metric=metric,
                classification=classification,
            )
            s.add(product)
            s.flush()
            ids[code] = product.id

        for number, (code, seats, cost, currency, start, end) in enumerate(
            [
                ("SLACK-PRO", 10, "100", "EUR", D(2026, 1, 1), D(2026, 12, 31)),
                ("SLACK-PRO", 5, "130", "EUR", D(2026, 4, 1), D(2027, 3, 31)),
                ("ADOBE-ACROBAT-PRO", 2, "240", "USD", D(2026, 1, 1), D(2026, 12, 31)),
                ("WINRAR", 3, "30", "USD", D(2026, 1, 1), D(2026, 12, 31)),
                ("MATHWORKS-MATLAB", 10, "2350", "USD", D(2026, 1, 1), D(2026, 12, 31)),
                ("MS-SQL-SERVER-STD", 16, "1859", "USD", D(2026, 1, 1), D(2026, 12, 31)),
                ("ATLASSIAN-JIRA", None, "54000", "USD", D(2026, 1, 1), D(2026, 12, 31)),
                ("AUTODESK-AUTOCAD", 5, "2030", "USD", D(2025, 4, 1), D(2026, 3, 31)),
            ],
            start=1,
        ):
            s.add(
                Contract(
                    contract_number=f"CT-{number:03d}",
                    product_id=ids[code],
                    seats=seats,
                    unit_cost=Decimal(cost),
                    currency=currency,
                    start_date=start,
                    end_date=end,
                    owner_email="owner@example.com",
                )
            )

        for name, status, cc, dept, left in (
            ("A", "active", "CC1", "Eng", None),
            ("B", "active", "CC1", "Eng", None),
            ("C", "terminated", "CC2", "Sales", D(2026, 5, 15)),
            ("D", "active", "CC2", "Sales", None),
            ("E", "active", "CC3", "Ops", None),
            ("F", "leave", "CC3", "Ops", None),
            ("G", "active", "CC1", "Design", None),
            ("H", "active", "CC2", "Sales", None),
        ):
            person = Person(
                employee_id=f"E-{name}",
                email=f"{name.lower()}@example.com",
                full_name=f"Person {name}",
                department=dept,
                cost_center=cc,
                status=status,
                hire_date=D(2025, 1, 1),
                termination_date=left,
            )
            s.add(person)
            s.flush()
            ids[name] = person.id
            s.add(
                PersonStatusHistory(
                    person_id=person.id,
                    status="active",
                    effective_date=D(2025, 1, 1),
                    recorded_at=at("2025-01-01"),
                )
            )
            if status != "active":
                s.add(
                    PersonStatusHistory(
                        person_id=person.id,
                        status=status,
                        effective_date=left or D(2026, 6, 1),
                        recorded_at=at("2026-06-01"),
                    )
                )

        for host, user, cores, seen in (
            ("x", "F", 4, "2026-06-30"),
            ("y", "A", 4, "2026-06-30"),
            ("z", None, 4, "2026-06-30"),
            ("w", "B", 4, "2026-06-30"),
            ("v", "G", 4, "2026-06-30"),
            ("q", None, 4, "2026-04-15"),
            ("s1", None, 8, "2026-06-30"),
            ("s2", "A", None, "2026-06-30"),
        ):
            device = Device(
                hostname=host,
                primary_user_email=f"{user.upper()}@Example.com" if user else None,
                cores=cores,
                source="canonical",
                first_seen=at("2026-01-01"),
                last_seen=at(seen),
            )
            s.add(device)
            s.flush()
            ids[host] = device.id

        for code, host, first, removed in (
            ("SLACK-PRO", "x", "2026-01-01", None),
            ("WINRAR", "x", "2026-01-01", None),
            ("WINRAR", "y", "2026-01-01", None),
            ("WINRAR", "z", "2026-01-01", None),
            ("WINRAR", "w", "2026-06-01", None),
            ("WINRAR", "q", "2026-01-01", "2026-04-15"),
            ("MS-SQL-SERVER-STD", "s1", "2026-01-01", None),
            ("MS-SQL-SERVER-STD", "s2", "2026-01-01", None),
            ("GOOGLE-CHROME", "x", "2026-01-01", None),
            (None, "y", "2026-01-01", None),  # not recognised
        ):
            s.add(
                Installation(
                    install_key=f"{host}:{code}",
                    device_id=ids[host],
                    raw_title=code or "Some Tool",
                    product_id=ids[code] if code else None,
                    source="canonical",
                    row_hash="h",
                    first_seen=at(first),
                    last_seen=at(first),
                    removed_at=at(removed) if removed else None,
                )
            )

        for code, person, host, given, revoked in (
            ("SLACK-PRO", "A", None, "2026-01-02", None),
            ("SLACK-PRO", "B", None, "2026-01-10", None),
            ("SLACK-PRO", "C", None, "2026-01-02", None),
            ("SLACK-PRO", "D", None, "2026-06-20", None),
            ("SLACK-PRO", "H", None, "2026-01-05", "2026-05-01"),
            ("ADOBE-ACROBAT-PRO", "A", None, "2026-01-15", None),
            ("ADOBE-ACROBAT-PRO", "B", None, "2026-01-15", None),
            ("ADOBE-ACROBAT-PRO", "G", None, "2026-01-15", None),
            ("WINRAR", None, "v", "2026-02-01", None),
            ("AUTODESK-AUTOCAD", "G", None, "2026-04-20", None),
        ):
            s.add(
                Assignment(
                    product_id=ids[code],
                    person_id=ids[person] if person else None,
                    device_id=ids[host] if host else None,
                    assigned_at=at(given),
                    assigned_by="test",
                    revoked_at=at(revoked) if revoked else None,
                )
            )

        for code, person, host, day in (
            ("SLACK-PRO", "A", None, D(2026, 2, 10)),
            ("SLACK-PRO", "A", None, D(2026, 6, 25)),
            ("SLACK-PRO", "E", None, D(2026, 6, 1)),
            ("SLACK-PRO", None, "x", D(2026, 6, 28)),
            ("SLACK-PRO", "B", None, D(2026, 7, 5)),  # after June 30: not yet
            ("MATHWORKS-MATLAB", "A", None, D(2026, 6, 10)),
            ("MATHWORKS-MATLAB", "B", None, D(2026, 5, 20)),
            ("ATLASSIAN-JIRA", "A", None, D(2026, 6, 29)),
            ("ATLASSIAN-JIRA", "B", None, D(2026, 6, 29)),
            ("ATLASSIAN-JIRA", "E", None, D(2026, 4, 1)),
        ):
            s.add(
                UsageDaily(
                    day=day,
                    product_id=ids[code],
                    person_id=ids[person] if person else None,
                    device_id=ids[host] if host else None,
                    sessions=1,
                    minutes=10.0,
                    last_activity=at(day.isoformat() + "T10:00:00"),
                )
            )
        for day, peak in ((D(2026, 3, 1), 14), (D(2026, 5, 10), 8), (D(2026, 6, 15), 12)):
            s.add(ConcurrentPeak(day=day, product_id=ids["MATHWORKS-MATLAB"], peak=peak))
        s.add(ConcurrentPeak(day=D(2026, 7, 2), product_id=ids["MATHWORKS-MATLAB"], peak=20))
    return ids


def test_position_today_and_as_of_a_past_date(engine):
    arrange_company(engine)
    with unit_of_work(engine) as session:
        june = position_as_of(session, JUNE, RULES)
        march = position_as_of(session, MARCH, RULES)
    assert as_expected(june) == EXPECTED
    assert as_expected(march) == EXPECTED_MARCH
    sql = june.set_index("product_code").loc["MS-SQL-SERVER-STD"]
    assert (sql["cores_unknown"], sql["annual_cost"]) == (1, 16 * 1859.0)
    assert june.set_index("product_code").at["SLACK-PRO", "vendor"] == "Salesforce"


def test_position_before_anything_was_assigned_installed_or_used(engine):
    """A new store (or a date before the first seat) has contracts and nothing consumed."""
    arrange_company(engine)
    with unit_of_work(engine) as session:
        early = position_as_of(session, D(2025, 5, 1), RULES).set_index("product_code")
    assert list(early.index) == ["AUTODESK-AUTOCAD"]  # the one contract in force then
    autocad = early.loc["AUTODESK-AUTOCAD"]
    assert (autocad["entitled"], autocad["consumed"], autocad["surplus"]) == (5, 0, 5)
    assert (autocad["shortfall"], autocad["reclaimable"]) == (0, 0)


def test_people_status_as_of_the_date_from_history(engine):
    ids = arrange_company(engine)
    with unit_of_work(engine) as session:
        june = reconciliation_store.read_people(session, JUNE).set_index("person_id")["status"]
        may = reconciliation_store.read_people(session, D(2026, 5, 14)).set_index("person_id")
    assert (june[ids["C"]], june[ids["F"]], june[ids["A"]]) == ("terminated", "leave", "active")
    assert may.at[ids["C"], "status"] == "active"  # terminated from 05-15 on


def test_chargeback_by_cost_center_from_the_store(engine):
    arrange_company(engine)
    with unit_of_work(engine) as session:
        charged = chargeback(session, JUNE, "cost_center", RULES)
    totals = charged.groupby("group")["cost"].sum().round(2).to_dict()
    # CC1: Slack 220 + Acrobat 720 + WinRAR 90 + MATLAB 28,200 + SQL 7,436 + Jira 36,000
    #      + AutoCAD 2,030; CC2: Slack 220; CC3: Slack 220 + WinRAR 30 + Jira 18,000;
    # unattributed: WinRAR 30 (z) + SQL 14,872 (s1)
    assert totals == {
        "(unattributed)": 14902.0,
        "CC1": 74696.0,
        "CC2": 220.0,
        "CC3": 18250.0,
    }


def test_snapshots_and_drift_between_runs(engine):
    from tasks.reconciliation import drift

    arrange_company(engine)
    with unit_of_work(engine) as session:
        march = position_as_of(session, MARCH, RULES)
        june = position_as_of(session, JUNE, RULES)
        assert reconciliation_store.previous_snapshot(session, "r-march", MARCH).empty
        reconciliation_store.write_snapshot(session, "r-march", MARCH, at("2026-03-16"), march)
        reconciliation_store.write_snapshot(session, "r-june", JUNE, at("2026-07-01"), june)
        reconciliation_store.write_snapshot(session, "r-june", JUNE, at("2026-07-01"), june)
    with unit_of_work(engine) as session:
        previous = reconciliation_store.previous_snapshot(session, "r-june", JUNE)
        stored = session.query(ReconciliationSnapshot).filter_by(run_key="r-june").count()
    assert stored == len(june) == 7  # re-running a run key replaces its rows
    assert set(previous["run_key"]) == {"r-march"}
    slack = previous.set_index("product_code").loc["SLACK-PRO"]
    assert (slack["consumed"], slack["surplus"], float(slack["waste"])) == (4, 6, 300.0)
    assert pd.isna(previous.set_index("product_code").at["ATLASSIAN-JIRA", "entitled"])
    # March -> June: AutoCAD is newly short (G's seat, its contract ended); the rest moved
    # less than the thresholds (Slack surplus +3, MATLAB shortfall went down)
    changes = drift(previous, june)
    assert changes.values.tolist() == [["AUTODESK-AUTOCAD", "new_shortfall", 0, 1, 1]]


def test_slm_position_table_json_by_group_and_as_of(sqlite_engine, monkeypatch):
    import json

    from typer.testing import CliRunner

    from licenseflow.cli import app

    arrange_company(sqlite_engine)
    runner = CliRunner()
    listed = runner.invoke(app, ["position", "--json", "--as-of", "2026-06-30"])
    assert listed.exit_code == 0, listed.output
    rows = {r["product_code"]: r for r in json.loads(listed.output)}
    assert (rows["WINRAR"]["shortfall"], rows["WINRAR"]["true_up_cost"]) == (2, 60.0)
    assert rows["ATLASSIAN-JIRA"]["entitled"] is None  # unlimited

    march = json.loads(runner.invoke(app, ["position", "--json", "--as-of", "2026-03-15"]).output)
    assert {r["product_code"]: r["shortfall"] for r in march}["MATHWORKS-MATLAB"] == 4

    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: the table is not cut
    table = runner.invoke(app, ["position", "--as-of", "2026-06-30"])
    assert table.exit_code == 0 and "unlimited" in table.output and "SLACK-PRO" in table.output

    by = runner.invoke(app, ["position", "--by", "cost-center", "--as-of", "2026-06-30", "--json"])
    charged = json.loads(by.output)
    assert {(r["group"], r["product_code"]): r["cost"] for r in charged}[
        ("(unattributed)", "MS-SQL-SERVER-STD")
    ] == 14872.0
    department = runner.invoke(app, ["position", "--by", "department", "--as-of", "2026-06-30"])
    assert department.exit_code == 0 and "Design" in department.output

    wrong = runner.invoke(app, ["position", "--by", "manager"])
    assert wrong.exit_code == 2 and "cost-center or department" in wrong.output
    bad_day = runner.invoke(app, ["position", "--as-of", "30/06/2026"])
    assert bad_day.exit_code == 2 and "YYYY-MM-DD" in bad_day.output
