"""Approval of a bulk batch: recorded in the store, asked for through a Prefect pause.

- The flow pauses with a typed form (Approval: approve or reject, approver, comment); the
  Prefect UI shows it as the run's Resume form, with the impact preview as its description.
- `slm approve BATCH --as NAME` records the decision in the store first, then resumes the
  waiting flow run with the same input (Prefect's resume_flow_run). When no run is waiting
  (the CLI ran with --no-wait, or its process is gone), the decision stays recorded and
  `slm bulk-assign --resume BATCH` continues the batch.
- `decide` is idempotent, so the flow recording the decision it was resumed with after the
  CLI already recorded it changes nothing. The requester can never approve their own batch.
- A timeout expires the batch; nothing was changed.
"""

from __future__ import annotations

import time
from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from licenseflow.db import unit_of_work
from licenseflow.errors import BatchStateError
from tasks.bulk_impact import impact_markdown
from tasks.bulk_state import Notice, get_batch, note, publish, transition

DECISIONS = {"approve": "approved", "reject": "rejected"}


class SelfApproval(BatchStateError):
    """The requester tried to approve their own batch."""


def _same_person(a: str | None, b: str | None) -> bool:
    return (a or "").strip().casefold() == (b or "").strip().casefold()


def open_for_approval(engine, batch_id: str, flow_run_id: str | None) -> str:
    """backed_up -> awaiting_approval (a resumed batch already waiting keeps its state and
    records the new flow run that waits for it). Returns the state."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        if batch.state == "backed_up":
            transition(
                session,
                batch_id,
                "awaiting_approval",
                batch.requester,
                "approval requested" + (f" (flow run {flow_run_id})" if flow_run_id else ""),
                flow_run_id=flow_run_id,
            )
        elif batch.state == "awaiting_approval" and flow_run_id:
            batch.flow_run_id = flow_run_id
        return batch.state


def decide(engine, batch_id: str, decision: str, approver: str, comment: str = "") -> str:
    """Record an approval or a rejection. Refuses self-approval, a blank name, and a batch
    not awaiting approval; the same decision by the same person twice is a no-op."""
    if decision not in DECISIONS:
        raise BatchStateError(f"decision must be approve or reject, not {decision!r}")
    approver = (approver or "").strip()
    if not approver:
        raise BatchStateError("give the name of who decides (approver)")
    to = DECISIONS[decision]
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id, lock=True)
        if batch.state == to and _same_person(batch.approver, approver):
            return batch.state  # already recorded (e.g. by `slm approve` before it resumed us)
        if batch.state != "awaiting_approval":
            raise BatchStateError(
                f"batch {batch_id} is {batch.state}: only a batch awaiting approval can be {to}"
            )
        if decision == "approve" and _same_person(batch.requester, approver):
            raise SelfApproval(
                f"{approver} requested batch {batch_id}: the requester cannot approve their own "
                "batch; someone else must approve it"
            )
        transition(
            session,
            batch_id,
            to,
            approver,
            comment or None,
            approver=approver,
            approval_comment=comment or None,
        )
        return to


def expire(engine, batch_id: str, timeout_seconds: int) -> str:
    """awaiting_approval -> expired (nothing was changed); other states are left alone."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id, lock=True)
        if batch.state == "awaiting_approval":
            transition(
                session,
                batch_id,
                "expired",
                "licenseflow",
                f"no decision within {timeout_seconds} s; nothing was changed",
            )
        return get_batch(session, batch_id).state


def _refused(engine, batch_id: str, approver: str, why: str) -> None:
    with unit_of_work(engine) as session:
        note(session, batch_id, approver or "?", "approval_refused", f"refused: {why}")


def approval_description(engine, batch_id: str) -> str:
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        text = impact_markdown(batch_id, batch.impact or {}, override_reason=batch.override_reason)
        return (
            f"{text}\n\nRequested by **{batch.requester}** from `{batch.file_name}` "
            f"({batch.row_count} rows). Backup: `{batch.backup_path}` (sha256 "
            f"{batch.backup_checksum}). The requester cannot approve their own batch."
        )


# --- the Prefect side: pause with a form, resume from elsewhere ------------------------------


class Approval(RunInput):
    """The form an approver fills in (Prefect UI: the paused run's Resume button)."""

    decision: Literal["approve", "reject"] = Field(
        "approve", description="approve: the pilot and rollout start; reject: nothing changes"
    )
    approver: str = Field(description="your name (not the requester's)")
    comment: str = Field("", description="why (kept in the audit log)")


def wait_for_decision(engine, batch_id: str, *, timeout_seconds: int, poll_seconds: int = 5) -> str:
    """Inside a flow run: pause with the approval form until a valid decision arrives or the
    timeout passes. Returns the batch state: approved, rejected or expired. A self-approval is
    refused (and logged) and the run waits again for the rest of the time."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    description = approval_description(engine, batch_id)
    deadline = time.monotonic() + timeout_seconds
    while True:
        with unit_of_work(engine) as session:
            state = get_batch(session, batch_id).state
        if state != "awaiting_approval":
            return _decided_elsewhere(engine, batch_id)
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            return expire(engine, batch_id, timeout_seconds)
        try:
            answer = pause_flow_run(
                wait_for_input=Approval.with_initial_data(description=description),
                timeout=remaining,
                poll_interval=max(1, min(poll_seconds, remaining)),
            )
        except FlowPauseTimeout:
            return expire(engine, batch_id, timeout_seconds)
        try:
            with unit_of_work(engine) as session:
                recorded = get_batch(session, batch_id).state != "awaiting_approval"
            state = decide(engine, batch_id, answer.decision, answer.approver, answer.comment)
            return _decided_elsewhere(engine, batch_id) if recorded else state
        except SelfApproval as exc:
            _refused(engine, batch_id, answer.approver, str(exc))
        except BatchStateError as exc:
            with unit_of_work(engine) as session:
                if get_batch(session, batch_id).state != "awaiting_approval":
                    continue  # decided elsewhere meanwhile: the loop returns that state
            _refused(engine, batch_id, answer.approver, str(exc))


def _decided_elsewhere(engine, batch_id: str) -> str:
    """The decision was recorded by another process (`slm approve`): say so here too."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        state, approver, comment = batch.state, batch.approver, batch.approval_comment
    if state in DECISIONS.values():
        detail = f"by {approver}" + (f": {comment}" if comment else "")
        publish(Notice(batch_id, "state", state, detail))
    return state


def resume_waiting_run(
    flow_run_id: str, decision: str, approver: str, comment: str = "", *, patience: float = 5
) -> bool:
    """Hand a decision to the flow run paused for it. False when no run is waiting. A run
    that paused a moment ago may not have saved its form yet: retried for `patience` s."""
    from uuid import UUID

    from prefect.exceptions import NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    run_input = {"decision": decision, "approver": approver, "comment": comment}
    deadline = time.monotonic() + patience
    while True:
        try:
            resume_flow_run(UUID(str(flow_run_id)), run_input=run_input)
            return True
        except (NotPausedError, ObjectNotFound, ValueError):
            return False
        except RuntimeError as exc:  # rejected: form not saved yet, or the pause expired
            if "schema not found" not in str(exc) or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
