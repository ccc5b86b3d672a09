"""Daily discovery scan (lifecycle stages 1-3): what is installed, recognised, and allowed."""

from __future__ import annotations

from prefect import flow

from licenseflow.clock import run_clock
from tasks.discovery_tasks import (
    apply_file,
    check_files,
    flag_compliance,
    pending_files,
    sync_catalog,
)
from tasks.scan_report import publish_scan_report


@flow(name="daily-discovery-scan", log_prints=True)
def daily_discovery_scan(files: list[str] | None = None, today: str | None = None) -> dict:
    """Read new inventory files from the drop folders (or `files`), validate them all, apply
    each file's delta in its own transaction, then flag unlicensed and unauthorised installs.

    A file with too many rejected rows fails the run before anything is applied.
    """
    day, now = run_clock(today)  # a replayed day stays that day

    catalog = sync_catalog()
    pending = pending_files(files)
    checked = check_files(pending, catalog)
    deltas = [apply_file(item, now) for item in checked]
    flags, new_codes, rate = flag_compliance(day, now)
    return publish_scan_report(checked, deltas, flags, new_codes, rate)
