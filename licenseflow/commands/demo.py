"""slm demo: every job once, in the daily/weekly/quarterly order, on the demo company."""

from __future__ import annotations

import datetime as dt

import typer
from rich.console import Console

console = Console()

DEMO_TODAY = "2026-11-23"  # the demo data's "today" (a Monday), so the results are stable


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command()
    def demo(today: str = typer.Option(DEMO_TODAY, help="the demo's date, YYYY-MM-DD")) -> None:
        """Initialise the store and run every flow once on data/demo, through Prefect; then
        the products whose position needs action, and where the reports are."""
        from licenseflow import db
        from licenseflow.commands.reconciliation import show_what_needs_action
        from licenseflow.errors import LicenseflowError
        from tasks.reconciliation import position_as_of

        db.upgrade()
        url = db.get_engine().url.render_as_string(hide_password=True)
        console.print(f"store: {url}")
        steps = demo_steps(today)
        results: dict = {}
        for key, title, run, gist in steps:
            with console.status(f"{title} ..."):
                try:
                    results[key] = run()
                except LicenseflowError as exc:  # reported; the later jobs still run
                    console.print(
                        f"failed {title}: {exc}", style="red", markup=False, soft_wrap=True
                    )
                    continue
            console.print(f"[green]done[/green] {title}: {gist(results[key])}", soft_wrap=True)

        with db.unit_of_work() as session:
            position = position_as_of(session, dt.date.fromisoformat(today))
        show_what_needs_action(position, f"License position on {today}: what needs action")
        report = results.get("report", {})
        docs = results.get("reconciliation", {}).get("data_quality", {}).get("data_docs")
        for label, where in (
            ("report", report.get("html")),
            ("workbook", report.get("workbook")),
            ("data docs", docs),
            ("store", url),
        ):
            if where:
                console.print(f"{label + ':':<10} {where}", markup=False, soft_wrap=True)
        if len(results) < len(steps):
            raise typer.Exit(1)


def demo_steps(today: str):
    """(key, title, run, gist) in the order the schedules run them: run() returns the flow's
    result, gist(result) says it in one line. People come before devices (discovery maps
    each device's primary user to a person), both before the seats that name them."""
    from flows.assignment_sync import assignment_sync
    from flows.contracts_sync import contracts_sync
    from flows.daily_discovery_scan import daily_discovery_scan
    from flows.hr_sync import hr_sync
    from flows.quarterly_audit_report import quarterly_audit_report
    from flows.renewals import renewals
    from flows.usage_metering import usage_metering
    from flows.weekly_reconciliation import weekly_reconciliation
    from licenseflow.commands.assignments import sync_gist

    def discovery_gist(summary: dict) -> str:
        rate = summary["recognition_rate"]
        return (
            f"{len(summary['files'])} files, {summary['new']} new installations, "
            f"recognition {'n/a' if rate is None else f'{rate:.1%}'}"
        )

    quarter = f"{today[:4]}Q{(int(today[5:7]) - 1) // 3 + 1}"
    return [
        ("contracts", "contracts sync", contracts_sync, describe),
        ("hr", "HR sync and offboarding", lambda: hr_sync(today=today), describe),
        (
            "discovery",
            "daily discovery scan",
            lambda: daily_discovery_scan(today=today),
            discovery_gist,
        ),
        ("assignments", "assignment sync", lambda: assignment_sync(today=today), sync_gist),
        (
            "usage",
            "usage metering",
            lambda: usage_metering(now=f"{today}T07:00:00+00:00"),
            describe,
        ),
        ("renewals", "renewals", lambda: renewals(today=today), describe),
        (
            "reconciliation",
            "weekly reconciliation",
            lambda: weekly_reconciliation(today=today),
            describe,
        ),
        (
            "report",
            "quarterly audit report (quarter to date)",
            lambda: quarterly_audit_report(quarter=quarter, as_of=today),
            describe,
        ),
    ]


def describe(result) -> str:
    """A one-line gist of a flow's return value."""
    if isinstance(result, list):
        return f"{len(result)} file(s)" if result else "nothing new"
    if isinstance(result, dict):
        parts = [
            f"{key.replace('_', ' ')} {value}"
            for key, value in result.items()
            if isinstance(value, int | float | str) and not isinstance(value, bool)
        ]
        return ", ".join(parts[:6]) or "done"
    return str(result)
