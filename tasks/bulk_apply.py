"""Applying a bulk batch and undoing it: the stages that change seats.

Every seat change goes through AssignmentService.apply with the batch id (so every audit entry
carries it); the requester is the actor and the reason names the approver.

- prepare_changes: under the bulk lock, before the first change of a run: the backup must
  verify; rows not yet applied are checked again against the current state; a backup taken
  before a long approval wait is taken again if the seats of the batch's products moved.
- apply_pilot / check_pilot_health: the pilot rows in one transaction, then a health check.
- roll_out: the other rows in chunks, one transaction each; a chunk marks its rows applied
  (bulk_batch_row.applied_at) in the same transaction, so after a crash a resume skips exactly
  what was applied and nothing is applied twice.
- roll_back: restores every seat the batch changed to the backup (a seat it added is revoked,
  a seat it revoked is re-opened with its original assigned_at), in one transaction, verified
  before commit. Idempotent; logged like any change.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from licenseflow.db import unit_of_work
from licenseflow.errors import BatchStateError, InputRejected, LicenseflowError
from licenseflow.settings import get_settings
from schemas.store import BulkBatch, BulkBatchRow, Person, Product
from tasks.assignments import AssignmentService, SeatChange
from tasks.bulk_backup import BackupInfo, moved_since, take_backup, verify_backup
from tasks.bulk_lock import bulk_lock
from tasks.bulk_state import CHANGING, Notice, get_batch, load_rows, note, publish, transition
from tasks.bulk_validate import load_state, recheck_rows, seat_keys, write_error_report

AUTO_ACTOR = "licenseflow (automatic rollback)"
ROLLBACK_FROM = (*CHANGING, "rolled_out", "failed", "rolled_back")


class PilotFailed(LicenseflowError):
    """The pilot's health check failed; the pilot was rolled back and the batch stopped."""


@dataclass
class RollbackResult:
    batch_id: str
    revoked: int  # seats the batch had added, removed again
    reopened: int  # seats the batch had revoked, given back with their original date
    skipped: list[str] = field(default_factory=list)  # seats that could not come back, why
    drift: int = 0  # seats of the same products changed by others since the backup (left alone)

    def __str__(self) -> str:
        if not (self.revoked or self.reopened or self.skipped):
            text = f"{self.batch_id}: the seats it touched already match the backup"
        else:
            text = (
                f"{self.batch_id} rolled back: {self.revoked} seat(s) it added removed, "
                f"{self.reopened} seat(s) it revoked given back (original dates kept)"
            )
        if self.skipped:
            text += f"; {len(self.skipped)} not given back: " + "; ".join(self.skipped[:5])
        if self.drift:
            text += (
                f"; {self.drift} seat change(s) of the same products made outside this batch "
                "since the backup were left as they are"
            )
        return text


def batch_reason(batch: BulkBatch) -> str:
    return f"bulk {batch.id}: requested by {batch.requester}, approved by {batch.approver}"


def _ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """Revokes before assigns, then file order: a seat is freed before it is given, so no
    chunk goes over capacity on the way to a final state that is within it."""
    order = rows["action"].map({"revoke": 0, "assign": 1})
    return rows.assign(_order=order).sort_values(["_order", "row_number"]).drop(columns="_order")


# --- before the first change ----------------------------------------------------------------


def prepare_changes(
    engine, batch_id: str, *, backups_dir, reports_dir, now: dt.datetime | None = None
) -> str:
    """Under the lock: verify the backup, re-check the rows still to apply, refresh a backup
    that no longer reflects the seats (only while nothing is applied). Returns the state."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        if batch.state not in ("approved", *CHANGING):
            raise BatchStateError(f"batch {batch_id} is {batch.state}: it cannot be applied")
        verify_backup(session, batch)
        rows = load_rows(session, batch_id)
        pending = rows[rows["applied_at"].isna()]
        state = batch.state
        seats = None
        if state == "approved":  # nothing applied yet: is the backup still the state?
            seats = load_state(session, seat_keys(rows), now)
            products = sorted(int(p) for p in rows["product_id"].unique())
            stale = not moved_since(session, batch_id, products).empty
        else:
            stale = False
        if state not in ("approved", "pilot"):
            pending = pending.assign(pilot=False)  # the pilot is done: no pilot-alone check
        errors = recheck_rows(
            session, pending, batch.override_reason, batch.file_name, now, state=seats
        )
    if errors:
        report = write_error_report(errors, reports_dir / "bulk" / f"{batch_id}-recheck.csv")
        raise InputRejected(
            batch.file_name,
            errors,
            f"batch {batch_id}: {len(errors)} row(s) no longer apply to the current seats "
            f"(report: {report}); nothing of them was changed",
        )
    if stale:
        refresh_backup(engine, batch_id, backups_dir=backups_dir)
    return state


def refresh_backup(engine, batch_id: str, *, backups_dir) -> BackupInfo:
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id, lock=True)
        products = sorted(
            session.execute(
                select(BulkBatchRow.product_id).where(BulkBatchRow.batch_id == batch_id).distinct()
            ).scalars()
        )
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        info = take_backup(session, batch_id, products, backups_dir, name=f"{batch_id}.{stamp}.csv")
        batch.backup_path, batch.backup_checksum = str(info.path), info.checksum
        note(
            session,
            batch_id,
            "licenseflow",
            "backup_refreshed",
            f"the seats of the batch's products changed while it waited; backup taken again "
            f"right before the first change: {info.seats} seats, {info.path}, sha256 "
            f"{info.checksum}",
        )
    with unit_of_work(engine) as session:
        verify_backup(session, get_batch(session, batch_id))
    return info


# --- applying rows ----------------------------------------------------------------------------


def _apply_rows(engine, batch_id: str, rows: pd.DataFrame, now: dt.datetime | None = None):
    """One transaction: the rows' changes through the assignment service, and the rows marked
    applied. Refuses (changing nothing) if any row was already applied by someone else."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        reason = batch_reason(batch)
        changes = [
            SeatChange(
                action,
                int(product),
                None if pd.isna(person) else int(person),
                None if pd.isna(device) else int(device),
                reason=reason if pd.isna(text) or not text else f"{reason}; {text}",
            )
            for action, product, person, device, text in rows[
                ["action", "product_id", "person_id", "device_id", "note"]
            ].itertuples(index=False)
        ]
        service = AssignmentService(session, batch.requester, batch_id=batch_id, now=now)
        outcomes = service.apply(changes, override_reason=batch.override_reason)
        marked = session.execute(
            update(BulkBatchRow)
            .where(
                BulkBatchRow.batch_id == batch_id,
                BulkBatchRow.row_number.in_([int(r) for r in rows["row_number"]]),
                BulkBatchRow.applied_at.is_(None),
            )
            .values(applied_at=service.now)
        ).rowcount
        if marked != len(rows):
            raise BatchStateError(
                f"batch {batch_id}: {len(rows) - marked} row(s) of this chunk were already "
                "applied by another run; nothing of the chunk was changed"
            )
        batch.updated_at = service.now
    return outcomes


def apply_pilot(engine, batch_id: str, now: dt.datetime | None = None) -> int:
    """Move to `pilot` (if not there already after a crash) and apply the pilot rows not yet
    applied, in one transaction. Returns how many rows were applied now."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        if batch.state not in ("approved", "pilot"):
            return 0
        rows = load_rows(session, batch_id)
        if batch.state == "approved":
            detail = f"pilot of {int(rows['pilot'].sum())} row(s) starts"
            transition(session, batch_id, "pilot", batch.requester, detail)
    pending = rows[rows["pilot"] & rows["applied_at"].isna()]
    if pending.empty:
        return 0
    _apply_rows(engine, batch_id, _ordered(pending), now)
    publish(Notice(batch_id, "progress", "pilot", None, len(pending), len(pending)))
    return len(pending)


def pilot_problems(
    session: Session, batch: BulkBatch, rows: pd.DataFrame, now: dt.datetime | None = None
) -> list[str]:
    """The pilot's health: every pilot row applied and its change present in the store, and
    no product of the pilot above its owned seats (unless the batch has an override)."""
    pilot = rows[rows["pilot"]]
    problems = []
    not_applied = pilot[pilot["applied_at"].isna()]
    for row in not_applied["row_number"]:
        problems.append(f"row {row} was not applied")
    if pilot.empty:
        return problems
    service = AssignmentService(session, "licenseflow", now=now)
    product_ids = sorted(int(p) for p in pilot["product_id"].unique())
    open_keys = set(seat_keys(service.open_seats(seat_keys(pilot))))
    for (row, action), key in zip(
        pilot[["row_number", "action"]].itertuples(index=False), seat_keys(pilot), strict=True
    ):
        present = key in open_keys
        if action == "assign" and not present:
            problems.append(f"row {row}: the assigned seat is not in the store")
        if action == "revoke" and present:
            problems.append(f"row {row}: the revoked seat is still open")
    if not (batch.override_reason or "").strip():
        query = select(Product.id, Product.code).where(Product.id.in_(product_ids))
        codes = dict(session.execute(query).all())
        for cap in service.capacity(product_ids).values():
            if cap.owned is not None and cap.used > cap.owned:
                problems.append(
                    f"{codes[cap.product_id]}: {cap.used} seats in use, {cap.owned} owned"
                )
    return problems


def check_pilot_health(engine, batch_id: str, now: dt.datetime | None = None) -> None:
    """pilot -> pilot_ok, or PilotFailed naming every problem (the caller rolls back)."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        if batch.state != "pilot":
            return  # resumed past the pilot
        rows = load_rows(session, batch_id)
        problems = pilot_problems(session, batch, rows, now)
        if not problems:
            count = int(rows["pilot"].sum())
            transition(
                session, batch_id, "pilot_ok", batch.requester, f"{count} pilot row(s) healthy"
            )
            return
    raise PilotFailed(
        f"batch {batch_id}: the pilot's health check failed: " + "; ".join(problems[:10])
    )


def roll_out(
    engine,
    batch_id: str,
    *,
    chunk_size: int = 1000,
    pause_seconds: float = 0.0,
    on_progress: Callable[[int, int], None] | None = None,
    now: dt.datetime | None = None,
) -> int:
    """pilot_ok -> rolling_out -> rolled_out: every row not yet applied, chunk by chunk, one
    transaction each. on_progress(done, total) after each chunk. Returns rows applied now."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        if batch.state == "pilot_ok":
            transition(session, batch_id, "rolling_out", batch.requester, "rollout starts")
        elif batch.state != "rolling_out":
            raise BatchStateError(f"batch {batch_id} is {batch.state}: it cannot roll out")
        rows = load_rows(session, batch_id)
    total = len(rows)
    pending = _ordered(rows[rows["applied_at"].isna()])
    done = total - len(pending)
    if on_progress:
        on_progress(done, total)
    for start in range(0, len(pending), chunk_size):
        chunk = pending.iloc[start : start + chunk_size]
        _apply_rows(engine, batch_id, chunk, now)
        done += len(chunk)
        if on_progress:
            on_progress(done, total)
        if pause_seconds and done < total:
            time.sleep(pause_seconds)
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        transition(
            session,
            batch_id,
            "rolled_out",
            batch.requester,
            f"{total} row(s) applied ({len(pending)} in this run)",
        )
    return len(pending)


# --- undoing ---------------------------------------------------------------------------------


def roll_back(
    engine, batch_id: str, actor: str, *, reason: str | None = None, now: dt.datetime | None = None
) -> RollbackResult:
    """Restore every seat the batch changed to its backup, in one transaction: a seat it added
    is revoked, a seat it revoked comes back with its original assigned_at. Seats of the same
    products that others changed since the backup are left alone (and counted). A seat that
    cannot come back (its person is now terminated) is skipped and named. Idempotent."""
    why = f"rollback of {batch_id}" + (f": {reason}" if reason else "")
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id, lock=True)
        if batch.state not in ROLLBACK_FROM:
            hint = (
                "reject it instead"
                if batch.state in ("validated", "backed_up", "awaiting_approval", "approved")
                else "it never changed a seat"
            )
            raise BatchStateError(
                f"batch {batch_id} is {batch.state}: nothing to roll back ({hint})"
            )
        backup = verify_backup(session, batch)
        rows = load_rows(session, batch_id)
        applied = rows[rows["applied_at"].notna()]
        touched = set(seat_keys(applied))
        product_ids = sorted({k[0] for k in touched})
        service = AssignmentService(session, actor, batch_id=batch_id, now=now)
        current = service.open_seats(touched)  # the batch's own seats, not whole products
        mine = backup[np.isin(_key_codes(backup), _key_codes(applied))]
        backed = {k: at for k, at in zip(seat_keys(mine), mine["assigned_at"], strict=True)}
        now_open = set(seat_keys(current))
        revokes = [k for k in sorted(touched) if k in now_open and k not in backed]
        reopen = [k for k in sorted(touched) if k not in now_open and k in backed]
        reopen, skipped = _restorable(session, reopen)
        changes = [_change("revoke", k, why) for k in revokes]
        changes += [_change("assign", k, why, backed[k].to_pydatetime()) for k in reopen]
        if changes:
            # restoring the backup is the point, even where it stood above the owned seats:
            # the override lands only on seats of products that end above them
            service.apply(changes, override_reason=f"{why}: restoring the backup")
        after = service.open_seats(touched) if changes else current
        _check_restored(after, batch_id, touched, backed, {k for k, _ in skipped})
        drift = _drift(moved_since(session, batch_id, product_ids))
        result = RollbackResult(
            batch_id, len(revokes), len(reopen), [f"{k}: {w}" for k, w in skipped], drift
        )
        detail = f"re-run: {result}" if batch.state == "rolled_back" else str(result)
        transition(session, batch_id, "rolled_back", actor, detail)
    return result


def _change(action: str, key: tuple, reason: str, assigned_at=None) -> SeatChange:
    product_id, kind, holder = key
    return SeatChange(
        action,
        product_id,
        holder if kind == "person" else None,
        holder if kind == "device" else None,
        reason=reason,
        assigned_at=assigned_at,
    )


def _restorable(session: Session, keys: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """Seats that can be given back; a person terminated since cannot get a seat again."""
    person_ids = sorted({k[2] for k in keys if k[1] == "person"})
    terminated = set()
    for start in range(0, len(person_ids), 2000):
        terminated |= set(
            session.execute(
                select(Person.id).where(
                    Person.id.in_(person_ids[start : start + 2000]),
                    Person.status == "terminated",
                )
            ).scalars()
        )
    keep, skipped = [], []
    for key in keys:
        if key[1] == "person" and key[2] in terminated:
            skipped.append((key, "the person is terminated since the backup"))
        else:
            keep.append(key)
    return keep, skipped


def _check_restored(now: pd.DataFrame, batch_id, touched, backed, skipped) -> None:
    """Before commit: the touched seats must equal the backup (open or not, and the date)."""
    now_at = {k: at for k, at in zip(seat_keys(now), now["assigned_at"], strict=True)}
    wrong = []
    for key in touched - skipped:
        if (key in now_at) != (key in backed) or (key in backed and now_at[key] != backed[key]):
            wrong.append(key)
    if wrong:
        raise BatchStateError(
            f"batch {batch_id}: after the rollback {len(wrong)} seat(s) still differ from the "
            f"backup (e.g. {wrong[:3]}); nothing was changed"
        )


def _drift(moved: pd.DataFrame) -> int:
    """Seats of the touched products that differ from the backup after the restore: what
    others changed since (the batch's own seats were just checked to match). `moved`:
    tasks.bulk_backup.moved_since; a seat closed and opened again (a restored one) is no
    change, so the drift is the keys in one of the two lists but not both."""
    opened = moved[moved["change"] == "opened"]
    closed = moved[moved["change"] == "closed"]
    return len(np.setxor1d(_key_codes(opened), _key_codes(closed)))


def _key_codes(frame: pd.DataFrame) -> np.ndarray:
    """One int64 per seat key (product, person or device, holder), for set operations over
    hundreds of thousands of seats without a Python tuple each."""
    device = frame["person_id"].isna().to_numpy()
    holder = frame["person_id"].fillna(frame["device_id"]).to_numpy(dtype="int64")
    product = frame["product_id"].to_numpy(dtype="int64")
    return (product << 33) | (holder << 1) | device


def fail_and_roll_back(engine, batch_id: str, error: str) -> RollbackResult | None:
    """After an error in the pilot or the rollout (or in the re-check before them): the batch
    becomes failed and, if any row was applied, is rolled back automatically."""
    detail = error[:2000]
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        if batch.state in ("approved", *CHANGING):
            transition(session, batch_id, "failed", AUTO_ACTOR, detail)
        applied = session.execute(
            select(func.count())
            .select_from(BulkBatchRow)
            .where(BulkBatchRow.batch_id == batch_id, BulkBatchRow.applied_at.is_not(None))
        ).scalar()
        state = get_batch(session, batch_id).state
    if not applied or state != "failed":
        return None
    return roll_back(engine, batch_id, AUTO_ACTOR, reason=detail)


def apply_batch(
    engine,
    batch_id: str,
    *,
    chunk_size: int | None = None,
    pause_seconds: float | None = None,
    lock_wait_seconds: float = 0,
    on_progress=None,
) -> str:
    """The change stages of an approved (or interrupted) batch without Prefect, in the order
    flows/bulk_assignment.py runs them as tasks: under the lock, re-check, pilot, health
    check, rollout; on any error the batch fails and is rolled back. Returns the final state.
    For the benchmark, tests and scripts that should not start Prefect."""
    settings = get_settings()
    reports_dir, backups_dir = settings.path("reports_dir"), settings.path("backups_dir")
    with bulk_lock(engine, batch_id, wait_seconds=lock_wait_seconds):
        try:
            prepare_changes(engine, batch_id, backups_dir=backups_dir, reports_dir=reports_dir)
            apply_pilot(engine, batch_id)
            check_pilot_health(engine, batch_id)
            roll_out(
                engine,
                batch_id,
                chunk_size=chunk_size or settings.bulk_chunk_size,
                pause_seconds=(
                    settings.bulk_chunk_pause_seconds if pause_seconds is None else pause_seconds
                ),
                on_progress=on_progress,
            )
        except BaseException as error:
            fail_and_roll_back(engine, batch_id, f"{type(error).__name__}: {error}")
            raise
    with unit_of_work(engine) as session:
        return get_batch(session, batch_id).state
