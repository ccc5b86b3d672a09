"""One bulk change at a time: a lock held by the database (or next to it), across processes.

- PostgreSQL: a session-level advisory lock (pg_try_advisory_lock) on a connection kept open
  for the batch's change stages. It holds across processes and machines; when the holder dies
  (kill -9 included) the server drops the connection and the lock with it. The holder names
  itself in application_name, so a refused batch can say who holds the lock.
- SQLite: an exclusive flock on a file beside the database file (<db>-bulk-lock). SQLite lives
  on one machine, and so does this lock; the kernel releases it when the holder dies, so there
  is no stale holder to detect. The holder writes its batch id and pid into the file.

Why not a Prefect global concurrency limit: `slm bulk-assign` runs Prefect in ephemeral mode,
one server per process, so a limit would not be shared between two terminals; the store is
the one thing every runner shares.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from licenseflow.errors import BatchStateError

PG_LOCK_KEY = 7_311_002  # tasks/audit.py uses 7_311_001
POLL_SECONDS = 0.2


class BulkLockBusy(BatchStateError):
    """Another bulk batch is changing licenses; this one did not start."""


def _refusal(batch_id: str, holder: str, waited: float, again: str) -> BulkLockBusy:
    waited_text = f" (waited {waited:.0f} s)" if waited >= 1 else ""
    return BulkLockBusy(
        f"another bulk batch is changing licenses now: {holder}{waited_text}. Only one batch "
        f"changes licenses at a time; {batch_id} made no change. Run `{again}` when the other "
        "has finished (see `slm bulk-status`), or give it a longer lock wait."
    )


@contextmanager
def bulk_lock(
    engine: Engine, batch_id: str, *, wait_seconds: float = 0, again: str | None = None
) -> Iterator[None]:
    """Hold the bulk lock for the block; wait up to wait_seconds for it, then BulkLockBusy
    (`again`: the command that retries, named in the refusal)."""
    again = again or f"slm bulk-assign --resume {batch_id}"
    if engine.dialect.name == "postgresql":
        with _pg_lock(engine, batch_id, wait_seconds, again):
            yield
    else:
        with _file_lock(_lock_path(engine), batch_id, wait_seconds, again):
            yield


def _lock_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise BatchStateError("bulk changes need a file-based SQLite store (not :memory:)")
    return Path(database).with_name(Path(database).name + "-bulk-lock")


@contextmanager
def _file_lock(path: Path, batch_id: str, wait_seconds: float, again: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait_seconds:
                    raise _refusal(batch_id, _file_holder(handle), waited, again) from None
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(_holder(batch_id))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _file_holder(handle) -> str:
    """Who holds the file lock (it writes its name right after taking the lock)."""
    for _ in range(20):
        handle.seek(0)
        holder = handle.read().strip()
        if holder:
            return holder
        time.sleep(0.05)
    return "a batch"


def _holder(batch_id: str) -> str:
    since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{batch_id} (pid {os.getpid()} on {socket.gethostname()}, since {since})"


@contextmanager
def _pg_lock(engine: Engine, batch_id: str, wait_seconds: float, again: str) -> Iterator[None]:
    conn = engine.connect()
    held = False
    try:
        label = f"slm bulk {batch_id} (pid {os.getpid()})"[:63]  # PostgreSQL keeps 63 bytes
        conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": label})
        start = time.monotonic()
        while True:
            held = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY}
            ).scalar()
            conn.commit()  # no idle transaction: the lock belongs to the session
            if held:
                break
            waited = time.monotonic() - start
            if waited >= wait_seconds:
                raise _refusal(batch_id, _pg_holder(conn) or "a batch", waited, again)
            time.sleep(POLL_SECONDS)
        yield
    finally:
        try:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()
            conn.execute(text("SELECT set_config('application_name', '', false)"))
            conn.commit()
        except Exception:
            conn.invalidate()  # never hand a connection that may hold the lock back to the pool
        finally:
            conn.close()


def _pg_holder(conn) -> str | None:
    name = conn.execute(
        text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :k LIMIT 1"
        ),
        {"k": PG_LOCK_KEY},
    ).scalar()
    conn.commit()
    return name.removeprefix("slm bulk ") if name else None
