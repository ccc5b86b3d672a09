"""Discovery scan at the reference scale: 200k devices, 2M installation rows a day.

    .venv/bin/python -m benchmarks.discovery_bench --db sqlite
    .venv/bin/python -m benchmarks.discovery_bench --db postgresql [--rows 2000000]

Day 1 is a full inventory (the initial load); day 2 is the same inventory with 1% of the
rows new, 1% gone and 2% changed (versions): the daily case. Each measurement runs in its
own process so its peak memory (ru_maxrss) is its own:

- bare load: the day-2 rows into a staging table the fastest way the database takes them
  (PostgreSQL COPY, SQLite executemany in one transaction) and nothing else;
- the daily scan: the real `daily_discovery_scan` flow (read, validate, recognise, diff
  against day 1, apply, flag) on the day-2 file, timed inside the process after Prefect's
  ephemeral server is up, plus its phases timed by calling the same functions directly on a
  copy of the day-1 store (so the measured flow meets the store as day 1 left it).

Between the two days PostgreSQL gets VACUUM ANALYZE: what its autovacuum does by itself
after a 2M-row load (this shared server runs with autovacuum off). Without it the first
scan after the load also pays, once, for setting the hint bits of all 2M new rows.

Results are printed as a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

OUT = Path(__file__).parent / "out" / "discovery"
PG_ADMIN = os.environ.get(
    "SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SUFFIXES = np.array(["", " (x64)", " (64-bit)", " - en-us", " 2023", " x64 en-US", " ™"])


# --- data -----------------------------------------------------------------------------


def make_inventory(rows: int, devices: int, seed: int = 7) -> pd.DataFrame:
    """A canonical installs frame: catalog titles in messy spellings plus a long tail."""
    import yaml

    rng = np.random.default_rng(seed)
    catalog = yaml.safe_load(Path("data/catalog.yaml").read_text())["products"]
    names = np.array(
        [p["name"] for p in catalog] + [f"Vendor {i % 300} Tool {i}" for i in range(3000)]
    )
    publishers = np.array(
        [p.get("vendor", "") for p in catalog] + [f"Vendor {i % 300}" for i in range(3000)]
    )
    per_device = rows // devices
    host = np.repeat(np.arange(devices), per_device)
    # each device gets distinct titles: offset + stride over the title list
    title = (np.tile(np.arange(per_device), devices) * 37 + host * 11) % len(names)
    suffix = rng.integers(0, len(SUFFIXES), len(host))
    frame = pd.DataFrame(
        {
            "hostname": pd.Series(np.char.add("ws-", host.astype(str))),
            "device_serial": pd.Series(np.char.add("SN", host.astype(str))),
            "os": "Windows 11 Enterprise",
            "primary_user_email": pd.Series(
                np.char.add(np.char.add("u", host.astype(str)), "@corp.example")
            ),
            "software_name": pd.Series(np.char.add(names[title].astype(str), SUFFIXES[suffix])),
            "publisher": publishers[title],
            "version": pd.Series(rng.integers(1, 30, len(host)).astype(str)),
            "install_date": "2025-01-15",
            "last_seen": "2026-11-23T06:00:00Z",
        }
    )
    return frame.drop_duplicates(["hostname", "software_name", "publisher"])


def next_day(day1: pd.DataFrame, seed: int = 8) -> pd.DataFrame:
    """1% of rows gone, 2% changed (new version), 1% new titles."""
    rng = np.random.default_rng(seed)
    n = len(day1)
    keep = rng.random(n) >= 0.01
    day2 = day1[keep].copy()
    changed = rng.random(len(day2)) < 0.02
    day2.loc[changed, "version"] = day2.loc[changed, "version"] + ".1"
    new = day2.sample(n=n // 100, random_state=seed).copy()
    new["software_name"] = new["software_name"] + " Extra"
    day2 = pd.concat([day2, new]).drop_duplicates(["hostname", "software_name", "publisher"])
    day2["last_seen"] = "2026-11-24T06:00:00Z"
    return day2


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)


# --- workers (each in its own process) --------------------------------------------------


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_bare(day2: Path) -> dict:
    from licenseflow.db import bulk_load, unit_of_work
    from tasks import discovery
    from tasks.discovery_adapters import read_installs

    frame = read_installs(day2, "canonical").frame
    staged = pd.DataFrame({c: frame.get(c) for c in discovery.STAGE_COLUMNS})
    started = time.perf_counter()
    with unit_of_work() as session:
        discovery.create_staging(session)
        bulk_load(session, "stage_install", staged)
    return {"seconds": time.perf_counter() - started, "rows": len(staged), "peak_mib": peak_mib()}


def worker_scan(path: Path, today: str) -> dict:
    from prefect import flow

    from flows.daily_discovery_scan import daily_discovery_scan

    @flow
    def warm_up() -> None:
        """Start Prefect's ephemeral server before the clock starts."""

    warm_up()
    started = time.perf_counter()
    summary = daily_discovery_scan(files=[str(path)], today=today)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_mib": peak_mib(),
        "new": summary["new"],
        "changed": summary["changed"],
        "removed": summary["removed"],
    }


def worker_phases(path: Path) -> dict:
    """The same steps as the flow, timed one by one (no Prefect), on a copy of day 1."""
    import datetime as dt

    from licenseflow.db import unit_of_work
    from tasks import discovery, recognition
    from tasks.discovery_adapters import read_installs

    times = {}
    t = time.perf_counter()
    read = read_installs(path, "canonical")
    times["read + validate"] = time.perf_counter() - t
    t = time.perf_counter()
    catalog = recognition.load_catalog()
    recognised = recognition.recognize(read.frame, catalog, {})
    times["recognise"] = time.perf_counter() - t
    t = time.perf_counter()
    with unit_of_work() as session:
        ids = discovery.product_ids(session)
    staged = discovery.prepare(read.frame, recognised, ids, read.snapshot)
    times["prepare (keys, hashes)"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        with unit_of_work() as session:
            delta = discovery.apply_staged(session, staged, dt.datetime.now(dt.UTC))
            raise _Discard  # measure only: the flow run applies the file for real
    except _Discard:
        pass
    times["stage + diff + apply"] = time.perf_counter() - t
    return {"phases": times, "peak_mib": peak_mib(), "delta": delta.astuple()}


class _Discard(Exception):
    """Rolls a measured transaction back."""


# --- driver ---------------------------------------------------------------------------


def run_worker(kind: str, url: str, *args: str) -> dict:
    env = {**os.environ, "SLM_DATABASE_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.discovery_bench", "--worker", kind, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fresh_store(db: str) -> str:
    from sqlalchemy import create_engine, text

    from licenseflow import db as store

    if db == "sqlite":
        path = OUT / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "lf_bench" WITH (FORCE)'))
            conn.execute(text('CREATE DATABASE "lf_bench"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + "/lf_bench"
    engine = store.get_engine(url)
    store.upgrade(engine)
    engine.dispose()  # no connection left open: copy_store copies the database
    return url


def settle(url: str) -> None:
    """PostgreSQL: what autovacuum does after a big load (statistics, visibility, hint bits)."""
    from sqlalchemy import create_engine

    if url.startswith("postgresql"):
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        engine.dispose()


def copy_store(url: str) -> str:
    """A copy of the store as it is, for the phase timings (which roll back their apply)."""
    from sqlalchemy import create_engine, text

    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        copy = path.with_name("bench_phases.db")
        shutil.copyfile(path, copy)
        return f"sqlite:///{copy}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "lf_bench_phases" WITH (FORCE)'))
        conn.execute(
            text('CREATE DATABASE "lf_bench_phases" TEMPLATE "lf_bench" STRATEGY FILE_COPY')
        )
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/lf_bench_phases"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        from licenseflow.prefect_env import configure_prefect_defaults

        configure_prefect_defaults()
        result = {
            "bare": lambda: worker_bare(Path(options.args[0])),
            "scan": lambda: worker_scan(Path(options.args[0]), options.args[1]),
            "phases": lambda: worker_phases(Path(options.args[0])),
        }[options.worker]()
        print(json.dumps(result))
        return

    day1_path = OUT / f"day1_{options.rows}.csv"
    day2_path = OUT / f"day2_{options.rows}.csv"
    if not day2_path.exists():
        t = time.perf_counter()
        day1 = make_inventory(options.rows, options.devices)
        write_csv(day1, day1_path)
        write_csv(next_day(day1), day2_path)
        print(f"generated {len(day1):,} rows in {time.perf_counter() - t:.1f}s", file=sys.stderr)

    url = fresh_store(options.db)
    initial = run_worker("scan", url, str(day1_path), "2026-11-23")
    settle(url)
    phases_url = copy_store(url)
    daily = run_worker("scan", url, str(day2_path), "2026-11-24")
    phases = run_worker("phases", phases_url, str(day2_path))
    bare = run_worker("bare", url, str(day2_path))

    print(
        f"\n### Discovery scan, {options.db}, {bare['rows']:,} rows, {options.devices:,} devices\n"
    )
    print("| step | wall s | peak MiB | note |")
    print("| --- | ---: | ---: | --- |")
    bare_s, bare_mib = bare["seconds"], bare["peak_mib"]
    print(f"| bare load into staging | {bare_s:.1f} | {bare_mib:.0f} | the reference |")
    print(
        f"| initial scan (day 1, all new) | {initial['seconds']:.1f} | {initial['peak_mib']:.0f} | "
        f"{initial['new']:,} new |"
    )
    for name, seconds in phases["phases"].items():
        print(f"| - {name} | {seconds:.1f} | | |")
    print(
        f"| **daily scan (day 2, flow)** | **{daily['seconds']:.1f}** | "
        f"**{daily['peak_mib']:.0f}** | {daily['new']:,} new, {daily['changed']:,} changed, "
        f"{daily['removed']:,} removed; "
        f"**{daily['seconds'] / bare['seconds']:.2f}x bare load** |"
    )


if __name__ == "__main__":
    main()
