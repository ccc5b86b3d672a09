"""Every setting licenseflow reads, from the environment (prefix SLM_) or a .env file.

This is the one documented list (README, "Settings"). Secrets are SecretStr so they never
appear in logs, reprs or artifacts.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLM_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        PROJECT_ROOT / "data", description="runtime files: the SQLite store, reports, backups"
    )
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the store (a secret: it may hold a password); default "
        "a SQLite file data/licenseflow.db. PostgreSQL: "
        "postgresql+psycopg://user:password@host:5432/db",
    )
    reports_dir: Path | None = Field(None, description="default data/reports")
    backups_dir: Path | None = Field(None, description="default data/backups")
    sources_file: Path | None = Field(
        None, description="drop folders per feed; default data/sources.yaml (committed)"
    )
    catalog_file: Path | None = Field(None, description="default data/catalog.yaml (committed)")
    overrides_file: Path | None = Field(
        None, description="analyst-confirmed matches; default <data_dir>/catalog_overrides.yaml"
    )

    reject_threshold: float = Field(
        0.05, description="share of rejected rows above which a whole feed file is refused"
    )
    termination_guard_share: float = Field(
        0.10, description="a roster terminating more than this share of people is refused"
    )
    inactivity_days: int = Field(90, description="no activity this long = reclaim candidate")
    grace_days: int = Field(30, description="assignments younger than this are never candidates")
    auto_reclaim_after_days: int | None = Field(
        None,
        description="reclaim a notified candidate automatically after this many days without "
        "an answer (keep); unset = never automatically",
    )
    renewal_windows: tuple[int, ...] = Field((90, 60, 30), description="days before deadline")
    rightsize_buffer: float = Field(0.10, description="headroom added to peak consumption")
    default_cores_per_device: int = Field(
        4, description="position: cores counted for a per_core install on a device of unknown cores"
    )
    drift_min_change: int = Field(
        5, description="reconciliation drift: seats/installs a change must reach to be reported"
    )
    drift_min_share: float = Field(
        0.10, description="reconciliation drift: ... and this share of the previous value"
    )
    dq_min_recognition_rate: float = Field(
        0.80, description="data quality: least share of installations recognised, per source"
    )
    dq_stale_device_days: int = Field(
        30, description="data quality: an install on a device unseen this long is an orphan"
    )
    webhook_url: SecretStr | None = Field(None, description="Slack/Teams style alert webhook")
    notification_block: str | None = Field(
        None,
        description="Prefect notification block for alerts, as 'block-type-slug/name' (e.g. "
        "custom-webhook/alerts); used when webhook_url is not set",
    )
    webhook_timeout_seconds: float = Field(10.0, description="alert delivery: request timeout")
    dask_address: str | None = Field(
        None,
        description="Dask scheduler (tcp://host:8786) where the discovery scan and usage "
        "metering read their files in parallel; unset = Prefect's default runner",
    )
    bulk_chunk_size: int = Field(
        1000, description="bulk rollout: rows applied per database transaction"
    )
    bulk_chunk_pause_seconds: float = Field(
        0.0, description="bulk rollout: pause between chunks, to spread the load (0 = none)"
    )
    bulk_approval_poll_seconds: int = Field(
        5, description="bulk approval: how often a paused flow checks whether it was resumed"
    )

    @property
    def store_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'licenseflow.db'}"

    def listing(self) -> list[tuple[str, str, str]]:
        """(variable, value, description) of every setting, secrets masked, for `slm
        settings`: what this process would use."""
        rows = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name == "database_url":
                value = make_url(self.store_url).render_as_string(hide_password=True)
            elif isinstance(value, SecretStr):
                value = "**********"  # set, never shown
            elif value is None and name in _PATH_DEFAULTS:
                value = self.path(name)
            rows.append((f"SLM_{name.upper()}", "" if value is None else str(value),
                         field.description or ""))  # fmt: skip
        return rows

    def path(self, name: str) -> Path:
        """Resolve an optional path setting to its default under data/."""
        return getattr(self, name) or _PATH_DEFAULTS[name](self)


_PATH_DEFAULTS = {
    "reports_dir": lambda s: s.data_dir / "reports",
    "backups_dir": lambda s: s.data_dir / "backups",
    "sources_file": lambda s: PROJECT_ROOT / "data" / "sources.yaml",
    "catalog_file": lambda s: PROJECT_ROOT / "data" / "catalog.yaml",
    "overrides_file": lambda s: s.data_dir / "catalog_overrides.yaml",
}


@lru_cache
def get_settings() -> Settings:
    return Settings()
