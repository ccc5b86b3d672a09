"""A real process applying a batch is killed with SIGKILL in the middle of the rollout; the
rollback then restores the backup exactly, and a re-run either resumes without applying
anything twice or refuses clearly. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from test_bulk_world import approved_batch, build_world, seat_state

from licenseflow.db import unit_of_work
from licenseflow.errors import BatchStateError
from licenseflow.settings import PROJECT_ROOT
from schemas.store import Assignment, AuditLog, BulkBatchRow, Contract, Person, Product
from tasks import bulk_apply
from tasks.bulk import apply_batch, resume_point
from tasks.bulk_lock import bulk_lock
from tasks.bulk_state import get_batch

PEOPLE = 150
PILOT = 10
RUNNER = (
    "import sys\n"
    "from licenseflow.db import get_engine\n"
    "from tasks.bulk_apply import apply_batch\n"
    "apply_batch(get_engine(), sys.argv[1], chunk_size=5, pause_seconds=0.02)\n"
)


@pytest.fixture
def big_batch(engine, tmp_path):
    return make_big_batch(engine, tmp_path)


def make_big_batch(engine, tmp_path):
    """The world plus 150 people and 300 Acrobat seats; a batch giving each a seat and
    revoking three existing seats (so the rollback has seats to give back too)."""
    build_world(engine)
    with unit_of_work(engine) as session:
        acrobat = Product(code="ADOBE-ACROBAT-PRO", name="Acrobat Pro", metric="per_user")
        session.add(acrobat)
        session.flush()
        session.add(
            Contract(
                contract_number="C-ACROBAT",
                product_id=acrobat.id,
                seats=300,
                unit_cost=Decimal("180"),
                currency="EUR",
                start_date=dt.date(2020, 1, 1),
                end_date=dt.date(2099, 12, 31),
            )
        )
        session.add_all(
            Person(employee_id=f"X{i:04d}", email=f"p{i:04d}@example.com", full_name=f"P {i}")
            for i in range(PEOPLE)
        )
    lines = ["action,product_code,user,device,pilot,note"]
    lines += ["revoke,MS-VISIO-PLAN2,ann@example.com,,,", "revoke,WINRAR,,pc-1,,"]
    lines += ["revoke,MS-M365-E3,E-bob,,,"]
    lines += [f"assign,ADOBE-ACROBAT-PRO,p{i:04d}@example.com,,," for i in range(PEOPLE)]
    path = tmp_path / "acrobat.csv"
    path.write_text("\n".join(lines) + "\n")
    before = seat_state(engine)
    return approved_batch(engine, path, pilot_size=PILOT), before


def applied(engine, batch_id) -> int:
    with unit_of_work(engine) as session:
        return session.execute(
            select(func.count())
            .select_from(BulkBatchRow)
            .where(BulkBatchRow.batch_id == batch_id, BulkBatchRow.applied_at.is_not(None))
        ).scalar()


def kill_mid_rollout(engine, batch_id) -> int:
    """Run the batch in a child process; SIGKILL it once the rollout is under way."""
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNER, batch_id],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while applied(engine, batch_id) < PILOT + 3 + 15:  # pilot, revokes, some assigns
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the rollout never got going"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    return applied(engine, batch_id)


def assert_killed_cleanly(engine, batch_id, done):
    total = PEOPLE + 3
    assert 0 < done < total
    with unit_of_work(engine) as session:
        assert get_batch(session, batch_id).state == "rolling_out"
        created = session.execute(
            select(func.count()).select_from(Assignment).where(Assignment.batch_id == batch_id)
        ).scalar()
    assert created == done - 3  # whole chunks only: every applied assign row has its seat
    with bulk_lock(engine, "B-probe", wait_seconds=10):  # the dead holder's lock is gone
        pass


def test_killed_mid_rollout_then_rollback_restores_the_backup_exactly(engine, big_batch):
    batch_id, before = big_batch
    done = kill_mid_rollout(engine, batch_id)
    assert_killed_cleanly(engine, batch_id, done)
    assert seat_state(engine) != before

    result = bulk_apply.roll_back(engine, batch_id, "carol")
    assert (result.revoked, result.reopened) == (done - 3, 3)
    assert seat_state(engine) == before
    with pytest.raises(BatchStateError, match="rolled back: submit the file again"):
        resume_point(engine, batch_id)


def test_killed_mid_rollout_then_resume_applies_each_row_once(sqlite_engine, tmp_path):
    """(SQLite only, to keep the suite short: the in-process interruption test in
    test_bulk_apply covers resuming on both databases.)"""
    engine = sqlite_engine
    batch_id, before = make_big_batch(engine, tmp_path)
    done = kill_mid_rollout(engine, batch_id)
    assert_killed_cleanly(engine, batch_id, done)

    assert resume_point(engine, batch_id).state == "rolling_out"
    assert apply_batch(engine, batch_id, chunk_size=50) == "rolled_out"
    with unit_of_work(engine) as session:
        created = session.execute(
            select(func.count()).select_from(Assignment).where(Assignment.batch_id == batch_id)
        ).scalar()
        per_seat = session.execute(
            select(AuditLog.entity_id, func.count())
            .where(AuditLog.batch_id == batch_id, AuditLog.entity == "assignment")
            .group_by(AuditLog.entity_id)
        ).all()
    assert created == PEOPLE
    assert len(per_seat) == PEOPLE + 3 and {n for _, n in per_seat} == {1}

    bulk_apply.roll_back(engine, batch_id, "carol")
    assert seat_state(engine) == before
