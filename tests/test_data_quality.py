"""Data quality over the store: the frames the checks read (SQLite and PostgreSQL) and one
Great Expectations run over seeded bad data (the expectations that must fail do, the others
pass), its Data Docs and the stored summary."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest
from test_reconciliation import JUNE, arrange_company, at

from licenseflow.db import unit_of_work
from schemas.store import Contract, Device, Installation
from tasks import data_quality
from tasks.data_quality import Thresholds


def seed_bad_data(engine, ids) -> None:
    """On top of the company (where C, terminated, still holds a Slack seat and server s2
    has no core count): a contract with 0 seats and no owner, one ending before it starts,
    and an unrecognised install from another source on a device unseen since January."""
    with unit_of_work(engine) as s:
        s.add_all(
            [
                Contract(
                    contract_number="CT-BAD-1",
                    product_id=ids["WINRAR"],
                    seats=0,
                    unit_cost=Decimal("10"),
                    currency="USD",
                    start_date=dt.date(2026, 1, 1),
                    end_date=dt.date(2026, 12, 31),
                    owner_email="  ",
                ),
                Contract(
                    contract_number="CT-BAD-2",
                    product_id=ids["WINRAR"],
                    seats=5,
                    unit_cost=Decimal("10"),
                    currency="USD",
                    start_date=dt.date(2026, 9, 1),
                    end_date=dt.date(2026, 8, 1),
                    owner_email="owner@example.com",
                ),
            ]
        )
        old = Device(hostname="old-pc", first_seen=at("2025-06-01"), last_seen=at("2026-01-01"))
        s.add(old)
        s.flush()
        s.add(
            Installation(
                install_key="old-pc:tool",
                device_id=old.id,
                raw_title="Mystery Tool",
                source="sccm",
                row_hash="h",
                first_seen=at("2025-06-01"),
                last_seen=at("2025-06-01"),
            )
        )


def test_the_frames_the_checks_read(engine):
    ids = arrange_company(engine)
    seed_bad_data(engine, ids)
    with unit_of_work(engine) as session:
        frames = data_quality.quality_frames(session, JUNE)
    seats = frames["open_seats"]
    assert seats.loc[seats["holder"] == "c@example.com", "holder_state"].tolist() == ["terminated"]
    assert seats.loc[seats["holder"] == "v", "holder_state"].tolist() == ["known device"]
    assert len(seats) == 9  # H's seat was revoked
    assert set(frames["current_contracts"]["contract_number"]) == {
        "CT-001",
        "CT-002",
        "CT-003",
        "CT-004",
        "CT-005",
        "CT-006",
        "CT-007",
        "CT-BAD-1",
        "CT-BAD-2",
    }  # CT-008 (AutoCAD) ended on 2026-03-31
    bad = frames["current_contracts"].set_index("contract_number")
    assert pd.isna(bad.at["CT-BAD-1", "owner_email"])  # blank counts as missing
    rates = frames["recognition"].set_index("source")["recognition_rate"].round(4).to_dict()
    assert rates == {"canonical": round(8 / 9, 4), "sccm": 0.0}
    devices = frames["installed_devices"].set_index("hostname")
    assert devices.at["old-pc", "days_unseen"] == 180 and devices.at["x", "days_unseen"] == 0
    assert "q" not in devices.index  # its only install was removed
    cores = frames["per_core_devices"].set_index("hostname")["cores"]
    assert cores.isna().to_dict() == {"s1": False, "s2": True}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_great_expectations_suite_fails_on_seeded_bad_data(sqlite_engine, runtime_dir):
    ids = arrange_company(sqlite_engine)
    seed_bad_data(sqlite_engine, ids)
    reports = runtime_dir / "reports"
    with unit_of_work(sqlite_engine) as session:
        summary = data_quality.run_data_quality(session, JUNE, reports, Thresholds(0.8, 30))

    assert summary["error"] is None
    outcomes = {
        (c["check"], c["expectation"], c["kwargs"].get("column", "pair")): (
            c["success"],
            c["unexpected"],
        )
        for c in summary["checks"]
    }
    assert outcomes == {
        ("open_seats", "expect_column_values_to_not_be_null", "holder"): (True, 0),
        ("open_seats", "expect_column_values_to_be_in_set", "holder_state"): (False, 1),
        ("contracts", "expect_column_values_to_be_between", "seats"): (False, 1),
        ("contracts", "expect_column_values_to_be_between", "unit_cost"): (True, 0),
        ("contracts", "expect_column_pair_values_a_to_be_greater_than_b", "pair"): (False, 1),
        ("current_contracts", "expect_column_values_to_not_be_null", "owner_email"): (False, 1),
        ("recognition", "expect_column_values_to_be_between", "recognition_rate"): (False, 1),
        ("installed_devices", "expect_column_values_to_be_between", "days_unseen"): (False, 1),
        ("per_core_devices", "expect_column_values_to_not_be_null", "cores"): (False, 1),
    }
    assert summary["success"] is False and summary["failed"] == 7
    terminated = next(c for c in summary["checks"] if c["kwargs"].get("column") == "holder_state")
    assert terminated["examples"] == ["c@example.com: terminated"]
    unowned = next(c for c in summary["checks"] if c["check"] == "current_contracts")
    assert unowned["examples"] == ["CT-BAD-1: None"]
    stale = next(c for c in summary["checks"] if c["kwargs"].get("column") == "days_unseen")
    assert stale["examples"] == ["old-pc: 180.0"]

    # results and Data Docs in the reports folder; the summary is kept as the latest
    docs = reports / "data_quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    assert summary["data_docs"] == str(docs / "index.html")
    html = (docs / "index.html").read_text(encoding="utf-8")
    assert "licenseflow-open_seats" in html
    assert "dataContextId" not in html  # no beacon in the pages
    assert data_quality.latest_data_quality(reports) == summary
    assert (reports / "data_quality" / "summary_2026-06-30.json").is_file()
    markdown = data_quality.summary_markdown(summary)
    assert "7 failed" in markdown and "| open_seats | expect_column_values_to_be_in_set" in markdown


def test_a_suite_that_cannot_run_is_a_failed_summary_not_an_error(
    sqlite_engine, runtime_dir, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("GE is broken")

    monkeypatch.setattr(data_quality, "validate", broken)
    reports = runtime_dir / "reports"
    with unit_of_work(sqlite_engine) as session:
        summary = data_quality.run_data_quality(session, JUNE, reports, Thresholds())
    assert (summary["success"], summary["error"]) == (False, "RuntimeError: GE is broken")
    assert data_quality.latest_data_quality(reports) == summary
    assert "could not run" in data_quality.summary_markdown(summary)
    assert data_quality.latest_data_quality(runtime_dir / "nowhere") is None
