"""slm contracts load FILE, slm contracts list."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    contracts_app = typer.Typer(
        help="The inventory of what is owned: contracts, their products and vendors.",
        no_args_is_help=True,
    )
    app.add_typer(contracts_app, name="contracts")

    @contracts_app.command("load")
    def load(
        file: Path = typer.Argument(..., help="contracts file: .csv, .yaml or .yml"),
    ) -> None:
        """Load a contracts file: create or update contracts; a bad row refuses the file."""
        from licenseflow.db import unit_of_work
        from licenseflow.errors import InputRejected
        from tasks.contracts import load_contracts

        console, errors = Console(), Console(stderr=True)
        try:
            with unit_of_work() as session:
                result = load_contracts(session, file, actor="cli")
        except InputRejected as refused:
            errors.print(str(refused), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        console.print(result.summary(), markup=False, highlight=False, soft_wrap=True)
        for pair in result.duplicates.to_dict("records"):
            console.print(
                f"  possible duplicate purchase: {pair['product_code']} contracts "
                f"{pair['contract_a']} and {pair['contract_b']} overlap "
                f"{pair['overlap_start']:%Y-%m-%d} to {pair['overlap_end']:%Y-%m-%d}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    @contracts_app.command("list")
    def list_(
        as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    ) -> None:
        """Every contract: product, vendor, seats, unit cost, term and owner."""
        from licenseflow.db import unit_of_work
        from tasks.contracts import list_contracts

        with unit_of_work() as session:
            frame = list_contracts(session)
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        if as_json:  # dates as YYYY-MM-DD, unit_cost as an exact decimal string
            typer.echo(json.dumps(records, default=str, indent=2))
            return
        table = Table(title=f"Contracts ({len(frame)})")
        for column in ("contract", "product", "vendor", "seats", "unit cost", "term", "owner"):
            table.add_column(column, justify="right" if column in ("seats", "unit cost") else None)
        for c in records:
            table.add_row(
                c["contract"],
                c["product"],
                c["vendor"] or "",
                "unlimited (site)" if c["seats"] is None else f"{int(c['seats']):,}",
                f"{c['unit_cost']:,.2f} {c['currency']}",
                f"{c['start_date']:%Y-%m-%d} to {c['end_date']:%Y-%m-%d}"
                + (" (auto-renew)" if c["auto_renew"] else ""),
                c["owner"] or "(unowned)",
            )
        Console().print(table)
