"""The `slm` command line. Thin: parse input, call a task or flow, format output.

Each area registers its commands from licenseflow/commands/<area>.py.
"""

from __future__ import annotations

import importlib

import typer

from licenseflow.prefect_env import configure_prefect_defaults

configure_prefect_defaults()  # before anything imports prefect

app = typer.Typer(help="licenseflow: software license management", no_args_is_help=True)
run_app = typer.Typer(
    help="Run one flow once, now (Prefect ephemeral mode unless a server is set)."
)
app.add_typer(run_app, name="run")

COMMAND_MODULES = [
    "store",
    "bulk",
    "contracts",
    "discovery",
    "catalog",
    "assignments",
    "demo",
    "people",
    "renewals",
    "usage",
    "reconciliation",
    "report",
]


@app.callback()
def main() -> None:
    """licenseflow: one record of every license, kept current by Prefect flows."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"licenseflow.commands.{_name}").register(app, run_app)
