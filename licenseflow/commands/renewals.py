"""slm run renewals, slm renewals [--within 90], slm renewals decide CONTRACT."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from licenseflow.errors import LicenseflowError

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def _day(text: str | None) -> dt.date:
    if not text:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        errors.print(f"--today must be a date written YYYY-MM-DD (got {text!r})", markup=False)
        raise typer.Exit(2) from None


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("renewals")
    def run_renewals(
        today: str = typer.Option(None, help="the run's date, YYYY-MM-DD (default today)"),
    ) -> None:
        """Run the daily renewals flow once, now."""
        from flows.renewals import renewals

        _day(today)  # a bad date is refused before Prefect starts
        with console.status("reviewing renewals ..."):
            try:
                summary = renewals(today=today)
            except LicenseflowError as exc:
                errors.print(str(exc), markup=False)
                raise typer.Exit(1) from None
        windows = ", ".join(f"{w} days: {len(names)}" for w, names in summary["in_window"].items())
        console.print(
            f"renewals on {summary['today']}: in window ({windows}); "
            f"{summary['alerts_created']} new alert(s), {summary['resolved']} resolved",
            markup=False,
            highlight=False,
        )
        for flag, names in summary["flags"].items():
            if names:
                console.print(f"  {flag}: {', '.join(names)}", markup=False, highlight=False)
        if summary["delivery"] is not None:
            from tasks.notify import DeliveryReport

            console.print(str(DeliveryReport(**summary["delivery"])), markup=False)
        console.print(f"calendar: {summary['calendar']}", markup=False, highlight=False)

    renewals_app = typer.Typer(
        help="Renewal deadlines: what is due, what to renew, decisions.",
        invoke_without_command=True,
    )
    app.add_typer(renewals_app, name="renewals")

    @renewals_app.callback()
    def upcoming(
        ctx: typer.Context,
        within: int = typer.Option(90, "--within", min=0, help="days ahead to look"),
        today: str = typer.Option(None, help="YYYY-MM-DD (default today)"),
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    ) -> None:
        """Contracts whose deadline (the notice deadline when they renew themselves) falls
        within the next N days, with the seats to renew and the projected saving."""
        if ctx.invoked_subcommand is not None:
            return
        from licenseflow.db import unit_of_work
        from tasks.renewals import upcoming as upcoming_contracts

        day = _day(today)
        with unit_of_work() as session:
            frame = upcoming_contracts(session, day, within)
        if as_json:
            records = [
                {
                    k: (v.as_json() if k == "recommendation" else v)
                    for k, v in r.items()
                    if k not in ("contract_id", "product_id")
                }
                for r in frame.astype(object).where(frame.notna(), None).to_dict("records")
            ]
            typer.echo(json.dumps(records, default=str, indent=2))
            return
        table = Table(title=f"Renewal deadlines from {day} to {day + dt.timedelta(days=within)}")
        for column in (
            "deadline",
            "days",
            "contract",
            "product",
            "owner",
            "seats",
            "renew",
            "saving / year",
            "trend",
        ):
            table.add_column(
                column,
                justify="right" if column in ("days", "seats", "renew", "saving / year") else None,
            )
        for r in frame.to_dict("records"):
            rec = r["recommendation"]
            deadline = str(r["deadline"])
            if r["auto_renew"] and r["notice_days"]:
                deadline += f" (notice; auto-renews {r['end_date']})"
            table.add_row(
                deadline,
                str(r["days_left"]),
                r["contract_number"],
                r["product_code"],
                r["owner_email"] or "(unowned)",
                "site" if r["seats"] is None else str(r["seats"]),
                "-" if rec.recommended is None else str(rec.recommended),
                f"{rec.saving} {r['currency']}" if rec.saving else "-",
                str(rec.trend),
            )
        console.print(table)
        if frame.empty:
            console.print(f"no renewal deadline within {within} days", markup=False)

    @renewals_app.command("decide")
    def decide(
        contract: str = typer.Argument(..., help="contract number"),
        decision: str = typer.Option(..., "--decision", help="renew | cancel | lapse"),
        reason: str = typer.Option(..., "--reason", help="why (kept in the audit log)"),
        actor: str = typer.Option("cli", "--by", help="who decided"),
    ) -> None:
        """Record the owner's decision for a contract's current deadline: its renewal
        alerts are closed and no more reminders or expiry flags are raised for it."""
        from licenseflow.db import unit_of_work
        from tasks.renewals import record_decision

        try:
            with unit_of_work() as session:
                done = record_decision(session, contract, decision, reason, actor=actor)
        except LicenseflowError as exc:
            errors.print(str(exc), markup=False)
            raise typer.Exit(1) from None
        console.print(
            f"contract {done['contract']}: decision '{done['decision']}' recorded for the "
            f"deadline {done['deadline']}; {done['resolved']} open alert(s) closed",
            markup=False,
            highlight=False,
        )
