"""Weekly reconciliation (lifecycle stage 6, audits): the license position by metric, what
changed since last week, and the data quality of the store."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from licenseflow.clock import run_clock
from tasks.reconciliation_tasks import (
    compute_position_task,
    data_quality_task,
    publish_task,
    snapshot_task,
)


@flow(name="weekly-reconciliation", log_prints=True)
def weekly_reconciliation(today: str | None = None) -> dict:
    """Compute the license position of every commercial product on `today` (entitled
    against consumed by metric: shortfalls with their true-up cost, surpluses, reclaimable
    seats and their waste, chargeback per cost center), store it as this run's snapshot and
    report the drift since the last one, and run the data-quality suite over the store
    (its failures are reported in the artifacts and fail nothing).

    `today` (YYYY-MM-DD) replaces the clock, for replays and tests: the position is rebuilt
    from history as it stood at the end of that day.
    """
    day, now = run_clock(today, at=dt.time(7, 0))

    result = compute_position_task(day)  # entitlement vs consumption, by metric
    snapshot = snapshot_task(result, now)  # kept for next week; drift against last week's
    quality = data_quality_task(day)  # Great Expectations over the store: never fails the run
    return publish_task(result, snapshot, quality)
