"""Prefect defaults for licenseflow's own commands (each can be overridden in the
environment): Prefect's home inside the project's data folder rather than ~/.prefect, a
patient ephemeral-server start on a busy 2-core machine, no telemetry, quiet logs."""

from __future__ import annotations

import os

from licenseflow.settings import get_settings


def configure_prefect_defaults() -> None:
    defaults = {
        "PREFECT_HOME": str(get_settings().data_dir / ".prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
