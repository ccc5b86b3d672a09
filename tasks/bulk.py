"""Bulk license assignment: validate, back up, approve, pilot, roll out, roll back.

The stages are plain functions taking the engine (so tests, the benchmark and a crashed
process's resume can run them without Prefect); the Prefect tasks at the bottom are thin
wrappers that add what a person sees in the UI (artifacts, progress). The rules live in
tasks/bulk_validate.py (checks), bulk_impact.py (preview), bulk_backup.py (backup),
bulk_approval.py (decision), bulk_apply.py (pilot, rollout, rollback), bulk_lock.py (one at a
time) and bulk_state.py (states and history).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func, select

from licenseflow.db import get_engine, unit_of_work
from licenseflow.errors import BatchStateError, InputRejected, LicenseflowError, RowError
from licenseflow.settings import get_settings
from schemas.store import BulkBatch, BulkBatchRow
from tasks import bulk_apply
from tasks.audit import current_flow_run_id
from tasks.bulk_apply import apply_batch
from tasks.bulk_backup import BackupInfo, take_backup, verify_backup
from tasks.bulk_impact import compute_impact, impact_markdown, impact_table
from tasks.bulk_state import (
    CHANGING,
    Notice,
    create_batch,
    get_batch,
    history,
    load_rows,
    new_batch_id,
    note,
    publish,
    save_rows,
    transition,
)
from tasks.bulk_validate import error_table, validate_bulk_file, write_error_report
from tasks.feeds import file_checksum

__all__ = ["apply_batch"]  # re-exported: the change stages without Prefect

ARTIFACT_ROWS = 500  # rows of an error table shown in the UI; the CSV report has them all


@dataclass
class Submission:
    batch_id: str
    state: str  # invalid | validated
    errors: list[RowError]
    impact: dict | None
    error_report: Path | None
    dry_run: bool = False


def _dirs() -> tuple[Path, Path]:
    settings = get_settings()
    return settings.path("reports_dir"), settings.path("backups_dir")


# --- stages ---------------------------------------------------------------------------------


def submit(
    engine,
    file: Path | str,
    requester: str,
    *,
    pilot_size: int = 10,
    override_reason: str | None = None,
    dry_run: bool = False,
    not_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Submission:
    """Validate a file and record it as a batch: invalid (with the error report; nothing else
    changes) or validated (rows stored, impact computed)."""
    requester = (requester or "").strip()
    if not requester:
        raise LicenseflowError("give the requester's name (who asks for this change)")
    if pilot_size < 0:
        raise LicenseflowError("pilot size cannot be negative")
    override_reason = (override_reason or "").strip() or None
    reports_dir, _ = _dirs()
    with unit_of_work(engine) as session:
        if Path(file).is_file():
            refuse_resubmission(session, file_checksum(Path(file)))
        check = validate_bulk_file(
            session, file, override_reason=override_reason, pilot_size=pilot_size, now=now
        )
        batch_id = new_batch_id(session, (now or dt.datetime.now(dt.UTC)).date())
        fields = {
            "requester": requester,
            "file_name": str(file),
            "file_checksum": check.checksum or "-",
            "pilot_size": pilot_size,
            "override_reason": override_reason,
            "not_before": not_before,
            "flow_run_id": current_flow_run_id(),
        }
        if check.errors:
            report = write_error_report(
                check.errors, reports_dir / "bulk" / f"{batch_id}-errors.csv"
            )
            detail = f"{len(check.errors)} problem(s); nothing was changed; report: {report}"
            impact = {"errors": len(check.errors), "error_report": str(report)}
            create_batch(session, batch_id, "invalid", requester, detail, impact=impact, **fields)
            return Submission(batch_id, "invalid", check.errors, None, report, dry_run)
        rows = check.rows
        impact = compute_impact(rows, check.capacity, check.costs)
        detail = f"{len(rows)} row(s), {int(rows['pilot'].sum())} in the pilot"
        if dry_run:
            detail += "; dry run: preview only, nothing will change"
        create_batch(
            session,
            batch_id,
            "validated",
            requester,
            detail,
            row_count=len(rows),
            impact=impact,
            **fields,
        )
        save_rows(session, batch_id, rows)
    return Submission(batch_id, "validated", [], impact, None, dry_run)


def refuse_resubmission(session, checksum: str) -> None:
    """The same file again while its batch is pending, in flight or applied: refused, naming
    what to do instead (nothing is applied twice)."""
    earlier = session.execute(
        select(BulkBatch).where(BulkBatch.file_checksum == checksum).order_by(BulkBatch.created_at)
    ).scalars()
    for batch in earlier:
        b, state = batch.id, batch.state
        if state in ("backed_up", "awaiting_approval"):
            raise BatchStateError(
                f"this file was already submitted as batch {b}, which awaits approval: approve "
                f"or reject it (`slm approve {b} --as NAME`, `slm reject {b}`) or continue it "
                f"with `slm bulk-assign --resume {b}`"
            )
        if state in ("approved", *CHANGING):
            raise BatchStateError(
                f"this file is batch {b} ({state}), which is running or was interrupted: "
                f"continue it with `slm bulk-assign --resume {b}` or undo it with "
                f"`slm rollback {b}`"
            )
        if state == "rolled_out":
            raise BatchStateError(
                f"this file was already applied as batch {b} (rolled out); nothing is applied "
                f"twice. To apply it again on purpose, roll {b} back first or change the file"
            )
        if state == "failed" and _applied(session, b):
            raise BatchStateError(
                f"this file is batch {b}, which failed with changes applied: run "
                f"`slm rollback {b}` first"
            )


def _applied(session, batch_id: str) -> int:
    return session.execute(
        select(func.count())
        .select_from(BulkBatchRow)
        .where(BulkBatchRow.batch_id == batch_id, BulkBatchRow.applied_at.is_not(None))
    ).scalar()


def back_up(engine, batch_id: str) -> BackupInfo:
    """validated -> backed_up: the open seats of every product the batch touches, into the
    store and a file with its checksum, then read back and verified."""
    _, backups_dir = _dirs()
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id, lock=True)
        if batch.state != "validated":
            raise BatchStateError(f"batch {batch_id} is {batch.state}: it cannot be backed up")
        products = sorted(int(p) for p in load_rows(session, batch_id)["product_id"].unique())
        info = take_backup(session, batch_id, products, backups_dir)
        batch.backup_path, batch.backup_checksum = str(info.path), info.checksum
    with unit_of_work(engine) as session:
        verify_backup(session, get_batch(session, batch_id))
        transition(
            session,
            batch_id,
            "backed_up",
            "licenseflow",
            f"{info.seats} open seat(s) of {len(products)} product(s); {info.path}; sha256 "
            f"{info.checksum}; verified by reading it back",
        )
    return info


RESUMABLE = ("validated", "backed_up", "awaiting_approval", "approved", *CHANGING)


def resume_point(engine, batch_id: str) -> BulkBatch:
    """The batch to continue, or a clear refusal saying why and what to do instead."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        state = batch.state
        applied = _applied(session, batch_id)
    why = {
        "invalid": "its file has errors: fix the file and submit it again",
        "rejected": "it was rejected: submit the file again to ask anew",
        "expired": "its approval expired: submit the file again to ask anew",
        "rolled_out": "it is complete: nothing left to do (nothing is applied twice)",
        "rolled_back": "it was rolled back: submit the file again to re-apply it",
        "failed": (
            f"it failed with {applied} row(s) applied: run `slm rollback {batch_id}`"
            if applied
            else "it failed before changing anything: submit the file again"
        ),
    }
    if state not in RESUMABLE:
        raise BatchStateError(f"batch {batch_id} is {state}: {why.get(state, 'cannot resume')}")
    return batch


def wait_until(engine, batch_id: str, not_before: dt.datetime | None) -> None:
    """Hold an approved batch until its off-peak start time."""
    if not_before is None:
        return
    moment = not_before if not_before.tzinfo else not_before.replace(tzinfo=dt.UTC)
    if moment <= dt.datetime.now(dt.UTC):
        return
    with unit_of_work(engine) as session:
        note(session, batch_id, "licenseflow", "scheduled", f"waiting until {moment.isoformat()}")
    while (left := (moment - dt.datetime.now(dt.UTC)).total_seconds()) > 0:
        time.sleep(min(left, 30))


def summary(engine, batch_id: str) -> dict:
    """State, counts, impact and history of a batch (CLI, artifacts)."""
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        events = [
            {"at": e.at, "state": e.state, "actor": e.actor, "detail": e.detail}
            for e in history(session, batch_id)
        ]
        return {
            "batch_id": batch.id,
            "state": batch.state,
            "requester": batch.requester,
            "approver": batch.approver,
            "file": batch.file_name,
            "rows": batch.row_count,
            "applied": _applied(session, batch_id),
            "impact": batch.impact,
            "backup": batch.backup_path,
            "backup_checksum": batch.backup_checksum,
            "flow_run_id": batch.flow_run_id,
            "events": events,
        }


def list_batches(engine, limit: int = 20) -> list[dict]:
    with unit_of_work(engine) as session:
        batches = session.execute(
            select(BulkBatch).order_by(BulkBatch.created_at.desc()).limit(limit)
        ).scalars()
        return [
            {
                "batch_id": b.id,
                "state": b.state,
                "requester": b.requester,
                "approver": b.approver or "",
                "rows": b.row_count,
                "applied": _applied(session, b.id),
                "created": b.created_at,
                "file": b.file_name,
            }
            for b in batches
        ]


# --- Prefect tasks: thin, with what the UI shows ------------------------------------------------


def _key(kind: str, batch_id: str) -> str:
    return f"bulk-{kind}-{batch_id.lower()}"


@task(name="validate bulk file", cache_policy=NO_CACHE)
def validate_batch(
    file: str,
    requester: str,
    pilot_size: int,
    override_reason: str | None,
    dry_run: bool,
    not_before: dt.datetime | None,
) -> Submission:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    result = submit(
        get_engine(),
        file,
        requester,
        pilot_size=pilot_size,
        override_reason=override_reason,
        dry_run=dry_run,
        not_before=not_before,
    )
    if result.errors:
        shown = error_table(result.errors[:ARTIFACT_ROWS])
        create_table_artifact(
            shown,
            key=_key("errors", result.batch_id),
            description=f"Batch {result.batch_id} is invalid: {len(result.errors)} problem(s), "
            f"nothing was changed. Full report: {result.error_report}",
        )
        raise InputRejected(
            file,
            result.errors,
            f"batch {result.batch_id} is invalid: {len(result.errors)} problem(s) in {file}; "
            f"nothing was changed (report: {result.error_report})",
        )
    create_table_artifact(
        impact_table(result.impact),
        key=_key("impact", result.batch_id),
        description=f"Batch {result.batch_id}: seats in use before and after, per product",
    )
    create_markdown_artifact(
        impact_markdown(result.batch_id, result.impact, override_reason=override_reason),
        key=_key("preview", result.batch_id),
        description="impact preview (also shown on the approval form)",
    )
    return result


@task(name="back up seats", cache_policy=NO_CACHE)
def back_up_batch(batch_id: str) -> BackupInfo:
    from prefect.artifacts import create_markdown_artifact

    info = back_up(get_engine(), batch_id)
    create_markdown_artifact(
        f"Backup of batch **{batch_id}**: {info.seats} open seat(s)\n\n"
        f"- file: `{info.path}`\n- sha256: `{info.checksum}`\n- verified by reading it back",
        key=_key("backup", batch_id),
        description="the state a rollback restores",
    )
    return info


@task(name="request approval", cache_policy=NO_CACHE)
def request_approval(batch_id: str) -> str:
    from tasks.bulk_approval import open_for_approval

    return open_for_approval(get_engine(), batch_id, current_flow_run_id())


@task(name="re-check before the first change", cache_policy=NO_CACHE)
def prepare_batch(batch_id: str) -> str:
    reports_dir, backups_dir = _dirs()
    return bulk_apply.prepare_changes(
        get_engine(), batch_id, backups_dir=backups_dir, reports_dir=reports_dir
    )


@task(name="apply pilot", cache_policy=NO_CACHE)
def apply_pilot(batch_id: str) -> int:
    return bulk_apply.apply_pilot(get_engine(), batch_id)


@task(name="check pilot health", cache_policy=NO_CACHE)
def check_pilot(batch_id: str) -> None:
    bulk_apply.check_pilot_health(get_engine(), batch_id)


@task(name="roll out", cache_policy=NO_CACHE)
def roll_out_batch(batch_id: str) -> int:
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    settings = get_settings()
    artifact = create_progress_artifact(
        0.0, key=_key("progress", batch_id), description=f"rollout of batch {batch_id}"
    )
    last = [0.0]

    def progress(done: int, total: int) -> None:
        publish(Notice(batch_id, "progress", "rolling_out", None, done, total))
        percent = 100.0 * done / total if total else 100.0
        if percent - last[0] >= 1 or done == total:  # no more than ~100 API calls
            update_progress_artifact(artifact, percent)
            last[0] = percent

    return bulk_apply.roll_out(
        get_engine(),
        batch_id,
        chunk_size=settings.bulk_chunk_size,
        pause_seconds=settings.bulk_chunk_pause_seconds,
        on_progress=progress,
    )


@task(name="roll back", cache_policy=NO_CACHE)
def roll_back_batch(batch_id: str, actor: str) -> str:
    from prefect.artifacts import create_markdown_artifact

    result = bulk_apply.roll_back(get_engine(), batch_id, actor)
    create_markdown_artifact(
        f"Rollback of batch **{batch_id}** by {actor}\n\n{result}",
        key=_key("rollback", batch_id),
        description="seats restored to the backup",
    )
    return str(result)


@task(name="fail and roll back", cache_policy=NO_CACHE)
def fail_batch(batch_id: str, error: str) -> str:
    """The automatic rollback after the pilot or the rollout failed."""
    from prefect.artifacts import create_markdown_artifact

    result = bulk_apply.fail_and_roll_back(get_engine(), batch_id, error)
    text = str(result) if result else "not needed: no row of this batch was applied"
    create_markdown_artifact(
        f"Batch **{batch_id}** failed: {error}\n\nAutomatic rollback: {text}",
        key=_key("rollback", batch_id),
        description="the batch failed and was rolled back",
    )
    return text


@task(name="report batch", cache_policy=NO_CACHE)
def report_batch(batch_id: str) -> dict:
    from prefect.artifacts import create_markdown_artifact

    info = summary(get_engine(), batch_id)
    lines = [
        f"## Bulk batch {batch_id}: {info['state']}",
        "",
        f"Requested by {info['requester']}, approved by {info['approver'] or '-'}; "
        f"{info['applied']} of {info['rows']} row(s) applied. File `{info['file']}`.",
        "",
        "| at | state | by | detail |",
        "| --- | --- | --- | --- |",
    ]
    for e in info["events"]:
        detail = (e["detail"] or "").replace("|", "/").replace("\n", " ")
        lines.append(f"| {e['at']:%Y-%m-%d %H:%M:%S} | {e['state']} | {e['actor']} | {detail} |")
    create_markdown_artifact(
        "\n".join(lines), key=_key("summary", batch_id), description="state history"
    )
    return info
