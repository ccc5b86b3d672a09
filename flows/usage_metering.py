"""Daily usage metering (lifecycle stage 5): who used what, and which seats come back."""

from __future__ import annotations

import datetime as dt

from prefect import flow, unmapped

from licenseflow.errors import InputRejected, RowError
from licenseflow.scale_out import ScaleOutTaskRunner
from licenseflow.settings import get_settings
from tasks.metering import (
    apply_usage_file,
    auto_reclaim_unanswered,
    close_mapped_app_alerts,
    detect_reclaim_candidates,
    load_usage_resolver,
    meter_usage_file,
    notify_reclaim_candidates,
    publish_usage_report,
    raise_usage_alerts,
    usage_files,
)


@flow(name="usage-metering", log_prints=True, task_runner=ScaleOutTaskRunner())
def usage_metering(files: list[str] | None = None, now: str | None = None) -> dict:
    """Meter new usage files from the drop folders (or `files`), each once and in its own
    transaction; raise the usage alerts; find the seats nobody uses, tell their holders, and
    reclaim the unanswered ones when auto-reclaim is on.

    `now` (ISO 8601, UTC) replaces the clock, for replays and tests. A refused file does not
    stop the others; the run fails at the end, after its report, naming it. Files are read
    in parallel (on Dask when SLM_DASK_ADDRESS is set) and written one at a time.
    """
    moment = dt.datetime.fromisoformat(now) if now else dt.datetime.now(dt.UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    # meter: raw files in, daily aggregates and peaks out
    resolver = load_usage_resolver()
    found = usage_files(files)
    metered = meter_usage_file.map(found, unmapped(resolver), get_settings().reject_threshold)
    reports = [apply_usage_file(item, moment) for item in metered]  # in order, one at a time
    close_mapped_app_alerts(resolver, moment)

    # act on it: alerts, then reclaim candidates (detect, notify, auto-reclaim)
    alerts = raise_usage_alerts(reports, moment)
    detection = detect_reclaim_candidates(moment)
    notified = notify_reclaim_candidates(moment)
    reclaimed = auto_reclaim_unanswered(moment)

    summary = publish_usage_report(reports, alerts, detection, notified, reclaimed)
    refused = [r for r in reports if r.status == "rejected"]
    if refused:
        errors = [e for r in refused for e in r.errors] or [
            RowError(r.file, None, None, None, r.message) for r in refused
        ]
        names = ", ".join(r.file for r in refused)
        raise InputRejected(names, errors, f"{len(refused)} usage file(s) refused: {names}")
    return summary
