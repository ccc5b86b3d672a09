"""Stage 6, data quality: a Great Expectations suite over the store, run by the weekly
reconciliation. Its results (JSON) and Data Docs (HTML) go to <reports>/data_quality/; a
failed expectation is reported, never raised: it fails nothing else.

The checks (each a frame read from the store with one set-based query, validated by GE):
- open_seats: every open seat points to a person who is active or on leave (not terminated,
  not unknown) or to a device the store knows;
- contracts: seats positive where a contract has a seat count (site licenses have none);
  unit cost not negative; the end date on or after the start date (the contracts feed's rule);
- current_contracts (in force or still to come): every contract has an owner;
- recognition: per install source, the share of present installations recognised as a
  catalog product is at least dq_min_recognition_rate (0.80);
- installed_devices: no orphan installs - every present installation is on a device seen by
  discovery within dq_stale_device_days (30) of the date (that the device exists at all is
  the store's foreign key);
- per_core_devices: every device with a per_core product installed has a core count (else
  the position counts default_cores_per_device for it).

Great Expectations takes seconds to import: it is imported here only inside `validate`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

SUITE_PREFIX = "licenseflow"
FOLDER = "data_quality"
LATEST = "latest.json"
HOLDER_OK = ["active", "leave", "known device"]
EXAMPLES = 10  # unexpected values listed per failed expectation
LABELS = {  # the column that names a row of each check in examples
    "open_seats": "holder",
    "contracts": "contract_number",
    "current_contracts": "contract_number",
    "recognition": "source",
    "installed_devices": "hostname",
    "per_core_devices": "hostname",
}


@dataclass(frozen=True)
class Thresholds:
    min_recognition_rate: float = 0.80
    stale_device_days: int = 30


CHECKS = {
    "open_seats": "every open seat points to an active (or on leave) person or a known device",
    "contracts": "seats positive, unit cost not negative, end date on or after start date",
    "current_contracts": "every contract in force or to come has an owner",
    "recognition": "installations recognised as catalog products, per source",
    "installed_devices": "no orphan installs: every device with installs recently seen",
    "per_core_devices": "devices with a per_core product have a core count",
}


# --- the frames (IO: set-based queries, read through the DBAPI cursor) ---------------------


def quality_frames(session: Session, day: dt.date) -> dict[str, pd.DataFrame]:
    """The store's data as the checks see it on `day` (today's state of the store)."""
    from tasks.reconciliation_store import fetch_frame

    open_seats = fetch_frame(
        session,
        """
        SELECT a.id, p.code, COALESCE(pe.email, d.hostname),
               CASE WHEN a.person_id IS NOT NULL THEN COALESCE(pe.status, 'unknown person')
                    WHEN d.id IS NOT NULL THEN 'known device'
                    ELSE 'unknown device' END
        FROM assignment a
        JOIN product p ON p.id = a.product_id
        LEFT JOIN person pe ON pe.id = a.person_id
        LEFT JOIN device d ON d.id = a.device_id
        WHERE a.revoked_at IS NULL
        """,
        ["assignment_id", "product_code", "holder", "holder_state"],
    )
    contracts = fetch_frame(
        session,
        """
        SELECT c.contract_number, p.code, c.owner_email, c.seats, c.unit_cost, c.start_date,
               c.end_date
        FROM contract c JOIN product p ON p.id = c.product_id
        """,
        [
            "contract_number",
            "product_code",
            "owner_email",
            "seats",
            "unit_cost",
            "start_date",
            "end_date",
        ],
    )
    contracts["seats"] = pd.to_numeric(contracts["seats"].astype(object)).astype("Float64")
    contracts["unit_cost"] = pd.to_numeric(contracts["unit_cost"].astype(object)).astype("float64")
    for column in ("start_date", "end_date"):
        contracts[column] = pd.to_datetime(contracts[column].astype("string").str.slice(0, 10))
    owner = contracts["owner_email"].astype("string").str.strip()
    contracts["owner_email"] = owner.where(owner != "", None)
    current = contracts[contracts["end_date"] >= pd.Timestamp(day)].reset_index(drop=True)

    # recognition: one pass over the installations, a handful of groups
    recognition = fetch_frame(
        session,
        """
        SELECT source, COUNT(*), COUNT(product_id) FROM installation
        WHERE removed_at IS NULL GROUP BY source
        """,
        ["source", "installs", "recognised"],
    )
    recognition["recognition_rate"] = (
        recognition["recognised"] / recognition["installs"].where(recognition["installs"] > 0)
    ).astype("float64")

    # orphan installs, per device: one index probe per device ("has it a present install?");
    # the store's foreign key already guarantees every installation's device exists
    installed_devices = fetch_frame(
        session,
        """
        SELECT d.id, d.hostname, d.last_seen FROM device d
        WHERE EXISTS (SELECT 1 FROM installation i
                      WHERE i.device_id = d.id AND i.removed_at IS NULL)
        """,
        ["device_id", "hostname", "last_seen"],
    )
    seen = pd.to_datetime(installed_devices["last_seen"], utc=True, format="ISO8601")
    unseen = pd.Timestamp(day) - seen.dt.tz_localize(None).dt.normalize()
    installed_devices["days_unseen"] = unseen.dt.days.astype("Float64")
    installed_devices = installed_devices.drop(columns=["last_seen"])

    # per_core: from the (few) per_core products to their installations (CROSS JOIN keeps
    # that order on SQLite; PostgreSQL plans it alike)
    per_core = fetch_frame(
        session,
        """
        SELECT DISTINCT d.hostname, p.code, d.cores
        FROM product p CROSS JOIN installation i
        LEFT JOIN device d ON d.id = i.device_id
        WHERE i.product_id = p.id AND p.metric = 'per_core'
          AND p.classification = 'commercial' AND i.removed_at IS NULL
        """,
        ["hostname", "product_code", "cores"],
    )
    per_core["cores"] = pd.to_numeric(per_core["cores"].astype(object)).astype("Float64")
    per_core = per_core.sort_values(["hostname", "product_code"])
    return {
        "open_seats": open_seats,
        "contracts": contracts,
        "current_contracts": current,
        "recognition": recognition,
        "installed_devices": installed_devices,
        "per_core_devices": per_core.reset_index(drop=True),
    }


# --- the suite (Great Expectations, imported lazily) ----------------------------------------


def expectations(thresholds: Thresholds) -> dict[str, list]:
    """Each check's GE expectations."""
    import great_expectations.expectations as gxe

    return {
        "open_seats": [
            gxe.ExpectColumnValuesToNotBeNull(column="holder"),
            gxe.ExpectColumnValuesToBeInSet(column="holder_state", value_set=HOLDER_OK),
        ],
        "contracts": [
            gxe.ExpectColumnValuesToBeBetween(column="seats", min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="unit_cost", min_value=0),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="end_date", column_B="start_date", or_equal=True
            ),
        ],
        "current_contracts": [gxe.ExpectColumnValuesToNotBeNull(column="owner_email")],
        "recognition": [
            gxe.ExpectColumnValuesToBeBetween(
                column="recognition_rate", min_value=thresholds.min_recognition_rate
            )
        ],
        "installed_devices": [
            gxe.ExpectColumnValuesToBeBetween(
                column="days_unseen", max_value=thresholds.stale_device_days
            ),
        ],
        "per_core_devices": [gxe.ExpectColumnValuesToNotBeNull(column="cores")],
    }


def _context(root: Path):
    """A file-backed GE project under the reports folder, offline and quiet."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(root))
    bars = context.variables.progress_bars  # a config object, or a dict once saved
    on = bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)
    if on is not False:
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        context.config.analytics_enabled = False
        context.variables.save()
    return context


def validate(
    frames: dict[str, pd.DataFrame], reports_dir: Path, day: dt.date, thresholds: Thresholds
) -> dict:
    """Run the suite over the frames, store the results and rebuild the Data Docs; returns
    the summary (also written to <reports>/data_quality/latest.json and a dated copy)."""
    import great_expectations as gx

    root = Path(reports_dir) / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    context = _context(root)
    source = context.data_sources.add_or_update_pandas(name="licenseflow-store")
    checks = []
    for name, suite_expectations in expectations(thresholds).items():
        asset = source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(name=f"{name}-whole")
        suite = gx.ExpectationSuite(name=f"{SUITE_PREFIX}-{name}")
        for expectation in suite_expectations:
            suite.add_expectation(expectation)
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{SUITE_PREFIX}-{name}", data=batch, suite=suite)
        )
        frame = frames[name].reset_index(drop=True)
        result = definition.run(
            batch_parameters={"dataframe": frame}, result_format={"result_format": "SUMMARY"}
        )
        for outcome in result.results:
            checks.append(_outcome(name, frame, outcome))
    context.build_data_docs()
    site = root / "gx" / "uncommitted" / "data_docs" / "local_site"
    _untrack(site)
    docs = site / "index.html"
    summary = {
        "day": day.isoformat(),
        "success": all(c["success"] for c in checks),
        "checks": checks,
        "failed": sum(not c["success"] for c in checks),
        "data_docs": str(docs) if docs.exists() else None,
        "error": None,
    }
    write_summary(summary, reports_dir)
    return summary


def _untrack(site: Path) -> None:
    """GE's pages load its logo with the context id and time in the URL (a beacon when the
    page is opened online): keep the plain logo URL."""
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        clean = _LOGO_QUERY.sub(r"\1", html)
        if clean != html:
            page.write_text(clean, encoding="utf-8")


_LOGO_QUERY = re.compile(r"(logo-long\.png)\?[^\"']*")


def _outcome(check: str, frame: pd.DataFrame, outcome) -> dict:
    """One expectation's result as plain values; examples name the offending rows (the
    check's LABELS column, e.g. the contract number) with the value found."""
    config = outcome.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    result = outcome.result or {}
    values = (result.get("partial_unexpected_list") or [])[:EXAMPLES]
    where = (result.get("partial_unexpected_index_list") or [])[:EXAMPLES]
    label = LABELS.get(check)
    if label and len(where) == len(values) and all(i in frame.index for i in where):
        examples = [
            f"{_plain(frame.at[i, label])}: {_plain(v)}" for i, v in zip(where, values, strict=True)
        ]
    else:
        examples = [_plain(v) for v in values]
    if outcome.exception_info and outcome.exception_info.get("raised_exception"):
        examples = [str(outcome.exception_info.get("exception_message"))[:300]]
    return {
        "check": check,
        "expectation": config.type,
        "kwargs": {k: _plain(v) for k, v in kwargs.items()},
        "success": bool(outcome.success),
        "rows": len(frame),
        "unexpected": int(result.get("unexpected_count") or 0),
        "examples": examples,
    }


def _plain(value):
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return None if isinstance(value, float) and pd.isna(value) else value
    if hasattr(value, "item"):
        try:
            return _plain(value.item())
        except (ValueError, TypeError):
            pass
    return str(value)


def failed_summary(day: dt.date, error: Exception, reports_dir: Path) -> dict:
    """The suite could not run at all: say so, the same shape, and keep it as the latest."""
    summary = {
        "day": day.isoformat(),
        "success": False,
        "checks": [],
        "failed": 0,
        "data_docs": None,
        "error": f"{type(error).__name__}: {error}",
    }
    with contextlib.suppress(OSError):  # the run's artifacts still say what happened
        write_summary(summary, reports_dir)
    return summary


def write_summary(summary: dict, reports_dir: Path) -> Path:
    root = Path(reports_dir) / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, default=str)
    (root / f"summary_{summary['day']}.json").write_text(text, encoding="utf-8")
    latest = root / LATEST
    latest.write_text(text, encoding="utf-8")
    return latest


def latest_data_quality(reports_dir: Path | str | None = None) -> dict | None:
    """The last data-quality summary written (None if the suite never ran): day, success,
    failed, checks [{check, expectation, kwargs, success, rows, unexpected, examples}],
    data_docs (path of the HTML index), error."""
    if reports_dir is None:
        from licenseflow.settings import get_settings

        reports_dir = get_settings().path("reports_dir")
    latest = Path(reports_dir) / FOLDER / LATEST
    if not latest.is_file():
        return None
    return json.loads(latest.read_text(encoding="utf-8"))


def run_data_quality(
    session: Session, day: dt.date, reports_dir: Path, thresholds: Thresholds
) -> dict:
    """Read the frames and validate them; never raises (a broken suite is a failed summary)."""
    try:
        frames = quality_frames(session, day)
        return validate(frames, reports_dir, day, thresholds)
    except Exception as error:  # noqa: BLE001 - data quality must fail nothing else
        return failed_summary(day, error, reports_dir)


def summary_markdown(summary: dict) -> str:
    """The data-quality section of the run's artifacts."""
    if summary.get("error"):
        return f"# Data quality\n\nThe suite could not run: `{summary['error']}`"
    verdict = "all expectations met" if summary["success"] else f"{summary['failed']} failed"
    lines = [
        "# Data quality",
        "",
        f"- {len(summary['checks'])} expectations over the store on {summary['day']}: "
        f"**{verdict}**",
        f"- Data Docs: {summary['data_docs'] or 'not built'}",
        "",
        "| check | expectation | column(s) | rows | unexpected | result | examples |",
        "| --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for c in summary["checks"]:
        columns = ", ".join(
            str(c["kwargs"][k]) for k in ("column", "column_A", "column_B") if k in c["kwargs"]
        )
        examples = ", ".join(str(e) for e in c["examples"][:5]).replace("|", "/")
        lines.append(
            f"| {c['check']} | {c['expectation']} | {columns} | {c['rows']} | "
            f"{c['unexpected']} | {'ok' if c['success'] else '**FAILED**'} | {examples} |"
        )
    return "\n".join(lines)
