"""The operator guide's local Prefect stack, started and stopped from Python: a Prefect server
on 127.0.0.1, the process work pool, every deployment of prefect.yaml (`prefect deploy --all`)
and a worker. Used by the end-to-end test and by scripts/screenshot_ui.py, so both run the
very commands the README gives.

Each process runs in its own process group with its own PREFECT_HOME and SQLite database
under `workdir`; leaving the `with` block (normally or by an exception) ends the groups, so
no server, worker or flow-run process outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from licenseflow.settings import PROJECT_ROOT

POOL = "licenseflow"
PREFECT = [sys.executable, "-m", "prefect"]


@dataclass
class LocalPrefect:
    url: str  # the UI; the API is url + "/api"
    env: dict[str, str]  # what a process needs to talk to this server
    workdir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """A long-running prefect command (server, worker), its output in workdir/NAME.log."""
        with open(self.workdir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [*PREFECT, *args],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() ends its children too
            )
        self.processes.append(process)
        return process

    def run(self, *args: str, timeout: float = 120) -> str:
        """A prefect command that must succeed, from the project folder (like the README)."""
        done = subprocess.run(
            [*PREFECT, *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """The worker first (its flow runs end while the server still answers), then the
        server: SIGTERM to the group, SIGKILL to what is left after a few seconds."""
        for process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            _signal_group(process, signal.SIGKILL)  # children that outlived their parent
            process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prefect_env(workdir: Path, port: int) -> dict[str, str]:
    """The environment of every process of the stack: this server, its own home and
    database, and no daily schedule firing while it runs (the schedules are still listed)."""
    api = f"http://127.0.0.1:{port}/api"
    return {
        **os.environ,  # SLM_* included: the flow runs open the caller's store
        "PREFECT_HOME": str(workdir / "home"),
        "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api,  # the UI in the browser calls this, not :4200
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{workdir / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick a new run up within a second, not ten
    }


@contextlib.contextmanager
def local_prefect(workdir: Path, *, startup_timeout: float = 120) -> Iterator[LocalPrefect]:
    """Server, work pool, `prefect --no-prompt deploy --all`, worker: ready when the block
    starts."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stack = LocalPrefect(f"http://127.0.0.1:{port}", prefect_env(workdir, port), workdir)
    previous = _stop_on_sigterm()
    try:
        server = stack.start(
            "server", "server", "start", "--host", "127.0.0.1", "--port", str(port)
        )
        _wait_healthy(stack, server, startup_timeout)
        stack.run("work-pool", "create", POOL, "--type", "process")
        stack.start("worker", "worker", "start", "--pool", POOL)  # starts while we deploy
        stack.run("--no-prompt", "deploy", "--all")
        yield stack
    finally:
        stack.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """A SIGTERM (a CI timeout, `kill`) becomes an exception, so the block's cleanup runs;
    Python's default would end the process and leave the stack behind."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def leave(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, leave)


def _wait_healthy(stack: LocalPrefect, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited:\n{stack.log('server')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{stack.api_url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"prefect server not healthy after {timeout} s:\n{stack.log('server')}")
