"""slm assign, slm revoke, slm assignments load, slm run assignment-sync, slm audit verify,
slm audit log."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _fail(text: str) -> None:
    _say(Console(stderr=True), text)
    raise typer.Exit(1)


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command()
    def assign(
        product: str = typer.Argument(..., help="product code, e.g. MS-M365-E3"),
        user: str = typer.Option(None, "--user", help="the person's email or employee id"),
        device: str = typer.Option(None, "--device", help="the device's hostname"),
        override: str = typer.Option(
            None, "--override", help="go over the seats owned; the reason is logged"
        ),
        reason: str = typer.Option(None, "--reason", help="why (kept on the seat)"),
        actor: str = typer.Option(None, "--as", help="who is acting (default cli:<user>)"),
    ) -> None:
        """Give a seat of PRODUCT to a person or a device (refused beyond the seats owned)."""
        _change("assign", product, user, device, reason, override, actor)

    @app.command()
    def revoke(
        product: str = typer.Argument(..., help="product code, e.g. MS-M365-E3"),
        user: str = typer.Option(None, "--user", help="the person's email or employee id"),
        device: str = typer.Option(None, "--device", help="the device's hostname"),
        reason: str = typer.Option(..., "--reason", help="why (kept on the seat and logged)"),
        actor: str = typer.Option(None, "--as", help="who is acting (default cli:<user>)"),
    ) -> None:
        """Take back a seat of PRODUCT (the seat's history is kept)."""
        _change("revoke", product, user, device, reason, None, actor)

    assignments_app = typer.Typer(
        help="Who holds which seat: load the current state from other systems.",
        no_args_is_help=True,
    )
    app.add_typer(assignments_app, name="assignments")

    @assignments_app.command("load")
    def load(
        file: Path = typer.Argument(
            ..., help="canonical CSV, or a Microsoft Graph users JSON export (with --skus)"
        ),
        skus: Path = typer.Option(
            None, "--skus", help="the Graph subscribedSkus JSON export that goes with users"
        ),
        actor: str = typer.Option(None, "--as", help="who is acting (default cli:<user>)"),
    ) -> None:
        """Load the seats people and devices hold today; a bad row refuses the whole file."""
        from licenseflow.errors import InputRejected
        from tasks.assignment_feeds import load_assignments

        try:
            result = load_assignments(file, skus=skus, actor=actor or _default_actor())
        except InputRejected as refused:
            _fail(str(refused))
        console = Console()
        _say(console, result.summary())
        if result.sku_checks:
            table = Table(title="Microsoft Graph: consumedUnits against the users export")
            for column in ("SKU", "product", "enabled", "consumed", "in file", "imported"):
                table.add_column(column, justify=None if column in ("SKU", "product") else "right")
            for c in result.sku_checks:
                table.add_row(
                    c.sku_part_number,
                    c.product_code or "(not in the catalog)",
                    str(c.prepaid_enabled),
                    str(c.consumed_units),
                    str(c.licensed_in_file),
                    str(c.imported),
                )
            console.print(table)
        for upn in result.unmatched_users:
            _say(console, f"  licensed in Graph, no person in the store: {upn}")

    @run_app.command("assignment-sync")
    def run_assignment_sync(
        today: str = typer.Option(None, help="the run's date, YYYY-MM-DD (default today)"),
    ) -> None:
        """Run the assignment sync once, now: the assignments drop folders' new files in,
        seats of terminated people revoked."""
        from flows.assignment_sync import assignment_sync
        from licenseflow.errors import LicenseflowError

        console = Console()
        with console.status("importing assignment-state files ..."):
            try:
                facts = assignment_sync(today=today)
            except LicenseflowError as exc:
                console.print(str(exc), style="red", markup=False, highlight=False)
                raise typer.Exit(1) from None
        _say(console, sync_gist(facts))

    audit_app = typer.Typer(help="The audit log: verify the chain, read entries.")
    app.add_typer(audit_app, name="audit")

    @audit_app.command("verify")
    def verify(
        head: str = typer.Option(
            None, "--head", help="a head hash recorded earlier (catches removed last entries)"
        ),
    ) -> None:
        """Recompute the hash chain; exit 1 naming the first altered, removed or inserted
        entry."""
        from licenseflow.db import unit_of_work
        from schemas.store import AuditLog
        from tasks import audit

        with unit_of_work() as session:
            result = audit.verify(session, expected_head=head)
            bad = session.get(AuditLog, result.first_bad_id) if result.first_bad_id else None
            if result.ok:
                _say(Console(), str(result))
                return
            lines = [str(result)]
            if bad is not None:
                lines.append(
                    f"  entry {bad.id}: {bad.at:%Y-%m-%d %H:%M:%S} {bad.actor} {bad.action} "
                    f"{bad.entity} {bad.entity_id or ''}".rstrip()
                )
        _fail("\n".join(lines))

    @audit_app.command("log")
    def log(
        entity: str = typer.Option(None, "--entity", help="e.g. assignment, contract, person"),
        entity_id: str = typer.Option(None, "--entity-id", help="the entity's id"),
        batch: str = typer.Option(None, "--batch", help="a bulk batch id"),
        limit: int = typer.Option(50, "--limit", min=1, help="newest N entries"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    ) -> None:
        """The newest audit entries: who did what, when, before and after."""
        from licenseflow.db import unit_of_work
        from tasks import audit

        with unit_of_work() as session:
            rows = audit.entries(
                session, entity=entity, entity_id=entity_id, batch_id=batch, limit=limit
            )
            records = [
                {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "entity": e.entity,
                    "entity_id": e.entity_id,
                    "batch_id": e.batch_id,
                    "before": e.before,
                    "after": e.after,
                }
                for e in rows
            ]
        if as_json:
            typer.echo(json.dumps(records, indent=2, default=str))
            return
        table = Table(title=f"Audit log ({len(records)} newest)")
        for column in ("id", "at", "actor", "action", "entity", "batch", "after"):
            table.add_column(column, overflow="fold")
        for r in records:
            table.add_row(
                str(r["id"]),
                r["at"][:19],
                r["actor"],
                r["action"],
                f"{r['entity']} {r['entity_id'] or ''}".strip(),
                r["batch_id"] or "",
                json.dumps(r["after"], default=str) if r["after"] is not None else "",
            )
        Console().print(table)


def sync_gist(facts: dict) -> str:
    """One line on an assignment sync's summary (`slm run assignment-sync`, `slm demo`)."""
    from tasks.hr_sync_tasks import recovered_text

    return (
        f"{len(facts['applied'])} file(s) applied, {len(facts['already_applied'])} already "
        f"applied; {facts['seats_assigned']} seat(s) assigned, {facts['seats_unchanged']} "
        f"unchanged, {len(facts['overrides'])} product(s) over capacity; "
        f"{facts['seats_reclaimed']} seat(s) of {facts['people_offboarded']} people already "
        f"gone reclaimed, monthly cost recovered {recovered_text(facts)}"
    )


def _change(action, product, user, device, reason, override, actor) -> None:
    from licenseflow.db import unit_of_work
    from licenseflow.errors import AssignmentRefused, CapacityExceeded
    from tasks.assignments import AssignmentService

    if (user is None) == (device is None):
        _fail("name exactly one of --user or --device")
    try:
        with unit_of_work() as session:
            service = AssignmentService(session, actor or _default_actor())
            if action == "assign":
                outcome = service.assign(
                    product, person=user, device=device, reason=reason, override_reason=override
                )
            else:
                outcome = service.revoke(product, person=user, device=device, reason=reason)
    except (AssignmentRefused, CapacityExceeded) as refused:
        _fail(str(refused))
    holder = user or device
    if outcome.status == "unchanged":
        _say(Console(), f"unchanged: {product} {holder}: {outcome.message}")
    else:
        _say(
            Console(), f"{outcome.status}: {product} {holder} (assignment {outcome.assignment_id})"
        )
