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


@dataclass
class CheckedFile:
    path: Path
    checksum: str
    fmt: str
    rows_read: int
    errors: list
    staged: discovery.StagedInstalls


@task(cache_policy=NO_CACHE)
def sync_catalog() -> recognition.Catalog:
    """The catalog file is the source of product recognition; products go to the store."""
    catalog = recognition.load_catalog()
    with unit_of_work() as session:
        recognition.sync_catalog_to_store(session, catalog)
    return catalog


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
def check_files(
    pending: list[tuple[Path, str | None]], catalog: recognition.Catalog
) -> list[CheckedFile]:
    """Read, validate and recognise every pending file before anything is applied: one
    file over the reject threshold fails the whole run and nothing changes."""
    overrides = recognition.load_overrides()
    threshold = get_settings().reject_threshold
    checked, refused = [], []
    with unit_of_work() as session:
        ids = discovery.product_ids(session)
    for path, fmt in pending:
        checksum = feeds.file_checksum(path)
        try:
            read = read_installs(path, fmt)
            feeds.refuse_if_too_many(str(path), read.rows_read, read.errors, threshold)
        except InputRejected as exc:
            refused.append((path, checksum, fmt, exc))
            continue
        recognised = recognition.recognize(read.frame, catalog, overrides)
        staged = discovery.prepare(
            read.frame, recognised, ids, read.snapshot, frozenset(read.rejected_hostnames)
        )
        checked.append(CheckedFile(path, checksum, read.fmt, read.rows_read, read.errors, staged))
    if refused:
        with unit_of_work() as session:  # the sync history shows what was refused, and why
            for path, checksum, fmt, exc in refused:
                feeds.record_ingestion(
                    session, FEED, path, checksum, fmt, 0, 0, exc.errors, "rejected", str(exc)
                )
        raise InputRejected(
            ", ".join(str(p) for p, *_ in refused),
            [e for *_, exc in refused for e in exc.errors],
            "\n".join(str(exc).split("\n", 1)[0] for *_, exc in refused)
            + "\nno installation file of this run was applied",
        )
    return checked


@task(cache_policy=NO_CACHE)
def apply_file(checked: CheckedFile, now: dt.datetime) -> discovery.Delta:
    """One file, one transaction: the delta, its ledger row and its audit entry together."""
    with unit_of_work() as session:
        if feeds.already_applied(session, FEED, checked.checksum):
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
