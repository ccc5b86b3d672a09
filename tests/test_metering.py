"""The metering store on SQLite and PostgreSQL: daily aggregates and concurrent peaks from the
real-shaped samples, re-ingest idempotency, device rows (NULL person), unknown users and
apps, refused files, and the usage alerts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest
from conftest import TESTS_DATA
from sqlalchemy import func, select

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from schemas.store import (
    Alert,
    ConcurrentPeak,
    Contract,
    Device,
    IngestionRun,
    Person,
    Product,
    RejectedRow,
    UsageDaily,
)
from tasks import metering
from tasks.usage_adapters import events_from_osquery_apps

USAGE = TESTS_DATA / "usage"
NOW = dt.datetime(2026, 3, 4, 6, 0, tzinfo=dt.UTC)
MAR2, MAR3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
ALIASES = {
    "entra_apps": {"zoom": "ZOOM-WORKPLACE", "slack": "SLACK-PRO", "salesforce": "SALESFORCE"},
    "okta_apps": {"slack": "SLACK-PRO", "jira software": "ATLASSIAN-JIRA"},
    # solidworks only under its daemon: the qualified alias is tried first
    "flexlm_features": {"matlab": "MATLAB", "sw_d:solidworks": "SOLIDWORKS"},
}
PRODUCTS = {
    "ZOOM-WORKPLACE": "per_user",
    "SLACK-PRO": "per_user",
    "SALESFORCE": "per_user",
    "ATLASSIAN-JIRA": "per_user",
    "MATLAB": "concurrent",
    "SOLIDWORKS": "concurrent",
    "ADOBE-ACROBAT-PRO": "per_user",
    "TABLEAU-DESKTOP": "per_user",
}
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]
SAMPLES = [
    "entra_signins.json",
    "entra_signins.csv",
    "okta_system_log.json",
    "canonical_usage.csv",
    "flexlm/licsrv01_2026-03-02.log",
]


@pytest.fixture
def store(engine):
    with unit_of_work(engine) as session:
        for code, metric in PRODUCTS.items():
            name = "Tableau Desktop" if code == "TABLEAU-DESKTOP" else code.title()
            session.add(Product(code=code, name=name, metric=metric))
        for i, name in enumerate(PEOPLE):
            session.add(Person(employee_id=f"E{i}", email=f"{name}@example.com", full_name=name))
        session.add(Device(hostname="mac-01", primary_user_email="alice@example.com"))
    return engine


def recognize(apps: pd.DataFrame) -> pd.Series:
    """Stands in for discovery's recognition of osquery app titles."""
    return apps["raw_title"].str.startswith("Tableau Desktop").map({True: "TABLEAU-DESKTOP"})


def ingest(engine, *names, threshold=0.05):
    reports = []
    with unit_of_work(engine) as session:
        resolver = metering.load_resolver(session, ALIASES, recognize)
        for name in names:
            path = name if not isinstance(name, str) else USAGE / name
            reports.append(
                metering.ingest_file(session, path, resolver, reject_threshold=threshold, now=NOW)
            )
    return reports


def usage_table(engine) -> dict:
    """{(day, product code, person email or hostname): (sessions, minutes, last activity)}"""
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(
                UsageDaily.day,
                Product.code,
                func.coalesce(Person.email, Device.hostname),
                UsageDaily.sessions,
                UsageDaily.minutes,
                UsageDaily.last_activity,
            )
            .join(Product, Product.id == UsageDaily.product_id)
            .outerjoin(Person, Person.id == UsageDaily.person_id)
            .outerjoin(Device, Device.id == UsageDaily.device_id)
        ).all()
    return {
        (day, code, who.split("@")[0]): (n, round(minutes, 2), _utc(last))
        for day, code, who, n, minutes, last in rows
    }


def peak_table(engine) -> dict:
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(ConcurrentPeak.day, Product.code, ConcurrentPeak.peak, ConcurrentPeak.denials)
            .join(Product, Product.id == ConcurrentPeak.product_id)
            .order_by(Product.code, ConcurrentPeak.day)
        ).all()
    return {(day, code): (peak, denials) for day, code, peak, denials in rows}


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def t(day: dt.date, hms: str, micro: int = 0) -> dt.datetime:
    h, m, s = map(int, hms.split(":"))
    return dt.datetime(day.year, day.month, day.day, h, m, s, micro, tzinfo=dt.UTC)


# What the five samples hold, per day, product and person, worked out by hand:
EXPECTED_USAGE = {
    # Entra JSON records 1 and 3 (Alice@Example.com is alice) + the CSV's row 1
    (MAR2, "ZOOM-WORKPLACE", "alice"): (3, 0.0, t(MAR2, "16:02:45")),
    # JSON record 2 (09:40:11.5) + CSV row 2 (09:00)
    (MAR2, "SLACK-PRO", "bob"): (2, 0.0, t(MAR2, "09:40:11", 500000)),
    (MAR3, "SALESFORCE", "bob"): (1, 0.0, t(MAR3, "07:59:59")),
    (MAR3, "SALESFORCE", "carol"): (1, 0.0, t(MAR3, "06:00:00")),
    # Okta events 2 and 6
    (MAR2, "SLACK-PRO", "alice"): (2, 0.0, t(MAR2, "23:59:59", 999000)),
    (MAR2, "ATLASSIAN-JIRA", "erin"): (1, 0.0, t(MAR2, "09:12:40")),
    # canonical: 10:00 + 35 min and 15:00 + 10 min; Tableau by product name; +01:00 zone
    (MAR2, "ADOBE-ACROBAT-PRO", "alice"): (2, 45.0, t(MAR2, "15:10:00")),
    (MAR2, "TABLEAU-DESKTOP", "bob"): (1, 0.0, t(MAR2, "10:00:00")),
    (MAR3, "ADOBE-ACROBAT-PRO", "carol"): (1, 12.5, t(MAR3, "09:42:30")),
    # FlexLM sessions (see test_usage_adapters): counted on their start day
    (MAR2, "MATLAB", "carol"): (0, 1.2, t(MAR2, "09:01:10")),
    (MAR2, "MATLAB", "alice"): (2, 1030.0, t(MAR3, "02:00:00")),
    (MAR2, "MATLAB", "bob"): (1, 50.0, t(MAR2, "10:00:00")),
    (MAR3, "MATLAB", "carol"): (1, 180.0, t(MAR3, "05:00:00")),
    (MAR3, "MATLAB", "bob"): (1, 60.0, t(MAR3, "08:00:00")),
    (MAR2, "SOLIDWORKS", "erin"): (2, 295.0, t(MAR3, "04:00:00")),
    (MAR2, "SOLIDWORKS", "frank"): (1, 880.0, t(MAR3, "00:30:00")),
}
EXPECTED_PEAKS = {
    (MAR2, "MATLAB"): (3, 1),
    (MAR3, "MATLAB"): (2, 1),
    (MAR2, "SOLIDWORKS"): (3, 1),
    (MAR3, "SOLIDWORKS"): (2, 0),
}


def test_samples_become_daily_aggregates_and_peaks(store):
    reports = ingest(store, *SAMPLES)
    assert [r.status for r in reports] == ["applied"] * 5
    assert usage_table(store) == EXPECTED_USAGE
    assert peak_table(store) == EXPECTED_PEAKS

    entra = reports[0]
    assert (entra.records, entra.events, entra.events_metered) == (7, 6, 4)
    assert entra.unknown_users.to_dict("records") == [
        {"source": "entra_json", "user": "mallory@contractor.example", "events": 1}
    ]
    assert list(entra.unmapped["app"]) == ["Graph Explorer"]
    flexlm = reports[4]
    assert sorted(e.row for e in flexlm.errors) == [36, 48]
    assert "unreadable (lines/rows 36, 48)" in flexlm.message


def test_reingesting_a_file_changes_nothing(store):
    ingest(store, *SAMPLES)
    before = (usage_table(store), peak_table(store))
    again = ingest(store, *SAMPLES)
    assert {r.status for r in again} == {"already applied"}
    assert (usage_table(store), peak_table(store)) == before
    with unit_of_work(store) as session:
        runs = session.execute(
            select(IngestionRun.status, func.count()).group_by(IngestionRun.status)
        ).all()
    assert runs == [("applied", 5)]


def test_the_same_file_under_another_name_is_applied_once(store, tmp_path):
    copy = tmp_path / "renamed.json"
    copy.write_bytes((USAGE / "entra_signins.json").read_bytes())
    first, second = ingest(store, "entra_signins.json", copy)
    assert (first.status, second.status) == ("applied", "already applied")


def test_device_rows_with_no_person_are_upserted_not_duplicated(store):
    def scan(opened: str) -> pd.DataFrame:
        apps = pd.DataFrame(
            {"hostname": ["MAC-01"], "name": ["Tableau Desktop"], "last_opened_at": [opened]}
        )
        return events_from_osquery_apps(apps)

    with unit_of_work(store) as session:
        resolver = metering.load_resolver(session, ALIASES)
        for opened in ("2026-03-02T09:00:00Z", "2026-03-02T08:00:00Z", "2026-03-02T11:30:00Z"):
            metering.upsert_usage_daily(session, metering.meter(scan(opened), resolver).daily)
    assert usage_table(store) == {
        (MAR2, "TABLEAU-DESKTOP", "mac-01"): (0, 0.0, t(MAR2, "11:30:00"))
    }


def test_osquery_last_opened_is_metered_on_the_device(store):
    (report,) = ingest(store, "osquery_apps.log")
    assert usage_table(store) == {
        (dt.date(2026, 3, 1), "TABLEAU-DESKTOP", "mac-01"): (
            0,
            0.0,
            t(dt.date(2026, 3, 1), "09:00:00"),
        )
    }
    # zoom.us.app: no product is called that, and no alias kind covers osquery titles
    assert list(report.unmapped["app"]) == ["zoom.us.app"]
    assert report.devices and not report.people


def test_flexlm_user_is_the_person_with_that_email_local_part(store):
    with unit_of_work(store) as session:
        # a second "erin" makes the name ambiguous: it names nobody
        session.add(Person(employee_id="E99", email="erin@subsidiary.example", full_name="Erin 2"))
    (report,) = ingest(store, "flexlm/licsrv01_2026-03-02.log")
    assert not any(key[2] == "erin" for key in usage_table(store))
    assert report.unknown_users.to_dict("records") == [
        {"source": "flexlm", "user": "erin", "events": 2}
    ]
    # a user nobody knows still counts toward the peak: seats were in use
    assert peak_table(store)[(MAR2, "SOLIDWORKS")] == (3, 1)


def test_unmapped_apps_become_one_alert_each_and_close_once_mapped(store):
    ingest(store, "entra_signins.json", "okta_system_log.json")
    with unit_of_work(store) as session:
        keys = session.execute(
            select(Alert.dedupe_key).where(Alert.kind == metering.UNMAPPED_KIND).order_by(Alert.id)
        ).scalars()
        assert list(keys) == [
            "usage_unmapped_app:entra_apps:graph explorer",
            "usage_unmapped_app:okta_apps:miro",
        ]
        mapped = ALIASES | {"okta_apps": ALIASES["okta_apps"] | {"miro": "SLACK-PRO"}}
        resolver = metering.load_resolver(session, mapped)
        assert metering.resolve_mapped_alerts(session, resolver, NOW) == 1
        open_keys = session.execute(
            select(Alert.dedupe_key).where(Alert.resolved_at.is_(None))
        ).scalars()
        assert list(open_keys) == ["usage_unmapped_app:entra_apps:graph explorer"]


def test_a_log_with_too_many_bad_lines_is_refused_and_changes_nothing(store, tmp_path):
    path = tmp_path / "bad.log"
    path.write_text(
        " 9:00:00 (lmgrd) TIMESTAMP 3/2/2026\n"
        ' 9:05:00 (MLM) OUT: "MATLAB" alice@ws-01\n'
        "garbage\n"
        ' 9:06:00 (MLM) IN "MATLAB" alice@ws-01\n'
    )
    with pytest.raises(InputRejected) as refused:
        ingest(store, path)
    assert [e.row for e in refused.value.errors] == [3, 4]
    assert usage_table(store) == {} and peak_table(store) == {}
    with unit_of_work(store) as session:
        metering.record_rejection(session, metering.refused_report(path, "flexlm", refused.value))
    with unit_of_work(store) as session:
        run = session.execute(select(IngestionRun)).scalar_one()
        assert (run.status, run.rows_rejected) == ("rejected", 2)
        lines = session.execute(select(RejectedRow.row_number).order_by(RejectedRow.id))
        assert list(lines.scalars()) == [3, 4]
    # the same bytes are tried again next time (a rejection is not an application)
    with pytest.raises(InputRejected):
        ingest(store, path)
    # with a looser threshold the good lines are applied and the bad ones still reported
    (report,) = ingest(store, path, threshold=0.6)
    assert [e.row for e in report.errors] == [3, 4]
    assert usage_table(store)[(MAR2, "MATLAB", "alice")][0] == 1


def test_peak_and_denial_alerts(store):
    with unit_of_work(store) as session:
        matlab = session.execute(select(Product.id).where(Product.code == "MATLAB")).scalar()
        session.add(
            Contract(
                contract_number="MW-1",
                product_id=matlab,
                seats=3,
                unit_cost=Decimal("1200"),
                currency="EUR",
                start_date=dt.date(2026, 1, 1),
                end_date=dt.date(2026, 12, 31),
            )
        )
    ingest(store, "flexlm/licsrv01_2026-03-02.log")
    with unit_of_work(store) as session:
        written = metering.usage_alerts(session, [MAR2, MAR3], MAR3, NOW)
        again = metering.usage_alerts(session, [MAR2, MAR3], MAR3, NOW)
    assert sorted(a["dedupe_key"] for a in written) == [
        # 3 at once on 3/2 with 3 owned; 2 on 3/3 is below; SOLIDWORKS has no contract
        "concurrent_peak:MATLAB:2026-03-02",
        "license_denials:MATLAB:2026-03-02",
        "license_denials:MATLAB:2026-03-03",
        "license_denials:SOLIDWORKS:2026-03-02",
    ]
    assert again == []


def test_low_usage_rule():
    usage = pd.DataFrame(
        {
            "product_id": [1, 2, 3, 4],
            "code": ["A", "B", "C", "D"],
            "threshold": [0.5, 0.5, None, 0.5],
            "assigned": [10, 10, 10, 0],
            "active": [4, 5, 0, 0],
        }
    )
    alerts = metering.low_usage_alerts(usage, MAR3)
    assert [a["dedupe_key"] for a in alerts] == ["usage_below_threshold:A:2026-03"]
    assert alerts[0]["payload"]["share"] == 0.4
