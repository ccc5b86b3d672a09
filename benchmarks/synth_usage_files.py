"""Step 6b: the usage events written as each tool exports them:

- usage/entra_signins.json: Microsoft Graph auditLogs/signIns ({"value": [...]}), newest
  first, the second half of the window;
- usage/entra_signins.csv: the Entra portal's sign-in CSV (UTF-8 with BOM), the first half;
- usage/okta_system_log.json: Okta System Log (a JSON array): user.authentication.sso
  events with their AppInstance and AppUser targets, plus session and MFA events;
- usage/canonical_usage.csv: user_email, product_code or app_name, activity_at,
  duration_minutes.
About 5% of sign-ins fail (non-zero errorCode, Okta FAILURE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.synth_common import (
    Company,
    guids,
    join,
    json_text,
    numbered,
    pick,
    stream,
    times_text,
    write_csv,
    write_text,
)
from benchmarks.synth_usage import APPS, GUEST

ENTRA_CSV_COLUMNS = [
    "Date (UTC)",
    "Request ID",
    "User agent",
    "Correlation ID",
    "User ID",
    "User",
    "Username",
    "User type",
    "Application",
    "Application ID",
    "Resource",
    "IP address",
    "Location",
    "Status",
    "Sign-in error code",
    "Failure reason",
]
CANONICAL_COLUMNS = ["user_email", "product_code", "app_name", "activity_at", "duration_minutes"]
# (error code, portal status, failure reason) of failed sign-ins
FAILURES = [
    (50126, "Failure", "Error validating credentials due to invalid username or password."),
    (50074, "Interrupted", "Strong Authentication is required."),
    (50140, "Interrupted",
     "This error occurred due to 'Keep me signed in' interrupt when the user was signing in."),
    (53003, "Failure", "Access has been blocked by Conditional Access policies."),
]  # fmt: skip
SUCCESS_REASON = "Other."
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
]
LOCATIONS = [("Zurich", "ZH", "CH"), ("Berlin", "BE", "DE"), ("London", "ENG", "GB"),
             ("New York", "NY", "US")]  # fmt: skip
OKTA_OTHER = [
    ("user.session.start", "User login to Okta"),
    ("user.authentication.auth_via_mfa", "Authentication of user via MFA"),
    ("policy.evaluate_sign_on", "Evaluation of sign-on policy"),
]


def _people_columns(people: pd.DataFrame) -> dict[str, pa.Array]:
    """Per-person text with the guest appended at index len(people)."""
    extra = {
        "email": GUEST,
        "full_name": "Guest Consultant",
        "object_id": "9b0f6a1e-7c2d-4e3f-8a9b-0c1d2e3f4a5b",
    }
    return {
        column: pa.concat_arrays([pa.array(people[column]).cast(pa.string()), pa.array([value])])
        for column, value in extra.items()
    }


def write_usage(company: Company, usage: pd.DataFrame, people: pd.DataFrame, out: Path) -> dict:
    """Write the four usage files; returns events per file."""
    rng = stream(company, "usage-files")
    who = _people_columns(people)
    channel = np.array([a.channel for a in APPS], dtype=object)[usage["app"].to_numpy()]
    split = (company.today - company.days / 2) * 86_400
    entra = usage[channel == "entra"]
    recent = entra["at"].to_numpy() >= split
    written = {}
    written[out / "usage" / "entra_signins.json"] = _entra_json(
        rng, entra[recent].iloc[::-1], who, out / "usage" / "entra_signins.json"
    )
    written[out / "usage" / "entra_signins.csv"] = _entra_csv(
        rng, entra[~recent].iloc[::-1], who, out / "usage" / "entra_signins.csv"
    )
    written[out / "usage" / "okta_system_log.json"] = _okta(
        rng, usage[channel == "okta"], who, out / "usage" / "okta_system_log.json"
    )
    written[out / "usage" / "canonical_usage.csv"] = _canonical(
        usage[channel == "canonical"], who, out / "usage" / "canonical_usage.csv"
    )
    return written


def _app_text(events: pd.DataFrame, field: str) -> pa.Array:
    values = pa.array([getattr(a, field) for a in APPS], type=pa.string())
    return values.take(pa.array(events["app"].to_numpy()))


def _failure(events: pd.DataFrame, rng) -> np.ndarray:
    """Per event: index into FAILURES, len(FAILURES) for a success."""
    kind = rng.integers(0, len(FAILURES), len(events))
    return np.where(events["failed"].to_numpy(), kind, len(FAILURES))


def _failure_text(failure: np.ndarray, field: int, success) -> pa.Array:
    return pick([str(f[field]) for f in FAILURES] + [success], failure)


def _ip(rng, n: int) -> pa.Array:
    octets = [pa.array(rng.integers(1, 255, n)).cast(pa.string()) for _ in range(2)]
    return join("198.51.", octets[0], ".", octets[1])


def _entra_json(rng, events: pd.DataFrame, who, path: Path) -> int:
    n = len(events)
    person = events["person"].to_numpy()
    failure = _failure(events, rng)
    city = rng.integers(0, len(LOCATIONS), n)
    records = join(
        '{"id":"',
        guids(rng, n),
        '","createdDateTime":"',
        times_text(events["at"].to_numpy()),
        '","userDisplayName":',
        json_text(pick(who["full_name"], person)),
        ',"userPrincipalName":"',
        pick(who["email"], person),
        '","userId":"',
        pick(who["object_id"], person),
        '","appId":"',
        _app_text(events, "app_id"),
        '","appDisplayName":"',
        _app_text(events, "name"),
        '","ipAddress":"',
        _ip(rng, n),
        '","status":{"errorCode":',
        _failure_text(failure, 0, "0"),
        ',"failureReason":',
        json_text(_failure_text(failure, 2, SUCCESS_REASON)),
        '},"location":{"city":"',
        pick([c[0] for c in LOCATIONS], city),
        '","countryOrRegion":"',
        pick([c[2] for c in LOCATIONS], city),
        '"}}',
    )
    separators = pc.if_else(pa.array(np.arange(n) < n - 1), ",\n", "\n")
    head = '{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",'
    write_text(path, join(records, separators), head=head + '"value":[\n', tail="]}\n")
    return n


def _entra_csv(rng, events: pd.DataFrame, who, path: Path) -> int:
    n = len(events)
    person = events["person"].to_numpy()
    failure = _failure(events, rng)
    city = rng.integers(0, len(LOCATIONS), n)
    location = [f"{c}, {s}, {k}" for c, s, k in LOCATIONS]
    columns = {
        "Date (UTC)": times_text(events["at"].to_numpy()),
        "Request ID": guids(rng, n),
        "User agent": pick(AGENTS, rng.integers(0, len(AGENTS), n)),
        "Correlation ID": guids(rng, n),
        "User ID": pick(who["object_id"], person),
        "User": pick(who["full_name"], person),
        "Username": pick(who["email"], person),
        "User type": pick(["Member", "Guest"], (person == len(who["email"]) - 1).astype(int)),
        "Application": _app_text(events, "name"),
        "Application ID": _app_text(events, "app_id"),
        "Resource": _app_text(events, "name"),
        "IP address": _ip(rng, n),
        "Location": pick(location, city),
        "Status": _failure_text(failure, 1, "Success"),
        "Sign-in error code": _failure_text(failure, 0, "0"),
        "Failure reason": _failure_text(failure, 2, SUCCESS_REASON),
    }
    return write_csv(path, columns, bom=True)


def _okta(rng, events: pd.DataFrame, who, path: Path) -> int:
    # SSO events, plus session / MFA events for ~30% of them (just before)
    extra = np.flatnonzero(rng.random(len(events)) < 0.3)
    kind = np.r_[np.full(len(events), -1), rng.integers(0, len(OKTA_OTHER), len(extra))]
    person = np.r_[events["person"].to_numpy(), events["person"].to_numpy()[extra]]
    at = np.r_[
        events["at"].to_numpy(), events["at"].to_numpy()[extra] - rng.integers(5, 60, len(extra))
    ]
    app = np.r_[events["app"].to_numpy(), events["app"].to_numpy()[extra]]
    failed = np.r_[
        events["failed"].to_numpy() & (rng.random(len(events)) < 0.6), np.zeros(len(extra), bool)
    ]
    order = np.argsort(at, kind="stable")
    kind, person, at, app, failed = kind[order], person[order], at[order], app[order], failed[order]
    n = len(order)
    sso = kind < 0
    email, name = pick(who["email"], person), json_text(pick(who["full_name"], person))
    app_names = pa.array([a.name for a in APPS], type=pa.string()).take(pa.array(app))
    labels = pa.array([a.app_id for a in APPS], type=pa.string()).take(pa.array(app))
    event_type = pick(["user.authentication.sso"] + [k for k, _ in OKTA_OTHER], kind + 1)
    message = pick(["User single sign on to app"] + [m for _, m in OKTA_OTHER], kind + 1)
    millis = numbered("", rng.integers(0, 1000, n), 3)
    app_target = join(
        ',"target":[{"id":"0oa',
        labels,
        '","type":"AppInstance","alternateId":"',
        labels,
        '","displayName":"',
        app_names,
        '"},{"id":"0ua',
        pick(who["object_id"], person),
        '","type":"AppUser","alternateId":"',
        email,
        '","displayName":',
        name,
        "}]",
    )
    records = join(
        '{"actor":{"id":"00u',
        pick(who["object_id"], person),
        '","type":"User","alternateId":"',
        email,
        '","displayName":',
        name,
        '},"displayMessage":"',
        message,
        '","eventType":"',
        event_type,
        '","outcome":{"result":"',
        pc.if_else(pa.array(failed), "FAILURE", "SUCCESS"),
        '","reason":',
        pc.if_else(pa.array(failed), '"INVALID_CREDENTIALS"', "null"),
        '},"published":"',
        times_text(at, "%Y-%m-%dT%H:%M:%S"),
        ".",
        millis,
        'Z","severity":"INFO","uuid":"',
        guids(rng, n),
        '","version":"0"',
        pc.if_else(pa.array(sso), app_target, ',"target":null'),
        "}",
    )
    separators = pc.if_else(pa.array(np.arange(n) < n - 1), ",\n", "\n")
    write_text(path, join(records, separators), head="[\n", tail="]\n")
    return n


def _canonical(events: pd.DataFrame, who, path: Path) -> int:
    person = events["person"].to_numpy()
    return write_csv(
        path,
        {
            "user_email": pick(who["email"], person),
            "product_code": _app_text(events, "product_code"),
            "app_name": _app_text(events, "name"),
            "activity_at": times_text(events["at"].to_numpy()),
            "duration_minutes": pa.array(events["minutes"].to_numpy()).cast(pa.string()),
        },
    )
