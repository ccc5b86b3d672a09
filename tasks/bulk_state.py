"""A bulk batch's life: its id, its state machine and its history.

Every state change is one bulk_batch_event row plus one audit entry, written in the caller's
transaction. Whoever watches a batch (the CLI's live output, tests) subscribes to notices,
which are delivered after the transaction commits, never for a change that was rolled back.

States (schemas.store.BATCH_STATES) and the moves between them:

    (file) -> invalid                                   the file has errors; nothing changed
           -> validated -> backed_up -> awaiting_approval -> rejected | expired
                                                          -> approved -> pilot -> pilot_ok
                                                             -> rolling_out -> rolled_out
    pilot, pilot_ok, rolling_out, approved -> failed    (pilot health, an error, a crash found)
    pilot, pilot_ok, rolling_out, rolled_out, failed -> rolled_back (-> rolled_back: a re-run)
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from licenseflow.errors import BatchStateError
from schemas.store import BulkBatch, BulkBatchEvent, BulkBatchRow
from tasks import audit

ALLOWED: dict[str | None, tuple[str, ...]] = {
    None: ("invalid", "validated"),
    "validated": ("backed_up", "failed"),
    "backed_up": ("awaiting_approval", "failed"),
    "awaiting_approval": ("approved", "rejected", "expired"),
    "approved": ("pilot", "failed"),
    "pilot": ("pilot_ok", "failed", "rolled_back"),
    "pilot_ok": ("rolling_out", "failed", "rolled_back"),
    "rolling_out": ("rolled_out", "failed", "rolled_back"),
    "rolled_out": ("rolled_back",),
    "failed": ("rolled_back",),
    "rolled_back": ("rolled_back",),
}
# states in which some rows may have been applied: only a rollback or a resume moves them on
CHANGING = ("pilot", "pilot_ok", "rolling_out")
FINAL = ("invalid", "rejected", "expired", "rolled_out", "rolled_back")


@dataclass(frozen=True)
class Notice:
    """Something a watcher may want to show: a state change, a note, or rollout progress."""

    batch_id: str
    kind: str  # "state" | "note" | "progress"
    state: str | None = None
    detail: str | None = None
    done: int = 0
    total: int = 0


_listeners: list[Callable[[Notice], None]] = []


def subscribe(listener: Callable[[Notice], None]) -> Callable[[], None]:
    """Call `listener` with every notice; returns the function that unsubscribes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def publish(notice: Notice) -> None:
    for listener in list(_listeners):
        listener(notice)


def _later(session: Session, notice: Notice) -> None:
    session.info.setdefault("bulk_notices", []).append(notice)


@event.listens_for(Session, "after_commit")
def _deliver(session: Session) -> None:
    for notice in session.info.pop("bulk_notices", []):
        publish(notice)


@event.listens_for(Session, "after_rollback")
def _discard(session: Session) -> None:
    session.info.pop("bulk_notices", None)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_batch_id(session: Session, today: dt.date | None = None) -> str:
    """Short and readable: B-20261127-ab12."""
    day = (today or _now().date()).strftime("%Y%m%d")
    while True:
        candidate = f"B-{day}-{secrets.token_hex(2)}"
        if session.get(BulkBatch, candidate) is None:
            return candidate


def get_batch(session: Session, batch_id: str, *, lock: bool = False) -> BulkBatch:
    query = select(BulkBatch).where(BulkBatch.id == batch_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    batch = session.execute(query).scalar_one_or_none()
    if batch is None:
        raise BatchStateError(f"no bulk batch {batch_id!r} (see `slm bulk-status`)")
    return batch


def create_batch(
    session: Session, batch_id: str, state: str, actor: str, detail: str | None = None, **fields
) -> BulkBatch:
    """The batch row with its first state, event and audit entry."""
    now = _now()
    batch = BulkBatch(id=batch_id, state=state, created_at=now, updated_at=now, **fields)
    session.add(batch)
    session.flush()
    _event(session, batch, None, state, actor, detail)
    return batch


def transition(
    session: Session,
    batch_id: str,
    to: str,
    actor: str,
    detail: str | None = None,
    *,
    allowed_from: tuple[str, ...] | None = None,
    **fields,
) -> BulkBatch:
    """Move a batch to state `to` (refused unless the state machine allows it), setting any
    extra columns given; one event and one audit entry."""
    batch = get_batch(session, batch_id, lock=True)
    before = batch.state
    allowed = ALLOWED.get(before, ())
    if to not in allowed or (allowed_from is not None and before not in allowed_from):
        raise BatchStateError(f"batch {batch_id} is {before}: it cannot become {to}")
    for name, value in fields.items():
        setattr(batch, name, value)
    batch.state = to
    batch.updated_at = _now()
    _event(session, batch, before, to, actor, detail)
    return batch


def note(session: Session, batch_id: str, actor: str, action: str, detail: str) -> None:
    """An event that is not a state change (a refused self-approval, a refreshed backup)."""
    batch = get_batch(session, batch_id)
    session.add(
        BulkBatchEvent(batch_id=batch_id, state=batch.state, at=_now(), actor=actor, detail=detail)
    )
    audit.record(
        session,
        actor,
        f"bulk_batch.{action}",
        "bulk_batch",
        batch_id,
        after={"state": batch.state, "detail": detail},
        batch_id=batch_id,
    )
    _later(session, Notice(batch_id, "note", batch.state, detail))


def _event(session, batch: BulkBatch, before: str | None, to: str, actor: str, detail) -> None:
    session.add(BulkBatchEvent(batch_id=batch.id, state=to, at=_now(), actor=actor, detail=detail))
    after = {
        "state": to,
        "requester": batch.requester,
        "approver": batch.approver,
        "detail": detail,
    }
    if before is None:
        after |= {"file": batch.file_name, "checksum": batch.file_checksum, "rows": batch.row_count}
    audit.record(
        session,
        actor,
        f"bulk_batch.{to}",
        "bulk_batch",
        batch.id,
        before=None if before is None else {"state": before},
        after=after,
        batch_id=batch.id,
    )
    _later(session, Notice(batch.id, "state", to, detail))


def history(session: Session, batch_id: str) -> list[BulkBatchEvent]:
    return list(
        session.execute(
            select(BulkBatchEvent)
            .where(BulkBatchEvent.batch_id == batch_id)
            .order_by(BulkBatchEvent.id)
        ).scalars()
    )


# --- the batch's rows ---------------------------------------------------------------------


def save_rows(session: Session, batch_id: str, rows: pd.DataFrame) -> int:
    """The resolved rows (one statement); `pilot` must already be the effective pilot flag."""
    records = [
        {
            "batch_id": batch_id,
            "row_number": int(r),
            "action": a,
            "product_id": int(p),
            "person_id": None if pd.isna(person) else int(person),
            "device_id": None if pd.isna(device) else int(device),
            "pilot": bool(pilot),
            "note": None if pd.isna(n) else str(n),
        }
        for r, a, p, person, device, pilot, n in rows[
            ["_row", "action", "product_id", "person_id", "device_id", "pilot", "note"]
        ].itertuples(index=False)
    ]
    if records:
        session.execute(insert(BulkBatchRow), records)
    return len(records)


def load_rows(session: Session, batch_id: str) -> pd.DataFrame:
    """A batch's rows: row_number, action, product_id, person_id, device_id, pilot, note,
    applied_at (NaT when not applied)."""
    columns = [
        "row_number",
        "action",
        "product_id",
        "person_id",
        "device_id",
        "pilot",
        "note",
        "applied_at",
    ]
    result = session.execute(
        select(*(getattr(BulkBatchRow, c) for c in columns))
        .where(BulkBatchRow.batch_id == batch_id)
        .order_by(BulkBatchRow.row_number)
    ).all()
    frame = pd.DataFrame(
        dict(zip(columns, zip(*result, strict=True), strict=True))
        if result
        else {c: [] for c in columns}
    )
    for column in ("row_number", "product_id", "person_id", "device_id"):
        frame[column] = frame[column].astype("Int64")
    frame["pilot"] = frame["pilot"].astype(bool)
    frame["applied_at"] = pd.to_datetime(frame["applied_at"], utc=True)
    return frame
