"""slm init, slm settings."""

from __future__ import annotations

import typer


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command()
    def init() -> None:
        """Create or upgrade the store (SQLite under data/ unless SLM_DATABASE_URL is set)."""
        from licenseflow import db

        db.upgrade()
        url = db.get_engine().url.render_as_string(hide_password=True)
        typer.echo(f"store ready: {url}")

    @app.command("settings")
    def show_settings() -> None:
        """Every setting (environment variable or .env line) and the value this process uses;
        secrets are masked."""
        from rich.console import Console
        from rich.table import Table

        from licenseflow.settings import get_settings

        table = Table("variable", "value", "meaning", title="licenseflow settings")
        for row in get_settings().listing():
            table.add_row(*row)
        Console().print(table)
