"""The discovery scan's steps as Prefect tasks: each opens its own unit of work.

DataFrames and sessions never become task inputs that Prefect hashes (NO_CACHE).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from licenseflow.settings import get_settings
from tasks import audit, discovery, feeds, recognition, sources
from tasks.discovery_adapters import read_installs

FEED = "installs"


@dataclass(frozen=True)
class CheckInputs:
    """What checking a file needs, read once by the flow: the checks then touch neither the
    store nor the settings, so Dask workers run them with nothing but the files."""

    catalog: recognition.Catalog
    overrides: dict
    product_ids: dict[str, int]
    reject_threshold: float


@dataclass
class CheckedFile:
    path: Path
    checksum: str
    fmt: str
    rows_read: int
    errors: list
    staged: discovery.StagedInstalls


@dataclass
class RefusedFile:
    """A file over the reject threshold (plain data: it may come back from a Dask worker)."""

    path: Path
    checksum: str
    fmt: str | None
    errors: list
    message: str


@task(cache_policy=NO_CACHE)
def sync_catalog() -> CheckInputs:
    """The catalog file is the source of product recognition; products go to the store."""
    catalog = recognition.load_catalog()
    with unit_of_work() as session:
        recognition.sync_catalog_to_store(session, catalog)
        ids = discovery.product_ids(session)
    overrides = recognition.load_overrides()
    return CheckInputs(catalog, overrides, ids, get_settings().reject_threshold)


@task(cache_policy=NO_CACHE)
def pending_files(files: list[str] | None = None) -> list[tuple[Path, str | None]]:
    """The drop folders' files (or the given ones) not applied before, by checksum."""
    candidates = [(Path(f), None) for f in files] if files else sources.feed_files(FEED)
    with unit_of_work() as session:
        return [
            (path, fmt)
            for path, fmt in candidates
            if not feeds.already_applied(session, FEED, feeds.file_checksum(path))
        ]


@task(cache_policy=NO_CACHE)
def check_file(file: tuple[Path, str | None], inputs: CheckInputs) -> CheckedFile | RefusedFile:
    """Read, validate and recognise one file; no store access, so files check in parallel."""
    path, fmt = file
    checksum = feeds.file_checksum(path)
    try:
        read = read_installs(path, fmt)
        feeds.refuse_if_too_many(str(path), read.rows_read, read.errors, inputs.reject_threshold)
    except InputRejected as exc:
        return RefusedFile(path, checksum, fmt, exc.errors, str(exc))
    recognised = recognition.recognize(read.frame, inputs.catalog, inputs.overrides)
    staged = discovery.prepare(
        read.frame,
        recognised,
        inputs.product_ids,
        read.snapshot,
        frozenset(read.rejected_hostnames),
    )
    return CheckedFile(path, checksum, read.fmt, read.rows_read, read.errors, staged)


@task(cache_policy=NO_CACHE)
def accept_checked(checks: list[CheckedFile | RefusedFile]) -> list[CheckedFile]:
    """Every file of the run passes, or none is applied: refused files go to the sync history
    (with why) and the run fails naming them."""
    refused = [c for c in checks if isinstance(c, RefusedFile)]
    if refused:
        with unit_of_work() as session:
            for r in refused:
                feeds.record_ingestion(
                    session, FEED, r.path, r.checksum, r.fmt, 0, 0, r.errors, "rejected", r.message
                )
        raise InputRejected(
            ", ".join(str(r.path) for r in refused),
            [e for r in refused for e in r.errors],
            "\n".join(r.message.split("\n", 1)[0] for r in refused)
            + "\nno installation file of this run was applied",
        )
    return checks


@task(cache_policy=NO_CACHE)
def apply_file(checked: CheckedFile, now: dt.datetime) -> discovery.Delta:
    """One file, one transaction: the delta, its ledger row and its audit entry together.
    Under the feed's ledger lock, so workers on other machines apply their files after it."""
    with unit_of_work() as session:
        if not feeds.claim_file(session, FEED, checked.checksum):
            return discovery.Delta()
        delta = discovery.apply_staged(session, checked.staged, now)
        run_id = feeds.record_ingestion(
            session,
            FEED,
            checked.path,
            checked.checksum,
            checked.fmt,
            checked.rows_read,
            len(checked.staged.installs),
            checked.errors,
        )
        audit.record(
            session,
            "discovery-scan",
            "installs.applied",
            "ingestion_run",
            run_id,
            after={
                "file": str(checked.path),
                "checksum": checked.checksum,
                "new": delta.new,
                "changed": delta.changed,
                "removed": delta.removed,
                "devices_new": delta.devices_new,
            },
        )
    return delta


@task(cache_policy=NO_CACHE)
def flag_compliance(today: dt.date, now: dt.datetime) -> tuple[pd.DataFrame, list[str], float]:
    """Unlicensed and unauthorised installs as alerts; returns (flags, newly flagged codes,
    recognition rate)."""
    with unit_of_work() as session:
        installed = pd.DataFrame(
            session.execute(discovery.FLAG_SQL, {"today": today}).mappings().all()
        )
        if installed.empty:
            flags = installed
            new_codes: list[str] = []
        else:
            flags = discovery.compliance_flags(installed)
            new_codes = discovery.write_flag_alerts(session, flags, now)
        rate = discovery.recognition_rate(session)
    return flags, new_codes, rate
