"""slm init."""

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
