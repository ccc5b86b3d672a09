"""The bulk_assignment and rollback flows under a real Prefect server (the session's test
harness): approval through Prefect's pause and resume_flow_run with a typed input, rejection,
self-approval refused, expiry, an invalid file, a dry run, and the rollback flow.

The logic does not differ between databases (the function tests run on both), so the flows
run on SQLite only, to keep the suite fast."""

from __future__ import annotations

import threading
import time

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import select
from test_bulk_world import BULK_DATA, build_world, seat_state, store_fingerprint

from flows.bulk_assignment import bulk_assignment
from flows.rollback_bulk_assignment import rollback_bulk_assignment
from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from licenseflow.settings import get_settings
from schemas.store import AuditLog, BulkBatch
from tasks.bulk_approval import resume_waiting_run
from tasks.bulk_state import history


@pytest.fixture
def flow_world(sqlite_engine, prefect_harness, monkeypatch):
    monkeypatch.setenv("SLM_BULK_APPROVAL_POLL_SECONDS", "1")
    get_settings.cache_clear()
    return sqlite_engine, build_world(sqlite_engine)


def the_batch(engine) -> BulkBatch:
    with unit_of_work(engine) as session:
        return session.execute(select(BulkBatch)).scalar_one()


def is_paused(flow_run_id: str) -> bool:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return bool(state and state.is_paused())


def answer_when_paused(engine, answers: list[dict], deadline: float = 60) -> threading.Thread:
    """A second 'person': waits for the batch's flow run to pause for approval and resumes it
    with each answer in turn (a refused answer makes the flow pause again)."""
    errors: list[BaseException] = []

    def person() -> None:
        stop = time.monotonic() + deadline
        for answer in answers:
            while time.monotonic() < stop:
                with unit_of_work(engine) as session:
                    run_id = session.execute(
                        select(BulkBatch.flow_run_id).where(BulkBatch.state == "awaiting_approval")
                    ).scalar()
                if run_id and is_paused(run_id) and resume_waiting_run(run_id, **answer):
                    break
                time.sleep(0.2)
            else:
                errors.append(TimeoutError("the flow never paused for approval"))
                return

    thread = threading.Thread(target=person, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


def test_approved_through_the_pause_form_rolls_out(flow_world):
    engine, ids = flow_world
    person = answer_when_paused(
        engine, [{"decision": "approve", "approver": "bob", "comment": "looks right"}]
    )
    result = bulk_assignment(
        file=str(BULK_DATA / "good.csv"),
        requester="alice",
        pilot_size=2,
        approval_timeout_seconds=60,
    )
    person.join(5)
    assert not person.errors
    assert result["state"] == "rolled_out"
    assert (result["applied"], result["rows"]) == (9, 9)
    batch = the_batch(engine)
    assert (batch.approver, batch.approval_comment) == ("bob", "looks right")
    states = [e["state"] for e in result["events"]]
    assert states == [
        "validated",
        "backed_up",
        "awaiting_approval",
        "approved",
        "pilot",
        "pilot_ok",
        "rolling_out",
        "rolled_out",
    ]
    with unit_of_work(engine) as session:
        changes = (
            session.execute(
                select(AuditLog).where(AuditLog.action.in_(["assign", "revoke"]), AuditLog.id > 6)
            )
            .scalars()
            .all()
        )
    # 5 seats added + 3 revoked (the row already in place changes nothing), each carrying the
    # batch id, the requester (actor) and the approver (reason)
    assert len(changes) == 8
    for entry in changes:
        assert entry.batch_id == batch.id
        assert entry.actor == "alice"
        assert "approved by bob" in entry.after["reason"]
        assert entry.flow_run_id == batch.flow_run_id


def test_rejected_batch_changes_nothing(flow_world):
    engine, _ = flow_world
    before = store_fingerprint(engine)
    person = answer_when_paused(
        engine, [{"decision": "reject", "approver": "bob", "comment": "not this quarter"}]
    )
    result = bulk_assignment(
        file=str(BULK_DATA / "good.csv"), requester="alice", approval_timeout_seconds=60
    )
    person.join(5)
    assert result["state"] == "rejected"
    assert the_batch(engine).approval_comment == "not this quarter"
    assert store_fingerprint(engine) == before


def test_self_approval_is_refused_and_another_person_approves(flow_world):
    engine, _ = flow_world
    person = answer_when_paused(
        engine,
        [
            {"decision": "approve", "approver": "Alice", "comment": "mine, fine"},
            {"decision": "approve", "approver": "bob", "comment": ""},
        ],
    )
    result = bulk_assignment(
        file=str(BULK_DATA / "good.csv"), requester="alice", approval_timeout_seconds=60
    )
    person.join(5)
    assert not person.errors
    assert result["state"] == "rolled_out"
    assert the_batch(engine).approver == "bob"
    refused = [e for e in result["events"] if (e["detail"] or "").startswith("refused")]
    assert len(refused) == 1
    assert refused[0]["actor"] == "Alice"
    assert "cannot approve their own batch" in refused[0]["detail"]


def test_no_decision_in_time_expires_the_batch(flow_world):
    engine, _ = flow_world
    before = store_fingerprint(engine)
    # (Prefect itself marks the run Failed, "never resumed": an expired pause cannot end in
    # Completed; the batch's own state is what counts)
    result = bulk_assignment(
        file=str(BULK_DATA / "good.csv"), requester="alice", approval_timeout_seconds=2
    )
    assert result["state"] == "expired"
    assert store_fingerprint(engine) == before


def test_invalid_file_fails_the_run_and_records_an_invalid_batch(flow_world):
    engine, _ = flow_world
    before = store_fingerprint(engine)
    with pytest.raises(InputRejected, match="1 problem"):
        bulk_assignment(file=str(BULK_DATA / "terminated_user.csv"), requester="alice")
    batch = the_batch(engine)
    assert batch.state == "invalid"
    report = (get_settings().path("reports_dir") / "bulk" / f"{batch.id}-errors.csv").read_text()
    assert report.splitlines() == [
        "row,column,value,reason",
        "2,user,eve@example.com,eve@example.com is terminated since 2026-02-01: no new seats",
    ]
    assert store_fingerprint(engine) == before


def test_dry_run_previews_and_changes_no_seat(flow_world):
    engine, _ = flow_world
    before = store_fingerprint(engine)
    result = bulk_assignment(file=str(BULK_DATA / "good.csv"), requester="alice", dry_run=True)
    assert result["state"] == "validated"
    assert result["impact"]["people_affected"] == 4
    assert "dry run" in result["events"][0]["detail"]
    assert result["backup"] is None
    assert store_fingerprint(engine) == before


def test_no_wait_then_cli_style_approval_then_resume_then_rollback_flow(flow_world):
    engine, _ = flow_world
    from tasks.bulk_approval import decide

    before = seat_state(engine)
    waiting = bulk_assignment(
        file=str(BULK_DATA / "good.csv"), requester="alice", wait_for_approval=False
    )
    assert waiting["state"] == "awaiting_approval"
    decide(engine, waiting["batch_id"], "approve", "bob", "ok")  # what `slm approve` records
    done = bulk_assignment(resume_batch=waiting["batch_id"])
    assert done["state"] == "rolled_out"
    assert seat_state(engine) != before

    undone = rollback_bulk_assignment(waiting["batch_id"], actor="carol")
    assert undone["state"] == "rolled_back"
    assert seat_state(engine) == before
    with unit_of_work(engine) as session:
        last = history(session, waiting["batch_id"])[-1]
    assert (last.actor, last.state) == ("carol", "rolled_back")


def test_command_line_refuses_previews_waits_approves_resumes_and_rolls_back(flow_world):
    from typer.testing import CliRunner

    from licenseflow.cli import app

    engine, _ = flow_world
    before = seat_state(engine)
    runner = CliRunner()

    def cli(args):  # output with Rich's line wrapping undone
        result = runner.invoke(app, args)
        result.text = " ".join(result.output.split())
        return result

    refused = cli(["bulk-assign", str(BULK_DATA / "unknown_device.csv")])
    assert refused.exit_code == 1
    assert "no device with this hostname" in refused.text and "pc-99" in refused.text

    preview = cli(["bulk-assign", str(BULK_DATA / "good.csv"), "--dry-run"])
    assert preview.exit_code == 0, preview.output
    assert "Impact preview" in preview.text and "people affected: 4" in preview.text

    args = ["bulk-assign", str(BULK_DATA / "good.csv"), "--requester", "alice", "--no-wait"]
    waiting = cli(args)
    assert waiting.exit_code == 0, waiting.output
    batch_id = the_batch_waiting(engine)
    own = cli(["approve", batch_id, "--as", "alice"])
    assert own.exit_code == 1 and "cannot approve their own batch" in own.text
    approved = cli(["approve", batch_id, "--as", "bob"])
    assert approved.exit_code == 0 and "approved by bob" in approved.text

    resumed = cli(["bulk-assign", "--resume", batch_id])
    assert resumed.exit_code == 0, resumed.output
    assert f"{batch_id}: rolled_out" in resumed.text
    undone = cli(["rollback", batch_id, "--as", "carol"])
    assert undone.exit_code == 0, undone.output
    assert seat_state(engine) == before
    status = cli(["bulk-status", batch_id])
    assert "rolled_back" in status.text and "carol" in status.text


def the_batch_waiting(engine) -> str:
    with unit_of_work(engine) as session:
        return session.execute(
            select(BulkBatch.id).where(BulkBatch.state == "awaiting_approval")
        ).scalar_one()
