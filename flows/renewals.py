"""Daily renewals (lifecycle stage 7): reminders at 90, 60 and 30 days before each
deadline, auto-renew traps, right-size recommendations, delivery and the owners' calendar."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from licenseflow.clock import run_clock
from tasks.calendar_export import export_calendar_task
from tasks.notify import deliver_task
from tasks.renewals import KINDS, publish_task, review_task


@flow(name="renewals", log_prints=True)
def renewals(today: str | None = None) -> dict:
    """Raise the renewal alerts due today (each window once per contract and deadline, missed
    ones caught up once), flag expired contracts, missed notice deadlines and invalid
    contract dates, send the pending alerts to the configured webhook or notification block
    (a failed send stays pending for the next run), and write data/reports/renewals.ics.

    `today` (YYYY-MM-DD) replaces the clock, for replays and tests.
    """
    day, now = run_clock(today, at=dt.time(6, 0))

    found = review_task(day, now)  # alerts written, stale ones resolved: one transaction
    delivery = deliver_task(list(KINDS), now)  # never fails the run: failures stay pending
    calendar = export_calendar_task(day, now)
    return publish_task(found, delivery, calendar)
