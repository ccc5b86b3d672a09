"""Usage metering at the reference scale: ~600k usage events a day, ~50M a quarter.

    .venv/bin/python -m benchmarks.usage_bench --db sqlite --days 1
    .venv/bin/python -m benchmarks.usage_bench --db postgresql --days 90 --seats 200000

A day is three files, as the tools export them: a Microsoft Graph signIns JSON page
(350k sign-ins, full records), an Okta System Log JSON array (150k events) and a FlexLM
debug log (100k OUT/IN/DENIED lines), for 100k people. The quarter is `--days` such days,
each a new set of files (the day's date written into the same events), applied one file at
a time the way the usage_metering flow does (tasks.metering.ingest_file: read, resolve,
aggregate, upsert, ledger), in one process so memory stays bounded by a file.

Day 1's files are also timed phase by phase (read + validate / resolve + aggregate / write).
With --seats, that many Slack and Zoom seats are given (set-based, the assignment service)
and reclaim detection is timed over the quarter's usage_daily.

Results are printed as Markdown for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import resource
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import create_engine, func, insert, select, text

OUT = Path(__file__).parent / "out" / "usage"
PG_ADMIN = os.environ.get(
    "SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FIRST_DAY = dt.date(2026, 1, 5)
ENTRA_APPS = [
    ("Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264"),
    ("Office 365 Exchange Online", "00000002-0000-0ff1-ce00-000000000000"),
    ("Zoom", "1e9c2a43-8f5b-4b8e-9d6f-0b1a2c3d4e5f"),
    ("Slack", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"),
    ("Salesforce", "2b3c4d5e-6f70-4182-9394-a5b6c7d8e9f0"),
    ("Jira Software", "3c4d5e6f-7081-4293-a4b5-c6d7e8f90a1b"),
    ("Contoso Expenses", "4d5e6f70-8192-43a4-b5c6-d7e8f90a1b2c"),  # not in the catalog
]
OKTA_APPS = ["Slack", "Zoom", "Jira Software", "Adobe Acrobat", "Miro", "Contoso Wiki"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- synthetic files ------------------------------------------------------------------------


def _times(rng, n: int, day: dt.date, start_h: int = 6, end_h: int = 20) -> np.ndarray:
    seconds = np.sort(rng.integers(start_h * 3600, end_h * 3600, n))
    base = np.datetime64(day.isoformat(), "ms")
    millis = rng.integers(0, 1000, n)
    return base + seconds.astype("timedelta64[s]") + millis.astype("timedelta64[ms]")


def write_entra_json(path: Path, rng, n: int, people: int, day: dt.date) -> None:
    at = np.datetime_as_string(_times(rng, n, day), unit="ms")
    users = rng.integers(0, people, n)
    apps = rng.choice(len(ENTRA_APPS), n, p=[0.3, 0.25, 0.15, 0.12, 0.08, 0.07, 0.03])
    failed = rng.random(n) < 0.05
    records = [
        {
            "id": f"{i:08x}-0000-4000-8000-{u:012x}",
            "createdDateTime": f"{t}Z",
            "userDisplayName": f"User {u:06d}",
            "userPrincipalName": f"user{u:06d}@corp.example",
            "userId": f"{u:08x}-1111-4111-8111-000000000000",
            "appId": ENTRA_APPS[a][1],
            "appDisplayName": ENTRA_APPS[a][0],
            "ipAddress": "198.51.100.7",
            "clientAppUsed": "Browser",
            "correlationId": f"{i:08x}-2222-4222-8222-000000000000",
            "conditionalAccessStatus": "success",
            "isInteractive": True,
            "riskDetail": "none",
            "riskLevelAggregated": "none",
            "riskLevelDuringSignIn": "none",
            "riskState": "none",
            "riskEventTypes": [],
            "riskEventTypes_v2": [],
            "resourceDisplayName": "Microsoft Graph",
            "resourceId": "00000003-0000-0000-c000-000000000000",
            "status": {
                "errorCode": 50126 if f else 0,
                "failureReason": "Invalid username or password." if f else None,
                "additionalDetails": None,
            },
            "deviceDetail": {
                "deviceId": "",
                "displayName": None,
                "operatingSystem": "Windows10",
                "browser": "Edge 122.0.0",
                "isCompliant": False,
                "isManaged": False,
                "trustType": None,
            },
            "location": {
                "city": "Zurich",
                "state": "Zurich",
                "countryOrRegion": "CH",
                "geoCoordinates": {"altitude": None, "latitude": 47.37, "longitude": 8.54},
            },
            "appliedConditionalAccessPolicies": [],
        }
        for i, (t, u, a, f) in enumerate(
            zip(at.tolist(), users.tolist(), apps.tolist(), failed.tolist(), strict=True)
        )
    ]
    path.write_bytes(
        orjson.dumps(
            {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",
                "value": records,
            }
        )
    )


def write_okta_json(path: Path, rng, n: int, people: int, day: dt.date) -> None:
    at = np.datetime_as_string(_times(rng, n, day), unit="ms")
    users = rng.integers(0, people, n)
    apps = rng.choice(len(OKTA_APPS), n, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    kind = rng.random(n)
    events = []
    for i, (t, u, a, k) in enumerate(
        zip(at.tolist(), users.tolist(), apps.tolist(), kind.tolist(), strict=True)
    ):
        email = f"user{u:06d}@corp.example"
        sso = k >= 0.05
        events.append(
            {
                "actor": {
                    "id": f"00u{u:08d}",
                    "type": "User",
                    "alternateId": email,
                    "displayName": f"User {u:06d}",
                    "detailEntry": None,
                },
                "client": {
                    "userAgent": {
                        "rawUserAgent": "Mozilla/5.0",
                        "os": "Windows 10",
                        "browser": "EDGE",
                    },
                    "zone": "null",
                    "device": "Computer",
                    "ipAddress": "198.51.100.7",
                },
                "displayMessage": "User single sign on to app" if sso else "User login to Okta",
                "eventType": "user.authentication.sso" if sso else "user.session.start",
                "outcome": {"result": "FAILURE" if 0.05 <= k < 0.07 else "SUCCESS", "reason": None},
                "published": f"{t}Z",
                "severity": "INFO",
                "legacyEventType": "app.auth.sso",
                "transaction": {"type": "WEB", "id": f"tx{i:08d}", "detail": {}},
                "uuid": f"{i:08x}-3333-4333-8333-000000000000",
                "version": "0",
                "target": [
                    {
                        "id": f"0oa{a:08d}",
                        "type": "AppInstance",
                        "alternateId": OKTA_APPS[a],
                        "displayName": OKTA_APPS[a],
                        "detailEntry": {"signOnModeType": "SAML_2_0"},
                    },
                    {
                        "id": f"0ua{u:08d}",
                        "type": "AppUser",
                        "alternateId": email,
                        "displayName": f"User {u:06d}",
                        "detailEntry": None,
                    },
                ]
                if sso
                else None,
            }
        )
    path.write_bytes(orjson.dumps(events))


def write_flexlm_log(path: Path, rng, lines: int, people: int, day: dt.date) -> None:
    """~lines OUT/IN/DENIED lines: sessions of MATLAB (MLM) and solidworks (SW_D)."""
    sessions = int(lines * 0.49)
    start = rng.integers(7 * 3600, 19 * 3600, sessions)
    end = np.minimum(start + rng.exponential(90 * 60, sessions).astype(int) + 60, 86399)
    user = rng.integers(0, people, sessions)
    matlab = rng.random(sessions) < 0.7
    denied_n = lines - 2 * sessions
    d_at = rng.integers(8 * 3600, 18 * 3600, denied_n)
    d_user = rng.integers(0, people, denied_n)
    d_matlab = rng.random(denied_n) < 0.7
    frame = pd.DataFrame(
        {
            "t": np.concatenate([start, end, d_at]),
            "kind": np.repeat(["OUT", "IN", "DENIED"], [sessions, sessions, denied_n]),
            "user": np.concatenate([user, user, d_user]),
            "matlab": np.concatenate([matlab, matlab, d_matlab]),
        }
    ).sort_values("t", kind="stable")
    clock = (
        (frame["t"] // 3600).astype(str).str.rjust(2)
        + ":"
        + (frame["t"] % 3600 // 60).astype(str).str.zfill(2)
        + ":"
        + (frame["t"] % 60).astype(str).str.zfill(2)
    )
    daemon = np.where(frame["matlab"], "(MLM) ", "(SW_D) ")
    feature = np.where(frame["matlab"], '"MATLAB" ', '"solidworks" ')
    who = "user" + frame["user"].astype(str).str.zfill(6) + "@ws-" + frame["user"].astype(str)
    tail = np.where(
        frame["kind"] == "DENIED",
        "  (Licensed number of users already reached. (-4,342))",
        "  ",
    )
    body = clock + " " + daemon + frame["kind"] + ": " + feature + who + tail
    date = f"{day.month}/{day.day}/{day.year}"
    stamps = [f" {h}:00:00 (lmgrd) TIMESTAMP {date}" for h in (0, 6)]
    late = [f"{h}:00:00 (lmgrd) TIMESTAMP {date}" for h in (12, 18)]
    # TIMESTAMP lines at 0, 6, 12 and 18 h, in time order with the events
    marks = pd.Series(stamps + late, index=[0, 6 * 3600 - 0.5, 12 * 3600 - 0.5, 18 * 3600 - 0.5])
    body.index = frame["t"].to_numpy().astype(float)
    text_lines = pd.concat([marks, body]).sort_index(kind="stable")
    path.write_text("\n".join(text_lines.tolist()) + "\n")


def make_templates(folder: Path, people: int, per_day: int, seed: int = 11) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    entra = int(per_day * 350 / 600)
    okta = int(per_day * 150 / 600)
    flex = per_day - entra - okta
    paths = {
        "entra_json": folder / "template_entra.json",
        "okta": folder / "template_okta.json",
        "flexlm": folder / "template_flexlm.log",
    }
    write_entra_json(paths["entra_json"], rng, entra, people, FIRST_DAY)
    write_okta_json(paths["okta"], rng, okta, people, FIRST_DAY)
    write_flexlm_log(paths["flexlm"], rng, flex, people, FIRST_DAY)
    return paths


def day_files(templates: dict[str, Path], folder: Path, day: dt.date) -> list[tuple[Path, str]]:
    """The templates with `day`'s date written in (new bytes, so new checksums)."""
    iso_old, iso_new = FIRST_DAY.isoformat().encode(), day.isoformat().encode()
    us_old = f"{FIRST_DAY.month}/{FIRST_DAY.day}/{FIRST_DAY.year}".encode()
    us_new = f"{day.month}/{day.day}/{day.year}".encode()
    out = []
    for fmt, template in templates.items():
        data = template.read_bytes()
        data = data.replace(us_old, us_new) if fmt == "flexlm" else data.replace(iso_old, iso_new)
        path = folder / f"{day.isoformat()}_{template.name.removeprefix('template_')}"
        path.write_bytes(data)
        out.append((path, fmt))
    return out


# --- the store ------------------------------------------------------------------------------


def open_store(kind: str):
    from licenseflow import db

    if kind == "sqlite":
        path = OUT / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "lf_usage_bench" WITH (FORCE)'))
            conn.execute(text('CREATE DATABASE "lf_usage_bench"'))
        admin.dispose()
        url = PG_ADMIN.rsplit("/", 1)[0] + "/lf_usage_bench"
    os.environ["SLM_DATABASE_URL"] = url
    from licenseflow.settings import get_settings

    get_settings.cache_clear()
    engine = db.get_engine(url)
    db.upgrade(engine)
    return engine


def seed(engine, people: int):
    from licenseflow.db import unit_of_work
    from schemas.store import Person
    from tasks import recognition

    catalog = recognition.load_catalog()
    with unit_of_work(engine) as session:
        recognition.sync_catalog_to_store(session, catalog)
        rows = [
            {
                "employee_id": f"E{i:06d}",
                "email": f"user{i:06d}@corp.example",
                "full_name": f"User {i:06d}",
                "status": "active",
            }
            for i in range(people)
        ]
        for start in range(0, people, 20000):
            session.execute(insert(Person), rows[start : start + 20000])
    return catalog


def give_seats(engine, seats: int, people: int):
    """`seats` Slack and Zoom seats (half each), assigned half a year before the quarter."""
    from licenseflow.db import unit_of_work
    from schemas.store import Person, Product
    from tasks.assignments import AssignmentService, SeatChange

    with unit_of_work(engine) as session:
        ids = dict(
            session.execute(
                select(Product.code, Product.id).where(
                    Product.code.in_(["SLACK-PRO", "ZOOM-WORKPLACE"])
                )
            ).all()
        )
        person_ids = session.execute(select(Person.id).order_by(Person.id)).scalars().all()
        since = dt.datetime.combine(FIRST_DAY, dt.time(), dt.UTC) - dt.timedelta(days=180)
        changes = [
            SeatChange("assign", ids[code], person_id=person_ids[i % people], assigned_at=since)
            for code in ("SLACK-PRO", "ZOOM-WORKPLACE")
            for i in range(seats // 2)
        ]
        started = time.perf_counter()
        AssignmentService(session, "bench", now=since).apply(changes, override_reason="bench")
        return time.perf_counter() - started


# --- the runs -------------------------------------------------------------------------------


def phases(engine, catalog, files):
    """Day 1, file by file: read + validate, resolve + aggregate, write (one transaction)."""
    from licenseflow.db import unit_of_work
    from tasks import metering
    from tasks.usage_adapters import read_usage_file

    rows = []
    with unit_of_work(engine) as session:
        started = time.perf_counter()
        resolver = metering.catalog_resolver(session, catalog)
        resolver_s = time.perf_counter() - started
    for path, fmt in files:
        started = time.perf_counter()
        read = read_usage_file(path, fmt, resolver.recognize)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        metered = metering.meter(read.events, resolver)
        peaks = metering.flexlm_peaks(read, metered.codes, resolver) if fmt == "flexlm" else None
        meter_s = time.perf_counter() - started
        rows.append(
            {
                "file": fmt,
                "records": read.records,
                "events": len(read.events),
                "aggregate rows": len(metered.daily),
                "read+validate s": round(read_s, 2),
                "resolve+aggregate s": round(meter_s, 2),
                "peak rows": 0 if peaks is None else len(peaks),
            }
        )
        del read, metered
        gc.collect()
    return resolver_s, rows


def ingest_day(engine, resolver, files, now) -> tuple[float, int, int]:
    from licenseflow.db import unit_of_work
    from tasks import metering

    started = time.perf_counter()
    records = events = 0
    for path, fmt in files:
        with unit_of_work(engine) as session:
            report = metering.ingest_file(
                session, path, resolver, fmt=fmt, reject_threshold=0.05, now=now
            )
        assert report.status == "applied", (path, report.status, report.message)
        records += report.records
        events += report.events
    return time.perf_counter() - started, records, events


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--per-day", type=int, default=600_000, help="raw events a day")
    parser.add_argument("--seats", type=int, default=0, help="seats for reclaim detection")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    templates_dir = OUT / f"templates_{args.per_day}_{args.people}"
    started = time.perf_counter()
    if not (templates_dir / "template_flexlm.log").exists():
        make_templates(templates_dir, args.people, args.per_day)
    templates = {
        "entra_json": templates_dir / "template_entra.json",
        "okta": templates_dir / "template_okta.json",
        "flexlm": templates_dir / "template_flexlm.log",
    }
    sizes = {k: round(p.stat().st_size / 1e6) for k, p in templates.items()}
    print(f"# templates ready in {time.perf_counter() - started:.0f} s: MB {sizes}", flush=True)

    engine = open_store(args.db)
    catalog = seed(engine, args.people)
    assign_s = give_seats(engine, args.seats, args.people) if args.seats else None

    from licenseflow.db import unit_of_work
    from schemas.store import ConcurrentPeak, UsageDaily
    from tasks import metering, reclamation

    work = OUT / "days"
    work.mkdir(exist_ok=True)
    first = day_files(templates, work, FIRST_DAY)
    resolver_s, phase_rows = phases(engine, catalog, first)
    with unit_of_work(engine) as session:
        resolver = metering.catalog_resolver(session, catalog)

    per_day = []
    records_total = events_total = 0
    quarter_started = time.perf_counter()
    for n in range(args.days):
        day = FIRST_DAY + dt.timedelta(days=n)
        files = first if n == 0 else day_files(templates, work, day)
        now = dt.datetime.combine(day, dt.time(23, 0), dt.UTC)
        seconds, records, events = ingest_day(engine, resolver, files, now)
        per_day.append(seconds)
        records_total += records
        events_total += events
        for path, _ in files:
            path.unlink()
        if n == 0 or (n + 1) % 10 == 0:
            print(
                f"# day {n + 1}: {seconds:.1f} s ({records} records), rss {rss_mb():.0f} MB",
                flush=True,
            )
    quarter_s = time.perf_counter() - quarter_started

    with unit_of_work(engine) as session:
        usage_rows = session.scalar(select(func.count()).select_from(UsageDaily))
        peak_rows = session.scalar(select(func.count()).select_from(ConcurrentPeak))
    detect_s = None
    if args.seats:
        last = FIRST_DAY + dt.timedelta(days=args.days - 1)
        now = dt.datetime.combine(last, dt.time(23, 30), dt.UTC) + dt.timedelta(days=60)
        started = time.perf_counter()
        with unit_of_work(engine) as session:
            detection = reclamation.detect(session, now, reclamation.Rule())
        detect_s = time.perf_counter() - started
        found = len(detection.new)

    print()
    print(
        f"## Usage metering, {args.db}: {args.people:,} people, ~{args.per_day:,} raw events "
        f"a day, {args.days} day(s)"
    )
    print()
    print(f"Day 1 by phase (catalog resolver built in {resolver_s:.2f} s):")
    print()
    print(
        "| file | records | usage events | aggregate rows | read+validate s | resolve+aggregate s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in phase_rows:
        print(
            f"| {r['file']} | {r['records']:,} | {r['events']:,} | {r['aggregate rows']:,} | "
            f"{r['read+validate s']} | {r['resolve+aggregate s']} |"
        )
    print()
    print("| measure | value |")
    print("| --- | ---: |")
    print(
        f"| day 1 ingest, all files (read, resolve, aggregate, upsert, ledger) | "
        f"{per_day[0]:.1f} s |"
    )
    if len(per_day) > 1:
        print(
            f"| days 2..{len(per_day)}: median / max per day | "
            f"{np.median(per_day[1:]):.1f} s / {max(per_day[1:]):.1f} s |"
        )
    print(
        f"| {len(per_day)} day(s) total | {quarter_s:.0f} s "
        f"({records_total:,} records, {events_total:,} usage events, "
        f"{records_total / quarter_s:,.0f} records/s) |"
    )
    print(f"| usage_daily rows / concurrent_peak rows | {usage_rows:,} / {peak_rows:,} |")
    print(f"| peak RSS of the process | {rss_mb():.0f} MB |")
    if assign_s is not None:
        print(f"| {args.seats:,} seats given (assignment service, one apply) | {assign_s:.1f} s |")
    if detect_s is not None:
        print(
            f"| reclaim detection over {args.seats:,} seats ({found:,} new candidates) | "
            f"{detect_s:.1f} s |"
        )


if __name__ == "__main__":
    main()
