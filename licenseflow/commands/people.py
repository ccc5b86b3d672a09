"""slm run hr-sync, slm people list, slm ownership."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from licenseflow.errors import LicenseflowError

console = Console()
STATUSES = ("active", "leave", "terminated")


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    people_app = typer.Typer(help="People from the HR roster.", no_args_is_help=True)
    app.add_typer(people_app, name="people")

    @run_app.command("hr-sync")
    def run_hr_sync(
        roster: Path = typer.Option(None, help="roster CSV (default: the hr drop folder)"),
        today: str = typer.Option(None, help="the run's date, YYYY-MM-DD (default today)"),
        confirm_mass_termination: bool = typer.Option(
            False,
            "--confirm-mass-termination",
            help="apply a roster that terminates or leaves out more than the guard share",
        ),
    ) -> None:
        """Run the HR sync once, now: roster in, seats of terminated people revoked."""
        from flows.hr_sync import hr_sync
        from tasks.hr_sync_tasks import recovered_text

        with console.status("syncing the HR roster ..."):
            try:
                facts = hr_sync(
                    roster=str(roster) if roster else None,
                    today=today,
                    confirm_mass_termination=confirm_mass_termination,
                )
            except LicenseflowError as exc:
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from None
        console.print(
            f"{len(facts['files'])} roster file(s) applied: {facts['created']} people created, "
            f"{facts['updated']} updated, {facts['status_changes']} status changes; newly "
            f"terminated: {', '.join(facts['newly_terminated']) or 'none'}; "
            f"{facts['seats_reclaimed']} seat(s) reclaimed, monthly cost recovered "
            f"{recovered_text(facts)}; on leave: {len(facts['on_leave'])}; missing from the "
            f"roster: {len(facts['missing'])}; ownership gaps: {facts['ownership_gaps']}"
        )

    @people_app.command("list")
    def list_people(
        status: str = typer.Option(None, help="active, leave or terminated"),
        limit: int = typer.Option(200, help="show at most this many"),
    ) -> None:
        """People in the store, by employee id."""
        from sqlalchemy import func, select

        from licenseflow.db import unit_of_work
        from schemas.store import Person

        if status is not None and status not in STATUSES:
            console.print(f"[red]unknown status {status!r}: one of {', '.join(STATUSES)}[/red]")
            raise typer.Exit(1)
        query = select(Person).order_by(Person.employee_id)
        counting = select(func.count()).select_from(Person)
        if status:
            query = query.where(Person.status == status)
            counting = counting.where(Person.status == status)
        with unit_of_work() as session:
            total = session.scalar(counting)
            rows = session.execute(query.limit(limit)).scalars().all()
        table = Table(title=f"People ({len(rows)} of {total})")
        for column in ("employee", "name", "email", "department", "manager", "status", "left"):
            table.add_column(column)
        for p in rows:
            table.add_row(
                p.employee_id,
                p.full_name,
                p.email,
                p.department or "",
                p.manager_email or "",
                p.status,
                str(p.termination_date or ""),
            )
        console.print(table)

    @app.command()
    def ownership(
        today: str = typer.Option(None, help="YYYY-MM-DD (default today)"),
    ) -> None:
        """Contracts whose owner is missing, unknown, terminated or on leave."""
        from licenseflow.db import unit_of_work
        from tasks.ownership import ownership_gaps

        day = dt.date.fromisoformat(today) if today else dt.date.today()
        with unit_of_work() as session:
            gaps = ownership_gaps(session, day)
        if gaps.empty:
            console.print(f"every contract in force or to come on {day} has an owner who is here")
            return
        table = Table(title=f"Ownership gaps on {day}")
        for column in ("contract", "product", "gap", "owner", "owner status", "suggested owner"):
            table.add_column(column)
        for g in gaps.astype(object).where(gaps.notna(), None).itertuples(index=False):
            table.add_row(
                g.contract_number,
                g.product_code,
                g.gap,
                g.owner_email or "",
                g.owner_status or "",
                g.suggested_owner or "",
            )
        console.print(table)
