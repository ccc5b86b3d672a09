"""weekly_reconciliation as a real Prefect flow on the company of test_position /
test_reconciliation: two weekly runs (2026-03-15, then 2026-06-30), snapshots, drift, the data
quality failures shown in the artifacts without failing the run; and the CLI."""

from __future__ import annotations

import asyncio
import json

from test_reconciliation import arrange_company
from typer.testing import CliRunner

from licenseflow.db import unit_of_work
from schemas.store import ReconciliationSnapshot
from tasks.reconciliation_tasks import ARTIFACT_KEYS, DOCS_LINK_KEY


async def artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_weekly_reconciliation_flow_snapshots_drift_and_data_quality(
    prefect_harness, sqlite_engine, runtime_dir
):
    from flows.weekly_reconciliation import weekly_reconciliation

    arrange_company(sqlite_engine)
    march = weekly_reconciliation(today="2026-03-15")
    assert (march["products"], march["previous_run"], march["drift"]) == (7, None, [])
    # 03-15: Acrobat 1 x 240, WinRAR 2 x 30, MATLAB 4 x 2350; Slack: B, C, H unused (3 x 100)
    assert march["true_up_cost"] == {"USD": 240.0 + 60.0 + 9400.0}
    assert (march["reclaimable"], march["waste"]) == (3, {"EUR": 300.0})

    state = weekly_reconciliation(today="2026-06-30", return_state=True)
    assert state.is_completed()  # data-quality failures fail nothing
    june = state.result()
    # 06-30: Acrobat 240 + WinRAR 60 + MATLAB 4,700 + AutoCAD 2,030; Slack B and C (2 x 110)
    assert june["true_up_cost"] == {"USD": 7030.0}
    assert (june["shortfalls"], june["shortfall_seats"]) == (4, 6)
    assert (june["reclaimable"], june["waste"], june["cores_unknown"]) == (2, {"EUR": 220.0}, 1)
    assert june["previous_run"] == march["run_key"] != june["run_key"]
    assert june["drift"] == [
        {
            "product_code": "AUTODESK-AUTOCAD",
            "change": "new_shortfall",
            "before": 0,
            "after": 1,
            "delta": 1,
        }
    ]
    # the store: C (terminated) still holds a Slack seat; server s2 has no core count
    quality = june["data_quality"]
    assert (quality["success"], quality["failed"], quality["error"]) == (False, 2, None)
    with unit_of_work(sqlite_engine) as session:
        runs = {k for (k,) in session.query(ReconciliationSnapshot.run_key).distinct()}
    assert runs == {march["run_key"], june["run_key"]}

    artifacts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert set(artifacts) == {*ARTIFACT_KEYS, DOCS_LINK_KEY}
    shortfalls = json.loads(artifacts["reconciliation-shortfalls"].data)
    assert [(r["product"], r["shortfall"], r["true-up cost"]) for r in shortfalls] == [
        ("MATHWORKS-MATLAB", 2, "4700.00"),
        ("AUTODESK-AUTOCAD", 1, "2030.00"),
        ("ADOBE-ACROBAT-PRO", 1, "240.00"),
        ("WINRAR", 2, "60.00"),
    ]
    reclaimable = json.loads(artifacts["reconciliation-reclaimable"].data)
    assert [(r["product"], r["reclaimable"], r["savings per year"]) for r in reclaimable] == [
        ("SLACK-PRO", 2, "220.00")
    ]
    assert "| AUTODESK-AUTOCAD | new shortfall | 0 | 1 | +1 |" in (
        artifacts["reconciliation-drift"].data
    )
    dq = artifacts["reconciliation-data-quality"].data
    assert "2 failed" in dq and "| open_seats | expect_column_values_to_be_in_set" in dq
    chargeback = json.loads(artifacts["reconciliation-chargeback"].data)
    assert chargeback[0] == {
        "cost center": "CC1",
        "seats": 25.0,
        "cost per year": "74476.00",
        "currency": "USD",
    }
    assert "7,030.00 USD" in artifacts["reconciliation-summary"].data

    # the CLI runs the same flow (a third run: nothing moved since the second)
    from licenseflow.cli import app

    result = CliRunner().invoke(app, ["run", "reconciliation", "--today", "2026-06-30"])
    assert result.exit_code == 0, result.output
    assert "shortfall: 4 products, 6 seats, true-up 7,030.00 USD a year" in result.output
    assert "drift: 0 change(s)" in result.output
    assert "data quality: 2 of 9 expectations failed" in result.output
