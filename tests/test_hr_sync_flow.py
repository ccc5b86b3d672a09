"""hr_sync as a real Prefect flow: rosters from the hr drop folder in; people, revoked seats,
alerts and artifacts out."""

import asyncio
import datetime as dt
import shutil
from decimal import Decimal

from conftest import TESTS_DATA
from sqlalchemy import select

from licenseflow.db import unit_of_work
from licenseflow.settings import get_settings
from schemas.store import Alert, Assignment, Contract, IngestionRun, Person, Product
from tasks.assignments import AssignmentService

HR = TESTS_DATA / "hr"


async def artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def arrange_seats(engine):
    """Emma (E005) holds Acrobat (240.00 EUR a year) and Visio (600.00); Visio's contract is
    owned by her, Acrobat's by Ana."""
    with unit_of_work(engine) as session:
        for number, code, cost, owner in (
            ("A-2026", "ADOBE-ACROBAT-PRO", "240.00", "ana.ruiz@example.com"),
            ("V-2026", "MS-VISIO-PLAN2", "600.00", "emma.schulz@example.com"),
        ):
            product = Product(code=code, name=code.title(), metric="per_user")
            session.add(product)
            session.flush()
            session.add(
                Contract(
                    contract_number=number,
                    product_id=product.id,
                    seats=5,
                    unit_cost=Decimal(cost),
                    currency="EUR",
                    start_date=dt.date(2026, 1, 1),
                    end_date=dt.date(2026, 12, 31),
                    owner_email=owner,
                )
            )
        session.flush()
        service = AssignmentService(session, "test", now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
        service.assign("ADOBE-ACROBAT-PRO", person="emma.schulz@example.com")
        service.assign("MS-VISIO-PLAN2", person="E005")


def test_hr_sync_flow_offboards_and_leaves_artifacts(
    prefect_harness, sqlite_engine, tmp_path, monkeypatch
):
    from flows.hr_sync import hr_sync

    drop = tmp_path / "hr"
    drop.mkdir()
    sources = tmp_path / "sources.yaml"
    sources.write_text("feeds:\n  hr: [{folder: hr, pattern: '*.csv'}]\n")
    monkeypatch.setenv("SLM_SOURCES_FILE", str(sources))
    get_settings.cache_clear()

    shutil.copy(HR / "roster_day1.csv", drop / "2026-03-02.csv")
    first = hr_sync(today="2026-03-02")
    assert (first["created"], first["seats_reclaimed"]) == (20, 0)
    arrange_seats(sqlite_engine)

    shutil.copy(HR / "roster_day2.csv", drop / "2026-03-03.csv")
    state = hr_sync(today="2026-03-03", return_state=True)
    second = state.result()

    assert second["files"] == [str(drop / "2026-03-03.csv")]  # day 1 is not applied again
    assert second["newly_terminated"] == ["E005"]
    assert second["on_leave"] == ["E006", "E007"]
    assert (second["seats_reclaimed"], second["people_offboarded"]) == (2, 1)
    assert second["monthly_cost_recovered"] == {"EUR": "70.00"}  # 240/12 + 600/12
    assert (second["ownership_gaps"], second["new_ownership_alerts"]) == (1, 1)
    with unit_of_work(sqlite_engine) as session:
        emma = session.execute(select(Person).where(Person.employee_id == "E005")).scalar_one()
        assert emma.status == "terminated"
        reasons = session.execute(
            select(Assignment.revoke_reason).where(Assignment.person_id == emma.id)
        ).scalars()
        assert list(reasons) == ["offboarding", "offboarding"]
        alert = session.execute(select(Alert).where(Alert.kind == "ownership_gap")).scalar_one()
        assert alert.owner_email == "dev.patel@example.com"  # Emma's manager

    artifacts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    assert {"hr-sync-summary", "hr-sync-reclaimed-seats", "hr-sync-ownership-gaps"} <= set(
        artifacts
    )
    assert "Emma Schulz (E005)" in artifacts["hr-sync-summary"].data
    assert '"70.00"' in artifacts["hr-sync-reclaimed-seats"].data  # the EUR total row

    # a truncated export (day 2's first 10 people) fails the run, is recorded as rejected,
    # and changes nothing; confirmed, it terminates nobody and reports the 11 missing
    head = (HR / "roster_day2.csv").read_text().splitlines()[:11]
    (drop / "2026-03-04.csv").write_text("\n".join(head) + "\n")
    refused = hr_sync(today="2026-03-04", return_state=True)
    assert refused.is_failed()
    assert "--confirm-mass-termination" in str(refused.message)
    with unit_of_work(sqlite_engine) as session:
        runs = session.execute(select(IngestionRun.status).order_by(IngestionRun.id)).scalars()
        assert list(runs) == ["applied", "applied", "rejected"]
    confirmed = hr_sync(today="2026-03-04", confirm_mass_termination=True)
    assert len(confirmed["missing"]) == 11 and confirmed["newly_terminated"] == []
