"""Shared fixtures: a real store on SQLite and PostgreSQL, isolated runtime folders, and one
Prefect test harness per session."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest

# Prefect reads these at import: keep its home out of ~/.prefect and its output quiet.
_PREFECT_HOME = tempfile.mkdtemp(prefix="licenseflow-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "240")
# Rich tables in CLI output: wide and stable, whatever terminal runs the tests
os.environ["COLUMNS"] = "200"

from sqlalchemy import create_engine, text  # noqa: E402

from licenseflow import db  # noqa: E402
from licenseflow.settings import get_settings  # noqa: E402

TESTS_DATA = Path(__file__).parent / "data"
PG_URL = os.environ.get(
    "SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("SLM_REQUIRE_POSTGRES") == "1"
_counter = itertools.count()


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    """Every test gets its own data folder (store, reports, backups, overrides)."""
    monkeypatch.setenv("SLM_DATA_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("SLM_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "runtime"
    get_settings.cache_clear()


def _postgres_admin():
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # no server on this machine
        admin.dispose()
        reason = f"PostgreSQL not answering at {PG_URL} ({type(exc).__name__})"
        if REQUIRE_PG:
            pytest.fail(f"{reason}; SLM_REQUIRE_POSTGRES=1 makes this a failure")
        pytest.skip(f"{reason}; set SLM_TEST_POSTGRES_URL to run the PostgreSQL tests")
    return admin


@pytest.fixture(scope="session")
def pg_template():
    """A database migrated once per test process; each test copies it (fast)."""
    admin = _postgres_admin()
    name = f"lf_tmpl_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(PG_URL.rsplit("/", 1)[0] + f"/{name}")
    db.upgrade(engine)
    engine.dispose()
    yield admin, name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_database(pg_template):
    admin, template = pg_template
    name = f"lf_{os.getpid()}_{next(_counter)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return admin, name, PG_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, runtime_dir, monkeypatch):
    """A fresh, migrated store; the test runs once on SQLite and once on PostgreSQL.
    SLM_DATABASE_URL points at it, so code that opens the default store finds it."""
    if request.param == "sqlite":
        url = f"sqlite:///{runtime_dir / 'store.db'}"
        db.upgrade(db.get_engine(url))
        monkeypatch.setenv("SLM_DATABASE_URL", url)
        get_settings.cache_clear()
        yield url
        db.get_engine(url).dispose()
        return
    admin, name, url = _pg_database(request.getfixturevalue("pg_template"))
    monkeypatch.setenv("SLM_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    db.get_engine(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_engine(pg_template, monkeypatch):
    """PostgreSQL only, for what only PostgreSQL has (triggers, COPY, row locks)."""
    admin, name, url = _pg_database(pg_template)
    monkeypatch.setenv("SLM_DATABASE_URL", url)
    get_settings.cache_clear()
    yield db.get_engine(url)
    db.get_engine(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def engine(store_url):
    return db.get_engine(store_url)


@pytest.fixture
def sqlite_engine(runtime_dir, monkeypatch):
    """SQLite only, for tests of logic that does not differ between databases."""
    url = f"sqlite:///{runtime_dir / 'store.db'}"
    engine = db.get_engine(url)
    db.upgrade(engine)
    monkeypatch.setenv("SLM_DATABASE_URL", url)
    get_settings.cache_clear()
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session, without the 1 s heartbeat per flow."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=240),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
