"""slm report --quarter 2026Q3 [--vendor Adobe] [--as-of 2026-09-30]."""

from __future__ import annotations

import typer
from rich.console import Console

from licenseflow.errors import LicenseflowError

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    def run(quarter: str | None, vendor: str | None, as_of: str | None) -> None:
        from flows.quarterly_audit_report import quarterly_audit_report
        from tasks.report_data import report_period

        try:
            period = report_period(quarter, as_of)  # refused before Prefect starts
            with console.status(f"writing the audit report of {period.title} ..."):
                summary = quarterly_audit_report(
                    quarter=str(period.quarter), vendor=vendor, as_of=period.as_of.isoformat()
                )
        except LicenseflowError as exc:
            errors.print(str(exc), markup=False)
            raise typer.Exit(1) from None
        what = f"audit pack of {summary['vendor']}" if summary["vendor"] else "audit report"
        to_date = " (quarter to date)" if summary["to_date"] else ""
        say = {"markup": False, "highlight": False}
        console.print(f"{what} {summary['quarter']} as of {summary['as_of']}{to_date}", **say)
        console.print(f"  html:     {summary['html']}", **say)
        console.print(f"  workbook: {summary['workbook']}", **say)
        console.print(f"  csv:      {summary['csv_dir']}", **say)
        chain = "intact" if summary["audit_chain_ok"] else "BROKEN"
        console.print(
            f"  audit log: chain {chain}, {summary['audit_entries']} entries, last hash "
            f"{summary['audit_last_hash'] or '-'}",
            **say,
        )
        if not summary["audit_chain_ok"]:
            raise typer.Exit(1)

    quarter_help = "the quarter, e.g. 2026Q3 (default: the quarter that ended last)"
    vendor_help = "only this vendor's products and contracts (an audit pack for the vendor)"
    as_of_help = "YYYY-MM-DD inside the quarter: report up to that day (default: its end, or today)"

    @app.command("report")
    def report(
        quarter: str = typer.Option(None, "--quarter", help=quarter_help),
        vendor: str = typer.Option(None, "--vendor", help=vendor_help),
        as_of: str = typer.Option(None, "--as-of", help=as_of_help),
    ) -> None:
        """Write the quarterly audit report (HTML, Excel workbook, CSVs) under the reports
        folder, through the quarterly-audit-report flow."""
        run(quarter, vendor, as_of)

    @run_app.command("quarterly-audit-report")
    def run_report(
        quarter: str = typer.Option(None, "--quarter", help=quarter_help),
        vendor: str = typer.Option(None, "--vendor", help=vendor_help),
        as_of: str = typer.Option(None, "--as-of", help=as_of_help),
    ) -> None:
        """Run the quarterly audit report flow once, now (same as `slm report`)."""
        run(quarter, vendor, as_of)
