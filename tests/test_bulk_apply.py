"""Backup, pilot, rollout and rollback on SQLite and PostgreSQL, without Prefect."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from test_bulk_world import BULK_DATA, approved_batch, build_world, seat_state, store_fingerprint

from licenseflow.db import unit_of_work
from licenseflow.errors import BatchStateError, InputRejected
from schemas.store import Assignment, AssignmentBackup, AuditLog, Person
from tasks import bulk_apply
from tasks.assignments import AssignmentService, SeatChange
from tasks.bulk import apply_batch, resume_point
from tasks.bulk_backup import COLUMNS, BackupUnverified, moved_since, serialize
from tasks.bulk_state import get_batch, history, load_rows, subscribe


@pytest.fixture
def world(engine):
    return build_world(engine)


def state_of(engine, batch_id):
    with unit_of_work(engine) as session:
        return get_batch(session, batch_id).state


def events(engine, batch_id):
    with unit_of_work(engine) as session:
        return [(e.state, e.actor, e.detail) for e in history(session, batch_id)]


def test_apply_then_rollback_restores_the_backup_exactly(engine, world):
    before = seat_state(engine)
    batch_id = approved_batch(engine, BULK_DATA / "good.csv", pilot_size=2)

    assert apply_batch(engine, batch_id, chunk_size=3) == "rolled_out"
    after = seat_state(engine)
    visio, winrar = world["MS-VISIO-PLAN2"], world["WINRAR"]
    assert {(p, a, d) for p, a, d, _ in after} == {(p, a, d) for p, a, d, _ in before} - {
        (visio, world["bob"], None),
        (world["MS-M365-E3"], world["cat"], None),
        (winrar, None, world["pc-1"]),
    } | {
        (visio, world["cat"], None),
        (visio, world["dan"], None),
        (world["MS-M365-E3"], world["dan"], None),
        (winrar, None, world["pc-2"]),
        (world["MATHWORKS-MATLAB"], world["fay"], None),
    }

    result = bulk_apply.roll_back(engine, batch_id, "carol")
    assert (result.revoked, result.reopened, result.skipped, result.drift) == (5, 3, [], 0)
    # the same open seats with the same assigned_at (to the microsecond) as before the batch
    assert seat_state(engine) == before
    assert state_of(engine, batch_id) == "rolled_back"

    again = bulk_apply.roll_back(engine, batch_id, "carol")  # idempotent, and logged
    assert (again.revoked, again.reopened) == (0, 0)
    assert seat_state(engine) == before
    assert events(engine, batch_id)[-1][2].startswith("re-run")


def test_every_change_and_state_is_in_the_audit_log(engine, world):
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    apply_batch(engine, batch_id)
    bulk_apply.roll_back(engine, batch_id, "carol")
    with unit_of_work(engine) as session:
        entries = (
            session.execute(
                select(AuditLog).where(AuditLog.batch_id == batch_id).order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
    seat_changes = [e for e in entries if e.entity == "assignment"]
    assert len(seat_changes) == 16  # 8 by the batch, 8 undone by the rollback
    for entry in seat_changes[:8]:
        assert entry.actor == "alice"
        assert entry.after["reason"].startswith(
            f"bulk {batch_id}: requested by alice, approved by bob"
        )
    for entry in seat_changes[8:]:
        assert entry.actor == "carol"
        assert entry.after["reason"] == f"rollback of {batch_id}"
    states = [e.after["state"] for e in entries if e.entity == "bulk_batch"]
    assert states == [
        "validated",
        "backed_up",
        "awaiting_approval",
        "approved",
        "pilot",
        "pilot_ok",
        "rolling_out",
        "rolled_out",
        "rolled_back",
    ]
    approved = next(e for e in entries if e.action == "bulk_batch.approved")
    assert (approved.actor, approved.after["requester"], approved.after["approver"]) == (
        "bob",
        "alice",
        "bob",
    )


def test_backup_is_in_the_store_and_a_file_with_its_checksum(engine, world):
    import hashlib

    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    with unit_of_work(engine) as session:
        batch = get_batch(session, batch_id)
        stored = session.execute(
            select(func.count())
            .select_from(AssignmentBackup)
            .where(AssignmentBackup.batch_id == batch_id)
        ).scalar()
    path = Path(batch.backup_path)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == batch.backup_checksum
    sidecar = path.with_name(path.name + ".sha256").read_text()
    assert sidecar == f"{batch.backup_checksum}  {path.name}\n"
    # every open seat of the four products the batch touches (E3 3, VISIO 2, WINRAR 1)
    assert stored == 6 and len(data.decode().splitlines()) == 1 + 6


def test_no_verified_backup_no_change(engine, world):
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    with unit_of_work(engine) as session:
        path = get_batch(session, batch_id).backup_path
    with open(path, "a") as handle:
        handle.write("tampered\n")
    before = store_fingerprint(engine)
    with pytest.raises(BackupUnverified, match="does not match its checksum"):
        apply_batch(engine, batch_id)
    assert store_fingerprint(engine) == before
    assert state_of(engine, batch_id) == "failed"


def test_pilot_health_failure_rolls_the_pilot_back_and_stops(engine, world):
    """Right after the pilot is applied, someone revokes one of its seats (a concurrent
    change): the health check finds the seat missing, the pilot is rolled back, the rollout
    never starts."""
    before = seat_state(engine)
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")  # pilot rows 1 and 6

    def meddle(notice):
        if notice.kind == "progress" and notice.state == "pilot":
            with unit_of_work(engine) as session:
                AssignmentService(session, "someone").revoke(
                    "MS-VISIO-PLAN2", person="cat@example.com", reason="meddling"
                )

    unsubscribe = subscribe(meddle)
    try:
        with pytest.raises(bulk_apply.PilotFailed, match="row 1: the assigned seat is not in"):
            apply_batch(engine, batch_id)
    finally:
        unsubscribe()
    assert state_of(engine, batch_id) == "rolled_back"
    with unit_of_work(engine) as session:
        rows = load_rows(session, batch_id)
    assert list(rows.loc[rows["applied_at"].notna(), "row_number"]) == [1, 6]  # pilot only
    assert seat_state(engine) == before
    states = [s for s, _, _ in events(engine, batch_id)]
    assert states[-3:] == ["pilot", "failed", "rolled_back"]
    with pytest.raises(BatchStateError, match="rolled back: submit the file again"):
        resume_point(engine, batch_id)


def test_recheck_before_the_first_change_refuses_a_batch_the_state_outgrew(engine, world):
    """Approved, then HR terminates dan before the batch starts: nothing is applied."""
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    with unit_of_work(engine) as session:
        session.get(Person, world["dan"]).status = "terminated"
    before = store_fingerprint(engine)
    with pytest.raises(InputRejected, match="no longer apply") as refused:
        apply_batch(engine, batch_id)
    assert [(e.row, e.reason) for e in refused.value.errors] == [
        (2, "dan@example.com is terminated: no new seats"),
        (4, "dan@example.com is terminated: no new seats"),
    ]
    assert store_fingerprint(engine) == before
    assert state_of(engine, batch_id) == "failed"


def test_backup_taken_again_when_seats_moved_during_the_approval_wait(engine, world):
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    with unit_of_work(engine) as session:  # gus gets E3 while the batch waits
        AssignmentService(session, "someone").assign("MS-M365-E3", person="gus@example.com")
    before = seat_state(engine)
    apply_batch(engine, batch_id)
    assert any("backup taken again" in (d or "") for _, _, d in events(engine, batch_id))
    bulk_apply.roll_back(engine, batch_id, "carol")
    assert seat_state(engine) == before  # gus keeps his seat


def test_backup_taken_again_when_a_seat_was_given_back_with_a_new_date_during_the_wait(
    engine, world
):
    """Same holders, different seat rows: cat's E3 (which the batch revokes) was revoked and
    given again while the batch waited. The backup is taken again, so the rollback gives cat
    back the seat as it was right before the batch (the new date), not the older one."""
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    with unit_of_work(engine) as session:
        service = AssignmentService(session, "someone")
        service.apply([SeatChange("revoke", world["MS-M365-E3"], person_id=world["cat"])])
        service.apply([SeatChange("assign", world["MS-M365-E3"], person_id=world["cat"])])
    before = seat_state(engine)
    apply_batch(engine, batch_id)
    assert any("backup taken again" in (d or "") for _, _, d in events(engine, batch_id))
    bulk_apply.roll_back(engine, batch_id, "carol")
    assert seat_state(engine) == before


def test_moved_since_names_the_seats_others_opened_and_closed_after_the_backup(engine, world):
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    e3, visio = world["MS-M365-E3"], world["MS-VISIO-PLAN2"]
    with unit_of_work(engine) as session:
        assert moved_since(session, batch_id, [e3, visio]).empty
        service = AssignmentService(session, "someone")
        service.apply([SeatChange("assign", e3, person_id=world["gus"])])
        service.apply([SeatChange("revoke", visio, person_id=world["ann"])])
        service.apply([SeatChange("revoke", e3, person_id=world["bob"])])
        service.apply([SeatChange("assign", e3, person_id=world["bob"])])  # a new row
        moved = moved_since(session, batch_id, [e3, visio])
        only_visio = moved_since(session, batch_id, [visio])
    listed = {
        (c, p, a)
        for c, p, a in moved[["change", "product_id", "person_id"]].itertuples(index=False)
    }
    assert listed == {
        ("opened", e3, world["gus"]),
        ("opened", e3, world["bob"]),
        ("closed", e3, world["bob"]),
        ("closed", visio, world["ann"]),
    }
    assert list(only_visio["change"]) == ["closed"]


def test_no_new_backup_when_nothing_moved_during_the_wait(engine, world):
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    with unit_of_work(engine) as session:
        checksum = get_batch(session, batch_id).backup_checksum
    apply_batch(engine, batch_id)
    assert not any("backup taken again" in (d or "") for _, _, d in events(engine, batch_id))
    with unit_of_work(engine) as session:
        assert get_batch(session, batch_id).backup_checksum == checksum


def test_rollback_leaves_changes_by_others_alone_and_cannot_reopen_for_the_terminated(
    engine, world
):
    before = seat_state(engine)
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    apply_batch(engine, batch_id)
    with unit_of_work(engine) as session:
        service = AssignmentService(session, "hr")
        service.assign("MS-M365-E3", person="gus@example.com")  # outside the batch
        session.get(Person, world["bob"]).status = "terminated"  # bob's VISIO was revoked
    result = bulk_apply.roll_back(engine, batch_id, "carol")
    assert result.reopened == 2 and len(result.skipped) == 1
    assert "terminated" in result.skipped[0]
    after = seat_state(engine)
    gus_e3 = {s for s in after if s[:3] == (world["MS-M365-E3"], world["gus"], None)}
    bob_visio = {s for s in before if s[:3] == (world["MS-VISIO-PLAN2"], world["bob"], None)}
    assert after == (before - bob_visio) | gus_e3
    assert result.drift == 2  # gus's new seat and bob's seat that could not come back


def test_rollback_refused_before_any_change(engine, world):
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    with pytest.raises(BatchStateError, match="approved: nothing to roll back"):
        bulk_apply.roll_back(engine, batch_id, "carol")


def test_resume_after_an_interrupted_rollout_applies_nothing_twice(engine, world):
    """A run that stopped after its first chunk (as if killed): resuming applies the rest;
    every row exactly once."""
    batch_id = approved_batch(engine, BULK_DATA / "good.csv", pilot_size=0)
    from tasks.bulk import _dirs

    reports_dir, backups_dir = _dirs()
    bulk_apply.prepare_changes(engine, batch_id, backups_dir=backups_dir, reports_dir=reports_dir)
    bulk_apply.apply_pilot(engine, batch_id)
    bulk_apply.check_pilot_health(engine, batch_id)

    class Killed(BaseException):
        pass

    def die_after_first_chunk(done, total):
        if done >= 4:
            raise Killed

    with pytest.raises(Killed):
        bulk_apply.roll_out(engine, batch_id, chunk_size=4, on_progress=die_after_first_chunk)
    assert state_of(engine, batch_id) == "rolling_out"
    assert resume_point(engine, batch_id).state == "rolling_out"
    assert apply_batch(engine, batch_id, chunk_size=4) == "rolled_out"
    with unit_of_work(engine) as session:
        created = session.execute(
            select(func.count()).select_from(Assignment).where(Assignment.batch_id == batch_id)
        ).scalar()
        seat_entries = session.execute(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.batch_id == batch_id, AuditLog.entity == "assignment")
        ).scalar()
    assert (created, seat_entries) == (5, 8)  # 5 seats added, 8 changes, none twice
    with pytest.raises(BatchStateError, match="complete: nothing left to do"):
        resume_point(engine, batch_id)


def test_restored_seat_keeps_its_original_date(engine, world):
    batch_id = approved_batch(engine, BULK_DATA / "good.csv")
    apply_batch(engine, batch_id)
    bulk_apply.roll_back(engine, batch_id, "carol")
    with unit_of_work(engine) as session:
        pc1 = AssignmentService(session, "t").open_assignments([world["WINRAR"]])
    assert list(pc1["assigned_at"]) == [dt.datetime(2026, 1, 20, 12, 0, 0, 123456, tzinfo=dt.UTC)]
    assert list(pc1["assigned_by"]) == ["carol"]  # the rollback re-opened it


def test_seed_helpers_do_not_leak(engine):
    """The world is built fresh per test; the service refuses what the bulk checks refuse."""
    ids = build_world(engine)
    with unit_of_work(engine) as session, pytest.raises(Exception, match="terminated"):
        AssignmentService(session, "t").apply(
            [SeatChange("assign", ids["MS-VISIO-PLAN2"], ids["eve"])]
        )


def test_a_batch_of_devices_only(engine, world, tmp_path):
    path = tmp_path / "devices.csv"
    path.write_text("action,product_code,device\nrevoke,WINRAR,pc-1\nassign,winrar,PC-2\n")
    before = seat_state(engine)
    batch_id = approved_batch(engine, path)
    assert apply_batch(engine, batch_id) == "rolled_out"
    assert (world["WINRAR"], None, world["pc-2"]) in {s[:3] for s in seat_state(engine)}
    bulk_apply.roll_back(engine, batch_id, "carol")
    assert seat_state(engine) == before


def test_backup_bytes_are_pandas_csv_of_the_seats_sorted_by_id():
    """The backup's canonical bytes (and so every recorded checksum) are defined as pandas'
    to_csv of the seats sorted by id; serialize builds them faster and must not drift from
    that definition: missing holders, microseconds, quoting, an empty snapshot."""
    seats = pd.DataFrame(
        {
            "assignment_id": pd.array([12, 3, 7, 40], dtype="Int64"),
            "product_id": pd.array([1, 2, 2, 1], dtype="Int64"),
            "person_id": pd.array([5, None, 9, None], dtype="Int64"),
            "device_id": pd.array([None, 4, None, 8], dtype="Int64"),
            "assigned_at": pd.to_datetime(
                [
                    "2026-01-05T08:00:00.000001Z",
                    "2025-12-31T23:59:59.999999Z",
                    "2026-02-01T00:00:00Z",
                    "2026-03-01T12:30:00.5Z",
                ],
                utc=True,
                format="ISO8601",
            ),
            "assigned_by": pd.array(['bulk "B-1", a,b', "line\nbreak", None, ""], dtype="string"),
        }
    )

    def by_definition(frame):
        out = frame[COLUMNS].copy().sort_values("assignment_id", kind="stable")
        stamp = out["assigned_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
        buffer = io.StringIO()
        out.assign(assigned_at=stamp).to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue().encode()

    assert serialize(seats) == by_definition(seats)
    assert serialize(seats).splitlines()[1] == b'3,2,,4,2025-12-31T23:59:59.999999+00:00,"line'
    assert serialize(seats.iloc[0:0]) == by_definition(seats.iloc[0:0])
