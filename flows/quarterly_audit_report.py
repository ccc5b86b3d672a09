"""Quarterly audit report (lifecycle stage 6, audits): the quarter's license position,
changes, compliance findings, savings, renewals ahead, data quality and the audit log's
verification, as an offline HTML page, an Excel workbook and CSVs for analysts and
auditors; per vendor on request (an audit pack)."""

from __future__ import annotations

from prefect import flow

from tasks.report_data import gather_task, report_period
from tasks.report_render import publish_task, render_task


@flow(name="quarterly-audit-report", log_prints=True)
def quarterly_audit_report(
    quarter: str | None = None, vendor: str | None = None, as_of: str | None = None
) -> dict:
    """Write the quarterly audit report of `quarter` (e.g. "2026Q3"; default the quarter
    that ended last) under <reports>/<quarter>/, and link it in the Prefect UI.

    `vendor` (a vendor's name): only that vendor's products and contracts, written under
    <reports>/<quarter>/vendors/<vendor>/ (an audit pack for the vendor's auditors).
    `as_of` (YYYY-MM-DD, inside the quarter): report the quarter up to that day; a quarter
    that has not ended is reported to date (up to today) without it.
    """
    period = report_period(quarter, as_of)  # a bad quarter or date fails before any work
    data = gather_task(period, vendor)  # every section, as of the end of the period
    files = render_task(data)  # HTML, workbook, CSVs: every cell neutralised
    return publish_task(data, files)  # link + summary artifacts
