"""slm run reconciliation; the full license position behind `slm position` (registered in
licenseflow/commands/discovery.py, which calls print_position)."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from licenseflow.errors import LicenseflowError

console = Console()
errors = Console(stderr=True)
GROUPS = {"cost-center": "cost_center", "cost_center": "cost_center", "department": "department"}


def parse_day(text: str | None, option: str) -> dt.date:
    if not text:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        errors.print(f"{option} must be a date written YYYY-MM-DD (got {text!r})", markup=False)
        raise typer.Exit(2) from None


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @run_app.command("reconciliation")
    def run_reconciliation(
        today: str = typer.Option(None, help="the position's date, YYYY-MM-DD (default today)"),
    ) -> None:
        """Run the weekly reconciliation once, now: position, drift, data quality."""
        from flows.weekly_reconciliation import weekly_reconciliation

        parse_day(today, "--today")  # a bad date is refused before Prefect starts
        with console.status("reconciling ..."):
            try:
                summary = weekly_reconciliation(today=today)
            except LicenseflowError as exc:
                errors.print(str(exc), markup=False)
                raise typer.Exit(1) from None
        print_summary(summary)


def print_summary(summary: dict) -> None:
    def money(totals: dict) -> str:
        return ", ".join(f"{v:,.2f} {k}" for k, v in sorted(totals.items())) or "0"

    quality = summary["data_quality"]
    if quality["error"]:
        verdict = f"could not run: {quality['error']}"
    elif quality["success"]:
        verdict = f"all {quality['checks']} expectations met"
    else:
        verdict = f"{quality['failed']} of {quality['checks']} expectations failed"
    lines = [
        f"license position on {summary['day']}: {summary['products']} products",
        f"  shortfall: {summary['shortfalls']} products, {summary['shortfall_seats']} seats, "
        f"true-up {money(summary['true_up_cost'])} a year",
        f"  reclaimable: {summary['reclaimable']} seats, savings {money(summary['waste'])} a year",
        f"  drift: {len(summary['drift'])} change(s)"
        + ("" if summary["previous_run"] else " (first run: nothing to compare)"),
    ]
    lines += [
        f"    {d['product_code']}: {d['change'].replace('_', ' ')} {d['before']} -> {d['after']}"
        for d in summary["drift"]
    ]
    lines.append(f"  data quality: {verdict}")
    if quality["data_docs"]:
        lines.append(f"  data docs: {quality['data_docs']}")
    for line in lines:
        console.print(line, markup=False, highlight=False)


def print_position(as_json: bool, as_of: str | None, by: str | None) -> None:
    """`slm position`: the full position as a table or JSON, or its chargeback per group."""
    from licenseflow.db import read_only
    from tasks.reconciliation import chargeback, position_as_of

    day = parse_day(as_of, "--as-of")
    group = None
    if by:
        group = GROUPS.get(by.strip().lower())
        if group is None:
            errors.print(f"--by must be cost-center or department (got {by!r})", markup=False)
            raise typer.Exit(2)
    with read_only() as session:
        frame = chargeback(session, day, group) if group else position_as_of(session, day)
    if as_json:
        typer.echo(json.dumps(json.loads(frame.to_json(orient="records")), indent=2))
        return
    if group:
        show_chargeback(frame, f"License cost by {group.replace('_', ' ')} on {day}")
    else:
        show_full_position(frame, f"License position on {day}")


def _num(value, digits: int = 0) -> str:
    if value is None or (not isinstance(value, str) and value != value):  # None or NaN/NA
        return "-"
    try:
        if str(value) == "<NA>":
            return "-"
        return f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def show_full_position(frame, title: str) -> None:
    table = Table(title=title)
    columns = [
        ("product", "left"),
        ("metric", "left"),
        ("entitled", "right"),
        ("consumed", "right"),
        ("assigned", "right"),
        ("installed", "right"),
        ("active", "right"),
        ("shortfall", "right"),
        ("surplus", "right"),
        ("reclaimable", "right"),
        ("true-up", "right"),
        ("waste", "right"),
        ("cur", "left"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for row in frame.to_dict("records"):
        unlimited = row["entitled"] is None or str(row["entitled"]) == "<NA>"
        table.add_row(
            row["product_code"],
            row["metric"],
            "unlimited" if unlimited else _num(row["entitled"]),
            _num(row["consumed"]),
            _num(row["assigned"]),
            _num(row["installed"]),
            _num(row["active"]),
            _num(row["shortfall"]) if row["shortfall"] else "",
            _num(row["surplus"]) if row["surplus"] else "",
            _num(row["reclaimable"]) if row["reclaimable"] else "",
            _num(row["true_up_cost"], 2) if row["shortfall"] else "",
            _num(row["waste"], 2) if row["reclaimable"] else "",
            row["currency"] or "",
        )
    Console().print(table)  # a console per call: the terminal's width now


def show_chargeback(frame, title: str) -> None:
    table = Table(title=title)
    for name in ("group", "product", "metric", "consumed", "unit cost", "cost", "cur"):
        table.add_column(
            name, justify="right" if name in ("consumed", "unit cost", "cost") else "left"
        )
    for row in frame.to_dict("records"):
        table.add_row(
            row["group"],
            row["product_code"],
            row["metric"],
            _num(row["consumed"], 2 if row["metric"] == "concurrent" else 0),
            _num(row["unit_cost"], 2),
            _num(row["cost"], 2),
            row["currency"] or "",
        )
    Console().print(table)
