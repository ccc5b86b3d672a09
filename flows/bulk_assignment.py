"""Bulk license assignment (on demand): validate, back up, approve, pilot, roll out; roll back
automatically if the pilot or the rollout fails.

Run from the Prefect UI (deployment `bulk-assignment`, parameters filled in on the Run form)
or from the command line (`slm bulk-assign FILE`), which runs this same flow in-process.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow

from licenseflow.db import get_engine
from licenseflow.settings import get_settings
from tasks.bulk import (
    apply_pilot,
    back_up_batch,
    check_pilot,
    fail_batch,
    prepare_batch,
    report_batch,
    request_approval,
    resume_point,
    roll_out_batch,
    validate_batch,
    wait_until,
)
from tasks.bulk_approval import wait_for_decision
from tasks.bulk_lock import bulk_lock


@flow(name="bulk-assignment")
def bulk_assignment(
    file: str | None = None,
    requester: str = "",
    pilot_size: int = 10,
    override_reason: str | None = None,
    dry_run: bool = False,
    approval_timeout_seconds: int = 86400,
    not_before: dt.datetime | None = None,
    resume_batch: str | None = None,
    wait_for_approval: bool = True,
    lock_wait_seconds: int = 600,
) -> dict:
    """Apply a CSV of seat changes (action, product_code, user, device, pilot, note) safely.

    - file: path of the CSV on the machine running the flow; requester: who asks;
    - pilot_size: rows in the pilot when the file marks none (0 = no pilot);
    - override_reason: allow products to end above their owned seats (logged);
    - dry_run: validate and preview the impact only;
    - approval_timeout_seconds: the batch expires, unchanged, without a decision in time;
    - not_before: an approved batch waits until then (off-peak, e.g. Saturday 02:00 UTC);
    - resume_batch: continue a batch (after --no-wait, a crash, or a busy lock) instead of
      submitting a file; wait_for_approval=False stops once approval is requested;
    - lock_wait_seconds: how long to wait while another batch changes licenses.
    """
    engine = get_engine()
    if resume_batch:
        batch = resume_point(engine, resume_batch)
        batch_id, state, not_before = batch.id, batch.state, not_before or batch.not_before
    else:
        submitted = validate_batch(
            file, requester, pilot_size, override_reason, dry_run, not_before
        )
        batch_id, state = submitted.batch_id, "validated"
        if dry_run:
            return report_batch(batch_id)

    if state == "validated":
        back_up_batch(batch_id)
    if state in ("validated", "backed_up", "awaiting_approval"):
        request_approval(batch_id)
        if not wait_for_approval:
            return report_batch(batch_id)
        # the run pauses here; the UI shows the approval form, `slm approve` resumes it
        decision = wait_for_decision(
            engine,
            batch_id,
            timeout_seconds=approval_timeout_seconds,
            poll_seconds=get_settings().bulk_approval_poll_seconds,
        )
        if decision != "approved":
            return report_batch(batch_id)

    wait_until(engine, batch_id, not_before)

    # one batch changes licenses at a time; the backup and applied_at marks make a crash
    # anywhere below recoverable (`slm rollback` or `slm bulk-assign --resume`)
    with bulk_lock(engine, batch_id, wait_seconds=lock_wait_seconds):
        try:
            prepare_batch(batch_id)
            apply_pilot(batch_id)
            check_pilot(batch_id)
            roll_out_batch(batch_id)
        except BaseException as error:
            fail_batch(batch_id, f"{type(error).__name__}: {error}")
            raise
    return report_batch(batch_id)
