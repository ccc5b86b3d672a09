"""The audit trail: tampering is detected (edited, removed, inserted entries), PostgreSQL
refuses edits outright, and the CLI (assign, revoke, assignments load, audit verify/log)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from conftest import TESTS_DATA
from sqlalchemy import select, text
from typer.testing import CliRunner

from licenseflow.cli import app
from licenseflow.db import is_postgres, unit_of_work
from schemas.store import Assignment, AuditLog, Contract, Device, Person, Product
from tasks import audit
from tasks.assignments import AssignmentService

TODAY = dt.datetime.now(dt.UTC).date()  # the CLI works on today (UTC)
runner = CliRunner()


@pytest.fixture
def world(engine):
    """E3 (per_user, 2 seats in force), WINRAR (per_device, 1 seat); ann, bob, cat; pc-1."""
    with unit_of_work(engine) as session:
        for code, metric, seats in (("MS-M365-E3", "per_user", 2), ("WINRAR", "per_device", 1)):
            product = Product(code=code, name=code, metric=metric)
            session.add(product)
            session.flush()
            session.add(
                Contract(
                    contract_number=f"C-{code}",
                    product_id=product.id,
                    seats=seats,
                    unit_cost=Decimal("10"),
                    currency="EUR",
                    start_date=TODAY - dt.timedelta(days=10),
                    end_date=TODAY + dt.timedelta(days=300),
                )
            )
        for n, name in enumerate(("ann", "bob", "cat"), start=1):
            session.add(Person(employee_id=f"E{n}", email=f"{name}@example.com", full_name=name))
        session.add(Device(hostname="pc-1"))
    return engine


def three_entries(engine):
    """Entries 1-3 written through the service: assign ann, assign bob, revoke ann."""
    with unit_of_work(engine) as session:
        svc = AssignmentService(session, "ops")
        svc.assign("MS-M365-E3", person="ann@example.com")
        svc.assign("MS-M365-E3", person="bob@example.com")
        svc.revoke("MS-M365-E3", person="ann@example.com", reason="moved team")
    with unit_of_work(engine) as session:
        return session.execute(select(AuditLog.id, AuditLog.hash).order_by(AuditLog.id)).all()


def tamper(engine, *statements):
    """Change the log behind the application's back. On PostgreSQL the append-only trigger is
    disabled first, as a superuser would."""
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        for statement, params in statements:
            conn.execute(text(statement), params)
        if is_postgres(engine):
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


def verify(engine, head=None):
    with unit_of_work(engine) as session:
        return audit.verify(session, expected_head=head)


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


# --- tampering ------------------------------------------------------------------------------


def test_intact_chain_verifies(world):
    entries = three_entries(world)
    result = verify(world, head=entries[-1].hash)
    assert (result.ok, result.entries, result.last_hash) == (True, 3, entries[-1].hash)
    outcome = cli("audit", "verify", "--head", entries[-1].hash)
    assert outcome.exit_code == 0, outcome.output
    assert "audit chain intact: 3 entries" in outcome.output


def test_an_edited_entry_is_named(world):
    three_entries(world)
    tamper(world, ("UPDATE audit_log SET actor = 'mallory' WHERE id = 2", {}))
    result = verify(world)
    assert (result.ok, result.first_bad_id) == (False, 2)
    assert "altered" in result.problem
    outcome = cli("audit", "verify")
    assert outcome.exit_code == 1
    assert "BROKEN at entry 2" in outcome.output
    assert "entry 2:" in outcome.output and "mallory assign assignment" in outcome.output


def test_an_edited_before_or_after_is_caught(world):
    three_entries(world)
    after = {"product": "MS-M365-E3", "person": "ann@example.com", "reason": "nothing to see"}
    tamper(world, ("UPDATE audit_log SET after = :a WHERE id = 3", {"a": json.dumps(after)}))
    assert (verify(world).ok, verify(world).first_bad_id) == (False, 3)


def test_a_removed_entry_is_caught_at_the_next(world):
    three_entries(world)
    tamper(world, ("DELETE FROM audit_log WHERE id = 2", {}))
    result = verify(world)
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert "removed" in result.problem
    assert cli("audit", "verify").exit_code == 1


def test_a_removed_last_entry_needs_the_recorded_head(world):
    entries = three_entries(world)
    tamper(world, ("DELETE FROM audit_log WHERE id = 3", {}))
    assert verify(world).ok  # a shorter chain is still a chain
    result = verify(world, head=entries[-1].hash)
    assert not result.ok and "is no longer in the log" in result.problem
    outcome = cli("audit", "verify", "--head", entries[-1].hash)
    assert outcome.exit_code == 1 and "no longer in the log" in outcome.output


def test_an_inserted_entry_is_named(world):
    """A forger renumbers entries 2.. to make room and slips in an entry linked to entry 1
    with a correctly computed hash: the entry after it still links to entry 1."""
    entries = three_entries(world)
    forged = {
        "at": dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
        "actor": "ops",
        "action": "assign",
        "entity": "assignment",
        "entity_id": "99",
        "before": None,
        "after": {"product": "MS-M365-E3", "person": "mallory@example.com"},
        "batch_id": None,
        "flow_run_id": None,
    }
    forged_hash = audit.entry_hash(entries[0].hash, forged)
    tamper(
        world,
        ("UPDATE audit_log SET id = id + 100 WHERE id >= 2", {}),
        (
            "INSERT INTO audit_log (id, at, actor, action, entity, entity_id, before, after, "
            "batch_id, flow_run_id, prev_hash, hash) VALUES (2, :at, :actor, :action, :entity, "
            ":entity_id, NULL, :after, NULL, NULL, :prev, :hash)",
            forged
            | {"after": json.dumps(forged["after"]), "prev": entries[0].hash, "hash": forged_hash},
        ),
    )
    result = verify(world)
    assert (result.ok, result.first_bad_id) == (False, 2)
    assert "inserted" in result.problem
    outcome = cli("audit", "verify")
    assert outcome.exit_code == 1 and "BROKEN at entry 2" in outcome.output


@pytest.mark.postgres
def test_postgres_refuses_to_edit_or_delete_entries(pg_engine):
    with unit_of_work(pg_engine) as session:
        audit.record(session, "ops", "assign", "assignment", 1, after={"seat": 1})
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"), pg_engine.begin() as conn:
            conn.execute(text(statement))
    assert verify(pg_engine).ok


# --- the CLI ------------------------------------------------------------------------------


def test_cli_assign_revoke_and_log(world):
    first = cli("assign", "MS-M365-E3", "--user", "ann@example.com", "--as", "ops@example.com")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("assigned: MS-M365-E3 ann@example.com (assignment 1)")
    again = cli("assign", "MS-M365-E3", "--user", "E1")
    assert again.exit_code == 0
    assert f"unchanged: MS-M365-E3 E1: already assigned since {TODAY:%Y-%m-%d}" in again.output

    assert cli("assign", "MS-M365-E3", "--user", "bob@example.com").exit_code == 0
    full = cli("assign", "MS-M365-E3", "--user", "cat@example.com")
    assert full.exit_code == 1
    assert "MS-M365-E3 (per_user): 2 seats owned, 2 in use, 3 after this change" in full.output
    forced = cli(
        "assign", "MS-M365-E3", "--user", "cat@example.com", "--override", "true-up in May"
    )
    assert forced.exit_code == 0, forced.output

    for bad, message in [
        (("assign", "WINRAR", "--device", "ghost"), "unknown device 'ghost'"),
        (("assign", "MS-M365-E3", "--user", "x", "--device", "pc-1"), "exactly one of"),
        (("assign", "NOPE", "--user", "ann@example.com"), "no product with code 'NOPE'"),
    ]:
        outcome = cli(*bad)
        assert (outcome.exit_code, message in outcome.output) == (1, True), outcome.output

    assert cli("revoke", "MS-M365-E3", "--user", "bob@example.com").exit_code != 0  # no reason
    gone = cli("revoke", "MS-M365-E3", "--user", "bob@example.com", "--reason", "left")
    assert gone.exit_code == 0 and gone.output.startswith("revoked: MS-M365-E3")
    never = cli("revoke", "WINRAR", "--device", "PC-1", "--reason", "tidy")
    assert "unchanged: WINRAR PC-1: was not assigned" in never.output

    logged = cli("audit", "log", "--entity", "assignment", "--limit", "10", "--json")
    assert logged.exit_code == 0, logged.output
    records = json.loads(logged.output)
    # newest first: revoke bob, assign cat (override), assign bob, assign ann
    assert [(r["action"], r["entity_id"]) for r in records] == [
        ("revoke", "2"),
        ("assign", "3"),
        ("assign", "2"),
        ("assign", "1"),
    ]
    assert records[0]["after"]["reason"] == "left"
    assert records[1]["after"]["override_reason"] == "true-up in May"
    assert records[3]["actor"] == "ops@example.com"
    one = json.loads(cli("audit", "log", "--entity-id", "2", "--json").output)
    assert [r["action"] for r in one] == ["revoke", "assign"]
    table = cli("audit", "log", "--limit", "2")
    assert table.exit_code == 0 and "Audit log (2 newest)" in table.output
    assert cli("audit", "verify").exit_code == 0
    with unit_of_work(world) as session:
        assert len(session.execute(select(Assignment)).all()) == 3  # bob's row is kept


def test_cli_assignments_load(world, tmp_path):
    good = tmp_path / "seats.csv"
    good.write_text(
        "product_code,user,device,assigned_at\nMS-M365-E3,ann@example.com,,2025-01-02\n"
    )
    loaded = cli("assignments", "load", good, "--as", "migration")
    assert loaded.exit_code == 0, loaded.output
    assert "1 seat(s) recorded, 0 already held" in loaded.output

    bad = tmp_path / "bad.csv"
    bad.write_text("product_code,user\nMS-M365-E3,nobody@example.com\n")
    refused = cli("assignments", "load", bad)
    assert refused.exit_code == 1
    assert "row 1, column 'user' (value 'nobody@example.com')" in refused.output

    graph = TESTS_DATA / "assignments" / "graph"
    no_skus = cli("assignments", "load", graph / "users.json")
    assert no_skus.exit_code == 1 and "--skus" in no_skus.output
    # the catalog maps SPE_E5 and VISIOCLIENT to products this store does not have yet
    unsynced = cli(
        "assignments", "load", graph / "users.json", "--skus", graph / "subscribedSkus.json"
    )
    assert unsynced.exit_code == 1
    assert "maps to product MS-M365-E5, which is not in the store" in unsynced.output
