"""End to end, the way an operator meets licenseflow: a real `prefect server start`, the
deployments of prefect.yaml (`prefect deploy --all`) and a process worker, as the README's
operator guide starts them; a bulk assignment triggered through the API with parameters,
answered on its approval form through the endpoint the UI's Resume button calls (the
requester first, refused; then a second person), run to Completed; its artifacts read back
from the server and its changes checked in the store and the audit log."""

from __future__ import annotations

import time

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import select
from test_bulk_world import BULK_DATA, build_world, seat_state

from licenseflow.db import unit_of_work
from licenseflow.local_prefect import local_prefect
from licenseflow.settings import PROJECT_ROOT, get_settings
from schemas.store import AuditLog, BulkBatch

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(sqlite_engine, tmp_path, monkeypatch):
    """The store of test_bulk_world, then server, deployments and worker. The worker's flow
    runs inherit this environment, so they open the same store."""
    monkeypatch.setenv("SLM_BULK_APPROVAL_POLL_SECONDS", "1")
    get_settings.cache_clear()
    build_world(sqlite_engine)
    with local_prefect(tmp_path / "prefect") as running:
        yield running


def wait_for(client: SyncPrefectClient, run_id, done, timeout: float = 90):
    """Poll the run until done(state); fail early if it ends any other way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.read_flow_run(run_id).state
        if done(state):
            return state
        assert not state.is_final(), f"the run ended {state.name}: {state.message}"
        time.sleep(0.3)
    raise TimeoutError(f"run {run_id} still {state.name} after {timeout} s")


def test_bulk_assignment_deployed_triggered_approved_and_completed(stack, sqlite_engine):
    before = seat_state(sqlite_engine)
    declared = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())["deployments"]
    with SyncPrefectClient(stack.api_url) as client:
        # every deployment of prefect.yaml is there, with its schedule
        deployments = {d.name: d for d in client.read_deployments()}
        assert set(deployments) == {d["name"] for d in declared}
        for d in declared:
            crons = [s.schedule.cron for s in deployments[d["name"]].schedules]
            assert crons == [s["cron"] for s in d.get("schedules", [])], d["name"]
        # no deployment concurrency limit on it: Prefect revokes the limit's lease when the run
        # pauses for approval, and the run crashes at its next renewal (see prefect.yaml)
        assert deployments["bulk-assignment"].global_concurrency_limit is None

        run = client.create_flow_run_from_deployment(
            deployments["bulk-assignment"].id,
            parameters={
                "file": str(BULK_DATA / "good.csv"),
                "requester": "alice",
                "pilot_size": 2,
                "approval_timeout_seconds": 300,
            },
        )
        paused = wait_for(client, run.id, lambda s: s.is_paused())

        # the form the UI shows: its fields, and the impact preview as its description
        keys = paused.state_details.run_input_keyset
        schema = yaml.safe_load(client.read_flow_run_input(run.id, keys["schema"]))
        assert list(schema["properties"]) == ["decision", "approver", "comment"]
        assert "Requested by **alice**" in client.read_flow_run_input(run.id, keys["description"])

        # Resume as the requester: accepted by Prefect, refused by licenseflow, paused again
        answer = {"decision": "approve", "approver": "alice", "comment": "mine"}
        assert client.resume_flow_run(run.id, run_input=answer).status.value == "ACCEPT"
        wait_for(
            client,
            run.id,
            lambda s: s.is_paused() and s.state_details.pause_key != paused.state_details.pause_key,
        )
        answer = {"decision": "approve", "approver": "bob", "comment": "looks right"}
        assert client.resume_flow_run(run.id, run_input=answer).status.value == "ACCEPT"
        wait_for(client, run.id, lambda s: s.is_completed())

        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )

    with unit_of_work(sqlite_engine) as session:
        batch = session.execute(select(BulkBatch)).scalar_one()
        changes = (
            session.execute(
                select(AuditLog)
                .where(AuditLog.action.in_(["assign", "revoke"]), AuditLog.batch_id == batch.id)
                .order_by(AuditLog.id)
            )
            .scalars()
            .all()
        )
        refused = (
            session.execute(
                select(AuditLog).where(AuditLog.action == "bulk_batch.approval_refused")
            )
            .scalars()
            .all()
        )
    assert (batch.state, batch.requester, batch.approver) == ("rolled_out", "alice", "bob")
    assert batch.flow_run_id == str(run.id)
    assert [(r.actor, "cannot approve their own batch" in r.after["detail"]) for r in refused] == [
        ("alice", True)
    ]
    # good.csv: 5 seats given, 3 taken back, 1 already in place (see test_bulk_flow)
    assert len(changes) == 8
    for entry in changes:
        assert entry.actor == "alice"
        assert "approved by bob" in entry.after["reason"]
        assert entry.flow_run_id == str(run.id)
    after = seat_state(sqlite_engine)
    assert (len(before - after), len(after - before)) == (3, 5)

    by_kind = {a.key.rsplit("-", 3)[0]: a for a in artifacts if a.key}
    batch_key = batch.id.lower()
    assert {a.key for a in artifacts if a.key} == {
        f"bulk-{kind}-{batch_key}"
        for kind in ("impact", "preview", "backup", "progress", "summary")
    }
    assert by_kind["bulk-progress"].data == 100
    assert "rolled_out" in by_kind["bulk-summary"].data
    assert "approved by bob; 9 of 9 row(s) applied" in by_kind["bulk-summary"].data
