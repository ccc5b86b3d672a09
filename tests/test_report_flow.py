"""quarterly_audit_report as a real Prefect flow: the files, the link and summary artifacts;
`slm report` for a vendor's pack; a bad quarter refused before Prefect starts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from test_renewals_flow import artifacts_of
from test_report import arrange
from typer.testing import CliRunner

from licenseflow.settings import get_settings


def test_the_flow_writes_the_report_and_links_it_in_the_ui(
    sqlite_engine, runtime_dir, prefect_harness
):
    from prefect import get_client

    from flows.quarterly_audit_report import quarterly_audit_report
    from licenseflow.cli import app

    reports = get_settings().path("reports_dir")
    arrange(sqlite_engine, reports)
    state = quarterly_audit_report(quarter="2026Q3", as_of="2026-09-30", return_state=True)
    summary = state.result()
    assert summary["quarter"] == "2026Q3" and not summary["to_date"]
    html = Path(summary["html"])
    assert html == reports / "2026Q3" / "quarterly_report_2026Q3.html" and html.is_file()
    assert Path(summary["workbook"]).is_file()
    assert (reports / "2026Q3" / "csv" / "position.csv").is_file()
    assert summary["audit_chain_ok"] and len(summary["audit_last_hash"]) == 64

    found = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    link = found["quarterly-audit-report"].data  # Prefect keeps a link as "[text](url)"
    assert link.startswith("[Quarterly audit report 2026Q3") and "](file://" in link
    target = urlparse(link.split("](", 1)[1].rstrip(")"))
    assert target.scheme == "file" and Path(url2pathname(target.path)) == html
    markdown = found["quarterly-audit-summary"].data
    assert "chain intact" in markdown and summary["audit_last_hash"] in markdown
    assert "13,000.00 USD" in markdown  # spend in force
    assert "300.00 USD" in markdown  # true-up exposure

    async def runs():
        async with get_client() as client:
            return await client.read_flow_run(state.state_details.flow_run_id)

    assert asyncio.run(runs()).parameters == {
        "quarter": "2026Q3",
        "vendor": None,
        "as_of": "2026-09-30",
    }

    result = CliRunner().invoke(
        app, ["report", "--quarter", "2026Q3", "--as-of", "2026-09-30", "--vendor", "AUTODESK"]
    )
    assert result.exit_code == 0, result.output
    pack = reports / "2026Q3" / "vendors" / "autodesk" / "audit_pack_2026Q3_autodesk.html"
    assert str(pack) in result.output and pack.is_file()
    assert "chain intact" in result.output


def test_a_bad_quarter_is_refused_before_prefect_starts(sqlite_engine):
    from licenseflow.cli import app

    result = CliRunner().invoke(app, ["report", "--quarter", "2026Q5"])
    assert result.exit_code == 1
    assert "2026Q3" in result.output  # says how a quarter is written
    result = CliRunner().invoke(app, ["report", "--quarter", "2026Q3", "--as-of", "2026-12-01"])
    assert result.exit_code == 1 and "not in quarter 2026Q3" in result.output
