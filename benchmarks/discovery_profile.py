"""Where one daily discovery scan spends its time: the real flow, with its steps and every SQL
statement timed (a SQLAlchemy cursor hook), on the store SLM_DATABASE_URL names.

    # a copy of a day-1 store made by discovery_bench (PostgreSQL), then the day-2 file
    createdb -h 127.0.0.1 -U postgres -T lf_bench_phases --strategy=FILE_COPY lf_try
    SLM_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/lf_try \\
        .venv/bin/python -m benchmarks.discovery_profile \\
        benchmarks/out/discovery/day2_2000000.csv 2026-11-24 [--explain]

The scan applies the file for real: profile a copy. --explain (PostgreSQL) logs the plan of
every statement over 0.4 s to the server's log (auto_explain, needs a superuser).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

SPENT: defaultdict[str, float] = defaultdict(float)


def timed(module, name: str, label: str | None = None) -> None:
    """Replace module.name by a wrapper adding its time to SPENT[label or name]."""
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label or name] += time.perf_counter() - started

    setattr(module, name, wrapper)


def time_statements() -> None:
    @event.listens_for(Engine, "before_cursor_execute")
    def started(conn, cursor, statement, parameters, context, executemany):
        conn.info["statement_started"] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def finished(conn, cursor, statement, parameters, context, executemany):
        seconds = time.perf_counter() - conn.info.pop("statement_started", time.perf_counter())
        SPENT["sql: " + " ".join(statement.split())[:70]] += seconds


def explain_slow_statements() -> None:
    @event.listens_for(Pool, "connect")
    def load_auto_explain(connection, record):
        if "psycopg" not in type(connection).__module__:
            return
        with connection.cursor() as cursor:
            cursor.execute("LOAD 'auto_explain'")
            cursor.execute("SET auto_explain.log_min_duration = 400")
            cursor.execute("SET auto_explain.log_analyze = on")
        connection.commit()  # SET is transactional: a rollback would undo it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("today")
    parser.add_argument("--explain", action="store_true")
    options = parser.parse_args()

    from licenseflow.prefect_env import configure_prefect_defaults

    configure_prefect_defaults()
    from prefect import flow

    from flows.daily_discovery_scan import daily_discovery_scan
    from tasks import discovery, discovery_tasks, feeds, recognition

    timed(discovery_tasks, "read_installs", "read + validate")
    timed(feeds, "file_checksum", "checksum")
    timed(recognition, "recognize", "recognise")
    timed(recognition, "sync_catalog_to_store", "catalog sync")
    timed(discovery, "prepare", "prepare")
    timed(discovery, "apply_staged", "apply")
    timed(discovery, "read_stored", "apply: narrow read")
    timed(discovery, "bulk_load", "apply: staging")
    timed(discovery, "diff_installs", "apply: diff")
    time_statements()
    if options.explain:
        explain_slow_statements()

    @flow
    def warm_up() -> None:
        """Start Prefect's ephemeral server before the clock starts."""

    warm_up()
    started = time.perf_counter()
    summary = daily_discovery_scan(files=[options.file], today=options.today)
    total = time.perf_counter() - started
    print(
        f"flow {total:.2f} s: {summary['new']:,} new, {summary['changed']:,} changed, "
        f"{summary['removed']:,} removed"
    )
    for label, seconds in sorted(SPENT.items(), key=lambda item: -item[1]):
        if seconds >= 0.05:
            print(f"{seconds:7.2f}  {label}")


if __name__ == "__main__":
    main()
