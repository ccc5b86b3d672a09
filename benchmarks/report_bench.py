"""The quarterly audit report at the reference enterprise's scale. Target (issue 7): under 60 s.

    .venv/bin/python -m benchmarks.report_bench                  # SQLite, the default shape
    .venv/bin/python -m benchmarks.report_bench --db postgresql
    .venv/bin/python -m benchmarks.report_bench --installs 200000 --usage 300000  # smaller

The store is filled set-based (DBAPI executemany on SQLite, COPY on PostgreSQL; the audit
log through tasks.audit.record_many so its chain verifies): 100 vendors, 3,000 products,
~4,500 contracts, 100,000 people, 200,000 devices, 2,000,000 installations, 100,000
assignments (a third of them assigned and a fifth revoked in the quarter: offboarding,
reclamation, bulk and other causes), 3,000,000 daily usage rows over 120 days, concurrent
peaks for a year, 5,000 reclaim candidates, 20 bulk batches and 200,000 audit entries.

Then, for quarter 2026Q4 as of 2026-11-23 (quarter to date), the report is gathered
(per step timings), rendered (charts, HTML, workbook, CSVs) and a vendor's audit pack made,
each timed; `--flow` also runs the real flow through Prefect (ephemeral server). Prints a
Markdown table (record it in benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

PG_ADMIN = os.environ.get(
    "SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
QUARTER, AS_OF = "2026Q4", dt.date(2026, 11, 23)
Q_START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
METRICS = np.array(["per_user", "per_device", "concurrent", "per_core", "site"])
CHUNK = 200_000


def make_store(db: str, workdir: Path) -> str:
    from sqlalchemy import create_engine, text

    from licenseflow import db as store

    if db == "sqlite":
        url = f"sqlite:///{workdir / 'report_bench.db'}"
    else:
        name = f"lf_report_bench_{os.getpid()}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    store.upgrade(store.get_engine(url))
    return url


def drop_store(db: str, url: str) -> None:
    if db != "postgresql":
        return
    from sqlalchemy import create_engine, text

    from licenseflow import db as store

    store.get_engine(url).dispose()
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


# --- set-based loading -----------------------------------------------------------------------


def _sqlite_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns as SQLite stores them (timestamps as SQLAlchemy writes them), None for null."""
    out = {}
    for name, column in frame.items():
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            moments = pd.to_datetime(column, utc=True).dt.tz_localize(None)
            column = moments.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        elif column.dtype == object:
            sample = column.dropna()
            if len(sample) and isinstance(sample.iloc[0], dt.datetime | pd.Timestamp):
                moments = pd.to_datetime(column, utc=True).dt.tz_localize(None)
                column = moments.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
            elif len(sample) and isinstance(sample.iloc[0], dt.date):
                column = column.map(lambda d: d.isoformat(), na_action="ignore")
        out[name] = column.astype(object).where(column.notna(), None)
    return pd.DataFrame(out)


def load(engine, table: str, frame: pd.DataFrame) -> None:
    """Append `frame` to `table` in chunks: executemany on SQLite, COPY on PostgreSQL."""
    columns = list(frame.columns)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for start in range(0, len(frame), CHUNK):
            part = frame.iloc[start : start + CHUNK]
            if engine.dialect.name == "sqlite":
                cursor.execute("BEGIN")
                marks = ", ".join("?" for _ in columns)
                rows = list(_sqlite_frame(part).itertuples(index=False, name=None))
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                    rows,
                )
                cursor.execute("COMMIT")
            else:
                buffer = io.StringIO()
                part.to_csv(buffer, index=False, header=False, na_rep="\\N")
                buffer.seek(0)
                with cursor.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
                ) as copy:
                    copy.write(buffer.getvalue())
                raw.commit()
        if engine.dialect.name == "postgresql":
            for name in ("id",):
                if name in columns and pd.api.types.is_integer_dtype(frame[name].dtype):
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"(SELECT MAX(id) FROM {table}))"
                    )
            raw.commit()
    finally:
        raw.close()


def fill(
    engine,
    *,
    products: int,
    people: int,
    devices: int,
    installs: int,
    seats: int,
    usage: int,
    audit_entries: int,
    seed: int = 7,
) -> dict:
    rng = np.random.default_rng(seed)
    counts = {}
    vendors = 100
    load(
        engine,
        "vendor",
        pd.DataFrame(
            {
                "id": np.arange(1, vendors + 1),
                "name": [f"Vendor {i:03d}" for i in range(1, vendors + 1)],
            }
        ),
    )
    pid = np.arange(1, products + 1)
    metric = METRICS[rng.choice(5, products, p=[0.7, 0.2, 0.05, 0.03, 0.02])]
    classification = np.where(
        rng.random(products) < 0.03,
        "freeware",
        np.where(rng.random(products) < 0.02, "denied", "commercial"),
    )
    load(
        engine,
        "product",
        pd.DataFrame(
            {
                "id": pid,
                "code": [f"P-{i:05d}" for i in pid],
                "name": [f"Product {i:05d}" for i in pid],
                "vendor_id": rng.integers(1, vendors + 1, products),
                "metric": metric,
                "classification": classification,
            }
        ),
    )
    commercial = pid[classification == "commercial"]
    # contracts: one per commercial product, a second for a half; some start in the quarter
    first = pd.DataFrame({"product_id": commercial})
    second = pd.DataFrame({"product_id": commercial[rng.random(len(commercial)) < 0.5]})
    contracts = pd.concat([first, second], ignore_index=True)
    n = len(contracts)
    start = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    contracts = contracts.assign(
        id=np.arange(1, n + 1),
        contract_number=[f"C-{i:06d}" for i in range(1, n + 1)],
        seats=np.where(
            metric[contracts["product_id"] - 1] == "site", None, rng.integers(5, 400, n)
        ),
        unit_cost=np.round(rng.uniform(20, 3000, n), 2),
        currency=np.where(rng.random(n) < 0.9, "USD", "EUR"),
        start_date=start.date,
        end_date=(start + pd.to_timedelta(rng.integers(365, 1100, n), unit="D")).date,
        auto_renew=rng.random(n) < 0.3,
        notice_days=rng.choice([0, 30, 60, 90], n),
        owner_email=np.where(
            rng.random(n) < 0.97,
            [f"user{i:06d}@corp.example" for i in rng.integers(0, people, n)],
            None,
        ),
    )
    load(engine, "contract", contracts)
    counts["contracts"] = n

    status = np.where(
        rng.random(people) < 0.02,
        "terminated",
        np.where(rng.random(people) < 0.01, "leave", "active"),
    )
    load(
        engine,
        "person",
        pd.DataFrame(
            {
                "id": np.arange(1, people + 1),
                "employee_id": [f"E{i:06d}" for i in range(people)],
                "email": [f"user{i:06d}@corp.example" for i in range(people)],
                "full_name": [f"User {i}" for i in range(people)],
                "department": [f"Dept {d:02d}" for d in rng.integers(0, 40, people)],
                "cost_center": [f"CC{d:03d}" for d in rng.integers(0, 120, people)],
                "status": status,
                "termination_date": np.where(status == "terminated", dt.date(2026, 10, 15), None),
            }
        ),
    )
    seen = pd.Timestamp("2026-11-23 06:00", tz="UTC")
    load(
        engine,
        "device",
        pd.DataFrame(
            {
                "id": np.arange(1, devices + 1),
                "hostname": [f"ws-{i:06d}" for i in range(devices)],
                "primary_user_email": [
                    f"user{i % people:06d}@corp.example" for i in range(devices)
                ],
                "cores": rng.choice([4, 8, 16], devices),
                "source": "osquery",
                "first_seen": seen - pd.Timedelta(days=200),
                "last_seen": seen,
            }
        ),
    )
    # installations: unique (device, product) pairs, a few removed in the quarter
    pairs = np.unique(
        rng.integers(0, devices, installs) * products + rng.integers(0, products, installs)
    )
    device_of, product_of = pairs // products + 1, pairs % products + 1
    m = len(pairs)
    removed = np.where(rng.random(m) < 0.03, (seen - pd.Timedelta(days=20)).to_pydatetime(), None)
    load(
        engine,
        "installation",
        pd.DataFrame(
            {
                "id": np.arange(1, m + 1),
                "install_key": [f"{i:040x}" for i in pairs],
                "device_id": device_of,
                "raw_title": [f"Product {p:05d}" for p in product_of],
                "product_id": product_of,
                "source": "osquery",
                "row_hash": "0" * 40,
                "first_seen": seen - pd.Timedelta(days=150),
                "last_seen": seen,
                "removed_at": removed,
            }
        ),
    )
    counts["installations"] = m

    # assignments: person seats of per_user/site products, device seats of per_device ones
    seat_products = pid[
        np.isin(metric, ["per_user", "per_device"]) & (classification == "commercial")
    ]
    prod = rng.choice(seat_products, seats)
    holder = rng.integers(1, people + 1, seats)
    keys = np.unique(prod.astype(np.int64) * (people + 1) + holder, return_index=True)[1]
    prod, holder = prod[keys], holder[keys]
    k = len(prod)
    is_user = metric[prod - 1] == "per_user"
    assigned = np.where(
        rng.random(k) < 0.33,
        Q_START + pd.to_timedelta(rng.integers(0, 50 * 86400, k), unit="s"),
        pd.Timestamp("2025-06-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 300 * 86400, k), unit="s"),
    )
    assigned = pd.to_datetime(assigned, utc=True)
    revoke = rng.random(k) < 0.2
    revoked = pd.Series(pd.NaT, index=range(k), dtype="datetime64[ns, UTC]")
    revoked[revoke] = (
        pd.Timestamp("2026-11-20", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 86400, revoke.sum()), unit="s")
    ).to_numpy()
    revoked = revoked.where(revoked > assigned, assigned + pd.Timedelta(hours=1)).where(revoke)
    reasons = np.where(
        revoke,
        rng.choice(["offboarding", "reclaim 1: unused", "no longer needed", "bulk change"], k),
        None,
    )
    assignments = pd.DataFrame(
        {
            "id": np.arange(1, k + 1),
            "product_id": prod,
            "person_id": np.where(is_user, holder, None),
            "device_id": np.where(is_user, None, holder),
            "assigned_at": assigned,
            "assigned_by": "bench",
            "revoked_at": revoked,
            "revoked_by": np.where(revoke, "bench", None),
            "revoke_reason": reasons,
            "batch_id": np.where(rng.random(k) < 0.05, "B-0001", None),
        }
    )
    batches = pd.DataFrame(
        {
            "id": [f"B-{i:04d}" for i in range(1, 21)],
            "state": "rolled_out",
            "requester": "ops@corp.example",
            "approver": "lead@corp.example",
            "file_name": "wave.csv",
            "file_checksum": "0" * 64,
            "row_count": 500,
            "pilot_size": 10,
            "created_at": Q_START + pd.Timedelta(days=5),
            "updated_at": Q_START + pd.Timedelta(days=6),
        }
    )
    load(engine, "bulk_batch", batches)
    load(
        engine,
        "bulk_batch_event",
        pd.DataFrame(
            {
                "batch_id": np.repeat(batches["id"].to_numpy(), 3),
                "state": np.tile(["validated", "approved", "rolled_out"], 20),
                "at": np.tile([Q_START + pd.Timedelta(days=5, hours=h) for h in (0, 1, 2)], 20),
                "actor": "bench",
            }
        ),
    )
    load(engine, "assignment", assignments)
    load(
        engine,
        "bulk_batch_row",
        pd.DataFrame(
            {
                "batch_id": np.repeat(batches["id"].to_numpy(), 50),
                "row_number": np.tile(np.arange(1, 51), 20),
                "action": "assign",
                "pilot": False,
                "product_id": rng.choice(seat_products, 1000),
                "person_id": rng.integers(1, people + 1, 1000),
            }
        ),
    )
    counts["assignments"] = k

    # usage: (product, person) pairs active on many of the last 120 days
    user_seats = assignments[is_user].head(max(usage // 60, 1))
    days = pd.date_range(AS_OF - dt.timedelta(days=119), AS_OF).date
    per_pair = max(usage // max(len(user_seats), 1), 1)
    picks = np.sort(rng.random((len(user_seats), len(days))).argsort(axis=1)[:, :per_pair], axis=1)
    rows = pd.DataFrame(
        {
            "product_id": np.repeat(user_seats["product_id"].to_numpy(), per_pair),
            "person_id": np.repeat(user_seats["person_id"].to_numpy(), per_pair),
            "day": np.asarray(days)[picks.ravel()],
        }
    )
    rows = rows.assign(
        id=np.arange(1, len(rows) + 1),
        sessions=rng.integers(1, 6, len(rows)),
        minutes=np.round(rng.uniform(5, 300, len(rows)), 1),
        last_activity=pd.to_datetime(rows["day"]).dt.tz_localize("UTC") + pd.Timedelta(hours=17),
    )
    load(engine, "usage_daily", rows)
    counts["usage_daily"] = len(rows)
    concurrent = pid[metric == "concurrent"]
    year = pd.date_range(AS_OF - dt.timedelta(days=364), AS_OF).date
    load(
        engine,
        "concurrent_peak",
        pd.DataFrame(
            {
                "day": np.tile(year, len(concurrent)),
                "product_id": np.repeat(concurrent, len(year)),
                "peak": rng.integers(0, 50, len(year) * len(concurrent)),
                "denials": 0,
            }
        ),
    )
    open_user = assignments[assignments["revoked_at"].isna()].head(5000)
    load(
        engine,
        "reclaim_candidate",
        pd.DataFrame(
            {
                "id": np.arange(1, len(open_user) + 1),
                "assignment_id": open_user["id"].to_numpy(),
                "product_id": open_user["product_id"].to_numpy(),
                "state": rng.choice(["candidate", "notified", "reclaimed", "kept"], len(open_user)),
                "detected_at": Q_START + pd.Timedelta(days=10),
                "notified_at": Q_START + pd.Timedelta(days=11),
                "resolved_at": Q_START + pd.Timedelta(days=40),
                "monthly_cost": 12.5,
            }
        ),
    )
    counts["audit_log"] = fill_audit(engine, audit_entries)
    return counts


def fill_audit(engine, entries: int) -> int:
    """A valid hash chain of `entries` entries (tasks.audit.record_many, 50k per call)."""
    from licenseflow.db import unit_of_work
    from tasks import audit

    done = 0
    while done < entries:
        size = min(50_000, entries - done)
        with unit_of_work(engine) as session:
            audit.record_many(
                session,
                "bench",
                [
                    audit.Change("assign", "assignment", done + i + 1, None, {"seat": done + i})
                    for i in range(size)
                ],
                at=Q_START + dt.timedelta(days=20),
            )
        done += size
    return done


# --- the measured run -------------------------------------------------------------------


def measure(url: str, reports: Path, vendor: str, flow: bool) -> dict:
    from licenseflow.db import get_engine
    from tasks import report_render
    from tasks.report_data import gather, report_period

    period = report_period(QUARTER, AS_OF)
    engine = get_engine(url)
    timings: dict[str, tuple[float, float]] = {}
    started, cpu = time.perf_counter(), time.process_time()
    data = gather(engine, period, reports_dir=reports, now=NOW, timings=timings)
    gathered, gathered_cpu = time.perf_counter(), time.process_time()
    files = report_render.write_report(data, reports, timings=timings)
    total = time.perf_counter() - started
    out = {
        "total": total,
        "total_cpu": time.process_time() - cpu,
        "gather": gathered - started,
        "gather_cpu": gathered_cpu - cpu,
        "render": total - (gathered - started),
        "render_cpu": time.process_time() - gathered_cpu,
        "steps": timings,
        "rows": {k: len(v) for k, v in data.sections.items()},
        "html_mib": files.html.stat().st_size / 2**20,
        "xlsx_mib": files.workbook.stat().st_size / 2**20,
        "load": os.getloadavg()[0],
    }
    started = time.perf_counter()
    pack = gather(engine, period, vendor, reports_dir=reports, now=NOW)
    report_render.write_report(pack, reports)
    out["vendor_pack"] = time.perf_counter() - started
    if flow:
        from flows.quarterly_audit_report import quarterly_audit_report

        started = time.perf_counter()
        quarterly_audit_report(quarter=QUARTER, as_of=AS_OF.isoformat())
        out["flow"] = time.perf_counter() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--products", type=int, default=3_000)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--installs", type=int, default=2_000_000)
    parser.add_argument("--seats", type=int, default=100_000)
    parser.add_argument("--usage", type=int, default=3_000_000)
    parser.add_argument("--audit", type=int, default=200_000)
    parser.add_argument("--vendor", default="Vendor 007")
    parser.add_argument("--flow", action="store_true", help="also run the flow through Prefect")
    parser.add_argument(
        "--store",
        type=Path,
        help="SQLite only: a store file to keep; filled when missing, reused when present",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="report-bench-"))
    os.environ["SLM_DATA_DIR"] = str(workdir)
    reuse = args.store is not None and args.store.exists()
    if args.store is not None:
        args.db = "sqlite"
        url = f"sqlite:///{args.store.resolve()}"
        if not reuse:
            from licenseflow import db as store

            store.upgrade(store.get_engine(url))
    else:
        url = make_store(args.db, workdir)
    os.environ["SLM_DATABASE_URL"] = url
    from licenseflow.prefect_env import configure_prefect_defaults

    configure_prefect_defaults()  # Prefect's home in the bench's folder, quiet, no telemetry
    from licenseflow.db import get_engine

    try:
        started = time.perf_counter()
        counts = (
            {"reused": url}
            if reuse
            else fill(
                get_engine(url),
                products=args.products,
                people=args.people,
                devices=args.devices,
                installs=args.installs,
                seats=args.seats,
                usage=args.usage,
                audit_entries=args.audit,
            )
        )
        filled = time.perf_counter() - started
        result = measure(url, workdir / "reports", args.vendor, args.flow)
    finally:
        drop_store(args.db, url)
    print(
        f"\nstore ({args.db}) filled in {filled:.1f} s: "
        + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items())
    )
    print(
        f"report {QUARTER} as of {AS_OF}: {result['total']:.1f} s wall, "
        f"{result['total_cpu']:.1f} s CPU of this process (gather {result['gather']:.1f} s / "
        f"{result['gather_cpu']:.1f} s CPU, render {result['render']:.1f} s / "
        f"{result['render_cpu']:.1f} s CPU); vendor pack {result['vendor_pack']:.1f} s"
        + (f"; through the flow {result['flow']:.1f} s" if "flow" in result else "")
    )
    print(
        f"HTML {result['html_mib']:.1f} MiB, workbook {result['xlsx_mib']:.1f} MiB; "
        f"load average at the end {result['load']:.1f} (2 cores)\n"
    )
    print("| step | wall s | CPU s |\n| --- | ---: | ---: |")
    for step, (wall, cpu) in result["steps"].items():
        print(f"| {step} | {wall:.2f} | {cpu:.2f} |")
    print("\n| section | rows |\n| --- | ---: |")
    for key, rows in result["rows"].items():
        print(f"| {key} | {rows:,} |")


if __name__ == "__main__":
    main()
