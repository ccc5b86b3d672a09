"""Daily assignment sync: who holds which seat, from the authoritative systems (the
"assignments" drop folders: canonical CSV, Microsoft Graph users + subscribedSkus). It runs
after the HR sync and the discovery scan because its files name people and devices, which
must exist first (a file naming an unknown one is refused whole), and before usage metering,
which finds the seats' holders idle or not."""

from __future__ import annotations

from prefect import flow

from licenseflow.clock import run_clock
from tasks.assignment_feeds import import_pending_task as import_assignment_state
from tasks.assignment_sync_tasks import ACTOR, AssignmentFilesRefused, publish_assignment_sync
from tasks.hr_sync_tasks import offboard_leavers


@flow(name="assignment-sync", log_prints=True)
def assignment_sync(today: str | None = None) -> dict:
    """Import the pending assignment-state files (each in its own transaction, all or
    nothing), then revoke every seat of everyone terminated (reason "offboarding"), so a
    seat imported for someone already gone comes back the same day.

    A refused file changes nothing and the others still load; the run then fails, after
    publishing its summary, so the refusal shows in the Prefect UI."""
    day, now = run_clock(today)  # a replayed day's seats and revocations fall on that day

    imports = import_assignment_state(now=now)
    offboarded = offboard_leavers(day, now, actor=ACTOR)
    facts = publish_assignment_sync(imports, offboarded, day)
    if facts["refused"]:
        raise AssignmentFilesRefused(facts["refused"])
    return facts
