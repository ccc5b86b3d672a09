"""The clock of a run: today's date and the moment changes are stamped with.

Flows take `today` (YYYY-MM-DD) to replay a day (the demo, tests, a missed schedule). Every
timestamp a replayed run writes (assignments, revocations, installs seen) must fall on that
day, or a position rebuilt "as of" it would not see them."""

from __future__ import annotations

import datetime as dt


def run_clock(today: str | None, at: dt.time | None = None) -> tuple[dt.date, dt.datetime]:
    """(day, now) in UTC: the real clock without `today`; with it, that day at `at` (default:
    the current time of day, so consecutive replayed runs keep their order)."""
    now = dt.datetime.now(dt.UTC)
    if not today:
        return now.date(), now
    day = dt.date.fromisoformat(today)
    return day, dt.datetime.combine(day, at or now.time(), tzinfo=dt.UTC)
