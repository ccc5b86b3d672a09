"""The weekly reconciliation's Prefect tasks (thin: each opens its own unit of work) and what
a run leaves in the Prefect UI: the summary, products in shortfall with their true-up cost,
reclaimable seats with the savings, drift since the last run, chargeback per cost center
and the data-quality summary.

The report builders are plain functions over the position (testable without Prefect).
Amounts in different currencies are never added together.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from licenseflow.db import read_only, unit_of_work

ARTIFACT_KEYS = (
    "reconciliation-summary",
    "reconciliation-shortfalls",
    "reconciliation-reclaimable",
    "reconciliation-drift",
    "reconciliation-chargeback",
    "reconciliation-data-quality",
)
DOCS_LINK_KEY = "reconciliation-data-docs"
LISTED = 200  # rows per table artifact (the biggest amounts first)


@dataclass
class Reconciliation:
    day: dt.date
    position: pd.DataFrame  # tasks.reconciliation.POSITION_COLUMNS
    chargeback: pd.DataFrame  # tasks.reconciliation.CHARGEBACK_COLUMNS, by cost center


# --- report builders (pure) ------------------------------------------------------------------


def money_by_currency(frame: pd.DataFrame, amount: str) -> dict[str, float]:
    """Sum of `amount` per currency (rows without a currency or amount are left out)."""
    priced = frame[frame[amount].notna() & frame["currency"].notna() & (frame[amount] != 0)]
    totals = priced.groupby("currency")[amount].sum().round(2)
    return {str(k): float(v) for k, v in totals.items()}


def _money(totals: dict[str, float]) -> str:
    return ", ".join(f"{v:,.2f} {k}" for k, v in sorted(totals.items())) or "0"


def shortfall_rows(position: pd.DataFrame) -> list[dict]:
    short = position[position["shortfall"] > 0].sort_values(
        ["true_up_cost", "shortfall"], ascending=False, na_position="last"
    )
    return [
        {
            "product": r["product_code"],
            "name": r["product_name"],
            "metric": r["metric"],
            "entitled": _int(r["entitled"]),
            "consumed": int(r["consumed"]),
            "shortfall": int(r["shortfall"]),
            "unit cost": _amount(r["unit_cost"]),
            "currency": r["currency"] or "",
            "true-up cost": _amount(r["true_up_cost"]),
        }
        for r in short.head(LISTED).to_dict("records")
    ]


def reclaimable_rows(position: pd.DataFrame) -> list[dict]:
    found = position[position["reclaimable"] > 0].sort_values(
        ["waste", "reclaimable"], ascending=False, na_position="last"
    )
    return [
        {
            "product": r["product_code"],
            "name": r["product_name"],
            "metric": r["metric"],
            "assigned": int(r["assigned"]),
            "active": int(r["active"]),
            "reclaimable": int(r["reclaimable"]),
            "unit cost": _amount(r["unit_cost"]),
            "currency": r["currency"] or "",
            "savings per year": _amount(r["waste"]),
        }
        for r in found.head(LISTED).to_dict("records")
    ]


def chargeback_rows(chargeback: pd.DataFrame) -> list[dict]:
    """Per cost center and currency: seats consumed and their cost."""
    if chargeback.empty:
        return []
    totals = (
        chargeback.assign(currency=chargeback["currency"].fillna(""))
        .groupby(["group", "currency"], as_index=False)[["consumed", "cost"]]
        .sum()
        .sort_values(["cost", "group"], ascending=[False, True])
    )
    return [
        {
            "cost center": r["group"],
            "seats": round(float(r["consumed"]), 2),
            "cost per year": _amount(r["cost"]),
            "currency": r["currency"],
        }
        for r in totals.head(LISTED).to_dict("records")
    ]


def drift_markdown(drift: pd.DataFrame, previous_key: str | None, previous_day) -> str:
    lines = ["# Drift since the last reconciliation", ""]
    if previous_key is None:
        lines.append("First reconciliation: nothing to compare with yet (this one is stored).")
        return "\n".join(lines)
    lines.append(f"Compared with run `{previous_key}` (position on {previous_day}).")
    lines.append("")
    if drift.empty:
        lines.append("No change beyond the thresholds.")
        return "\n".join(lines)
    words = {
        "new_shortfall": "new shortfall",
        "shortfall_grown": "shortfall grown",
        "surplus_grown": "surplus grown",
        "installs_jumped": "installs jumped",
    }
    lines += ["| product | change | before | after | delta |", "| --- | --- | ---: | ---: | ---: |"]
    for r in drift.to_dict("records"):
        lines.append(
            f"| {r['product_code']} | {words.get(r['change'], r['change'])} | {r['before']} | "
            f"{r['after']} | +{r['delta']} |"
        )
    return "\n".join(lines)


def run_summary(
    result: Reconciliation,
    drift: pd.DataFrame,
    previous_key: str | None,
    quality: dict,
    run_key: str,
) -> dict:
    """The run as plain values (the flow's return value)."""
    position = result.position
    return {
        "day": result.day.isoformat(),
        "run_key": run_key,
        "products": len(position),
        "shortfalls": int((position["shortfall"] > 0).sum()),
        "shortfall_seats": int(position["shortfall"].sum()),
        "true_up_cost": money_by_currency(position, "true_up_cost"),
        "surpluses": int((position["surplus"] > 0).sum()),
        "reclaimable": int(position["reclaimable"].sum()),
        "waste": money_by_currency(position, "waste"),
        "cores_unknown": int(position["cores_unknown"].sum()),
        "previous_run": previous_key,
        "drift": drift.to_dict("records"),
        "data_quality": {
            "success": quality.get("success"),
            "failed": quality.get("failed"),
            "checks": len(quality.get("checks", [])),
            "data_docs": quality.get("data_docs"),
            "error": quality.get("error"),
        },
    }


def summary_markdown(summary: dict) -> str:
    quality = summary["data_quality"]
    if quality["error"]:
        verdict = f"could not run ({quality['error']})"
    elif quality["success"]:
        verdict = f"all {quality['checks']} expectations met"
    else:
        verdict = f"**{quality['failed']} of {quality['checks']} expectations failed**"
    return "\n".join(
        [
            f"# Weekly reconciliation: license position on {summary['day']}",
            "",
            f"- products reconciled: **{summary['products']}**",
            f"- in shortfall (under-licensed): **{summary['shortfalls']}** products, "
            f"{summary['shortfall_seats']} seats; true-up cost "
            f"**{_money(summary['true_up_cost'])}** a year",
            f"- in surplus (over-licensed): {summary['surpluses']} products",
            f"- reclaimable seats: **{summary['reclaimable']}**, savings "
            f"**{_money(summary['waste'])}** a year",
            f"- drift since the last run: {len(summary['drift'])} change(s) beyond the "
            "thresholds" + ("" if summary["previous_run"] else " (first run)"),
            f"- data quality: {verdict}",
            f"- per_core devices of unknown core count: {summary['cores_unknown']}",
            f"- snapshot stored as run `{summary['run_key']}`",
        ]
    )


def _int(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _amount(value) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.2f}"


# --- Prefect tasks ---------------------------------------------------------------------------


@task(name="compute-license-position", cache_policy=NO_CACHE)
def compute_position_task(day: dt.date) -> Reconciliation:
    """The license position on `day` and its chargeback per cost center (one read of the
    store's facts)."""
    from tasks.reconciliation import (
        chargeback_frame,
        consumers,
        license_position,
        rules_from_settings,
    )
    from tasks.reconciliation_store import read_facts

    rules = rules_from_settings()
    with read_only() as session:  # a consistent snapshot; the daily flows keep writing
        facts = read_facts(session, day, rules)
    found = consumers(facts, rules)  # once, for the position and the chargeback
    position = license_position(facts, rules, found)
    charged = chargeback_frame(facts, position, "cost_center", rules, found)
    get_run_logger().info(
        "position on %s: %d products, %d in shortfall",
        day,
        len(position),
        int((position["shortfall"] > 0).sum()),
    )
    return Reconciliation(day, position, charged)


@task(name="snapshot-and-drift", cache_policy=NO_CACHE)
def snapshot_task(
    result: Reconciliation, now: dt.datetime
) -> tuple[str, pd.DataFrame, str | None, str | None]:
    """Compare with the last snapshot, then store this run's: (run_key, drift, previous run
    key, previous as-of date)."""
    from prefect.runtime import flow_run

    from licenseflow.settings import get_settings
    from tasks.reconciliation import DriftThresholds, drift
    from tasks.reconciliation_store import previous_snapshot, write_snapshot

    settings = get_settings()
    run_key = str(flow_run.id or now.isoformat())
    thresholds = DriftThresholds(settings.drift_min_change, settings.drift_min_share)
    with unit_of_work() as session:
        previous = previous_snapshot(session, run_key, result.day)
        write_snapshot(session, run_key, result.day, now, result.position)
    if previous.empty:
        return run_key, drift(previous, result.position, thresholds), None, None
    key, day = previous["run_key"].iloc[0], previous["as_of"].iloc[0]
    return run_key, drift(previous, result.position, thresholds), key, str(day)


@task(name="data-quality", cache_policy=NO_CACHE)
def data_quality_task(day: dt.date) -> dict:
    """The Great Expectations suite over the store; never fails the run."""
    from licenseflow.settings import get_settings
    from tasks.data_quality import Thresholds, failed_summary, run_data_quality

    settings = get_settings()
    reports = settings.path("reports_dir")
    thresholds = Thresholds(settings.dq_min_recognition_rate, settings.dq_stale_device_days)
    try:
        with read_only() as session:
            return run_data_quality(session, day, reports, thresholds)
    except Exception as error:  # noqa: BLE001 - the store could not even be read
        return failed_summary(day, error, reports)


@task(name="publish-reconciliation", cache_policy=NO_CACHE)
def publish_task(result: Reconciliation, snapshot: tuple, quality: dict) -> dict:
    """The run's artifacts (ARTIFACT_KEYS, plus a link to the Data Docs); returns the run's
    summary as plain values."""
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    from tasks.data_quality import summary_markdown as quality_markdown

    run_key, drift, previous_key, previous_day = snapshot
    summary = run_summary(result, drift, previous_key, quality, run_key)
    create_markdown_artifact(
        key="reconciliation-summary",
        markdown=summary_markdown(summary),
        description=f"License position on {result.day}",
    )
    create_table_artifact(
        key="reconciliation-shortfalls",
        table=shortfall_rows(result.position) or [{"product": "(no product in shortfall)"}],
        description="Products under-licensed: shortfall and true-up cost per year",
    )
    create_table_artifact(
        key="reconciliation-reclaimable",
        table=reclaimable_rows(result.position) or [{"product": "(no reclaimable seats)"}],
        description="Seats assigned but unused or held by people who left: savings per year",
    )
    create_markdown_artifact(
        key="reconciliation-drift",
        markdown=drift_markdown(drift, previous_key, previous_day),
        description="What changed since the last reconciliation beyond the thresholds",
    )
    create_table_artifact(
        key="reconciliation-chargeback",
        table=chargeback_rows(result.chargeback) or [{"cost center": "(nothing consumed)"}],
        description="License cost per cost center (seats consumed x unit cost)",
    )
    create_markdown_artifact(
        key="reconciliation-data-quality",
        markdown=quality_markdown(quality),
        description="Great Expectations suite over the store",
    )
    if quality.get("data_docs"):
        create_link_artifact(
            key=DOCS_LINK_KEY,
            link=f"file://{quality['data_docs']}",
            link_text="Data Docs (Great Expectations)",
            description="The data-quality results as HTML",
        )
    return summary
