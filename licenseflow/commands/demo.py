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
    from flows.daily_discovery_scan import daily_discovery_scan

    def discovery() -> str:
        summary = daily_discovery_scan(today=today)
        rate = summary["recognition_rate"]
        return (
            f"{len(summary['files'])} files, {summary['new']} new installations, "
            f"recognition {'n/a' if rate is None else f'{rate:.1%}'}"
        )

    return [("daily discovery scan", discovery)]
