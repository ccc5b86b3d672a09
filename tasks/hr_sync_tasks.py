"""The hr_sync flow's steps as Prefect tasks (each step one transaction), and what the run
leaves in the Prefect UI: a markdown summary, the reclaimed seats per product with the monthly
cost recovered, and the ownership gaps. Offboarding and its figures are shared with the
assignment_sync flow (seats imported for people already gone come back the same day)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from licenseflow.db import unit_of_work
from licenseflow.errors import GuardTripped, InputRejected, LicenseflowError
from tasks import feeds, offboarding, ownership, people, sources

ACTOR = "hr-sync"
SHOWN = 50  # people listed by name per section of the summary


class RosterMissing(LicenseflowError):
    """No roster was given and no hr drop folder is configured."""


@task(cache_policy=NO_CACHE)
def pending_rosters(roster: str | None) -> list[str]:
    """The roster to apply: the one given, or the hr drop folder's files not yet applied
    (by checksum), in name order."""
    if roster:
        if not Path(roster).is_file():
            raise RosterMissing(f"{roster}: no such roster file")
        candidates = [roster]
    else:
        if "hr" not in sources.load_sources():
            raise RosterMissing(
                "no roster given and no 'hr' feed in the sources file "
                "(data/sources.yaml or SLM_SOURCES_FILE): pass --roster FILE"
            )
        candidates = [str(path) for path, _ in sources.feed_files("hr")]
    with unit_of_work() as session:
        applied = {
            path
            for path in candidates
            if feeds.already_applied(session, people.FEED, feeds.file_checksum(path))
        }
    for path in sorted(applied):
        get_run_logger().info("%s: already applied (same checksum), skipped", path)
    return [path for path in candidates if path not in applied]


@task(cache_policy=NO_CACHE)
def ingest_roster(path: str, today: dt.date, confirm_mass_termination: bool) -> people.RosterResult:
    """Apply one roster; a refused one is recorded in the ingestion ledger and fails the run."""
    try:
        with unit_of_work() as session:
            return people.apply_roster(
                session,
                path,
                today=today,
                confirm_mass_termination=confirm_mass_termination,
                actor=ACTOR,
            )
    except (InputRejected, GuardTripped) as refused:
        with unit_of_work() as session:
            people.record_rejection(session, path, refused)
        raise


@task(cache_policy=NO_CACHE)
def terminate_due(today: dt.date, confirm_mass_termination: bool) -> people.RosterResult:
    """Termination dates reached since the last roster (no new file needed)."""
    with unit_of_work() as session:
        return people.apply_due_terminations(
            session, today=today, actor=ACTOR, confirm_mass_termination=confirm_mass_termination
        )


@task(cache_policy=NO_CACHE)
def offboard_leavers(
    today: dt.date, now: dt.datetime | None = None, actor: str = ACTOR
) -> tuple[pd.DataFrame, int]:
    """Every open seat of everyone terminated goes back (reason "offboarding"), stamped `now`
    and audit-logged as `actor`. Returns the reclaimed seats per product and how many people
    they came from."""
    with unit_of_work() as session:
        leavers = offboarding.people_to_offboard(session, today)
        return offboarding.offboard(session, leavers, today, actor, now), len(leavers)


@task(cache_policy=NO_CACHE)
def flag_people_on_leave() -> pd.DataFrame:
    with unit_of_work() as session:
        return offboarding.flag_people_on_leave(session, actor=ACTOR)


@task(cache_policy=NO_CACHE)
def flag_ownership_gaps(today: dt.date) -> pd.DataFrame:
    """Ownership gaps as alerts (once each); returns every current gap, new ones marked."""
    with unit_of_work() as session:
        gaps = ownership.ownership_gaps(session, today)
        created = ownership.write_ownership_alerts(session, gaps, actor=ACTOR)
    keys = [ownership.dedupe_key(g) for g in gaps.to_dict("records")]
    return gaps.assign(new_alert=[k in set(created["dedupe_key"]) for k in keys])


# --- what the run leaves behind --------------------------------------------------------


def offboarding_facts(offboarded: tuple[pd.DataFrame, int]) -> dict:
    """What offboarding gave back, as a run's summary reports it."""
    reclaimed, people_offboarded = offboarded
    totals = offboarding.total_recovered(reclaimed)
    return {
        "people_offboarded": people_offboarded,
        "seats_reclaimed": int(reclaimed["seats_reclaimed"].sum()) if len(reclaimed) else 0,
        "monthly_cost_recovered": {c: str(v) for c, v in totals.items()},
    }


def recovered_text(facts: dict) -> str:
    """The monthly cost recovered of offboarding_facts, per currency ("0" for none)."""
    return ", ".join(f"{v} {c}" for c, v in facts["monthly_cost_recovered"].items()) or "0"


def offboarding_line(facts: dict) -> str:
    """The markdown line of a run's summary about the seats offboarding gave back."""
    return (
        f"- seats reclaimed: **{facts['seats_reclaimed']}** from {facts['people_offboarded']} "
        f"people; monthly cost recovered: **{recovered_text(facts)}**"
    )


def summary(
    result: people.RosterResult,
    offboarded: tuple[pd.DataFrame, int],
    on_leave: pd.DataFrame,
    gaps: pd.DataFrame,
    today: dt.date,
) -> dict:
    return {
        "today": today.isoformat(),
        "files": result.files,
        "created": len(result.created),
        "updated": len(result.updated),
        "status_changes": len(result.status_changes),
        "newly_terminated": [p.employee_id for p in result.newly_terminated],
        "missing": [p.employee_id for p in result.missing],
        "on_leave": [p.employee_id for p in result.on_leave],
        "mass_termination_confirmed": result.mass_termination_confirmed,
        **offboarding_facts(offboarded),
        "on_leave_with_seats": len(on_leave),
        "ownership_gaps": len(gaps),
        "new_ownership_alerts": int(gaps["new_alert"].sum()) if len(gaps) else 0,
    }


def _cell(value) -> str:
    return (
        ""
        if value is None or (not isinstance(value, str) and pd.isna(value))
        else (str(value).replace("|", "\\|").replace("\n", " "))
    )


def _people(refs: list[people.PersonRef]) -> str:
    shown = ", ".join(f"{_cell(p.full_name)} ({p.employee_id})" for p in refs[:SHOWN])
    more = f" and {len(refs) - SHOWN} more" if len(refs) > SHOWN else ""
    return (shown + more) or "none"


def summary_markdown(
    facts: dict,
    result: people.RosterResult,
    on_leave: pd.DataFrame,
    gaps: pd.DataFrame,
) -> str:
    lines = [
        f"# HR sync, {facts['today']}",
        "",
        f"- roster files applied: {', '.join(facts['files']) or 'none new'}",
        f"- people created / updated: **{facts['created']} / {facts['updated']}**; "
        f"status changes: **{facts['status_changes']}**",
        f"- newly terminated: **{len(result.newly_terminated)}**: "
        f"{_people(result.newly_terminated)}",
        f"- on leave (seats kept, flagged): **{len(result.on_leave)}**: {_people(result.on_leave)}",
        f"- missing from the roster (not terminated; check the export): "
        f"**{len(result.missing)}**: {_people(result.missing)}",
        offboarding_line(facts),
        f"- ownership gaps: **{facts['ownership_gaps']}** "
        f"({facts['new_ownership_alerts']} new alerts)",
    ]
    if facts["mass_termination_confirmed"]:
        lines.append("- the mass-termination guard was overridden by confirmation (audit-logged)")
    if result.status_changes:
        lines += ["", "## Status changes", "", "| employee | email | from | to | effective |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for c in result.status_changes[:SHOWN]:
            lines.append(
                f"| {c.employee_id} | {_cell(c.email)} | {c.old_status} | {c.new_status} | "
                f"{c.effective_date} |"
            )
    if len(on_leave):
        lines += ["", "## On leave, holding seats", "", "| employee | name | since | seats |"]
        lines.append("| --- | --- | --- | ---: |")
        for r in on_leave.head(SHOWN).itertuples(index=False):
            lines.append(
                f"| {r.employee_id} | {_cell(r.full_name)} | {_cell(r.since)} | {r.seats_held} |"
            )
    if len(gaps):
        lines += ["", "## Ownership gaps", "", "| contract | product | gap | owner | suggested |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for g in gaps.head(SHOWN).itertuples(index=False):
            lines.append(
                f"| {_cell(g.contract_number)} | {_cell(g.product_code)} | {g.gap} | "
                f"{_cell(g.owner_email)} | {_cell(g.suggested_owner)} |"
            )
    return "\n".join(lines) + "\n"


def publish_reclaimed(key: str, reclaimed: pd.DataFrame) -> None:
    """The reclaimed seats per product as a table artifact (with a TOTAL row per currency)."""
    create_table_artifact(
        key=key,
        table=reclaimed_table(reclaimed),
        description="Seats reclaimed from terminated people, per product, with the monthly "
        "cost recovered (unit cost per seat per year of the contract in force / 12)",
    )


def reclaimed_table(reclaimed: pd.DataFrame) -> list[dict]:
    rows = [
        {
            "product": r.product_code,
            "name": r.product_name,
            "seats reclaimed": int(r.seats_reclaimed),
            "unit cost per year": str(r.unit_cost),
            "currency": r.currency,
            "monthly cost recovered": str(r.monthly_cost_recovered),
        }
        for r in reclaimed.itertuples(index=False)
    ]
    for currency, amount in offboarding.total_recovered(reclaimed).items():
        rows.append(
            {
                "product": "TOTAL",
                "name": "",
                "seats reclaimed": int(reclaimed.loc[reclaimed["currency"] == currency,
                                                     "seats_reclaimed"].sum()),
                "unit cost per year": "",
                "currency": currency,
                "monthly cost recovered": str(amount.quantize(Decimal("0.01"))),
            }
        )  # fmt: skip
    return rows


@task(cache_policy=NO_CACHE)
def publish_hr_sync(
    results: list[people.RosterResult],
    offboarded: tuple[pd.DataFrame, int],
    on_leave: pd.DataFrame,
    gaps: pd.DataFrame,
    today: dt.date,
) -> dict:
    result = people.RosterResult.combine(results)
    facts = summary(result, offboarded, on_leave, gaps, today)
    create_markdown_artifact(
        key="hr-sync-summary",
        markdown=summary_markdown(facts, result, on_leave, gaps),
        description="HR sync: people, terminations, reclaimed seats, ownership",
    )
    publish_reclaimed("hr-sync-reclaimed-seats", offboarded[0])
    create_table_artifact(
        key="hr-sync-ownership-gaps",
        table=[
            {k: _cell(v) for k, v in g.items()}
            for g in gaps.drop(columns=["end_date"]).to_dict("records")
        ],
        description="Contracts whose owner is missing, unknown, terminated or on leave",
    )
    return facts
