"""Roll back a bulk batch (on demand): every seat it changed goes back to its backup.

Safe at any time after the batch started changing seats, and again later: a re-run finds
nothing to restore and says so. Waits for the bulk lock, so it never runs beside a batch.
"""

from __future__ import annotations

from prefect import flow

from licenseflow.db import get_engine
from tasks.bulk import report_batch, roll_back_batch
from tasks.bulk_lock import bulk_lock


@flow(name="rollback-bulk-assignment")
def rollback_bulk_assignment(batch_id: str, actor: str, lock_wait_seconds: int = 600) -> dict:
    """batch_id: e.g. B-20261127-ab12; actor: who rolls back (kept in the audit log)."""
    again = f"slm rollback {batch_id}"
    with bulk_lock(get_engine(), batch_id, wait_seconds=lock_wait_seconds, again=again):
        roll_back_batch(batch_id, actor)
    return report_batch(batch_id)
