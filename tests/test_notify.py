"""Alert delivery to a real HTTP server on 127.0.0.1 (http.server in a thread), on SQLite and
PostgreSQL: sent once, a failing endpoint retried on the next run with nothing lost, the
URL never stored, nothing attempted when nothing is configured."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select, update

from licenseflow.db import unit_of_work
from licenseflow.settings import get_settings
from schemas.store import Alert, AuditLog
from tasks import audit, notify
from tasks.ownership import insert_alerts

NOW = dt.datetime(2026, 5, 5, 6, 0, tzinfo=dt.UTC)
SECRET_PATH = "/services/T000/B000/s3cr3t-token"


class WebhookServer:
    """A Slack-like incoming webhook: records each POSTed JSON body; answers `status`."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                if server.status == 200:
                    server.received.append(body)
                    reply = b"ok"
                else:
                    reply = b"invalid_token"
                self.send_response(server.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook(monkeypatch):
    server = WebhookServer()
    monkeypatch.setenv("SLM_WEBHOOK_URL", server.url)
    get_settings.cache_clear()
    yield server
    server.close()
    get_settings.cache_clear()


def alert_row(n: int, kind: str = "renewal_window", **extra) -> dict:
    return {
        "kind": kind,
        "dedupe_key": f"test:{kind}:{n}",
        "subject": f"Renewal of contract C-{n} <soon> & cheap",
        "owner_email": "ana@example.com",
        "deadline": dt.date(2026, 6, 30),
        "payload": {"contract_number": f"C-{n}", "window": 60, "recommendation": None},
        "created_at": NOW,
    } | extra


def arrange(engine, rows: list[dict]) -> list[int]:
    with unit_of_work(engine) as session:
        return list(insert_alerts(session, rows, "test")["id"])


def deliver(engine, now=NOW, kinds=None) -> notify.DeliveryReport:
    with unit_of_work(engine) as session:
        return notify.deliver_pending(session, kinds, now)


def states(engine) -> list[tuple]:
    with unit_of_work(engine) as session:
        return [
            (a.dedupe_key, a.sent_at is not None, a.send_attempts, a.last_error)
            for a in session.scalars(select(Alert).order_by(Alert.id))
        ]


def test_message_is_slack_style_json():
    alert = notify.PendingAlert(
        7,
        "renewal_window",
        "Renew <C-1> & co",
        None,
        dt.date(2026, 6, 30),
        {"window": 60, "recommendation": {"summary": "renew 8 of 20 seats"}, "nested": {}},
        0,
    )
    message = notify.message(alert)
    assert message["text"] == "Renew &lt;C-1&gt; &amp; co"
    header, section, fields, context = message["blocks"]
    assert header["text"]["text"] == "License renewal reminder"
    assert section["text"]["text"] == "Renew &lt;C-1&gt; &amp; co"
    assert [f["text"] for f in fields["fields"]] == [
        "*Owner*\n(no owner)",
        "*Deadline*\n2026-06-30",
        "*Recommendation*\nrenew 8 of 20 seats",
        "*Window*\n60",
    ]
    assert context["elements"][0]["text"] == "licenseflow alert 7 (renewal_window)"


def test_alerts_are_sent_once(engine, webhook):
    arrange(engine, [alert_row(1), alert_row(2)])

    first = deliver(engine)
    assert (first.channel, first.pending, first.sent, first.failed) == ("webhook", 2, 2, 0)
    assert [body["text"] for body in webhook.received] == [
        "Renewal of contract C-1 &lt;soon&gt; &amp; cheap",
        "Renewal of contract C-2 &lt;soon&gt; &amp; cheap",
    ]
    assert webhook.received[0]["blocks"][2]["fields"][0]["text"] == "*Owner*\nana@example.com"
    assert states(engine) == [
        ("test:renewal_window:1", True, 1, None),
        ("test:renewal_window:2", True, 1, None),
    ]
    again = deliver(engine)
    assert (again.pending, again.sent) == (0, 0)
    assert len(webhook.received) == 2
    with unit_of_work(engine) as session:
        sent = session.scalars(select(AuditLog.action).where(AuditLog.entity == "alert")).all()
        assert sent.count("alert.sent") == 2
        assert audit.verify(session).ok


def test_a_failing_webhook_keeps_the_alerts_and_the_next_run_retries(engine, webhook):
    ids = arrange(engine, [alert_row(n) for n in range(1, 6)])
    webhook.status = 500

    failed = deliver(engine)
    # three failures in a row: the endpoint is down, the other two wait for the next run
    assert (failed.sent, failed.failed, failed.deferred) == (0, 3, 2)
    error = "webhook answered HTTP 500 Internal Server Error: invalid_token"
    assert failed.errors == [error]
    assert states(engine) == [
        ("test:renewal_window:1", False, 1, error),
        ("test:renewal_window:2", False, 1, error),
        ("test:renewal_window:3", False, 1, error),
        ("test:renewal_window:4", False, 0, None),
        ("test:renewal_window:5", False, 0, None),
    ]
    assert "3 failed, 2 deferred: kept pending, retried on the next run" in str(failed)

    webhook.status = 200
    retried = deliver(engine, NOW + dt.timedelta(days=1))
    assert (retried.pending, retried.sent, retried.failed) == (5, 5, 0)
    assert [b["blocks"][3]["elements"][0]["text"] for b in webhook.received] == [
        f"licenseflow alert {i} (renewal_window)" for i in ids
    ]  # each once, in order: the failed attempts delivered nothing
    assert [s[1:3] for s in states(engine)] == [(True, 2)] * 3 + [(True, 1)] * 2
    with unit_of_work(engine) as session:
        sent_at = session.scalar(select(Alert.sent_at).where(Alert.id == ids[0]))
        assert sent_at.date() == dt.date(2026, 5, 6)
        logged = session.scalars(
            select(AuditLog.after).where(AuditLog.action == "alert.send_failed")
        ).all()
        assert [entry["error"] for entry in logged] == [error] * 3
        assert audit.verify(session).ok
    stored = json.dumps(states(engine)) + json.dumps(logged)
    assert SECRET_PATH not in stored and "127.0.0.1" not in stored  # the URL is a secret


def test_an_unreachable_webhook_is_a_clear_error_without_the_url(engine, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SLM_WEBHOOK_URL", f"http://127.0.0.1:{port}{SECRET_PATH}")
    get_settings.cache_clear()
    arrange(engine, [alert_row(1)])

    result = deliver(engine)
    assert (result.sent, result.failed) == (0, 1)
    [(_, sent, attempts, error)] = states(engine)
    assert (sent, attempts) == (False, 1)
    assert error.startswith("webhook unreachable: ConnectError")
    assert SECRET_PATH not in error and str(port) not in error


def test_nothing_configured_nothing_attempted(engine):
    arrange(engine, [alert_row(1)])
    result = deliver(engine)
    assert (result.channel, result.pending, result.sent) == (None, 1, 0)
    assert "no webhook or notification block configured" in str(result)
    assert states(engine) == [("test:renewal_window:1", False, 0, None)]


def test_only_the_kinds_asked_for_and_never_resolved_ones(engine, webhook):
    ids = arrange(engine, [alert_row(1), alert_row(2, kind="ownership_gap"), alert_row(3)])
    with unit_of_work(engine) as session:
        session.execute(update(Alert).where(Alert.id == ids[2]).values(resolved_at=NOW))

    result = deliver(engine, kinds=["renewal_window"])
    assert (result.pending, result.sent) == (1, 1)
    assert [s[:2] for s in states(engine)] == [
        ("test:renewal_window:1", True),
        ("test:ownership_gap:2", False),
        ("test:renewal_window:3", False),
    ]
