"""The settings: one documented list, and secrets that never show."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from licenseflow.cli import app
from licenseflow.settings import Settings, get_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_lists_every_setting_and_nothing_else():
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(SLM_[A-Z_]+)` \|", section, flags=re.M))
    expected = {f"SLM_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_secrets_never_show_in_slm_settings_or_reprs(monkeypatch):
    monkeypatch.setenv("SLM_DATABASE_URL", "postgresql+psycopg://lf:hunter2@db.example/lf")
    monkeypatch.setenv("SLM_WEBHOOK_URL", "https://hooks.example.com/T000/very-secret-token")
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.store_url == "postgresql+psycopg://lf:hunter2@db.example/lf"  # usable
    shown = CliRunner().invoke(app, ["settings"])
    assert shown.exit_code == 0, shown.output
    assert "postgresql+psycopg://lf:***@db.example/lf" in shown.output
    for text in (shown.output, repr(settings), str(settings.model_dump())):
        assert "hunter2" not in text
        assert "very-secret-token" not in text
