"""usage_metering as a real Prefect flow: drop folders in, store, alerts, candidates and
artifacts out; a second run changes nothing; a refused file fails the run after the others."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from decimal import Decimal

import pytest
from conftest import TESTS_DATA
from sqlalchemy import func, select

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from licenseflow.settings import get_settings
from schemas.store import (
    Alert,
    ConcurrentPeak,
    Contract,
    Device,
    IngestionRun,
    Person,
    ReclaimCandidate,
    UsageDaily,
)
from tasks import recognition
from tasks.assignments import AssignmentService, SeatChange

USAGE = TESTS_DATA / "usage"
NOW = "2026-03-04T06:00:00+00:00"
SAMPLES = [
    "entra_signins.json",
    "entra_signins.csv",
    "okta_system_log.json",
    "canonical_usage.csv",
    "osquery_apps.log",
    "flexlm/licsrv01_2026-03-02.log",
]


@pytest.fixture
def drop(tmp_path, monkeypatch):
    """A sources file whose "usage" feed points at a folder holding copies of the samples."""
    folder = tmp_path / "drop" / "usage"
    folder.mkdir(parents=True)
    for name in SAMPLES:
        shutil.copy(USAGE / name, folder / name.split("/")[-1])
    sources = tmp_path / "drop" / "sources.yaml"
    sources.write_text("feeds:\n  usage:\n    - {folder: usage}\n")
    monkeypatch.setenv("SLM_SOURCES_FILE", str(sources))
    get_settings.cache_clear()
    return folder


@pytest.fixture
def people(engine):
    """The samples' people, a Mac, and two Slack seats: alice uses hers (Okta), carol never."""
    with unit_of_work(engine) as session:
        recognition.sync_catalog_to_store(session, recognition.load_catalog())
        for i, name in enumerate(["alice", "bob", "carol", "dave", "erin", "frank"]):
            session.add(Person(employee_id=f"E{i}", email=f"{name}@example.com", full_name=name))
        session.add(Device(hostname="mac-01", primary_user_email="alice@example.com"))
        session.flush()
        service = AssignmentService(session, "setup", now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
        slack = service.resolve_product("SLACK-PRO")
        session.add(
            Contract(
                contract_number="SLACK-2026",
                product_id=slack.id,
                seats=10,
                unit_cost=Decimal("120.00"),
                currency="EUR",
                start_date=dt.date(2026, 1, 1),
                end_date=dt.date(2026, 12, 31),
            )
        )
        session.flush()
        since = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
        service.apply(
            [
                SeatChange(
                    "assign", slack.id, person_id=service.resolve_person(p).id, assigned_at=since
                )
                for p in ("alice@example.com", "carol@example.com")
            ]
        )
    return engine


async def artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {a.key for a in await client.read_artifacts()}


def count(engine, model, *where) -> int:
    with unit_of_work(engine) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_flow_meters_the_drop_folder_once(prefect_harness, people, drop):
    from flows.usage_metering import usage_metering

    engine = people
    summary = usage_metering(now=NOW)
    assert [f["status"] for f in summary["files"]] == ["applied"] * 6
    assert summary["events_read"] == 6 + 3 + 4 + 4 + 2 + 9
    flexlm = next(f for f in summary["files"] if f["format"] == "flexlm")
    assert flexlm["unreadable"] == [36, 48]
    assert summary["people_metered"] == 5  # all but dave, who was only denied a checkout
    assert summary["devices_metered"] == 1
    assert [u["user"] for u in summary["unknown_users"]] == ["mallory@contractor.example"]
    assert "Graph Explorer" in [a["app"] for a in summary["unmapped_apps"]]
    # carol's Slack seat: never used in 9 months -> a candidate worth 120.00 / 12 a month
    (candidate,) = summary["new_candidates"]
    assert (candidate["code"], candidate["holder"]) == ("SLACK-PRO", "carol@example.com")
    assert summary["new_candidates_monthly_cost"] == {"EUR": "10.00"}
    assert summary["notified"] == 1 and summary["reclaimed"] == 0
    assert {
        "license_denials:MATHWORKS-MATLAB:2026-03-02",
        "license_denials:MATHWORKS-MATLAB:2026-03-03",
        "license_denials:DS-SOLIDWORKS:2026-03-02",
    } <= set(summary["alerts"])
    assert {"usage-metering-summary", "usage-reclaim-candidates", "usage-unmapped-apps"} <= (
        asyncio.run(artifact_keys())
    )
    rows_after_first = count(engine, UsageDaily)
    with unit_of_work(engine) as session:
        states = session.scalars(select(ReclaimCandidate.state)).all()
        reclaim_alerts = session.scalar(
            select(func.count()).select_from(Alert).where(Alert.kind == "reclaim_candidate")
        )
    assert (states, reclaim_alerts) == (["notified"], 1)

    again = usage_metering(now=NOW)
    assert {f["status"] for f in again["files"]} == {"already applied"}
    assert again["new_candidates"] == [] and again["events_read"] == 0
    assert count(engine, UsageDaily) == rows_after_first
    assert count(engine, IngestionRun) == 6


def test_a_refused_file_fails_the_run_after_the_others(prefect_harness, sqlite_engine, drop):
    from flows.usage_metering import usage_metering

    (drop / "zz_broken.log").write_text(' 9:05:00 (MLM) OUT: "MATLAB" alice@ws-01\n')
    with pytest.raises(InputRejected, match="1 usage file"):
        usage_metering(now=NOW)
    with unit_of_work(sqlite_engine) as session:
        statuses = dict(
            session.execute(
                select(IngestionRun.status, func.count()).group_by(IngestionRun.status)
            ).all()
        )
    assert statuses == {"applied": 6, "rejected": 1}
    # nobody is in the roster here, but the FlexLM log's peaks were metered
    assert count(sqlite_engine, ConcurrentPeak) == 4
