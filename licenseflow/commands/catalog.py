"""slm catalog check | sync | unmatched | confirm: the software recognition catalog."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from licenseflow.errors import LicenseflowError

catalog_app = typer.Typer(
    help="The software catalog: check it, load it into the store, confirm unmatched titles.",
    no_args_is_help=True,
)
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


@catalog_app.command("check")
def check(
    file: str | None = typer.Option(
        None, "--file", help="catalog YAML (default data/catalog.yaml)"
    ),
) -> None:
    """Load and validate the catalog; print product counts by classification and metric."""
    from schemas.catalog import ALIAS_KINDS, counts_by
    from tasks.recognition import load_catalog

    try:
        catalog = load_catalog(file)
    except LicenseflowError as exc:
        _fail(exc)
    table = Table(title=f"catalog: {len(catalog.products)} products")
    table.add_column("classification")
    table.add_column("products", justify="right")
    for name, count in counts_by(catalog, "classification").items():
        table.add_row(name, str(count))
    console.print(table)
    metrics = ", ".join(f"{k} {v}" for k, v in counts_by(catalog, "metric").items())
    rules = sum(len(p.match) for p in catalog.products)
    aliases = ", ".join(
        f"{kind} {sum(len(getattr(p, kind)) for p in catalog.products)}" for kind in ALIAS_KINDS
    )
    console.print(f"metrics: {metrics}", highlight=False)
    console.print(
        f"match rules: {rules}; ignore patterns: {len(catalog.ignore)}; aliases: {aliases}",
        highlight=False,
    )


@catalog_app.command("sync")
def sync() -> None:
    """Create or update the catalog's vendors and products in the store (audit-logged)."""
    from licenseflow.db import unit_of_work
    from tasks.recognition import load_catalog, sync_catalog_to_store

    try:
        catalog = load_catalog()
        with unit_of_work() as session:
            changed = sync_catalog_to_store(session, catalog)
    except LicenseflowError as exc:
        _fail(exc)
    console.print(f"{len(catalog.products)} catalog products; {changed} created or changed")


@catalog_app.command("unmatched")
def unmatched(
    limit: int = typer.Option(50, "--limit", min=1, help="how many titles to list"),
) -> None:
    """Installed titles no product matched, most devices first, with suggested products."""
    from licenseflow.db import unit_of_work
    from tasks.recognition import unmatched_titles

    try:
        with unit_of_work() as session:
            found = unmatched_titles(session, limit=limit)
    except LicenseflowError as exc:
        _fail(exc)
    if found.empty:
        console.print("no unmatched titles")
        return
    table = Table(title=f"unmatched titles (top {len(found)})")
    # fold, not truncate: the analyst copies the title into `slm catalog confirm`
    table.add_column("normalised title", overflow="fold")
    table.add_column("example raw title", overflow="fold")
    table.add_column("publisher", overflow="fold")
    table.add_column("devices", justify="right")
    suggestions = [s.replace(", ", "\n") for s in found["suggestions"]]
    widest = max((len(line) for s in suggestions for line in s.splitlines()), default=1)
    table.add_column("suggestions", min_width=widest, no_wrap=True)
    for row, hint in zip(found.itertuples(), suggestions, strict=True):
        table.add_row(
            row.normalized_title,
            row.example_title,
            row.publisher if isinstance(row.publisher, str) else "",
            str(row.devices),
            hint or "-",
        )
    console.print(table)
    console.print("confirm one with: slm catalog confirm TITLE PRODUCT_CODE (or IGNORE)")


@catalog_app.command("confirm")
def confirm(
    title: str = typer.Argument(..., help="the title, raw or normalised"),
    product_code: str = typer.Argument(..., help="a catalog product code, or IGNORE"),
    publisher: str | None = typer.Option(None, "--publisher", help="only this publisher's"),
    actor: str | None = typer.Option(None, "--actor", help="who confirms (default: login)"),
) -> None:
    """Record that TITLE is PRODUCT_CODE (overrides win over catalog rules) and re-point the
    matching installations in the store."""
    from sqlalchemy import select

    from licenseflow.db import unit_of_work
    from schemas.store import Product
    from tasks.recognition import (
        apply_override_to_store,
        check_product_code,
        confirm_override,
        load_catalog,
        sync_catalog_to_store,
    )

    try:
        catalog = load_catalog()
        with unit_of_work() as session:
            sync_catalog_to_store(session, catalog)
            store_codes = set(session.execute(select(Product.code)).scalars())
            code = check_product_code(product_code, store_codes | catalog.codes())
            changed = apply_override_to_store(session, title, code, publisher, actor)
            # the overrides file is written last: if writing it fails, the store rolls back
            entry = confirm_override(
                title,
                code,
                publisher=publisher,
                actor=actor,
                known_codes=store_codes,
                catalog=catalog,
            )
    except LicenseflowError as exc:
        _fail(exc)
    console.print(
        f"'{entry['title']}' -> {entry['product_code']}"
        + (f" (publisher '{entry['publisher']}')" if entry["publisher"] else "")
        + f"; {changed} installation row(s) updated",
        highlight=False,
    )


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
