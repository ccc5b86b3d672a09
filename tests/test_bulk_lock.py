"""One bulk batch changes licenses at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from test_bulk_world import approved_batch, build_world

from licenseflow.db import unit_of_work
from schemas.store import AuditLog
from tasks.bulk import apply_batch
from tasks.bulk_lock import BulkLockBusy, bulk_lock
from tasks.bulk_state import get_batch, load_rows

HEADER = "action,product_code,user,device,pilot,note\n"


@pytest.fixture
def two_batches(engine, tmp_path):
    """Two approved batches on different seats, 4 rows each."""
    build_world(engine)
    first = tmp_path / "first.csv"
    first.write_text(
        HEADER
        + "assign,MATHWORKS-MATLAB,dan@example.com,,,\n"
        + "assign,MATHWORKS-MATLAB,fay@example.com,,,\n"
        + "assign,MATHWORKS-MATLAB,gus@example.com,,,\n"
        + "assign,MATHWORKS-MATLAB,cat@example.com,,,\n"
    )
    second = tmp_path / "second.csv"
    second.write_text(
        HEADER
        + "assign,WINRAR,,pc-2,,\n"
        + "assign,WINRAR,,pc-3,,\n"
        + "revoke,WINRAR,,pc-1,,\n"
        + "assign,MS-VISIO-PLAN2,gus@example.com,,,\n"
    )
    return (
        approved_batch(engine, first, pilot_size=1),
        approved_batch(engine, second, requester="dora", pilot_size=1),
    )


def run_together(engine, batch_ids, lock_wait):
    """Start every batch's change stages at the same moment, one thread each."""
    start = threading.Barrier(len(batch_ids))
    outcome: dict[str, object] = {}

    def run(batch_id):
        start.wait()
        try:
            outcome[batch_id] = apply_batch(
                engine, batch_id, chunk_size=1, pause_seconds=0.05, lock_wait_seconds=lock_wait
            )
        except Exception as exc:
            outcome[batch_id] = exc

    threads = [threading.Thread(target=run, args=(b,)) for b in batch_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcome


def test_two_batches_started_at_once_never_interleave(engine, two_batches):
    outcome = run_together(engine, two_batches, lock_wait=60)
    assert outcome == {b: "rolled_out" for b in two_batches}
    with unit_of_work(engine) as session:
        spans = {}
        for batch_id in two_batches:
            applied = load_rows(session, batch_id)["applied_at"]
            entries = (
                session.execute(
                    select(AuditLog.id).where(
                        AuditLog.batch_id == batch_id, AuditLog.entity == "assignment"
                    )
                )
                .scalars()
                .all()
            )
            spans[batch_id] = (applied.min(), applied.max(), min(entries), max(entries))
    (a_start, a_end, a_first, a_last), (b_start, b_end, b_first, b_last) = spans.values()
    # one batch's every change (time and audit position) before the other's first
    assert a_end < b_start or b_end < a_start
    assert a_last < b_first or b_last < a_first


def test_second_batch_is_refused_clearly_and_can_continue_later(engine, two_batches):
    outcome = run_together(engine, two_batches, lock_wait=0)
    refused = [b for b, result in outcome.items() if isinstance(result, BulkLockBusy)]
    done = [b for b, result in outcome.items() if result == "rolled_out"]
    assert len(refused) == 1 and len(done) == 1
    message = str(outcome[refused[0]])
    assert "another bulk batch is changing licenses now" in message
    assert done[0] in message  # names the holder
    assert f"slm bulk-assign --resume {refused[0]}" in message
    with unit_of_work(engine) as session:
        assert get_batch(session, refused[0]).state == "approved"
        assert load_rows(session, refused[0])["applied_at"].isna().all()
    assert apply_batch(engine, refused[0]) == "rolled_out"


def test_the_lock_is_held_for_the_block_only(engine):
    with (
        bulk_lock(engine, "B-1"),
        pytest.raises(BulkLockBusy, match="B-1"),
        bulk_lock(engine, "B-2", wait_seconds=0.3),
    ):
        pass
    with bulk_lock(engine, "B-2"):
        pass
