"""The backup a bulk batch takes before its first change, and the check that it is good.

A backup is the open seats of every product the batch touches, kept twice: as rows of
assignment_backup in the store and as a CSV file under data/backups/ with a .sha256 beside
it. Both serialise to the same bytes (sorted by assignment id, times in UTC), so one checksum
(bulk_batch.backup_checksum) proves both: `verify_backup` reads the file and the rows back and
refuses unless all three agree. No verified backup, no change.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from licenseflow.errors import LicenseflowError
from schemas.store import AssignmentBackup, BulkBatch
from tasks.assignments import AssignmentService

COLUMNS = ["assignment_id", "product_id", "person_id", "device_id", "assigned_at", "assigned_by"]


class BackupUnverified(LicenseflowError):
    """The backup of a batch is missing or does not match its checksum: no change is made."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    checksum: str
    seats: int


def serialize(frame: pd.DataFrame) -> bytes:
    """Canonical CSV of a seat snapshot: the same seats give the same bytes, whichever
    database they were read from."""
    out = frame[COLUMNS].copy().sort_values("assignment_id", kind="stable")
    at = pd.to_datetime(out["assigned_at"], utc=True)
    out["assigned_at"] = at.dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    for column in ("assignment_id", "product_id", "person_id", "device_id"):
        out[column] = out[column].astype("Int64")
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(session: Session, product_ids) -> pd.DataFrame:
    """The open seats of the products now."""
    return AssignmentService(session, "licenseflow").open_assignments(product_ids)


def take_backup(
    session: Session, batch_id: str, product_ids, directory: Path, *, name: str | None = None
) -> BackupInfo:
    """Snapshot the products' open seats into the store (replacing an earlier backup of the
    batch) and into a file; the caller's transaction commits the rows."""
    frame = snapshot(session, product_ids)
    data = serialize(frame)
    checksum = digest(data)
    session.execute(delete(AssignmentBackup).where(AssignmentBackup.batch_id == batch_id))
    records = [
        {
            "batch_id": batch_id,
            "assignment_id": int(a),
            "product_id": int(p),
            "person_id": None if pd.isna(person) else int(person),
            "device_id": None if pd.isna(device) else int(device),
            "assigned_at": at.to_pydatetime(),
            "assigned_by": by,
        }
        for a, p, person, device, at, by in frame[COLUMNS].itertuples(index=False)
    ]
    if records:
        session.execute(insert(AssignmentBackup), records)
    path = directory / (name or f"{batch_id}.csv")
    _write_durably(path, data)
    _write_durably(path.with_name(path.name + ".sha256"), f"{checksum}  {path.name}\n".encode())
    return BackupInfo(path, checksum, len(frame))


def _write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def stored_backup(session: Session, batch_id: str) -> pd.DataFrame:
    """The backup rows of a batch as kept in the store (columns as COLUMNS)."""
    rows = session.execute(
        select(*(getattr(AssignmentBackup, c) for c in COLUMNS))
        .where(AssignmentBackup.batch_id == batch_id)
        .order_by(AssignmentBackup.assignment_id)
    ).all()
    frame = pd.DataFrame(
        dict(zip(COLUMNS, zip(*rows, strict=True), strict=True))
        if rows
        else {c: [] for c in COLUMNS}
    )
    for column in ("assignment_id", "product_id", "person_id", "device_id"):
        frame[column] = frame[column].astype("Int64")
    frame["assigned_at"] = pd.to_datetime(frame["assigned_at"], utc=True)
    return frame


def verify_backup(session: Session, batch: BulkBatch) -> pd.DataFrame:
    """Read the backup back from the file and from the store; both must match the recorded
    checksum. Returns the backed-up seats; BackupUnverified otherwise."""
    if not batch.backup_path or not batch.backup_checksum:
        raise BackupUnverified(f"batch {batch.id} has no backup: no change can be made")
    path = Path(batch.backup_path)
    try:
        file_sum = digest(path.read_bytes())
    except OSError as exc:
        raise BackupUnverified(
            f"batch {batch.id}: the backup file {path} cannot be read ({exc.strerror})"
        ) from None
    if file_sum != batch.backup_checksum:
        raise BackupUnverified(
            f"batch {batch.id}: the backup file {path} does not match its checksum "
            f"(sha256 {file_sum}, recorded {batch.backup_checksum})"
        )
    frame = stored_backup(session, batch.id)
    store_sum = digest(serialize(frame))
    if store_sum != batch.backup_checksum:
        raise BackupUnverified(
            f"batch {batch.id}: the backup rows in the store ({len(frame)} seats) do not match "
            "the backup file's checksum"
        )
    return frame
