"""Screenshots of the Prefect UI for the README's operator guide, reproduced end to end:

    .venv/bin/python scripts/screenshot_ui.py [--out docs/img]

Starts the operator guide's local stack (licenseflow/local_prefect.py: server, work pool,
`prefect deploy --all`, worker) in a temporary folder, runs the demo (`slm demo`) into a
temporary store against that server, triggers the bulk-assignment deployment with the demo's
onboarding wave, and captures with headless Chromium: the deployments list with schedules;
the paused run's approval form (Resume pressed, filled in, then submitted: the approval);
the completed run's artifacts; its summary artifact (the batch's state history).

Nothing is downloaded: Debian's chromium (`apt-get install -y chromium`, or $CHROMIUM) is
driven over its DevTools protocol with the `websockets` package Prefect already depends on.
The UI is a single-page app, so each capture waits for a text on the page, not a fixed time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from licenseflow.local_prefect import local_prefect  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1400, 1000


class Browser:
    """One headless Chromium tab, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        binary = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        if not Path(binary).exists():
            raise SystemExit(f"no chromium at {binary}: apt-get install -y chromium")
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"  # written once it listens: port, path
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(_http_get(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.ids = itertools.count(1)
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; keep the answer to this call
            message = json.loads(self.socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str, *texts: str, timeout: float = 60) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(*texts, timeout=timeout)

    def wait_for(self, *texts: str, timeout: float = 60) -> None:
        """Until every text is on the page (the app fetches after it loads), then a moment
        for the layout to settle."""
        check = " && ".join(f"document.body.innerText.includes({json.dumps(t)})" for t in texts)
        deadline = time.monotonic() + timeout
        while not self.js(f"!!document.body && {check}"):
            if time.monotonic() > deadline:
                seen = Path(tempfile.gettempdir()) / "screenshot_ui_timeout.png"
                self.screenshot(seen)
                raise TimeoutError(f"{texts} not on the page after {timeout} s (as seen: {seen})")
            time.sleep(0.3)
        time.sleep(1.5)

    def click(self, label: str, selector: str = "button") -> None:
        """Click the element (a button by default; ".p-tab" for a tab) showing this label."""
        clicked = self.js(
            f"(() => {{ const e = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => e.innerText.trim() === {json.dumps(label)});"
            " if (e) e.click(); return !!e; })()"
        )
        if not clicked:
            raise RuntimeError(f"no {selector} {label!r} on the page")

    def fill_textareas(self, *values: str) -> None:
        """Type into the page's text boxes in order (an input event, as typing sends)."""
        script = """(values => document.querySelectorAll('textarea').forEach((box, i) => {
            if (i >= values.length) return;
            box.value = values[i];
            box.dispatchEvent(new Event('input', {bubbles: true}));
        }))"""
        self.js(f"{script}({json.dumps(values)})")
        time.sleep(0.5)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"{path} ({path.stat().st_size // 1024} KiB)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.socket.close()
        os.killpg(self.process.pid, signal.SIGTERM)  # its renderers are in its group
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _http_get(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=10).text


def wait_for_state(client, run_id, name: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.read_flow_run(run_id).state
        if state.name == name:
            return state
        if state.is_final():
            raise RuntimeError(f"the run ended {state.name}: {state.message}")
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} not {name} after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="licenseflow-ui-"))
    os.environ["SLM_DATA_DIR"] = str(work / "data")  # the worker's flow runs inherit it
    os.environ["SLM_BULK_APPROVAL_POLL_SECONDS"] = "1"
    try:
        with local_prefect(work / "prefect") as stack:
            print(f"Prefect UI at {stack.url}; running the demo into {work / 'data'}")
            subprocess.run(
                [str(Path(sys.executable).parent / "slm"), "demo"],
                cwd=ROOT,
                env=stack.env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            capture(stack, args.out, work / "chromium")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def capture(stack, out: Path, profile: Path) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    browser = Browser(profile)
    try:
        with SyncPrefectClient(stack.api_url) as client:
            browser.open(f"{stack.url}/deployments", "bulk-assignment", "hr-sync")
            browser.screenshot(out / "ui_deployments.png")

            deployment = client.read_deployment_by_name("bulk-assignment/bulk-assignment")
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"file": "data/demo/bulk/onboarding_wave.csv", "requester": "alice"},
            )
            wait_for_state(client, run.id, "Paused")
            browser.open(f"{stack.url}/runs/flow-run/{run.id}", "Paused", "Resume")
            browser.click("Resume")
            browser.wait_for("Approver")
            browser.fill_textareas("bob", "Q4 onboarding wave, budgeted")  # approver, comment
            browser.screenshot(out / "ui_approval_form.png")
            browser.click("Submit")  # the approval itself, as a person gives it
            wait_for_state(client, run.id, "Completed")
            browser.open(f"{stack.url}/runs/flow-run/{run.id}", "Completed", "Artifacts")
            browser.click("Artifacts", ".p-tab")
            browser.wait_for("bulk-summary")
            browser.screenshot(out / "ui_artifacts.png")
            summary = next(
                a
                for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
                    )
                )
                if (a.key or "").startswith("bulk-summary-")
            )
            browser.open(f"{stack.url}/artifacts/artifact/{summary.id}", "rolled_out")
            browser.screenshot(out / "ui_summary.png")
    finally:
        browser.close()


if __name__ == "__main__":
    main()
