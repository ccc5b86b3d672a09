"""Daily HR sync (lifecycle stage 4, and HR offboarding): runs before discovery so seats
freed by today's leavers are free the same day, and so discovery can map each device's
primary user to a person (the assignment sync, after discovery, needs both)."""

from __future__ import annotations

from prefect import flow

from licenseflow.clock import run_clock
from tasks.hr_sync_tasks import (
    flag_ownership_gaps,
    flag_people_on_leave,
    ingest_roster,
    offboard_leavers,
    pending_rosters,
    publish_hr_sync,
    terminate_due,
)


@flow(name="hr-sync", log_prints=True)
def hr_sync(
    roster: str | None = None,
    today: str | None = None,
    confirm_mass_termination: bool = False,
) -> dict:
    """Apply new HR rosters (`roster`, or the hr drop folder's new files), then revoke every
    seat of everyone terminated (reason "offboarding"), flag people on leave who hold seats
    and contracts whose owner is missing, gone or away.

    A person missing from a roster is reported, never terminated by absence. A roster that
    would terminate or leave out more than the guard share of the company is refused unless
    `confirm_mass_termination` (the confirmation is audit-logged). A rehire gets no seat back.
    """
    day, now = run_clock(today)  # a replayed day's revocations fall on that day

    files = pending_rosters(roster)
    results = [ingest_roster(path, day, confirm_mass_termination) for path in files]
    results.append(terminate_due(day, confirm_mass_termination))
    offboarded = offboard_leavers(day, now)
    on_leave = flag_people_on_leave()
    gaps = flag_ownership_gaps(day)
    return publish_hr_sync(results, offboarded, on_leave, gaps, day)
