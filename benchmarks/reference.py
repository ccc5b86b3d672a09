"""Every flow on one reference enterprise, in the order the schedules run them (issue 9).

    .venv/bin/python -m benchmarks.reference --db sqlite [--scale 1.0] [--out DIR]
    .venv/bin/python -m benchmarks.reference --db postgresql [--scale 1.0] [--out DIR]
    .venv/bin/python -m benchmarks.reference --merge DIR/reference_sqlite.json \\
        DIR/reference_postgresql.json          # the two runs as one Markdown table
    .venv/bin/python -m benchmarks.reference --db sqlite --bulk-again   # bulk + rollback again

The enterprise comes from benchmarks/generate.py at `--scale` of the reference shape (100k
people, 200k devices, ~2M installation rows, 3,000 long-tail products, ~600k usage events a
day), plus what the generator leaves out: a contract per long-tail product (so the contracts
file covers ~3k products) with the analyst overrides that recognise their titles, and a
second day of installs (1% gone, 2% reinstalled with a new install date, 1% new titles: the
daily case of discovery_bench) written by the generator's own writers.

One store (a SQLite file, or the PostgreSQL database lf_reference_bench, dropped afterwards
unless --keep), and each flow in its own process, so its peak memory (VmHWM) is its own;
the flow call is timed inside that process after Prefect's ephemeral server is up:
contracts-sync, hr-sync, daily-discovery-scan day 1 (full inventory) and day 2 (the delta),
assignment-sync, usage-metering of one day, renewals, weekly-reconciliation,
quarterly-audit-report, bulk-assignment (a batch of 10,000 x scale rows: 70% assigns, 30%
revokes; approval wait excluded, as bulk_bench --flow) and rollback-bulk-assignment.
Each discovery day is compared with a bare load of the same rows (discovery_bench's bare
worker on the rows as one canonical CSV) measured in the same run. Before usage metering,
the quarter's 90 earlier days of usage_daily are filled set-based as reconciliation_bench
does (its `_daily` rows for the open seats, its loaders), so the store holds a quarter.

The result goes to DIR/reference_<db>.json and is printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks import discovery_bench, reconciliation_bench
from benchmarks.generate import REFERENCE, generate
from benchmarks.synth_assignments import make_holdings
from benchmarks.synth_common import DAY, iso_day, write_csv
from benchmarks.synth_contracts import CONTRACT_COLUMNS
from benchmarks.synth_devices import make_devices
from benchmarks.synth_install_files import _canonical, _variant_text, write_installs
from benchmarks.synth_installs import Variants, make_installs
from benchmarks.synth_people import COST_CENTERS, make_people

OUT = Path(__file__).parent / "out"
PG_NAME = "lf_reference_bench"
DAY1, TODAY = dt.date(2026, 11, 23), REFERENCE.date  # the initial scan, then the daily run
QUARTER = f"{TODAY.year}Q{(TODAY.month - 1) // 3 + 1}"
FLOWS = {  # name -> (module, function)
    "contracts-sync": ("flows.contracts_sync", "contracts_sync"),
    "hr-sync": ("flows.hr_sync", "hr_sync"),
    "daily-discovery-scan": ("flows.daily_discovery_scan", "daily_discovery_scan"),
    "assignment-sync": ("flows.assignment_sync", "assignment_sync"),
    "usage-metering": ("flows.usage_metering", "usage_metering"),
    "renewals": ("flows.renewals", "renewals"),
    "weekly-reconciliation": ("flows.weekly_reconciliation", "weekly_reconciliation"),
    "quarterly-audit-report": ("flows.quarterly_audit_report", "quarterly_audit_report"),
    "rollback-bulk-assignment": ("flows.rollback_bulk_assignment", "rollback_bulk_assignment"),
}
GIB4 = 4 * 1024
TARGETS = {  # step -> (text, seconds limit, MiB limit, ratio limit)
    "daily-discovery-scan, day 1 (full)": ("< 4 GiB", None, GIB4, None),
    "daily-discovery-scan, day 2 (delta)": ("<= 3x bare load, < 4 GiB", None, GIB4, 3.0),
    "weekly-reconciliation": ("< 60 s", 60, None, None),
    "quarterly-audit-report": ("< 60 s", 60, None, None),
    "bulk-assignment": ("< 30 s", 30, None, None),
    "rollback-bulk-assignment": ("< 10 s", 10, None, None),
}


# --- the enterprise's files ---------------------------------------------------------------


def make_files(folder: Path, scale: float) -> dict:
    """Generate the enterprise into `folder` (once per scale; reused when complete)."""
    done = folder / "files.json"
    if done.exists():
        return json.loads(done.read_text())
    company = replace(
        REFERENCE,
        people=round(REFERENCE.people * scale),
        devices=round(REFERENCE.devices * scale),
        tail_products=max(round(REFERENCE.tail_products * scale), 30),
    )
    started = time.perf_counter()
    run = generate(folder, company)
    people = make_people(company)
    devices = make_devices(company, people)
    variants = Variants.build(company.tail_products)
    installs = make_installs(
        company, people, devices, make_holdings(company, people, devices), variants
    )
    day1 = sorted(str(p) for p in run.rows if p.parent.parent.name == "installs")
    write_tail_contracts(folder, company, people)
    rng = np.random.default_rng([company.seed, 2])
    day2_installs = next_day(installs, variants, company, rng)
    day2_devices = devices.assign(seen_at=devices["seen_at"] + DAY)
    day2 = write_installs(day2_installs, day2_devices, people, variants, folder / "day2")
    texts = _variant_text(variants)
    bare1, _ = _canonical(installs, devices, people, texts, folder / "bare1")
    bare2, _ = _canonical(day2_installs, day2_devices, people, texts, folder / "bare2")
    files = {
        "day1": day1,
        "day2": sorted(str(p) for p in day2),
        "bare1": str(bare1),
        "bare2": str(bare2),
        "rows": {"day1": len(installs), "day2": len(day2_installs)},
        "people": company.people,
        "devices": company.devices,
        "tail_products": company.tail_products,
        "seconds": round(time.perf_counter() - started, 1),
    }
    done.write_text(json.dumps(files, indent=1))
    return files


def write_tail_contracts(folder: Path, company, people: pd.DataFrame) -> None:
    """A contract per long-tail product (per device: the tail is Windows software), and the
    analyst overrides that recognise its titles as that product."""
    rng = np.random.default_rng([company.seed, 1])
    n = company.tail_products
    index = np.arange(n)
    vendor = [f"Vendor {i % 300}" for i in index]
    code = [f"TAIL-{i:05d}" for i in index]
    start = company.today - rng.integers(30, 700, n)
    end = company.today + rng.integers(10, 720, n)  # some inside the renewal windows
    owner = people["email"].to_numpy()[rng.integers(0, len(people), n)]
    columns = {
        "contract_id": [f"CT-T-{i:05d}" for i in index],
        "product_code": code,
        "product_name": [f"{v} Product {i}" for v, i in zip(vendor, index, strict=True)],
        "vendor": vendor,
        "metric": ["per_device"] * n,
        "seats": rng.integers(5, max(6, company.devices // 20), n).astype(str),
        "unit_cost": [f"{c:.2f}" for c in rng.uniform(10, 900, n)],
        "currency": ["USD"] * n,
        "start_date": [iso_day(d) for d in start],
        "end_date": [iso_day(d) for d in end],
        "auto_renew": np.where(rng.random(n) < 0.3, "true", "false"),
        "notice_days": rng.choice(["0", "30", "60", "90"], n),
        "cost_center": rng.choice(list(COST_CENTERS.values()), n),
        "owner_email": owner,
    }
    assert list(columns) == CONTRACT_COLUMNS
    write_csv(folder / "contracts" / "tail_contracts.csv", columns)
    overrides = [
        {"title": f"{v} Product {i}", "product_code": c}
        for v, i, c in zip(vendor, index, code, strict=True)
    ]
    (folder / "catalog_overrides.yaml").write_text(yaml.safe_dump({"overrides": overrides}))


def next_day(installs: pd.DataFrame, variants: Variants, company, rng) -> pd.DataFrame:
    """The next day's installs: 1% gone, 2% reinstalled (install date today), 1% new titles
    (a random variant of the device's OS it does not have yet), in device order."""
    table = variants.table
    os_of = table["os"].to_numpy()
    day2 = installs[rng.random(len(installs)) >= 0.01].copy()
    day2.loc[rng.random(len(day2)) < 0.02, "install_day"] = company.today
    new = day2.sample(frac=0.01, random_state=rng).copy()
    os = os_of[new["variant"].to_numpy()]
    chosen = new["variant"].to_numpy().copy()
    for kind in np.unique(os):
        options = np.flatnonzero(os_of == kind)
        chosen[os == kind] = options[rng.integers(0, len(options), int((os == kind).sum()))]
    new["variant"] = chosen
    titles = int(table["title_id"].max()) + 1
    title_id = table["title_id"].to_numpy()

    def keys(frame):
        return frame["device"].to_numpy() * titles + title_id[frame["variant"].to_numpy()]

    new = new[~np.isin(keys(new), keys(day2))]
    new = new[~pd.Series(keys(new)).duplicated().to_numpy()]
    merged = pd.concat([day2, new], ignore_index=True)
    return merged.sort_values("device", kind="stable").reset_index(drop=True)


# --- the store ------------------------------------------------------------------------------


def fresh_store(db: str, workdir: Path) -> str:
    from sqlalchemy import create_engine, text

    from licenseflow import db as store

    if db == "sqlite":
        path = workdir / "reference.db"
        for suffix in ("", "-wal", "-shm", "-bulk-lock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        admin = create_engine(discovery_bench.PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{PG_NAME}"'))
        admin.dispose()
    url = store_url(db, workdir)
    store.upgrade(store.get_engine(url))
    return url


def store_url(db: str, workdir: Path) -> str:
    """Where a run keeps its store: reference.db in its folder, or the lf_reference_bench
    database."""
    if db == "sqlite":
        return f"sqlite:///{workdir / 'reference.db'}"
    return discovery_bench.PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_NAME}"


def drop_store(url: str) -> None:
    from sqlalchemy import create_engine, text

    from licenseflow import db as store

    store.get_engine(url).dispose()
    admin = create_engine(discovery_bench.PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)'))
    admin.dispose()


def fill_quarter(url: str) -> int:
    """usage_daily for the 90 days before the metered day, set-based: every open seat used on
    about half the days (10% of them never: reclaimable), as reconciliation_bench fills it.
    Secondary indexes are dropped for the load and rebuilt after it (its helpers)."""
    from licenseflow import db as store

    engine = store.get_engine(url)
    seats = pd.read_sql(
        "SELECT product_id, person_id, device_id FROM assignment WHERE revoked_at IS NULL", engine
    )
    days = pd.date_range(DAY1 - dt.timedelta(days=90), DAY1 - dt.timedelta(days=1))
    days = days.strftime("%Y-%m-%d").to_numpy()
    rng = np.random.default_rng(91)
    frames = []
    for holder in ("person_id", "device_id"):
        pairs = seats.loc[seats[holder].notna(), ["product_id", holder]].drop_duplicates()
        pairs[holder] = pairs[holder].astype("int64")
        rate = np.where(rng.random(len(pairs)) < 0.1, 0.0, 0.5)
        if len(pairs):
            frames.append(reconciliation_bench._daily(pairs, rate, days, rng, holder))
    usage = pd.concat(frames, ignore_index=True)
    usage["sessions"] = 1
    usage["minutes"] = 10.0
    usage["last_activity"] = usage["day"] + " 10:00:00.000000"
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        indexes = reconciliation_bench._drop_indexes(conn, postgres)
    raw = engine.raw_connection()
    try:
        load = reconciliation_bench._copy if postgres else reconciliation_bench._executemany
        load(raw, "usage_daily", usage)
        raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        for ddl in indexes:
            conn.exec_driver_sql(ddl)
    if postgres:  # what autovacuum does by itself after such a load
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return len(usage)


def write_batch(url: str, rows: int, path: Path, note: str = "reference benchmark") -> int:
    """A bulk batch of `rows` changes from the store as it stands: 30% revokes of open seats
    of active people, 70% assigns of per-user products under contract to active people who
    do not hold them."""
    from licenseflow import db as store

    engine = store.get_engine(url)
    people = pd.read_sql(
        "SELECT id, email FROM person WHERE status = 'active' AND termination_date IS NULL",
        engine,
    ).set_index("id")["email"]
    products = pd.read_sql(
        "SELECT id, code FROM product WHERE metric = 'per_user' AND id IN "
        "(SELECT product_id FROM contract)",
        engine,
    ).set_index("id")["code"]
    seats = pd.read_sql(
        "SELECT product_id, person_id FROM assignment "
        "WHERE revoked_at IS NULL AND person_id IS NOT NULL",
        engine,
    )
    seats = seats[seats["person_id"].isin(people.index) & seats["product_id"].isin(products.index)]
    rng = np.random.default_rng(10)
    revoke = seats.sample(n=min(int(rows * 0.3), len(seats)), random_state=rng)
    draws = pd.DataFrame(
        {
            "product_id": rng.choice(products.index.to_numpy(), rows * 3),
            "person_id": rng.choice(people.index.to_numpy(), rows * 3),
        }
    ).drop_duplicates()
    held = pd.MultiIndex.from_frame(seats[["product_id", "person_id"]])
    assign = draws[~pd.MultiIndex.from_frame(draws).isin(held)].head(rows - len(revoke))
    batch = pd.concat([revoke.assign(action="revoke"), assign.assign(action="assign")])
    batch = batch.sample(frac=1, random_state=rng)
    write_csv(
        path,
        {
            "action": batch["action"].to_numpy(dtype=object),
            "product_code": products.loc[batch["product_id"]].to_numpy(dtype=object),
            "user": people.loc[batch["person_id"]].to_numpy(dtype=object),
            "device": [None] * len(batch),
            "pilot": [None] * len(batch),
            "note": [note] * len(batch),
        },
    )
    return len(batch)


def counts(url: str) -> dict[str, int]:
    from licenseflow import db as store

    tables = ["person", "device", "product", "contract", "installation", "assignment"]
    tables += ["usage_daily", "audit_log"]
    with store.get_engine(url).connect() as conn:
        return {
            t: conn.exec_driver_sql(f"SELECT COUNT(*) FROM {t}").scalar()  # noqa: S608
            for t in tables
        }


# --- workers (each in its own process) --------------------------------------------------


def peak_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, not ru_maxrss: a child inherits
    its parent's ru_maxrss at fork, so the driver's own peak would show in every worker."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gist(result) -> dict:
    """The flow's plain numbers (what it did), small enough for the JSON."""
    if isinstance(result, list):
        return {"items": len(result)}
    if not isinstance(result, dict):
        return {}
    return {k: v for k, v in result.items() if isinstance(v, int | float | str) and len(k) < 40}


def warm_up() -> None:
    """Start Prefect's ephemeral server before the clock starts."""
    from prefect import flow

    flow(name="warm-up")(lambda: None)()


def worker_flow(name: str, kwargs: dict) -> dict:
    import importlib

    module, function = FLOWS[name]
    run = getattr(importlib.import_module(module), function)
    warm_up()
    started = time.perf_counter()
    result = run(**kwargs)
    return {"seconds": time.perf_counter() - started, "peak_mib": peak_mib(), "gist": gist(result)}


def worker_bulk(path: str) -> dict:
    from benchmarks import bulk_bench

    warm_up()
    seconds, batch_id = bulk_bench.run_flow_approved(Path(path), "reference benchmark")
    return {"seconds": seconds, "peak_mib": peak_mib(), "gist": {"batch_id": batch_id}}


def run_worker(*args: str) -> dict:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.reference", "--worker", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
        print(out.stderr[-3000:], file=sys.stderr)
        return {"error": tail[0][:300], "process_s": time.perf_counter() - started}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


# --- the run ----------------------------------------------------------------------------------


def use_store(url: str, workdir: Path, data: Path) -> None:
    """The settings every flow of a run reads (the workers inherit them)."""
    os.environ |= {
        "SLM_DATABASE_URL": url,
        "SLM_DATA_DIR": str(workdir / "runtime"),
        "SLM_SOURCES_FILE": str(data / "sources.yaml"),
        "SLM_OVERRIDES_FILE": str(data / "catalog_overrides.yaml"),
        "SLM_BULK_APPROVAL_POLL_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    from licenseflow.prefect_env import configure_prefect_defaults
    from licenseflow.settings import get_settings

    get_settings.cache_clear()
    configure_prefect_defaults()


def bulk_again(db: str, scale: float, out: Path) -> list[dict]:
    """On the store an earlier run left (its SQLite file, or the PostgreSQL database kept
    with --keep), migrated to the current schema: a new 10k-row batch from the store as it
    stands and its rollback, each in its own process as in the run. For before/after figures
    of the bulk path on the same store (check out the old code, run, check out the new)."""
    from licenseflow import db as store

    workdir = out / "reference" / f"{db}_{scale:g}"
    url = store_url(db, workdir)
    use_store(url, workdir, out / "reference" / f"files_{scale:g}")
    store.upgrade(store.get_engine(url))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    batch = workdir / f"bulk_batch_{stamp}.csv"  # a new file: the same one is refused
    rows = write_batch(url, max(round(10_000 * scale), 20), batch, f"again {stamp}")
    steps = [{"flow": "bulk-assignment", **run_worker("bulk", str(batch)), "rows": rows}]
    if "error" not in steps[0]:
        batch_id = steps[0]["gist"]["batch_id"]
        kwargs = json.dumps({"batch_id": batch_id, "actor": "reference-bench"})
        rollback = run_worker("flow", "rollback-bulk-assignment", kwargs)
        steps.append({"flow": "rollback-bulk-assignment", **rollback})
    return steps


def run(db: str, scale: float, out: Path, keep: bool) -> dict:
    data = out / "reference" / f"files_{scale:g}"
    t = time.perf_counter()
    files = make_files(data, scale)
    setup = {"generate files": time.perf_counter() - t}
    workdir = out / "reference" / f"{db}_{scale:g}"
    (workdir / "runtime").mkdir(parents=True, exist_ok=True)  # Prefect's home is in there
    url = fresh_store(db, workdir)
    use_store(url, workdir, data)
    steps: list[dict] = []

    def step(label: str, *worker: str, **extra) -> dict:
        print(f"# {label} ...", file=sys.stderr, flush=True)
        result = {"flow": label, **run_worker(*worker), **extra}
        steps.append(result)
        shown = {k: result.get(k) for k in ("seconds", "peak_mib", "error") if k in result}
        print(f"#   {shown}", file=sys.stderr, flush=True)
        return result

    def flow(label: str, name: str, **kwargs) -> dict:
        return step(label, "flow", name, json.dumps(kwargs))

    def bare(path: str) -> float:
        return discovery_bench.run_worker("bare", url, path)["seconds"]

    try:
        flow("contracts-sync", "contracts-sync")
        flow("hr-sync", "hr-sync", today=TODAY.isoformat())
        for n, day, key in ((1, DAY1, "day1"), (2, TODAY, "day2")):
            label = f"daily-discovery-scan, day {n} ({'full' if n == 1 else 'delta'})"
            scan = flow(label, "daily-discovery-scan", files=files[key], today=day.isoformat())
            scan["bare_s"] = bare(files[f"bare{n}"])
            scan["rows"] = files["rows"][key]
        if (Path(__file__).parents[1] / "flows" / "assignment_sync.py").exists():
            flow("assignment-sync", "assignment-sync", today=TODAY.isoformat())
        else:
            skipped = "skipped: no flows/assignment_sync.py"
            steps.append({"flow": "assignment-sync", "note": skipped})
        t = time.perf_counter()
        setup["usage_daily rows filled"] = fill_quarter(url)
        setup["fill the quarter's usage_daily"] = time.perf_counter() - t
        flow("usage-metering", "usage-metering", now=f"{TODAY.isoformat()}T06:00:00+00:00")
        flow("renewals", "renewals", today=TODAY.isoformat())
        flow("weekly-reconciliation", "weekly-reconciliation", today=TODAY.isoformat())
        flow(
            "quarterly-audit-report",
            "quarterly-audit-report",
            quarter=QUARTER,
            as_of=TODAY.isoformat(),
        )
        batch = workdir / "bulk_batch.csv"
        rows = write_batch(url, max(round(10_000 * scale), 20), batch)
        bulk = step("bulk-assignment", "bulk", str(batch), rows=rows)
        if "error" not in bulk:
            flow(
                "rollback-bulk-assignment",
                "rollback-bulk-assignment",
                batch_id=bulk["gist"]["batch_id"],
                actor="reference-bench",
            )
        sizes = counts(url)
    finally:
        if db == "postgresql" and not keep:
            drop_store(url)
    return {
        "db": db,
        "scale": scale,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "files": files,
        "setup": setup,
        "counts": sizes,
        "flows": steps,
    }


# --- the table -----------------------------------------------------------------------------


def verdict(row: dict) -> bool | None:
    """Whether the row meets its target (None: no target or no measurement)."""
    target = TARGETS.get(row["flow"])
    if target is None or "seconds" not in row:
        return None
    _, seconds, mib, ratio = target
    ok = True
    if seconds is not None:
        ok &= row["seconds"] < seconds
    if mib is not None:
        ok &= row["peak_mib"] < mib
    if ratio is not None:
        ok &= row["seconds"] / row["bare_s"] <= ratio
    return ok


def table(results: list[dict]) -> str:
    """flow | wall s and peak MiB per database | ratio to bare load | target | met?"""
    by_db = {r["db"]: {row["flow"]: row for row in r["flows"]} for r in results}
    names = {"sqlite": "SQLite", "postgresql": "PG"}
    order = list(dict.fromkeys(row["flow"] for r in results for row in r["flows"]))
    head = ["flow"]
    for db in by_db:
        head += [f"{names[db]} wall s", f"{names[db]} peak MiB"]
    head += ["ratio to bare load", "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" + " ---: |" * (len(head) - 3)]
    lines[-1] += " --- | --- |"
    for flow in order:
        cells, ratios, met = [flow], [], []
        for db, rows in by_db.items():
            row = rows.get(flow, {})
            if "seconds" in row:
                cells += [f"{row['seconds']:.1f}", f"{row['peak_mib']:,.0f}"]
            else:
                cells += [row.get("error") or row.get("note") or "-", ""]
            if "bare_s" in row and "seconds" in row:
                ratios.append(
                    f"{names[db]} {row['seconds'] / row['bare_s']:.1f}x ({row['bare_s']:.1f} s)"
                )
            ok = verdict(row)
            if ok is not None:
                met.append(f"{names[db]} {'yes' if ok else '**no**'}")
        target = TARGETS.get(flow, ("",))[0]
        lines.append("| " + " | ".join([*cells, "; ".join(ratios), target, "; ".join(met)]) + " |")
    scales = sorted({r["scale"] for r in results})
    notes = [
        f"{r['db']}: scale {r['scale']:g}, {r['date']}, load average "
        f"{' / '.join(map(str, r['load_average']))} at the end, {r['cores']} cores; store: "
        + ", ".join(f"{k} {v:,}" for k, v in r["counts"].items())
        for r in results
    ]
    if scales != [1.0]:
        notes.append("targets are for scale 1; at a smaller scale 'met?' says little")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reference", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--scale", type=float, default=1.0, help="share of the reference size")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for files and results")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument("--merge", nargs="+", type=Path, help="result JSONs to tabulate")
    parser.add_argument(
        "--bulk-again",
        action="store_true",
        help="a new bulk batch and its rollback on the store an earlier run left",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from licenseflow.prefect_env import configure_prefect_defaults

        configure_prefect_defaults()
        kind, *rest = args.worker
        result = worker_bulk(*rest) if kind == "bulk" else worker_flow(rest[0], json.loads(rest[1]))
        print(json.dumps(result, default=str))
        return
    if args.merge:
        print(table([json.loads(path.read_text()) for path in args.merge]))
        return
    if args.bulk_again:
        for step in bulk_again(args.db, args.scale, args.out):
            shown = {k: step.get(k) for k in ("flow", "seconds", "peak_mib", "error") if k in step}
            print(json.dumps(shown, default=str))
        return
    result = run(args.db, args.scale, args.out, args.keep)
    path = args.out / f"reference_{args.db}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {path}\n")
    print(table([result]))


if __name__ == "__main__":
    main()
