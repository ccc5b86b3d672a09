"""What the assignment_sync flow leaves in the Prefect UI: a markdown summary of each
assignment-state file (applied, skipped as already applied, or refused with the reason and its
first row errors) and of the seats the offboarding that follows took back, the reclaimed seats
per product; and the failure that makes a refused file visible."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from licenseflow.errors import LicenseflowError
from tasks.assignment_feeds import AssignmentsLoad
from tasks.hr_sync_tasks import offboarding_facts, offboarding_line, publish_reclaimed

ACTOR = "assignment-sync"
ERRORS_SHOWN = 5  # row errors of a refused file shown in the summary and the failure


class AssignmentFilesRefused(LicenseflowError):
    """Assignment-state files were refused, each as a whole (the run's other files loaded)."""

    def __init__(self, refused: list[dict]):
        self.refused = refused
        lines = [
            f"{len(refused)} assignment-state file(s) refused as a whole (nothing in them was "
            "applied; any other file was): fix the rows below and drop the corrected file again"
        ]
        for file in refused:
            lines.append(f"- {file['reason']}")
            lines += [f"    {error}" for error in file["errors"]]
        super().__init__("\n".join(lines))


def refusal(load: AssignmentsLoad) -> dict:
    """A refused file: its reason (first line, naming the file) and its first row errors."""
    reason, *errors = load.refused.split("\n")
    shown = [e.strip().removeprefix("- ") for e in errors[:ERRORS_SHOWN]]
    return {"file": load.file, "reason": reason, "errors": shown}


def summary(
    imports: list[AssignmentsLoad], offboarded: tuple[pd.DataFrame, int], today: dt.date
) -> dict:
    applied = [load for load in imports if not (load.refused or load.skipped_already_applied)]
    return {
        "today": today.isoformat(),
        "applied": [load.file for load in applied],
        "already_applied": [load.file for load in imports if load.skipped_already_applied],
        "refused": [refusal(load) for load in imports if load.refused],
        "seats_assigned": sum(load.assigned for load in applied),
        "seats_unchanged": sum(load.unchanged for load in applied),
        # "CODE: n owned, m in use" per product over capacity; a later file's count is newer
        "overrides": list(
            {o.split(":")[0]: o for load in applied for o in load.overrides}.values()
        ),
        # people HR says are gone who got seats from the files (offboarding takes them back)
        "terminated_holders": len({e for load in applied for e in load.terminated_holders}),
        **offboarding_facts(offboarded),
    }


def summary_markdown(facts: dict, imports: list[AssignmentsLoad]) -> str:
    overrides = "; ".join(facts["overrides"]) or "none"
    lines = [
        f"# Assignment sync, {facts['today']}",
        "",
        f"- files applied: **{len(facts['applied'])}**; skipped as already applied: "
        f"**{len(facts['already_applied'])}**; refused: **{len(facts['refused'])}**",
        f"- seats assigned: **{facts['seats_assigned']}**; already held, unchanged: "
        f"**{facts['seats_unchanged']}**",
        f'- over capacity, recorded with an override ("imported from" the file): {overrides}',
        f"- people already terminated given seats by the files: "
        f"**{facts['terminated_holders']}** (the offboarding below takes them back)",
        offboarding_line(facts),
        "",
        "## Files",
        "",
    ]
    lines += [f"- {load.summary()}" for load in imports] or ["- none pending"]
    for file in facts["refused"]:
        lines += ["", f"## Refused: {file['file']}", "", "The first row errors:", ""]
        lines += [f"- {error}" for error in file["errors"]]
    return "\n".join(lines) + "\n"


@task(cache_policy=NO_CACHE)
def publish_assignment_sync(
    imports: list[AssignmentsLoad], offboarded: tuple[pd.DataFrame, int], today: dt.date
) -> dict:
    facts = summary(imports, offboarded, today)
    create_markdown_artifact(
        key="assignment-sync-summary",
        markdown=summary_markdown(facts, imports),
        description="Assignment sync: files applied or refused, seats, offboarding",
    )
    publish_reclaimed("assignment-sync-reclaimed-seats", offboarded[0])
    return facts
