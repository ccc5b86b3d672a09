"""The owners' calendar: an iCalendar (.ics) file with one all-day event per upcoming
renewal deadline (data/reports/renewals.ics), for Outlook, Google Calendar or Apple
Calendar to subscribe to or import.

Each event's UID is stable per contract and deadline, so re-importing the file updates the
events instead of doubling them, and a moved deadline is a new event. An auto-renewing
contract's event is its notice deadline (the day to cancel by), said in the summary. Each
event carries a reminder a week ahead.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import icalendar
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from licenseflow.db import unit_of_work
from licenseflow.settings import get_settings
from tasks.renewals import upcoming_deadlines

FILE_NAME = "renewals.ics"
PRODID = "-//licenseflow//renewal deadlines//EN"
REMINDER = dt.timedelta(days=7)
_UID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def event_uid(contract_number: str, deadline: dt.date) -> str:
    safe = _UID_UNSAFE.sub("-", contract_number).strip("-") or "contract"
    return f"renewal-{safe}-{deadline.isoformat()}@licenseflow"


def event_summary(row: dict) -> str:
    product = row["product_name"] or row["product_code"]
    if row["auto_renew"] and row["notice_days"]:
        return (
            f"Notice deadline: {product} contract {row['contract_number']} "
            f"(auto-renews {row['end_date']} unless cancelled)"
        )
    return f"Renewal deadline: {product} contract {row['contract_number']} ends {row['end_date']}"


def _description(row: dict) -> str:
    seats = "site license" if pd.isna(row["seats"]) else f"{int(row['seats'])} seats"
    lines = [
        f"Product: {row['product_name']} ({row['product_code']})",
        f"Contract: {row['contract_number']}, {seats}, {row['unit_cost']} {row['currency']} "
        "per seat per year",
        f"Term ends: {row['end_date']}",
    ]
    if row["auto_renew"]:
        lines.append(
            f"Renews itself unless cancelled {row['notice_days']} days before the end: "
            f"act by {row['deadline']}"
        )
    lines.append(f"Owner: {row['owner_email'] or '(none)'}")
    lines.append("Seat recommendation: slm renewals --within 90")
    return "\n".join(lines)


def build_calendar(deadlines: pd.DataFrame, now: dt.datetime) -> icalendar.Calendar:
    """deadlines: tasks.renewals.DEADLINE_COLUMNS rows."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", "License renewal deadlines")
    for row in deadlines.to_dict("records"):
        deadline = row["deadline"]
        event = icalendar.Event()
        event.add("uid", event_uid(row["contract_number"], deadline))
        event.add("dtstamp", now)
        event.add("dtstart", deadline)
        event.add("dtend", deadline + dt.timedelta(days=1))
        event.add("summary", event_summary(row))
        event.add("description", _description(row))
        event.add("categories", ["license renewal"])
        event.add("transp", "TRANSPARENT")
        if isinstance(row["owner_email"], str) and row["owner_email"]:
            event.add("x-licenseflow-owner", row["owner_email"])
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", event_summary(row))
        alarm.add("trigger", -REMINDER)
        event.add_component(alarm)
        calendar.add_component(event)
    return calendar


def write_ics(deadlines: pd.DataFrame, path: Path, now: dt.datetime) -> Path:
    """Write the calendar atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(build_calendar(deadlines, now).to_ical())
    os.replace(partial, path)
    return path


def calendar_path() -> Path:
    return get_settings().path("reports_dir") / FILE_NAME


@task(name="export-renewals-calendar", cache_policy=NO_CACHE)
def export_calendar_task(today: dt.date, now: dt.datetime) -> str:
    """data/reports/renewals.ics with every upcoming deadline; returns its path."""
    with unit_of_work() as session:
        deadlines = upcoming_deadlines(session, today)
    path = write_ics(deadlines, calendar_path(), now)
    get_run_logger().info(f"{len(deadlines)} upcoming renewal deadline(s) written to {path}")
    return str(path)
