"""slm run discovery, slm position."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from licenseflow.errors import LicenseflowError

console = Console()


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("discovery")
    def run_discovery(
        files: list[Path] = typer.Argument(None, help="files to scan (default: drop folders)"),
        today: str = typer.Option(None, help="the scan's date, YYYY-MM-DD (default today)"),
    ) -> None:
        """Run the daily discovery scan once, now."""
        from flows.daily_discovery_scan import daily_discovery_scan

        with console.status("scanning installation files ..."):
            try:
                summary = daily_discovery_scan(
                    files=[str(f) for f in files] if files else None, today=today
                )
            except LicenseflowError as exc:
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from None
        rate = summary["recognition_rate"]
        console.print(
            f"{len(summary['files'])} file(s) applied: {summary['new']} new, "
            f"{summary['changed']} changed, {summary['removed']} removed installations; "
            f"recognition rate {'n/a' if rate is None else f'{rate:.1%}'}; newly unlicensed: "
            f"{', '.join(summary['new_unlicensed']) or 'none'}"
        )

    @app.command()
    def position(
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
        as_of: str = typer.Option(
            None, "--as-of", help="YYYY-MM-DD (default today): rebuilt from history"
        ),
        by: str = typer.Option(
            None, "--by", help="cost-center or department: the cost charged back per group"
        ),
    ) -> None:
        """Per product, by metric: entitled, consumed, shortfall or surplus, reclaimable
        seats, true-up cost and waste (the weekly reconciliation's position)."""
        from licenseflow.commands.reconciliation import print_position

        print_position(as_json, as_of, by)


def show_position(frame, title: str) -> None:
    table = Table(title=title)
    for column in ("vendor", "product", "metric", "entitled", "installed devices", "users"):
        table.add_column(column, justify="right" if column[0] in "eiu" else "left")
    for row in frame.itertuples(index=False):
        entitled = (
            "site"
            if row.site
            else (
                "-"
                if row.entitled_seats is None or str(row.entitled_seats) == "<NA>"
                else str(row.entitled_seats)
            )
        )
        table.add_row(
            row.vendor or "",
            row.product_name,
            row.metric,
            entitled,
            str(row.installed_devices),
            str(row.installed_users),
        )
    console.print(table)
