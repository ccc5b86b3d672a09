"""Scaling out: the discovery scan on Dask gives the store the default runner gives, and worker
processes sharing one PostgreSQL store apply a file once and change licenses one batch at a
time."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import test_bulk_lock
from conftest import TESTS_DATA
from scale_out_workers import Workers, apply_bulk_batch, ingest_discovery_file, load_contracts_file
from sqlalchemy import func, select
from test_bulk_world import seat_state

from licenseflow.db import unit_of_work
from licenseflow.settings import PROJECT_ROOT, get_settings
from schemas.store import (
    Alert,
    AuditLog,
    Contract,
    Device,
    IngestionRun,
    Installation,
    RejectedRow,
)
from tasks.bulk import apply_batch
from tasks.bulk_state import get_batch, load_rows

batches = test_bulk_lock.two_batches  # a fixture: two approved batches on `engine` below
DEMO = PROJECT_ROOT / "data" / "demo"
# every format, and an osquery differential log that must follow its snapshot
SAMPLES = [
    str(TESTS_DATA / "discovery" / name)
    for name in (
        "canonical_installs.csv",
        "intune_appinvrawdata.csv",
        "sccm_installed_software.csv",
        "sccm_v_gs_installed_software.csv",
        "osquery_snapshot.log",
        "osquery_differential.log",
    )
]
TIME_OF_DAY = re.compile(r"T\d\d:\d\d:\d\d(\.\d+)?")
SEATS_GAINED = 6  # the two batches: 4 + 3 seats assigned, 1 revoked


@pytest.fixture
def engine(pg_engine):
    """The bulk fixtures' store: PostgreSQL only here (what several machines would share)."""
    return pg_engine


def store_contents(engine) -> dict[str, list[tuple]]:
    """Every row a scan writes, in id order; moments as dates (a run stamps its own time of
    day) and without the Prefect flow run id."""
    tables = (Device, Installation, Alert, IngestionRun, RejectedRow)
    contents = {}
    with unit_of_work(engine) as session:
        for table in tables:
            columns = [c for c in table.__table__.columns if c.name != "flow_run_id"]
            rows = session.execute(select(*columns).order_by(table.id)).all()
            contents[table.__tablename__] = [tuple(map(_day, row)) for row in rows]
    return contents


def _day(value):
    """A moment as its day, in values and in texts (alert keys name the moment they were
    raised): both runs replay the same day, each at its own time."""
    if isinstance(value, dt.datetime):
        return value.date()
    return TIME_OF_DAY.sub("", value) if isinstance(value, str) else value


def use_store(engine, monkeypatch) -> None:
    monkeypatch.setenv("SLM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()


def test_the_scan_on_dask_builds_the_store_the_default_runner_builds(
    prefect_harness, sqlite_engine, pg_engine, monkeypatch
):
    """The default runner on SQLite, Dask on PostgreSQL: the same rows, to the id."""
    from distributed import LocalCluster

    from flows.daily_discovery_scan import daily_discovery_scan

    use_store(sqlite_engine, monkeypatch)
    expected = daily_discovery_scan(files=SAMPLES, today="2026-11-23")

    use_store(pg_engine, monkeypatch)
    # two Dask workers in this process (threads; no network beyond loopback)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        monkeypatch.setenv("SLM_DASK_ADDRESS", cluster.scheduler_address)
        get_settings.cache_clear()
        summary = daily_discovery_scan(files=SAMPLES, today="2026-11-23")
        ran_on_dask = set(cluster.scheduler.task_prefixes)

    assert any(p.startswith("check_file") for p in ran_on_dask), ran_on_dask
    assert summary == expected
    assert summary["new"] > 20 and summary["removed"] > 0 and len(summary["files"]) == 6
    assert store_contents(pg_engine) == store_contents(sqlite_engine)


@pytest.fixture(scope="module")
def workers():
    """Two worker processes, as two machines sharing the store would have."""
    pool = Workers(["a", "b"])
    yield pool
    pool.stop()


def test_two_workers_given_the_same_discovery_file_apply_it_once(pg_engine, workers):
    path = str(DEMO / "installs" / "canonical" / "installs.csv")
    outcome = workers.run(ingest_discovery_file, {"a": (path,), "b": (path,)})

    assert all(isinstance(deltas, list) for deltas in outcome.values()), outcome  # no error
    applied = sorted(outcome.values())
    assert applied[0] == [(0, 0, 0, 0, 0)], outcome  # found it applied, changed nothing
    (new, changed, removed, devices_new, devices_seen) = applied[1][0]
    assert new > 500 and devices_new == devices_seen > 50 and changed == removed == 0
    with unit_of_work(pg_engine) as session:
        ledger = session.execute(select(IngestionRun.file_name, IngestionRun.status)).all()
        assert ledger == [(path, "applied")]
        assert session.scalar(select(func.count()).select_from(Installation)) == new
        assert session.scalar(select(func.count()).select_from(Device)) == devices_new
        entries = select(func.count()).where(AuditLog.action == "installs.applied")
        assert session.scalar(entries) == 1


def test_two_workers_given_the_same_contracts_file_apply_it_once(pg_engine, workers, tmp_path):
    # 2,000 contracts: applying takes long enough that both workers are surely at it at once
    header, *lines = (DEMO / "contracts" / "contracts.csv").read_text().splitlines()
    repeats = range(2000 // len(lines))
    copies = [line.replace('"CT-', f'"CT-{n:03d}-', 1) for n in repeats for line in lines]
    path = tmp_path / "contracts.csv"
    path.write_text("\n".join([header, *copies]) + "\n")
    outcome = workers.run(load_contracts_file, {"a": (str(path),), "b": (str(path),)})

    assert sorted(outcome.values()) == [False, True], outcome  # one applied, one waited
    rows = len(copies)
    with unit_of_work(pg_engine) as session:
        ledger = session.execute(select(IngestionRun.file_name, IngestionRun.status)).all()
        assert ledger == [(str(path), "applied")]
        assert session.scalar(select(func.count()).select_from(Contract)) == rows


def test_two_workers_bulk_batches_change_licenses_one_after_the_other(engine, batches, workers):
    seats = len(seat_state(engine))
    first, second = batches
    outcome = workers.run(apply_bulk_batch, {"a": (first, 60), "b": (second, 60)})

    assert outcome == {"a": "rolled_out", "b": "rolled_out"}
    with unit_of_work(engine) as session:
        first, second = (
            session.scalars(
                select(AuditLog.id).where(AuditLog.batch_id == b, AuditLog.entity == "assignment")
            ).all()
            for b in batches
        )
        assert max(first) < min(second) or max(second) < min(first)  # never interleaved
        assert all(load_rows(session, b)["applied_at"].notna().all() for b in batches)
    assert len(seat_state(engine)) == seats + SEATS_GAINED


def test_a_bulk_batch_refused_by_another_workers_lock_changes_nothing(engine, batches, workers):
    before = seat_state(engine)
    on_worker = dict(zip(["a", "b"], batches, strict=True))
    outcome = workers.run(apply_bulk_batch, {w: (b, 0) for w, b in on_worker.items()})

    done = [on_worker[w] for w, result in outcome.items() if result == "rolled_out"]
    refused = [
        on_worker[w] for w, result in outcome.items() if result[:2] == ("error", "BulkLockBusy")
    ]
    assert len(done) == 1 and len(refused) == 1, outcome
    message = next(result[2] for result in outcome.values() if result != "rolled_out")
    assert "another bulk batch is changing licenses now" in message and done[0] in message
    assert f"slm bulk-assign --resume {refused[0]}" in message
    with unit_of_work(engine) as session:
        assert get_batch(session, refused[0]).state == "approved"
        assert load_rows(session, refused[0])["applied_at"].isna().all()
    assert len(seat_state(engine)) < len(before) + SEATS_GAINED

    # run again once the other is done: both batches' changes, each once
    assert apply_batch(engine, refused[0]) == "rolled_out"
    assert len(seat_state(engine)) == len(before) + SEATS_GAINED
