"""slm run usage, slm usage unmapped, slm reclaim list | keep | apply."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from licenseflow.errors import LicenseflowError

console = Console()
usage_app = typer.Typer(help="Usage metering: what the usage logs hold.", no_args_is_help=True)
reclaim_app = typer.Typer(
    help="Reclaim seats nobody uses: list the candidates, keep or reclaim them.",
    no_args_is_help=True,
)


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers)
        return "operator"


def _fail(exc: Exception) -> None:
    console.print(f"[red]{exc}[/red]")
    raise typer.Exit(1) from None


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    app.add_typer(usage_app, name="usage")
    app.add_typer(reclaim_app, name="reclaim")

    @run_app.command("usage")
    def run_usage(
        files: list[Path] = typer.Argument(None, help="usage files (default: drop folders)"),
        now: str = typer.Option(None, help="the run's clock, ISO 8601 (default now)"),
    ) -> None:
        """Run usage metering once, now: meter new usage files, raise alerts, find, notify
        and (if configured) auto-reclaim unused seats."""
        from flows.usage_metering import usage_metering

        with console.status("metering usage ..."):
            try:
                summary = usage_metering(files=[str(f) for f in files] if files else None, now=now)
            except LicenseflowError as exc:
                _fail(exc)
        costs = summary["new_candidates_monthly_cost"]
        console.print(
            f"{sum(f['status'] == 'applied' for f in summary['files'])} file(s) applied, "
            f"{summary['events_read']} usage events read ({summary['events_metered']} metered); "
            f"{summary['people_metered']} people, {summary['products_metered']} products; "
            f"{len(summary['new_candidates'])} new reclaim candidate(s) worth "
            f"{', '.join(f'{v} {k}' for k, v in costs.items()) or 'nothing'} a month; "
            f"{len(summary['alerts'])} alert(s); {len(summary['unmapped_apps'])} app(s) to map"
        )

    @usage_app.command("unmapped")
    def unmapped(
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    ) -> None:
        """Apps seen in usage logs that no catalog alias names (add them to the catalog)."""
        from sqlalchemy import select

        from licenseflow.db import unit_of_work
        from schemas.store import Alert
        from tasks.metering import UNMAPPED_KIND

        with unit_of_work() as session:
            rows = session.execute(
                select(Alert.payload, Alert.created_at)
                .where(Alert.kind == UNMAPPED_KIND, Alert.resolved_at.is_(None))
                .order_by(Alert.id)
            ).all()
        items = [
            {**(payload or {}), "first_seen": created.isoformat()} for payload, created in rows
        ]
        if as_json:
            typer.echo(json.dumps(items, indent=2))
            return
        table = Table(title="Unmapped apps in usage logs")
        for column in ("app", "app id / label", "source", "add under", "events", "first file"):
            table.add_column(column)
        for item in items:
            table.add_row(
                item.get("app") or "",
                item.get("app_id") or "",
                item.get("source") or "",
                item.get("alias_kind") or "",
                str(item.get("events", "")),
                item.get("first_file") or "",
            )
        console.print(table)

    @reclaim_app.command("list")
    def list_candidates(
        state: list[str] = typer.Option(
            None, "--state", help="candidate, notified, reclaimed, kept, cancelled (default: open)"
        ),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    ) -> None:
        """Reclaim candidates, newest first (default: the open ones)."""
        from licenseflow.db import unit_of_work
        from tasks import reclamation

        with unit_of_work() as session:
            frame = reclamation.candidates_frame(session, state or list(reclamation.OPEN_STATES))
        if as_json:
            typer.echo(frame.to_json(orient="records", date_format="iso", default_handler=str))
            return
        table = Table(title="Reclaim candidates")
        for column in (
            "id",
            "state",
            "product",
            "holder",
            "last activity",
            "monthly cost",
            "reason",
        ):
            table.add_column(
                column, justify="right" if column in ("id", "monthly cost") else "left"
            )
        for row in frame.itertuples(index=False):
            last = (
                "never"
                if row.last_activity is None or str(row.last_activity) == "NaT"
                else (f"{row.last_activity:%Y-%m-%d}")
            )
            table.add_row(
                str(row.id),
                row.state,
                row.code,
                row.person if isinstance(row.person, str) else str(row.device),
                last,
                "" if row.monthly_cost is None else str(row.monthly_cost),
                row.reason or "",
            )
        console.print(table)

    @reclaim_app.command("keep")
    def keep(
        candidate_id: int = typer.Argument(..., help="the candidate's id (slm reclaim list)"),
        reason: str = typer.Option(..., "--reason", help="why the seat is still needed"),
        actor: str = typer.Option(None, help="who decides (default: your login name)"),
    ) -> None:
        """Keep a seat: close the candidate as kept, with the reason."""
        from licenseflow.db import unit_of_work
        from tasks import reclamation

        try:
            with unit_of_work() as session:
                reclamation.keep(session, candidate_id, reason, actor or _whoami())
        except LicenseflowError as exc:
            _fail(exc)
        console.print(f"candidate {candidate_id} kept: {reason}")

    @reclaim_app.command("apply")
    def apply(
        candidate_ids: list[int] = typer.Argument(None, help="candidates to reclaim"),
        all_open: bool = typer.Option(False, "--all", help="every open candidate"),
        dry_run: bool = typer.Option(False, "--dry-run", help="show, change nothing"),
        actor: str = typer.Option(None, help="who reclaims (default: your login name)"),
    ) -> None:
        """Reclaim seats: revoke them through the assignment service (audit-logged). A seat
        used again since it was flagged is not revoked: its candidate is cancelled."""
        from licenseflow.db import unit_of_work
        from licenseflow.settings import get_settings
        from tasks import reclamation

        if not candidate_ids and not all_open:
            _fail(LicenseflowError("name the candidates to reclaim, or give --all"))
        settings = get_settings()
        rule = reclamation.Rule(settings.inactivity_days, settings.grace_days)
        ids = None if all_open else candidate_ids
        try:
            with unit_of_work() as session:
                if dry_run:
                    frame = reclamation.candidates_frame(
                        session, None if ids else list(reclamation.OPEN_STATES), ids
                    )
                    console.print(f"would reclaim {len(frame)} seat(s): {list(frame['id'])}")
                    return
                done = reclamation.apply(session, actor or _whoami(), ids=ids, rule=rule)
        except LicenseflowError as exc:
            _fail(exc)
        console.print(
            f"reclaimed {len(done.reclaimed)} seat(s): {sorted(done.reclaimed['id'].tolist())}; "
            f"cancelled {len(done.cancelled)} (used again or already closed)"
        )
