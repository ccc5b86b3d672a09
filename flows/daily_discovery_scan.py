"""Daily discovery scan (lifecycle stages 1-3): what is installed, recognised, and allowed."""

from __future__ import annotations

from prefect import flow, unmapped

from licenseflow.clock import run_clock
from licenseflow.scale_out import ScaleOutTaskRunner
from tasks.discovery_tasks import (
    accept_checked,
    apply_file,
    check_file,
    flag_compliance,
    pending_files,
    sync_catalog,
)
from tasks.scan_report import publish_scan_report


@flow(name="daily-discovery-scan", log_prints=True, task_runner=ScaleOutTaskRunner())
def daily_discovery_scan(files: list[str] | None = None, today: str | None = None) -> dict:
    """Read new inventory files from the drop folders (or `files`), validate them all, apply
    each file's delta in its own transaction, then flag unlicensed and unauthorised installs.

    A file with too many rejected rows fails the run before anything is applied. Files are
    checked in parallel (on Dask when SLM_DASK_ADDRESS is set) and applied one at a time.
    """
    day, now = run_clock(today)  # a replayed day stays that day

    inputs = sync_catalog()
    pending = pending_files(files)
    checked = accept_checked(check_file.map(pending, unmapped(inputs)))
    deltas = [apply_file(item, now) for item in checked]  # in file order, one at a time
    flags, new_codes, rate = flag_compliance(day, now)
    return publish_scan_report(checked, deltas, flags, new_codes, rate)
