"""Weekly reconciliation at the reference scale, on SQLite and PostgreSQL. Target (issue 5):
under 60 s on 2 cores.

    .venv/bin/python -m benchmarks.reconciliation_bench --db sqlite
    .venv/bin/python -m benchmarks.reconciliation_bench --db postgresql [--repeat 3] [--flow]
    .venv/bin/python -m benchmarks.reconciliation_bench --db sqlite --refill \\
        --people 10000 --devices 20000 --installs 200000 --products 300   # a tenth

The store is filled directly with set-based inserts (SQLite: one executemany per chunk in
one transaction; PostgreSQL: COPY), the big tables' secondary indexes dropped during the
load and rebuilt after it with the migration's own DDL; PostgreSQL then gets VACUUM ANALYZE
(what its autovacuum does by itself); SQLite runs without ANALYZE (as a store does unless
someone runs it; --sqlite-analyze to compare).
The reference enterprise: 100k people (3% terminated, 2% on leave), 200k devices (20k
servers without a primary user, 5% of core counts unknown), 3,000 products (60% per_user,
25% per_device, 5% each concurrent, per_core, site; 15% freeware or denied), ~2,400
contracts, 2.1M installations (2M present, 5% removed; 10% unrecognised), ~317k seats (10%
revoked), a quarter (91 days) of usage_daily aggregates: each person uses ~2-3 metered
products on about half the days (~11.4M rows, 10% of the pairs never: reclaimable) and 20k
devices 2 products each; daily concurrent peaks. A filled store is kept under
benchmarks/out/reconciliation (SQLite) or as database lf_recon_bench (PostgreSQL) and reused
unless --refill.

Timed, medians of --repeat runs in this process: each fact read (the SQL), the pure rules
(license_position), the chargeback, the snapshot write + drift, the data-quality frames
and the Great Expectations suite (import excluded, measured apart). With --flow, the real
weekly_reconciliation flow once (ephemeral Prefect). Results print as Markdown for
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "out" / "reconciliation"
PG_ADMIN = os.environ.get(
    "SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PG_NAME = "lf_recon_bench"
DAY = dt.date(2026, 11, 24)
BIG_TABLES = ("installation", "usage_daily", "assignment", "person_status_history")
CHUNK = 1_000_000


# --- the synthetic enterprise (numpy, no loop per row) --------------------------------------


def make_world(people: int, devices: int, installs: int, products: int, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    tables: dict[str, pd.DataFrame] = {}

    tables["vendor"] = pd.DataFrame(
        {"id": np.arange(1, 201), "name": [f"Vendor {i}" for i in range(1, 201)]}
    )
    pid = np.arange(1, products + 1)
    metric = rng.choice(
        ["per_user", "per_device", "concurrent", "per_core", "site"],
        size=products,
        p=[0.60, 0.25, 0.05, 0.05, 0.05],
    )
    classification = rng.choice(
        ["commercial", "freeware", "denied"], size=products, p=[0.85, 0.10, 0.05]
    )
    classification[:40] = "commercial"  # the popular head is commercial
    metric[:20] = "per_user"
    tables["product"] = pd.DataFrame(
        {
            "id": pid,
            "code": [f"P-{i:05d}" for i in pid],
            "name": [f"Product {i}" for i in pid],
            "vendor_id": rng.integers(1, 201, products),
            "metric": metric,
            "classification": classification,
        }
    )
    commercial = pid[classification == "commercial"]

    # people: ids 1..N; cost centers and departments; status
    person = np.arange(1, people + 1)
    status = rng.choice(["active", "leave", "terminated"], size=people, p=[0.95, 0.02, 0.03])
    termination = np.where(status == "terminated", "2026-10-01", None)
    tables["person"] = pd.DataFrame(
        {
            "id": person,
            "employee_id": [f"E{i:07d}" for i in person],
            "email": [f"user{i:07d}@corp.example" for i in person],
            "full_name": [f"User {i}" for i in person],
            "department": [f"Dept {i}" for i in rng.integers(0, 30, people)],
            "cost_center": [f"CC-{i:04d}" for i in rng.integers(0, 200, people)],
            "status": status,
            "hire_date": "2020-01-01",
            "termination_date": termination,
        }
    )
    hist_people = np.concatenate([person, person[status != "active"]])
    hist_status = np.concatenate([np.full(people, "active"), status[status != "active"]])
    hist_day = np.concatenate(
        [np.full(people, "2020-01-01"), np.full((status != "active").sum(), "2026-10-01")]
    )
    tables["person_status_history"] = pd.DataFrame(
        {
            "id": np.arange(1, len(hist_people) + 1),
            "person_id": hist_people,
            "status": hist_status,
            "effective_date": hist_day,
            "recorded_at": "2026-10-01 06:00:00.000000",
        }
    )

    # devices: workstations with a primary user, servers without; cores
    device = np.arange(1, devices + 1)
    servers = devices // 10
    owner = rng.integers(1, people + 1, devices)
    email = np.array([f"user{i:07d}@corp.example" for i in owner], dtype=object)
    email[-servers:] = None
    cores = np.where(device > devices - servers, rng.choice([8, 16, 32, 64], devices), 4)
    cores = pd.array(cores, dtype="Int64")
    cores[rng.random(devices) < 0.05] = pd.NA
    tables["device"] = pd.DataFrame(
        {
            "id": device,
            "hostname": [f"host-{i:07d}" for i in device],
            "primary_user_email": email,
            "cores": cores,
            "source": "osquery",
            "first_seen": "2026-01-01 00:00:00.000000",
            "last_seen": "2026-11-24 05:00:00.000000",
        }
    )

    # installations: device x product, Zipf-like popularity; 5% removed, 10% unrecognised
    total = int(installs * 1.05)  # 2M present + 5% removed, distinct (device, product)
    draws = int(total * 1.6)  # the popular head repeats: draw more, keep distinct pairs
    inst_device = rng.integers(1, devices + 1, draws)
    rank = np.minimum(rng.zipf(1.15, draws), products) - 1
    frame = pd.DataFrame({"device_id": inst_device, "product_id": pid[rank]})
    frame = frame.drop_duplicates().head(total).reset_index(drop=True)
    n = len(frame)
    unrecognised = rng.random(n) < 0.10
    removed = rng.random(n) < 0.05
    first = pd.Timestamp("2025-11-24") + pd.to_timedelta(rng.integers(0, 360, n), unit="D")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    tables["installation"] = pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "install_key": [f"k{i}" for i in range(n)],
            "device_id": frame["device_id"].to_numpy(),
            "raw_title": "Title",
            "product_id": pd.array(
                np.where(unrecognised, 0, frame["product_id"].to_numpy()), dtype="Int64"
            ),
            "source": "osquery",
            "row_hash": "h",
            "first_seen": first.strftime(fmt),
            "last_seen": first.strftime(fmt),
            "removed_at": np.where(removed, "2026-11-01 00:00:00.000000", None),
        }
    )
    tables["installation"].loc[unrecognised, "product_id"] = pd.NA

    # contracts: 80% of commercial products, 1-2 contracts, ~90% in force
    with_contract = commercial[rng.random(len(commercial)) < 0.8]
    extra = with_contract[rng.random(len(with_contract)) < 0.2]
    cp = np.concatenate([with_contract, extra])
    m = len(cp)
    seats = rng.integers(5, 5000, m).astype(float)
    site = tables["product"].set_index("id").loc[cp, "metric"].to_numpy() == "site"
    seats[site] = np.nan
    start = np.where(rng.random(m) < 0.9, "2026-01-01", "2024-01-01")
    end = np.where(start == "2026-01-01", "2027-06-30", "2025-12-31")
    tables["contract"] = pd.DataFrame(
        {
            "id": np.arange(1, m + 1),
            "contract_number": [f"CT-{i:06d}" for i in range(m)],
            "product_id": cp,
            "seats": pd.array(seats, dtype="Float64").round().astype("Int64"),
            "unit_cost": rng.integers(20, 3000, m).astype(float),
            "currency": rng.choice(["USD", "EUR"], m, p=[0.8, 0.2]),
            "start_date": start,
            "end_date": end,
            "auto_renew": False,
            "notice_days": 30,
            "owner_email": np.where(rng.random(m) < 0.97, "owner@corp.example", None),
        }
    )

    # seats: per_user commercial head products to people, per_device to devices
    prod = tables["product"].set_index("id")
    per_user = commercial[prod.loc[commercial, "metric"].to_numpy() == "per_user"][:60]
    per_device = commercial[prod.loc[commercial, "metric"].to_numpy() == "per_device"][:20]
    seat_person = rng.integers(1, people + 1, 400_000 * people // 100_000)
    seat_pu = per_user[np.minimum(rng.zipf(1.5, len(seat_person)), len(per_user)) - 1]
    seat_device = rng.integers(1, devices + 1, 20_000 * devices // 200_000)
    seat_pd = per_device[rng.integers(0, len(per_device), len(seat_device))]
    seats = pd.concat(
        [
            pd.DataFrame({"product_id": seat_pu, "person_id": seat_person}).drop_duplicates(),
            pd.DataFrame({"product_id": seat_pd, "device_id": seat_device}).drop_duplicates(),
        ],
        ignore_index=True,
    )
    k = len(seats)
    given = pd.Timestamp("2025-06-01") + pd.to_timedelta(rng.integers(0, 530, k), unit="D")
    revoked = rng.random(k) < 0.10
    tables["assignment"] = pd.DataFrame(
        {
            "id": np.arange(1, k + 1),
            "product_id": seats["product_id"].to_numpy(),
            "person_id": pd.array(seats["person_id"], dtype="Int64"),
            "device_id": pd.array(seats["device_id"], dtype="Int64"),
            "assigned_at": given.strftime(fmt),
            "assigned_by": "bench",
            "revoked_at": np.where(revoked, "2026-11-01 00:00:00.000000", None),
        }
    )

    # usage_daily: ~3 metered per_user products per person, used on about half the 91 days
    # (10% of the pairs never: reclaimable); 10% of devices use 2 per_device products
    days = pd.date_range(DAY - dt.timedelta(days=90), DAY).strftime("%Y-%m-%d").to_numpy()
    metered = per_user[:30]
    pairs = pd.DataFrame(
        {
            "person_id": np.repeat(person, 3),
            "product_id": metered[np.minimum(rng.zipf(1.4, people * 3), len(metered)) - 1],
        }
    ).drop_duplicates()
    rate = np.where(rng.random(len(pairs)) < 0.1, 0.0, 0.5)
    person_rows = _daily(pairs, rate, days, rng, "person_id")
    dev_pairs = pd.DataFrame(
        {
            "device_id": np.repeat(rng.integers(1, devices + 1, devices // 10), 2),
            "product_id": per_device[rng.integers(0, len(per_device), devices // 10 * 2)],
        }
    ).drop_duplicates()
    device_rows = _daily(dev_pairs, np.full(len(dev_pairs), 0.3), days, rng, "device_id")
    usage = pd.concat([person_rows, device_rows], ignore_index=True)
    usage.insert(0, "id", np.arange(1, len(usage) + 1))
    usage["sessions"] = 1
    usage["minutes"] = 10.0
    usage["last_activity"] = usage["day"] + " 10:00:00.000000"
    tables["usage_daily"] = usage[
        [
            "id",
            "day",
            "product_id",
            "person_id",
            "device_id",
            "sessions",
            "minutes",
            "last_activity",
        ]
    ]

    concurrent = commercial[prod.loc[commercial, "metric"].to_numpy() == "concurrent"]
    tables["concurrent_peak"] = pd.DataFrame(
        {
            "day": np.tile(days, len(concurrent)),
            "product_id": np.repeat(concurrent, len(days)),
            "peak": rng.integers(0, 60, len(days) * len(concurrent)),
            "denials": 0,
        }
    )
    return tables


def _daily(pairs: pd.DataFrame, rate: np.ndarray, days, rng, holder: str) -> pd.DataFrame:
    """One row per pair and day the pair was used (each day with probability `rate`)."""
    frames = []
    step = 100_000
    for start in range(0, len(pairs), step):
        part = pairs.iloc[start : start + step]
        used = rng.random((len(part), len(days))) < rate[start : start + step, None]
        row, col = np.nonzero(used)
        frame = pd.DataFrame(
            {
                "day": days[col],
                "product_id": part["product_id"].to_numpy()[row],
                holder: part[holder].to_numpy()[row],
            }
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    other = "device_id" if holder == "person_id" else "person_id"
    out[other] = pd.array([pd.NA] * len(out), dtype="Int64")
    out[holder] = out[holder].astype("Int64")
    return out


# --- loading ----------------------------------------------------------------------------------

ORDER = [
    "vendor",
    "product",
    "person",
    "person_status_history",
    "device",
    "contract",
    "installation",
    "assignment",
    "usage_daily",
    "concurrent_peak",
]


def make_store(db: str, refill: bool) -> tuple[str, bool]:
    """The bench store's URL and whether it must be filled."""
    from sqlalchemy import create_engine, text

    from licenseflow import db as store

    if db == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / "bench.db"
        if refill and path.exists():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        fill = not path.exists()
        url = f"sqlite:///{path}"
    else:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": PG_NAME}
            ).scalar()
            if refill and exists:
                conn.execute(text(f'DROP DATABASE "{PG_NAME}" WITH (FORCE)'))
                exists = None
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{PG_NAME}"'))
        admin.dispose()
        fill = refill or not exists
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_NAME}"
    if fill:
        store.upgrade(store.get_engine(url))
    return url, fill


def load(engine, tables: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Bulk-load every table; returns seconds per table (index rebuild included)."""
    times = {}
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        indexes = _drop_indexes(conn, postgres)
    for name in ORDER:
        frame = tables[name]
        started = time.perf_counter()
        raw = engine.raw_connection()
        try:
            if postgres:
                _copy(raw, name, frame)
            else:
                _executemany(raw, name, frame)
            raw.commit()
        finally:
            raw.close()
        times[name] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as conn:
        for ddl in indexes:
            conn.exec_driver_sql(ddl)
        if postgres:
            for name in ORDER[:-1]:  # concurrent_peak has no id
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {name}))"
                )
    times["indexes"] = time.perf_counter() - started
    return times


def _drop_indexes(conn, postgres: bool) -> list[str]:
    names = ", ".join(f"'{t}'" for t in BIG_TABLES)
    if postgres:
        rows = conn.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            f"({names}) AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).all()
    else:
        rows = conn.exec_driver_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({names})"
            " AND sql IS NOT NULL"
        ).all()
    for name, _ in rows:
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
    return [ddl for _, ddl in rows]


def _executemany(raw, name: str, frame: pd.DataFrame) -> None:
    columns = ", ".join(frame.columns)
    marks = ", ".join("?" * len(frame.columns))
    cursor = raw.cursor()
    for start in range(0, len(frame), CHUNK):
        part = frame.iloc[start : start + CHUNK]
        values = [part[c].to_numpy(dtype=object, na_value=None).tolist() for c in part.columns]
        cursor.executemany(
            f"INSERT INTO {name} ({columns}) VALUES ({marks})",  # noqa: S608 - fixed names
            zip(*values, strict=True),
        )


def _copy(raw, name: str, frame: pd.DataFrame) -> None:
    columns = ", ".join(frame.columns)
    with raw.cursor() as cursor:
        for start in range(0, len(frame), CHUNK):
            buffer = io.StringIO()
            frame.iloc[start : start + CHUNK].to_csv(buffer, index=False, header=False)
            with cursor.copy(f"COPY {name} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(buffer.getvalue())


# --- timing -------------------------------------------------------------------------------------


def timed(fn, *args):
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started


def run_once(engine, reports: Path) -> dict[str, float]:
    """One reconciliation, phase by phase, as the flow's tasks do it."""
    from licenseflow.db import unit_of_work
    from tasks import data_quality
    from tasks import reconciliation_store as store
    from tasks.reconciliation import (
        Rules,
        chargeback_frame,
        drift,
        license_position,
        window_start,
    )

    rules = Rules()
    t: dict[str, float] = {}
    total = time.perf_counter()
    with unit_of_work(engine) as s:
        products, t["read products"] = timed(store.read_products, s)
        contracts, t["read contracts"] = timed(store.read_contracts, s)
        seats, t["read seats (as of)"] = timed(store.read_seats, s, DAY)
        installed, t["read installed (as of)"] = timed(
            store.read_installed, s, DAY, products["product_id"]
        )
        since = window_start(DAY, rules.window_days)
        usage, t["read usage (last use per holder)"] = timed(store.read_usage, s, DAY, since)
        metered, t["read metered"] = timed(store.read_metered, s, DAY)
        peaks, t["read peaks"] = timed(store.read_peaks, s, DAY, since)
        people, t["read people (status as of)"] = timed(store.read_people, s, DAY)
        devices, t["read devices"] = timed(store.read_devices, s, people)
    from tasks.reconciliation import Facts

    facts = Facts(
        DAY, products, contracts, seats, installed, usage, metered, peaks, people, devices
    )
    t["read: all facts"] = sum(v for k, v in t.items() if k.startswith("read "))
    position, t["license_position (pure rules)"] = timed(license_position, facts, rules)
    _, t["chargeback (pure)"] = timed(chargeback_frame, facts, position, "cost_center", rules)
    started = time.perf_counter()
    key = f"bench-{time.time_ns()}"
    with unit_of_work(engine) as s:
        previous = store.previous_snapshot(s, key, DAY)
        store.write_snapshot(s, key, DAY, dt.datetime.now(dt.UTC), position)
    drift(previous, position)
    t["snapshot + drift"] = time.perf_counter() - started
    t["reconciliation total"] = time.perf_counter() - total
    with unit_of_work(engine) as s:
        frames, t["data quality: frames (SQL)"] = timed(data_quality.quality_frames, s, DAY)
    _, t["data quality: GE suite + Data Docs"] = timed(
        data_quality.validate, frames, reports, DAY, data_quality.Thresholds()
    )
    t["reconciliation + data quality"] = time.perf_counter() - total
    t["_products"] = len(position)
    t["_frames"] = {k: len(v) for k, v in frames.items()}
    return t


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.exec_driver_sql(f"SELECT COUNT(*) FROM {name}").scalar()  # noqa: S608
            for name in ORDER
        }


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--installs", type=int, default=2_000_000)
    parser.add_argument("--products", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--refill", action="store_true", help="rebuild the bench store")
    parser.add_argument("--sqlite-analyze", action="store_true", help="ANALYZE SQLite first")
    parser.add_argument("--flow", action="store_true", help="also run the Prefect flow once")
    parser.add_argument("--fill-only", action="store_true", help="fill the store, time nothing")
    args = parser.parse_args(argv)

    from licenseflow import db as store

    url, fill = make_store(args.db, args.refill)
    engine = store.get_engine(url)
    if fill:
        started = time.perf_counter()
        world = make_world(args.people, args.devices, args.installs, args.products)
        print(f"generated in {time.perf_counter() - started:.1f} s")
        loaded = load(engine, world)
        del world
        print("loaded:", {k: round(v, 1) for k, v in loaded.items()})
        if args.db == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
    if args.db == "sqlite" and args.sqlite_analyze:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    sizes = counts(engine)
    print("rows:", sizes)
    if args.fill_only:
        return

    import_started = time.perf_counter()
    import great_expectations  # noqa: F401 - its import is measured apart

    ge_import = time.perf_counter() - import_started
    reports = OUT / f"reports_{args.db}"
    runs = [run_once(engine, reports) for _ in range(args.repeat)]
    flow_seconds = run_flow(url) if args.flow else None

    keys = [k for k in runs[0] if not k.startswith("_")]
    print()
    print(
        f"### {args.db}: {sizes['person']:,} people, {sizes['device']:,} devices, "
        f"{sizes['installation']:,} installations, {sizes['product']:,} products, "
        f"{sizes['assignment']:,} seats, {sizes['usage_daily']:,} usage_daily rows"
    )
    print()
    print(f"medians of {args.repeat}; GE import {ge_import:.1f} s (once per process, excluded)")
    print()
    print("| phase | seconds |")
    print("| --- | ---: |")
    for key in keys:
        print(f"| {key} | {statistics.median(r[key] for r in runs):.2f} |")
    if flow_seconds is not None:
        print(
            f"| weekly_reconciliation flow, end to end (ephemeral Prefect) | {flow_seconds:.2f} |"
        )
    print()
    print(
        f"products in the position: {runs[0]['_products']:,}; data-quality frames: "
        f"{runs[0]['_frames']}; peak RSS {rss_mb():,.0f} MB"
    )


def run_flow(url: str) -> float:
    os.environ["SLM_DATABASE_URL"] = url
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from licenseflow.settings import get_settings

    get_settings.cache_clear()
    from flows.weekly_reconciliation import weekly_reconciliation

    started = time.perf_counter()
    weekly_reconciliation(today=DAY.isoformat())
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
