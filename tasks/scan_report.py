"""What a discovery scan leaves in the Prefect UI: a summary and the top unlicensed products."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.discovery import Delta

TOP_FLAGS = 20


def scan_summary(checked, deltas: list[Delta], new_codes: list[str], rate: float | None) -> dict:
    total = sum(deltas, Delta())
    return {
        "files": [
            {
                "file": str(item.path),
                "format": item.fmt,
                "rows_read": item.rows_read,
                "rows_accepted": len(item.staged.installs),
                "rows_rejected": len({e.row for e in item.errors}),
                "new": delta.new,
                "changed": delta.changed,
                "removed": delta.removed,
            }
            for item, delta in zip(checked, deltas, strict=True)
        ],
        "new": total.new,
        "changed": total.changed,
        "removed": total.removed,
        "devices_new": total.devices_new,
        "recognition_rate": rate,
        "new_unlicensed": new_codes,
    }


def summary_markdown(summary: dict, flags: pd.DataFrame) -> str:
    rate = summary["recognition_rate"]
    lines = [
        "# Daily discovery scan",
        "",
        f"- files applied: **{len(summary['files'])}**",
        f"- installations new / changed / removed: **{summary['new']} / {summary['changed']}"
        f" / {summary['removed']}**; new devices: {summary['devices_new']}",
        f"- recognition rate of installed titles: **{'n/a' if rate is None else f'{rate:.1%}'}**",
        f"- products flagged unlicensed or unauthorised: **{len(flags)}**"
        f" (new today: {', '.join(summary['new_unlicensed']) or 'none'})",
        "",
        "| file | format | rows read | accepted | rejected | new | changed | removed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in summary["files"]:
        lines.append(
            f"| {f['file']} | {f['format']} | {f['rows_read']} | {f['rows_accepted']} | "
            f"{f['rows_rejected']} | {f['new']} | {f['changed']} | {f['removed']} |"
        )
    if not summary["files"]:
        lines.append("| (no new files in the drop folders) | | | | | | | |")
    return "\n".join(lines)


@task(cache_policy=NO_CACHE)
def publish_scan_report(checked, deltas, flags: pd.DataFrame, new_codes, rate) -> dict:
    summary = scan_summary(checked, deltas, new_codes, rate)
    create_markdown_artifact(
        summary_markdown(summary, flags), key="discovery-scan-summary", description="Daily scan"
    )
    top = [
        {
            "product": row.product_name,
            "vendor": row.vendor,
            "flag": row.kind,
            "installed devices": int(row.installed_devices),
            "excess installs": int(row.excess),
            "reason": row.reason,
        }
        for row in flags.head(TOP_FLAGS).itertuples(index=False)
    ]
    create_table_artifact(
        top or [{"product": "none", "flag": "no unlicensed or unauthorised installs"}],
        key="discovery-unlicensed-products",
        description="Top unlicensed and unauthorised products",
    )
    return summary
