"""Bulk assignment at scale: a 10,000-row batch from validation to completed rollout, and its
rollback, on SQLite and PostgreSQL. Target (issue 8): under 30 s and under 10 s on 2 cores.

    .venv/bin/python -m benchmarks.bulk_bench --db sqlite
    .venv/bin/python -m benchmarks.bulk_bench --db postgresql [--rows 10000] [--repeat 3]
    .venv/bin/python -m benchmarks.bulk_bench --db sqlite --flow   # through Prefect too

The store: 20,000 people, 2,000 devices, eight products with contracts, 12,000 open seats.
The batch: 70% assigns to people without the product, 30% revokes of existing seats, spread
over the products, pilot 10 rows. Stages are timed by calling the same functions the flow
calls (the human approval wait is excluded: the approval is recorded directly). With --flow
the real bulk_assignment flow also runs (ephemeral Prefect, started before the clock; a
thread approving as soon as the run pauses; the time from the approval request to the
recorded decision is subtracted). Each repetition rolls the batch back, so
the next one starts from the same state; medians are reported as a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

PG_ADMIN = os.environ.get(
    "SLM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PRODUCTS = [
    # code, metric, seats owned, unit cost, open seats to start with
    ("MS-M365-E3", "per_user", 20_000, "360", 6_000),
    ("MS-VISIO-PLAN2", "per_user", 4_000, "180", 1_500),
    ("MS-PROJECT-PLAN3", "per_user", 3_000, "300", 1_000),
    ("ADOBE-ACROBAT-PRO", "per_user", 5_000, "200", 2_000),
    ("JETBRAINS-PYCHARM-PRO", "per_user", 2_000, "250", 500),
    ("ZOOM-WORKPLACE", "per_user", 8_000, "150", 500),
    ("WINRAR", "per_device", 2_000, "30", 400),
    ("VMWARE-WORKSTATION-PRO", "per_device", 1_000, "200", 100),
]
PEOPLE, DEVICES = 20_000, 2_000


def make_store(db: str, workdir: Path) -> str:
    """A fresh migrated store; returns its URL."""
    from sqlalchemy import create_engine, text

    from licenseflow import db as store

    if db == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        name = f"lf_bulk_bench_{os.getpid()}"
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


def seed(engine, rng) -> dict:
    """People, devices, products, contracts (bulk inserts) and the open seats (one apply)."""
    from sqlalchemy import insert, select

    from licenseflow.db import unit_of_work
    from schemas.store import Contract, Device, Person, Product
    from tasks.assignments import AssignmentService, SeatChange

    with unit_of_work(engine) as session:
        session.execute(
            insert(Person),
            [
                {
                    "employee_id": f"E{i:06d}",
                    "email": f"user{i:06d}@corp.example",
                    "full_name": f"User {i}",
                    "status": "active",
                }
                for i in range(PEOPLE)
            ],
        )
        session.execute(insert(Device), [{"hostname": f"ws-{i:05d}"} for i in range(DEVICES)])
        session.execute(
            insert(Product),
            [{"code": c, "name": c.title(), "metric": m} for c, m, *_ in PRODUCTS],
        )
        ids = dict(session.execute(select(Product.code, Product.id)).all())
        session.execute(
            insert(Contract),
            [
                {
                    "contract_number": f"C-{c}",
                    "product_id": ids[c],
                    "seats": seats,
                    "unit_cost": Decimal(cost),
                    "currency": "EUR",
                    "start_date": dt.date(2020, 1, 1),
                    "end_date": dt.date(2099, 12, 31),
                }
                for c, _, seats, cost, _ in PRODUCTS
            ],
        )
        people = dict(session.execute(select(Person.email, Person.id)).all())
        devices = dict(session.execute(select(Device.hostname, Device.id)).all())
    holders: dict[str, list[str]] = {}
    changes = []
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for code, metric, _, _, start in PRODUCTS:
        pool = list(people) if metric == "per_user" else list(devices)
        chosen = [pool[i] for i in rng.choice(len(pool), start, replace=False)]
        holders[code] = chosen
        for name in chosen:
            person = people.get(name)
            changes.append(
                SeatChange(
                    "assign",
                    ids[code],
                    person,
                    None if person else devices[name],
                    reason="seed",
                    assigned_at=at,
                )
            )
    with unit_of_work(engine) as session:
        AssignmentService(session, "seed").apply(changes)
    return {"holders": holders, "people": list(people), "devices": list(devices)}


def write_batch(world: dict, rows: int, path: Path, rng) -> None:
    """rows changes: 30% revokes of open seats, 70% assigns of seats not yet held."""
    lines = ["action,product_code,user,device,pilot,note"]
    revokes, assigns = int(rows * 0.3), rows - int(rows * 0.3)
    per = {}
    for code, *_ in PRODUCTS:
        held = len(world["holders"][code])
        per[code] = (min(revokes // len(PRODUCTS), held // 2), assigns // len(PRODUCTS))
    first = PRODUCTS[0][0]  # the largest product takes what the others could not
    per[first] = (
        revokes - sum(r for r, _ in per.values()) + per[first][0],
        assigns - sum(a for _, a in per.values()) + per[first][1],
    )
    for code, metric, *_ in PRODUCTS:
        n_revoke, n_assign = per[code]
        held = world["holders"][code]
        pool = world["people"] if metric == "per_user" else world["devices"]
        free = sorted(set(pool) - set(held))
        take = [free[i] for i in rng.choice(len(free), n_assign, replace=False)]
        for name in held[:n_revoke]:
            user, device = (name, "") if metric == "per_user" else ("", name)
            lines.append(f"revoke,{code},{user},{device},,")
        for name in take:
            user, device = (name, "") if metric == "per_user" else ("", name)
            lines.append(f"assign,{code},{user},{device},,bench")
    path.write_text("\n".join(lines) + "\n")


def run_stages(engine, path: Path) -> dict:
    from tasks import bulk_apply
    from tasks.bulk import back_up, submit
    from tasks.bulk_approval import decide, open_for_approval

    times = {}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    submitted = submit(engine, path, "bench-requester", pilot_size=10)
    assert submitted.state == "validated", submitted.errors[:5]
    times["validate + impact"] = time.perf_counter() - t0
    t = time.perf_counter()
    back_up(engine, submitted.batch_id)
    times["backup (store + file, verified)"] = time.perf_counter() - t
    open_for_approval(engine, submitted.batch_id, None)
    decide(engine, submitted.batch_id, "approve", "bench-approver")  # no human wait
    t = time.perf_counter()
    state = bulk_apply.apply_batch(engine, submitted.batch_id)
    assert state == "rolled_out", state
    times["re-check + pilot + health + rollout"] = time.perf_counter() - t
    times["validation to completed rollout"] = time.perf_counter() - t0
    times["_cpu_total"] = time.process_time() - cpu0
    cpu = time.process_time()
    t = time.perf_counter()
    result = bulk_apply.roll_back(engine, submitted.batch_id, "bench-operator")
    times["rollback"] = time.perf_counter() - t
    times["_cpu_rollback"] = time.process_time() - cpu
    times["_seats"] = result.revoked + result.reopened
    return times


def run_flow(path: Path) -> float:
    """The real flow, approved, then its batch rolled back so the next run starts the same."""
    from licenseflow.db import get_engine
    from tasks import bulk_apply

    seconds, batch_id = run_flow_approved(path)
    bulk_apply.roll_back(get_engine(), batch_id, "bench-operator")
    return seconds


def run_flow_approved(path: Path, override_reason: str | None = None) -> tuple[float, str]:
    """The real flow; a thread approves as soon as the run pauses; the pause is subtracted.
    Returns (seconds, batch id); the batch stays rolled out."""
    from sqlalchemy import select

    from flows.bulk_assignment import bulk_assignment
    from licenseflow.db import get_engine, unit_of_work
    from schemas.store import BulkBatch
    from tasks.bulk_approval import resume_waiting_run

    engine = get_engine()
    paused = {}

    def approver():
        try:
            approve_when_paused()
        except BaseException as exc:  # never leave the flow waiting a day for a dead thread
            paused["error"] = exc
            raise

    def approve_when_paused():
        while True:
            with unit_of_work(engine) as session:
                row = session.execute(
                    select(BulkBatch.id, BulkBatch.flow_run_id).where(
                        BulkBatch.state == "awaiting_approval"
                    )
                ).first()
            if row and row.flow_run_id and resume_waiting_run(row.flow_run_id, "approve", "bench"):
                paused["batch"] = row.id
                return
            time.sleep(0.05)

    thread = threading.Thread(target=approver, daemon=True)
    thread.start()
    t = time.perf_counter()
    result = bulk_assignment(
        file=str(path),
        requester="bench-requester",
        pilot_size=10,
        override_reason=override_reason,
        approval_timeout_seconds=600,
    )
    total = time.perf_counter() - t
    thread.join(5)
    assert result["state"] == "rolled_out", result["state"]
    # the wait: from asking for approval until the run, resumed, records the decision
    at = {e["state"]: e["at"] for e in result["events"]}
    return total - (at["approved"] - at["awaiting_approval"]).total_seconds(), paused["batch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flow", action="store_true", help="also time the Prefect flow")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="slm-bulk-bench-"))
    os.environ["SLM_DATA_DIR"] = str(workdir)
    from licenseflow.prefect_env import configure_prefect_defaults

    configure_prefect_defaults()  # quiet, patient ephemeral server, PREFECT_HOME in workdir
    url = make_store(args.db, workdir)
    os.environ["SLM_DATABASE_URL"] = url
    from licenseflow.db import get_engine
    from licenseflow.settings import get_settings

    get_settings.cache_clear()
    engine = get_engine(url)
    try:
        rng = np.random.default_rng(8)
        t = time.perf_counter()
        world = seed(engine, rng)
        print(
            f"seeded {PEOPLE} people, {DEVICES} devices, 12,000 seats in "
            f"{time.perf_counter() - t:.1f} s"
        )
        path = workdir / "batch.csv"
        write_batch(world, args.rows, path, rng)
        runs = [run_stages(engine, path) for _ in range(args.repeat)]
        flow_times = []
        if args.flow:
            from prefect import flow

            flow(name="warm-up")(lambda: None)()  # the ephemeral server starts here, untimed
            flow_times = [run_flow(path) for _ in range(args.repeat)]
    finally:
        drop_store(args.db, url)

    print(
        f"\n{args.rows:,}-row bulk batch on {args.db} (median of {args.repeat}; "
        f"{os.cpu_count()} cores)\n"
    )
    print("| stage | seconds |")
    print("| --- | ---: |")
    for stage in runs[0]:
        if stage.startswith("_"):
            continue
        print(f"| {stage} | {statistics.median(r[stage] for r in runs):.2f} |")
    if flow_times:
        print(
            f"| the bulk_assignment flow, validation to rolled_out, approval wait excluded | "
            f"{statistics.median(flow_times):.2f} |"
        )
    cpu_total = statistics.median(r["_cpu_total"] for r in runs)
    cpu_rollback = statistics.median(r["_cpu_rollback"] for r in runs)
    print(
        f"\nrollback restored {runs[0]['_seats']:,} seats each time; CPU time of this process "
        f"(the database server's excluded): {cpu_total:.2f} s validation to rollout, "
        f"{cpu_rollback:.2f} s rollback; load average when done: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    )


if __name__ == "__main__":
    main()
