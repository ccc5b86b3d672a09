"""assignment_sync as a real Prefect flow: the assignments drop folder's files in, seats of
people already terminated revoked the same day; a refused file fails the run after its
summary is published, and changes nothing."""

import asyncio
import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from test_hr_sync_flow import artifacts_of
from typer.testing import CliRunner

from licenseflow.db import unit_of_work
from licenseflow.settings import get_settings
from schemas.store import Assignment, AuditLog, Contract, Device, IngestionRun, Person, Product
from tasks import audit

HEADER = "product_code,user,device,assigned_at\n"


def arrange(engine, tmp_path, monkeypatch):
    """Acrobat (240.00 EUR a seat a year) and WinRAR (per device); Ana active, Eve terminated
    on 2026-02-27; the device pc-0042 (as discovery leaves it). Returns the drop folder."""
    with unit_of_work(engine) as session:
        for code, metric, cost in (
            ("ADOBE-ACROBAT-PRO", "per_user", "240.00"),
            ("WINRAR", "per_device", "36.00"),
        ):
            product = Product(code=code, name=code.title(), metric=metric)
            session.add(product)
            session.flush()
            session.add(
                Contract(
                    contract_number=f"C-{code}",
                    product_id=product.id,
                    seats=5,
                    unit_cost=Decimal(cost),
                    currency="EUR",
                    start_date=dt.date(2026, 1, 1),
                    end_date=dt.date(2026, 12, 31),
                )
            )
        session.add(Person(employee_id="E001", email="ana.ruiz@example.com", full_name="Ana Ruiz"))
        session.add(
            Person(
                employee_id="E005",
                email="eve.tan@example.com",
                full_name="Eve Tan",
                status="terminated",
                termination_date=dt.date(2026, 2, 27),
            )
        )
        session.add(Device(hostname="pc-0042"))
    drop = tmp_path / "assignments"
    drop.mkdir()
    sources = tmp_path / "sources.yaml"
    sources.write_text("feeds:\n  assignments: [{folder: assignments}]\n")
    monkeypatch.setenv("SLM_SOURCES_FILE", str(sources))
    get_settings.cache_clear()
    return drop


def test_seats_imported_for_people_already_gone_are_revoked_the_same_day(
    prefect_harness, engine, tmp_path, monkeypatch
):
    from flows.assignment_sync import assignment_sync

    drop = arrange(engine, tmp_path, monkeypatch)
    seats = drop / "seats.csv"
    seats.write_text(
        HEADER + "ADOBE-ACROBAT-PRO,ana.ruiz@example.com,,2025-06-01\n"
        "ADOBE-ACROBAT-PRO,eve.tan@example.com,,2025-06-01\n"
        "WINRAR,,PC-0042,\n"
    )

    state = assignment_sync(today="2026-03-02", return_state=True)
    facts = state.result()

    assert facts["applied"] == [str(seats)] and facts["refused"] == []
    assert (facts["seats_assigned"], facts["terminated_holders"]) == (3, 1)
    assert (facts["seats_reclaimed"], facts["people_offboarded"]) == (1, 1)
    assert facts["monthly_cost_recovered"] == {"EUR": "20.00"}  # 240.00 / 12
    with unit_of_work(engine) as session:
        held = session.execute(
            select(func.coalesce(Person.email, Device.hostname))
            .select_from(Assignment)
            .outerjoin(Person, Person.id == Assignment.person_id)
            .outerjoin(Device, Device.id == Assignment.device_id)
            .where(Assignment.revoked_at.is_(None))
        ).scalars()
        assert sorted(held) == ["ana.ruiz@example.com", "pc-0042"]
        eve = session.execute(
            select(Assignment).join(Person).where(Person.email == "eve.tan@example.com")
        ).scalar_one()
        assert eve.override_reason.startswith("imported from")  # a fact, not refused
        assert (eve.revoke_reason, eve.revoked_by, eve.revoked_at.date()) == (
            "offboarding",
            "assignment-sync",
            dt.date(2026, 3, 2),
        )
        trail = session.execute(
            select(AuditLog.action, AuditLog.actor)
            .where(AuditLog.entity == "assignment", AuditLog.entity_id == str(eve.id))
            .order_by(AuditLog.id)
        ).all()
        assert [tuple(t) for t in trail] == [
            ("assign", "assignments-feed"),
            ("revoke", "assignment-sync"),
        ]
        assert audit.verify(session).ok

    artifacts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    summary = artifacts["assignment-sync-summary"].data
    assert "files applied: **1**" in summary and "seats reclaimed: **1**" in summary
    assert '"20.00"' in artifacts["assignment-sync-reclaimed-seats"].data  # the EUR total row

    again = assignment_sync(today="2026-03-02")  # the same file is not applied twice
    assert again["already_applied"] == [str(seats)]
    assert (again["seats_assigned"], again["seats_reclaimed"]) == (0, 0)


def test_a_refused_file_fails_the_run_after_its_summary_and_changes_nothing(
    prefect_harness, engine, tmp_path, monkeypatch
):
    from flows.assignment_sync import assignment_sync
    from licenseflow.cli import app

    drop = arrange(engine, tmp_path, monkeypatch)
    (drop / "bad.csv").write_text(
        HEADER + "ADOBE-ACROBAT-PRO,ana.ruiz@example.com,,\nWINRAR,,ghost-99,\n"
    )

    state = assignment_sync(today="2026-03-02", return_state=True)

    assert state.is_failed()
    assert "bad.csv" in str(state.message) and "no device with this hostname" in str(state.message)
    with unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(Assignment)) == 0
        runs = session.execute(select(IngestionRun.feed, IngestionRun.status)).all()
        assert [tuple(r) for r in runs] == [("assignments", "rejected")]
    artifacts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    summary = artifacts["assignment-sync-summary"].data
    assert "refused: **1**" in summary
    assert "1 of 2 rows rejected" in summary
    assert "row 2, column 'device' (value 'ghost-99')" in summary

    refused = CliRunner().invoke(app, ["run", "assignment-sync", "--today", "2026-03-02"])
    assert refused.exit_code == 1
    assert "bad.csv" in refused.output and "refused" in refused.output
