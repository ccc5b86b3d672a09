"""daily_discovery_scan as a real Prefect flow: files in, store and artifacts out."""

import asyncio
import shutil

import pytest
from conftest import TESTS_DATA
from sqlalchemy import func, select

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from schemas.store import AuditLog, Device, IngestionRun, Installation, Product

SAMPLES = TESTS_DATA / "discovery"


def counts(engine):
    with unit_of_work(engine) as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Installation, Device, AuditLog)
        }


async def artifact_keys():
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {a.key for a in await client.read_artifacts()}


@pytest.fixture
def drop(tmp_path):
    """A drop folder holding copies of the samples."""
    folder = tmp_path / "drop"
    folder.mkdir()
    for name in ("canonical_installs.csv", "intune_appinvrawdata.csv", "osquery_snapshot.log"):
        shutil.copy(SAMPLES / name, folder / name)
    return folder


def test_scan_applies_files_once_and_leaves_artifacts(prefect_harness, sqlite_engine, drop):
    from flows.daily_discovery_scan import daily_discovery_scan

    files = sorted(str(p) for p in drop.iterdir())
    summary = daily_discovery_scan(files=files, today="2026-11-23")
    assert len(summary["files"]) == 3
    after_first = counts(sqlite_engine)
    assert after_first["installation"] == summary["new"] > 0
    assert 0 < summary["recognition_rate"] <= 1
    with unit_of_work(sqlite_engine) as session:
        # the catalog was synced and Acrobat Pro on WS-0142 (Intune) was recognised
        acrobat = session.scalar(select(Product.id).where(Product.code == "ADOBE-ACROBAT-PRO"))
        hosts = session.scalars(
            select(Device.hostname)
            .join(Installation, Installation.device_id == Device.id)
            .where(Installation.product_id == acrobat)
        ).all()
        assert "ws-0142" in hosts
        runs = session.scalars(select(IngestionRun.status)).all()
        assert runs == ["applied"] * 3

    again = daily_discovery_scan(files=files, today="2026-11-23")
    assert again["files"] == [] and again["new"] == 0
    assert counts(sqlite_engine) == after_first
    assert {"discovery-scan-summary", "discovery-unlicensed-products"} <= asyncio.run(
        artifact_keys()
    )


def test_a_file_over_the_reject_threshold_changes_nothing(prefect_harness, sqlite_engine, drop):
    from flows.daily_discovery_scan import daily_discovery_scan

    shutil.copy(SAMPLES / "bad_date.csv", drop / "zz_bad_date.csv")
    before = counts(sqlite_engine)
    with pytest.raises(InputRejected) as refused:
        daily_discovery_scan(files=sorted(str(p) for p in drop.iterdir()), today="2026-11-23")
    assert "zz_bad_date.csv" in str(refused.value)
    assert {(e.row, e.column) for e in refused.value.errors} >= {(2, "install_date")}
    assert counts(sqlite_engine)["installation"] == before["installation"] == 0
    with unit_of_work(sqlite_engine) as session:
        assert session.scalars(select(IngestionRun.status)).all() == ["rejected"]
