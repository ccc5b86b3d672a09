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
        """Initialise the store and run every flow once on data/demo, through Prefect."""
        from licenseflow import db
        from licenseflow.commands.discovery import show_position
        from licenseflow.settings import get_settings
        from tasks.position import installed_position

        db.upgrade()
        url = db.get_engine().url.render_as_string(hide_password=True)
        console.print(f"store: {url}")
        for title, step in demo_steps(today):
            with console.status(f"{title} ..."):
                result = step()
            console.print(f"[green]done[/green] {title}: {result}")

        with db.unit_of_work() as session:
            frame = installed_position(session, dt.date.fromisoformat(today))
        show_position(frame, f"License position on {today}")
        settings = get_settings()
        console.print(f"reports: {settings.path('reports_dir')}")
        console.print(f"store:   {url}")


def demo_steps(today: str):
    """(title, callable) in the order the schedules run them."""
    from flows.contracts_sync import contracts_sync
    from flows.daily_discovery_scan import daily_discovery_scan
    from flows.hr_sync import hr_sync
    from flows.quarterly_audit_report import quarterly_audit_report
    from flows.renewals import renewals
    from flows.usage_metering import usage_metering
    from flows.weekly_reconciliation import weekly_reconciliation

    def discovery() -> str:
        summary = daily_discovery_scan(today=today)
        rate = summary["recognition_rate"]
        return (
            f"{len(summary['files'])} files, {summary['new']} new installations, "
            f"recognition {'n/a' if rate is None else f'{rate:.1%}'}"
        )

    def report(day: str) -> str:
        quarter = f"{day[:4]}Q{(int(day[5:7]) - 1) // 3 + 1}"
        result = quarterly_audit_report(quarter=quarter, as_of=day)
        return describe(result)

    return [
        ("contracts sync", lambda: describe(contracts_sync())),
        ("HR sync and offboarding", lambda: describe(hr_sync(today=today))),
        ("daily discovery scan", discovery),
        ("usage metering", lambda: describe(usage_metering(now=f"{today}T07:00:00+00:00"))),
        ("renewals", lambda: describe(renewals(today=today))),
        ("weekly reconciliation", lambda: describe(weekly_reconciliation(today=today))),
        ("quarterly audit report (quarter to date)", lambda: report(today)),
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
