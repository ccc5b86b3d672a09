"""Worker processes for tests/test_scale_out.py: each a fresh interpreter (spawn) running the
store code a Prefect worker on another machine would run.

The processes start once per test module (imports cost seconds) and then serve jobs: a job
names what to run and the environment to run it in (SLM_DATABASE_URL, SLM_DATA_DIR of the
test). Every worker waits at the shared barrier before touching the store, so all reach it
at the same moment, and answers (worker name, outcome) or (name, ("error", type, message)).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os


def ingest_discovery_file(path: str, start) -> list[tuple[int, ...]]:
    """The daily scan's tasks for one file (their functions, without Prefect's engine)."""
    from tasks.discovery_tasks import (
        accept_checked,
        apply_file,
        check_file,
        pending_files,
        sync_catalog,
    )

    start.wait(60)  # both sync the catalog at once, ...
    inputs = sync_catalog.fn()
    checked = accept_checked.fn([check_file.fn(f, inputs) for f in pending_files.fn([path])])
    start.wait(60)  # ... and apply at once
    now = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
    return [apply_file.fn(item, now).astuple() for item in checked]


def load_contracts_file(path: str, start) -> bool:
    """The contracts sync's load of one file; True if this worker applied it."""
    from licenseflow.db import unit_of_work
    from tasks.contracts import load_contracts

    start.wait(60)
    with unit_of_work() as session:
        return not load_contracts(session, path).skipped_already_applied


def apply_bulk_batch(batch_id: str, lock_wait: float, start) -> str:
    """An approved batch's change stages, as the bulk_assignment flow runs them."""
    from licenseflow.db import get_engine
    from tasks.bulk import apply_batch

    start.wait(60)
    return apply_batch(
        get_engine(), batch_id, chunk_size=1, pause_seconds=0.2, lock_wait_seconds=lock_wait
    )


def _serve(name: str, jobs, start, results) -> None:
    import tasks.bulk
    import tasks.discovery_tasks  # noqa: F401 - imported once, before the first job
    from licenseflow.settings import get_settings

    for job, args, env in iter(jobs.get, None):
        for key in [k for k in os.environ if k.startswith("SLM_")]:
            del os.environ[key]
        os.environ.update(env)
        get_settings.cache_clear()
        try:
            results.put((name, job(*args, start)))
        except Exception as exc:
            results.put((name, ("error", type(exc).__name__, str(exc))))


class Workers:
    """Named worker processes sharing one start barrier."""

    def __init__(self, names: list[str]):
        spawn = multiprocessing.get_context("spawn")
        self.start, self.results = spawn.Barrier(len(names)), spawn.Queue()
        self.jobs = {name: spawn.Queue() for name in names}
        self.processes = [
            spawn.Process(target=_serve, args=(n, q, self.start, self.results), daemon=True)
            for n, q in self.jobs.items()
        ]
        for process in self.processes:
            process.start()

    def run(self, job, args_per_worker: dict[str, tuple]) -> dict[str, object]:
        """`job` on every worker at once (args per worker name); their outcomes by name."""
        env = {k: v for k, v in os.environ.items() if k.startswith("SLM_")}
        for name, args in args_per_worker.items():
            self.jobs[name].put((job, args, env))
        return dict(self.results.get(timeout=120) for _ in args_per_worker)

    def stop(self) -> None:
        for queue in self.jobs.values():
            queue.put(None)
        for process in self.processes:
            process.join(30)
