"""The `slm` command line. Thin: parse input, call a task or flow, format output."""

from __future__ import annotations

import typer

app = typer.Typer(help="licenseflow: software license management", no_args_is_help=True)


@app.callback()
def main() -> None:
    """licenseflow: one record of every license, kept current by Prefect flows."""


@app.command()
def init() -> None:
    """Create or upgrade the store (SQLite file under data/ unless SLM_DATABASE_URL is set)."""
    from licenseflow import db

    db.upgrade()
    typer.echo(f"store ready: {db.get_engine().url.render_as_string(hide_password=True)}")
