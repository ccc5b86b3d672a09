"""slm run reconciliation; the full license position behind `slm position` (registered in
licenseflow/commands/discovery.py, which calls print_position)."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
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


def money(totals: dict) -> str:
    """Amounts per currency, e.g. "1,200.00 EUR, 300.00 USD" ("0" for none)."""
    return ", ".join(f"{v:,.2f} {k}" for k, v in sorted(totals.items())) or "0"


def print_summary(summary: dict) -> None:
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


# the columns kept, under shorter headers, when the full table is wider than the console
# (80 columns when the output is not a terminal); amounts are then in whole units, and the
# currency is said once in the title when there is only one
NARROW = {
    "product": "product",
    "entitled": "entitled",
    "consumed": "consumed",
    "shortfall": "short",
    "surplus": "surplus",
    "reclaimable": "reclaim",
    "true-up": "true-up",
    "waste": "waste",
    "cur": "cur",
}


def show_full_position(frame, title: str) -> None:
    """The position table; the NARROW columns when the full one does not fit the console."""
    console = Console()  # a console per call: the terminal's width now
    table = _position_table(frame, title, narrow=False)
    unbounded = console.options.update(max_width=10_000)
    if Measurement.get(console, unbounded, table).maximum > console.width:
        table = _position_table(frame, title, narrow=True)
    console.print(table)


def _position_table(frame, title: str, narrow: bool) -> Table:
    digits = 0 if narrow else 2

    def count(row, column: str) -> str:  # a shortfall, surplus or reclaimable: empty for none
        return _num(row[column]) if row[column] else ""

    columns = {  # column: (justify, cell of a position row)
        "product": ("left", lambda r: r["product_code"]),
        "metric": ("left", lambda r: r["metric"]),
        "entitled": (
            "right",
            lambda r: (
                "unlimited" if str(r["entitled"]) in ("None", "<NA>") else _num(r["entitled"])
            ),
        ),
        "consumed": ("right", lambda r: _num(r["consumed"])),
        "assigned": ("right", lambda r: _num(r["assigned"])),
        "installed": ("right", lambda r: _num(r["installed"])),
        "active": ("right", lambda r: _num(r["active"])),
        "shortfall": ("right", lambda r: count(r, "shortfall")),
        "surplus": ("right", lambda r: count(r, "surplus")),
        "reclaimable": ("right", lambda r: count(r, "reclaimable")),
        "true-up": ("right", lambda r: _num(r["true_up_cost"], digits) if r["shortfall"] else ""),
        "waste": ("right", lambda r: _num(r["waste"], digits) if r["reclaimable"] else ""),
        "cur": ("left", lambda r: r["currency"] or ""),
    }
    if not narrow:
        headers, table = {name: name for name in columns}, Table(title=title)
    else:
        headers = dict(NARROW)
        currencies = set(frame["currency"].dropna())
        if len(currencies) == 1:
            del headers["cur"]
            title = f"{title} ({currencies.pop()} a year)"
        table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
    for name, header in headers.items():
        justify, _ = columns[name]
        # only the product column may shrink (its codes end in "…"), never a figure
        table.add_column(header, justify=justify, no_wrap=name != "product", overflow="ellipsis")
    for row in frame.to_dict("records"):
        table.add_row(*(columns[name][1](row) for name in headers))
    return table


def show_what_needs_action(frame, title: str) -> None:
    """The products with a shortfall, a surplus or reclaimable seats, the most money at stake
    first (true-up cost, waste), then one line of totals: true-up exposure, reclaimable waste."""
    from tasks.reconciliation_tasks import money_by_currency

    at_stake = frame["true_up_cost"].fillna(0) + frame["waste"].fillna(0)
    needs_action = (frame["shortfall"] > 0) | (frame["surplus"] > 0) | (frame["reclaimable"] > 0)
    shown = frame.assign(at_stake=at_stake)[needs_action].sort_values(
        ["at_stake", "shortfall", "reclaimable", "surplus"], ascending=False
    )
    show_full_position(shown, title)
    short = frame[frame["shortfall"] > 0]
    for line in (
        f"true-up exposure: {money(money_by_currency(frame, 'true_up_cost'))} a year "
        f"({len(short)} products, {int(short['shortfall'].sum())} seats short)",
        f"reclaimable:      {int(frame['reclaimable'].sum())} seats, waste "
        f"{money(money_by_currency(frame, 'waste'))} a year",
    ):
        console.print(line, markup=False, highlight=False)


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
