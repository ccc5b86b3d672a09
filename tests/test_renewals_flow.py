"""renewals as a real Prefect flow: alerts written, delivery to a webhook on 127.0.0.1 that
fails and is retried on the next run, a Prefect notification block, artifacts, the .ics
calendar parsed back; and the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

import icalendar
import pytest
from sqlalchemy import select
from test_notify import WebhookServer
from typer.testing import CliRunner

from licenseflow.db import unit_of_work
from licenseflow.settings import get_settings
from schemas.store import Alert, Contract, Product

D = dt.date


async def artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def arrange(engine):
    """SL-1 ends 2026-06-30; SW-1 renews itself on 2026-08-31 unless cancelled 60 days
    before (2026-07-02); AC-0 ended 2026-01-31 with nothing after it."""
    with unit_of_work(engine) as session:
        for number, code, metric, seats, cost, end, auto, notice in (
            ("AC-0", "ADOBE-ACROBAT-PRO", "per_user", 5, "240.00", D(2026, 1, 31), False, 0),
            ("SL-1", "SLACK-PRO", "per_user", 20, "96.00", D(2026, 6, 30), False, 0),
            ("SW-1", "DS-SOLIDWORKS", "concurrent", 10, "4000.00", D(2026, 8, 31), True, 60),
        ):
            product = Product(code=code, name=code.title(), metric=metric)
            session.add(product)
            session.flush()
            session.add(
                Contract(
                    contract_number=number,
                    product_id=product.id,
                    seats=seats,
                    unit_cost=Decimal(cost),
                    currency="EUR",
                    start_date=D(2025, 9, 1) if number != "AC-0" else D(2025, 2, 1),
                    end_date=end,
                    auto_renew=auto,
                    notice_days=notice,
                    owner_email="ana@example.com",
                )
            )


@pytest.fixture
def webhook(monkeypatch):
    server = WebhookServer()
    monkeypatch.setenv("SLM_WEBHOOK_URL", server.url)
    get_settings.cache_clear()
    yield server
    server.close()


def test_renewals_flow_alerts_delivers_retries_and_writes_the_calendar(
    prefect_harness, sqlite_engine, webhook, runtime_dir
):
    from flows.renewals import renewals

    arrange(sqlite_engine)
    webhook.status = 503  # the endpoint is down on the first run

    state = renewals(today="2026-05-05", return_state=True)
    assert state.is_completed()  # a failing webhook does not fail the run
    first = state.result()
    assert first["in_window"] == {"90": [], "60": ["SL-1", "SW-1"], "30": []}
    # SL-1 and SW-1: the 90-day reminder (late: nobody ran in April) and the 60-day one
    assert first["created_by_kind"] == {"renewal_window": 4, "contract_expired": 1}
    assert first["flags"]["contract_expired"] == ["AC-0"]
    assert first["money_at_stake"] == {"60:EUR": "41920.00"}  # 20 x 96 + 10 x 4000
    delivery = first["delivery"]
    assert (delivery["pending"], delivery["failed"], delivery["deferred"]) == (5, 3, 2)
    assert delivery["errors"] == ["webhook answered HTTP 503 Service Unavailable: invalid_token"]
    assert webhook.received == []

    artifacts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert {
        "renewals-summary",
        "renewals-windows",
        "renewals-money-at-stake",
        "renewals-recommendations",
        "renewals-flags",
    } <= set(artifacts)
    summary = artifacts["renewals-summary"].data
    assert "SW-1: notice deadline 2026-07-02 (58 days), renews itself 2026-08-31" in summary
    assert "kept pending, retried on the next run" in summary
    windows = json.loads(artifacts["renewals-windows"].data)
    assert [(r["window"], r["contract_number"], r["deadline"]) for r in windows] == [
        (60, "SL-1", "2026-06-30"),
        (60, "SW-1", "2026-07-02"),
    ]
    money = json.loads(artifacts["renewals-money-at-stake"].data)
    assert money == [
        {
            "window": 60,
            "currency": "EUR",
            "contracts": 2,
            "annual_value": "41920.00",
            "projected_saving": "0.00",  # no usage data, no seats held: no recommendation
        }
    ]

    calendar = icalendar.Calendar.from_ical((runtime_dir / "reports" / "renewals.ics").read_bytes())
    assert sorted(str(e["uid"]) for e in calendar.walk("VEVENT")) == [
        "renewal-SL-1-2026-06-30@licenseflow",
        "renewal-SW-1-2026-07-02@licenseflow",
    ]

    webhook.status = 200  # back up: the next run sends what is pending, nothing new is raised
    second = renewals(today="2026-05-06")
    assert second["alerts_created"] == 0
    assert (second["delivery"]["sent"], second["delivery"]["failed"]) == (5, 0)
    assert len(webhook.received) == 5
    assert webhook.received[0]["text"].startswith(
        "Contract expired: ADOBE-ACROBAT-PRO contract AC-0 ended 2026-01-31"
    )
    with unit_of_work(sqlite_engine) as session:
        attempts = session.execute(select(Alert.send_attempts).order_by(Alert.id)).scalars()
        assert list(attempts) == [2, 2, 2, 1, 1]
        assert session.scalar(select(Alert).where(Alert.sent_at.is_(None))) is None

    # the CLI runs the same flow
    from licenseflow.cli import app

    result = CliRunner().invoke(app, ["run", "renewals", "--today", "2026-05-07"])
    assert result.exit_code == 0, result.output
    assert "0 new alert(s)" in result.output
    assert "contract_expired: AC-0" in result.output


def test_delivery_through_a_prefect_notification_block(prefect_harness, sqlite_engine, monkeypatch):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.renewals import renewals

    server = WebhookServer()
    try:
        CustomWebhookNotificationBlock(
            name="licenseflow alerts",
            url=server.url,
            json_data={"text": "{{subject}}: {{body}}"},
        ).save("lf-renewal-alerts", overwrite=True)
        monkeypatch.setenv("SLM_NOTIFICATION_BLOCK", "custom-webhook/lf-renewal-alerts")
        get_settings.cache_clear()
        arrange(sqlite_engine)

        summary = renewals(today="2026-05-05")
    finally:
        server.close()
    assert summary["delivery"]["channel"] == "notification block custom-webhook/lf-renewal-alerts"
    assert summary["delivery"]["sent"] == 5
    texts = [body["text"] for body in server.received]
    assert texts[0].startswith("License contract expired: Contract expired: ADOBE-ACROBAT-PRO")
    assert "Owner: ana@example.com" in texts[0]


def test_cli_lists_upcoming_renewals_and_records_decisions(sqlite_engine):
    from licenseflow.cli import app

    arrange(sqlite_engine)
    runner = CliRunner()
    listed = runner.invoke(app, ["renewals", "--within", "60", "--today", "2026-05-05", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["contract_number"], r["days_left"], r["recommended"]) for r in rows] == [
        ("SL-1", 56, None),  # no usage data and nobody holds a seat
        ("SW-1", 58, None),  # no concurrent peaks recorded: no seat recommendation
    ]
    assert rows[1]["recommendation"]["note"] == (
        "no concurrent peaks recorded: nothing to size it on"
    )
    table = runner.invoke(app, ["renewals", "--within", "30", "--today", "2026-05-05"])
    assert table.exit_code == 0 and "no renewal deadline within 30 days" in table.output

    decided = runner.invoke(
        app, ["renewals", "decide", "SL-1", "--decision", "lapse", "--reason", "moving to Teams"]
    )
    assert decided.exit_code == 0, decided.output
    assert "decision 'lapse' recorded for the deadline 2026-06-30" in decided.output
    unknown = runner.invoke(
        app, ["renewals", "decide", "X-9", "--decision", "renew", "--reason", "r"]
    )
    assert unknown.exit_code == 1 and "no contract numbered 'X-9'" in unknown.output
    bad_day = runner.invoke(app, ["renewals", "--today", "05/05/2026"])
    assert bad_day.exit_code == 2 and "YYYY-MM-DD" in bad_day.output
