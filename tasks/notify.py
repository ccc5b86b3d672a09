"""Alert delivery: stored alert rows out to a webhook (Slack/Teams style JSON) or a Prefect
notification block, with retry bookkeeping.

The alert row is the record; delivery is best effort on top of it and never loses one:
- an alert is pending while sent_at is NULL and it is not resolved;
- each attempt adds one to send_attempts; a failure keeps sent_at NULL and stores the error
  (never the URL, which is a secret) in last_error, so the next run tries again;
- after MAX_CONSECUTIVE_FAILURES failures in a row a run stops trying (the endpoint is
  down); the rest stay pending for the next run, untouched;
- nothing configured: nothing is attempted, alerts stay pending (and visible in the store).

Where to send: settings.webhook_url (SLM_WEBHOOK_URL), else settings.notification_block
(SLM_NOTIFICATION_BLOCK, a saved Prefect block as "block-type-slug/name", e.g.
"custom-webhook/alerts" or "slack-webhook/alerts"). Delivery is at least once: a process
that dies between sending and recording sends that alert again on the next run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from licenseflow.db import unit_of_work
from licenseflow.errors import LicenseflowError
from licenseflow.settings import get_settings
from schemas.store import Alert
from tasks import audit

ACTOR = "notify"
MAX_PER_RUN = 500  # alerts attempted per run, oldest first
MAX_CONSECUTIVE_FAILURES = 3
MAX_FIELDS = 10  # Slack's limit per section
TITLES = {
    "renewal_window": "License renewal reminder",
    "notice_deadline_missed": "Auto-renewal notice deadline missed",
    "contract_expired": "License contract expired",
    "contract_invalid": "License contract data to fix",
}
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


class DeliveryFailed(LicenseflowError):
    """An alert could not be delivered (the message says why, without the URL)."""


@dataclass(frozen=True)
class PendingAlert:
    id: int
    kind: str
    subject: str
    owner_email: str | None
    deadline: dt.date | None
    payload: dict | None
    send_attempts: int


@dataclass(frozen=True)
class Delivery:
    alert_id: int
    attempt: int  # the alert's send_attempts after this one
    ok: bool
    error: str | None = None


@dataclass
class DeliveryReport:
    """One delivery run: channel None = nothing configured (alerts stay pending)."""

    channel: str | None
    pending: int
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # not attempted this run (the endpoint kept failing)
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.channel is None:
            return (
                f"{self.pending} alert(s) pending; no webhook or notification block configured "
                "(SLM_WEBHOOK_URL / SLM_NOTIFICATION_BLOCK), so none were sent"
            )
        text = f"{self.sent} of {self.pending} alert(s) sent to the {self.channel}"
        if self.failed or self.deferred:
            text += (
                f"; {self.failed} failed, {self.deferred} deferred: kept pending, retried on "
                f"the next run ({'; '.join(self.errors)})"
            )
        return text

    def as_dict(self) -> dict:
        return {
            "channel": self.channel,
            "pending": self.pending,
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
            "errors": list(self.errors),
        }


Sender = Callable[[PendingAlert], None]


# --- the message ---------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Slack mrkdwn: &, < and > are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def details(alert: PendingAlert) -> list[tuple[str, str]]:
    """Label/value pairs shown with an alert: owner, deadline, the payload's plain values."""
    pairs = [("Owner", alert.owner_email or "(no owner)")]
    if alert.deadline:
        pairs.append(("Deadline", str(alert.deadline)))
    payload = alert.payload or {}
    recommendation = payload.get("recommendation")
    if isinstance(recommendation, dict) and recommendation.get("summary"):
        pairs.append(("Recommendation", str(recommendation["summary"])))
    for key, value in payload.items():
        if value is None or isinstance(value, dict | list) or key == "product_name":
            continue
        pairs.append((key.replace("_", " ").capitalize(), str(value)))
    return pairs[:MAX_FIELDS]


def message(alert: PendingAlert) -> dict:
    """Slack incoming-webhook JSON: blocks, and the subject as `text` (the fallback that
    Teams and plain webhooks read; subjects say what the alert is)."""
    title = TITLES.get(alert.kind, alert.kind.replace("_", " ").capitalize())
    return {
        "text": _escape(alert.subject),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape(alert.subject)}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_escape(k)}*\n{_escape(v)}"[:2000]}
                    for k, v in details(alert)
                ],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"licenseflow alert {alert.id} ({alert.kind})"}
                ],
            },
        ],
    }


def text_body(alert: PendingAlert) -> str:
    """Plain text for a notification block's body."""
    lines = [alert.subject, ""] + [f"{k}: {v}" for k, v in details(alert)]
    return "\n".join(lines + ["", f"licenseflow alert {alert.id} ({alert.kind})"])


# --- channels --------------------------------------------------------------------------------


def scrub(text: str, secret: str | None = None) -> str:
    """An error message safe to store and log: URLs (and the secret itself) removed."""
    if secret:
        text = text.replace(secret, "<webhook url>")
    return _URL.sub("<url>", text)[:1000]


def webhook_sender(url: str, timeout: float = 10.0) -> Sender:
    """POST each alert's message() as JSON; any answer but 2xx is a failure."""

    def send(alert: PendingAlert) -> None:
        try:
            response = httpx.post(url, json=message(alert), timeout=timeout)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(
                f"webhook unreachable: {type(exc).__name__}: {scrub(str(exc), url)}"
            ) from None
        if not 200 <= response.status_code < 300:
            body = scrub(response.text.strip()[:200], url)
            raise DeliveryFailed(
                f"webhook answered HTTP {response.status_code} {response.reason_phrase}"
                + (f": {body}" if body else "")
            )

    return send


def block_sender(name: str) -> Sender:
    """Notify through a saved Prefect notification block ("block-type-slug/name")."""
    loaded: list = []

    def send(alert: PendingAlert) -> None:
        from prefect.blocks.core import Block

        if not loaded:
            try:
                loaded.append(Block.load(name))
            except Exception as exc:
                raise DeliveryFailed(
                    f"notification block {name!r} could not be loaded: {scrub(str(exc))}"
                ) from None
        block = loaded[0]
        title = TITLES.get(alert.kind, alert.kind)
        try:
            if hasattr(block, "raise_on_failure"):  # apprise blocks fail silently otherwise
                with block.raise_on_failure():
                    block.notify(body=text_body(alert), subject=title)
            else:
                block.notify(body=text_body(alert), subject=title)
        except Exception as exc:
            raise DeliveryFailed(
                f"notification block {name!r} failed: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None

    return send


def configured_sender() -> tuple[str | None, Sender | None]:
    """The channel the settings name: the webhook, else the notification block, else none."""
    settings = get_settings()
    if settings.webhook_url is not None and settings.webhook_url.get_secret_value():
        url = settings.webhook_url.get_secret_value()
        return "webhook", webhook_sender(url, settings.webhook_timeout_seconds)
    if settings.notification_block:
        name = settings.notification_block
        return f"notification block {name}", block_sender(name)
    return None, None


# --- the three steps: pending (store), send (network), record (store) -----------------------


def pending_alerts(
    session: Session, kinds: Iterable[str] | None = None, limit: int = MAX_PER_RUN
) -> list[PendingAlert]:
    """Alerts not yet sent and not resolved, oldest first."""
    query = select(
        Alert.id,
        Alert.kind,
        Alert.subject,
        Alert.owner_email,
        Alert.deadline,
        Alert.payload,
        Alert.send_attempts,
    ).where(Alert.sent_at.is_(None), Alert.resolved_at.is_(None))
    if kinds is not None:
        query = query.where(Alert.kind.in_(list(kinds)))
    rows = session.execute(query.order_by(Alert.id).limit(limit)).all()
    return [PendingAlert(*row[:6], int(row.send_attempts or 0)) for row in rows]


def send_all(
    alerts: Sequence[PendingAlert],
    sender: Sender,
    max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES,
) -> list[Delivery]:
    """Send each alert once; stop after `max_consecutive_failures` failures in a row (the
    alerts after that are not attempted: no Delivery for them)."""
    deliveries, streak = [], 0
    for alert in alerts:
        attempt = alert.send_attempts + 1
        try:
            sender(alert)
        except DeliveryFailed as exc:
            deliveries.append(Delivery(alert.id, attempt, False, str(exc)))
            streak += 1
            if streak >= max_consecutive_failures:
                break
            continue
        except Exception as exc:  # a sender bug must not lose the bookkeeping of the others
            error = f"{type(exc).__name__}: {scrub(str(exc))}"
            deliveries.append(Delivery(alert.id, attempt, False, error))
            streak += 1
            if streak >= max_consecutive_failures:
                break
            continue
        deliveries.append(Delivery(alert.id, attempt, True))
        streak = 0
    return deliveries


def record_deliveries(
    session: Session,
    deliveries: Sequence[Delivery],
    now: dt.datetime,
    channel: str,
    actor: str = ACTOR,
) -> None:
    """Write each attempt (set-based): sent -> sent_at; failed -> last_error, sent_at stays
    NULL; both add one to send_attempts; one audit entry per attempt (one statement)."""
    if not deliveries:
        return
    statement = (
        update(Alert.__table__)
        .where(Alert.__table__.c.id == bindparam("b_id"))
        .values(
            send_attempts=Alert.__table__.c.send_attempts + 1,
            sent_at=bindparam("b_sent"),
            last_error=bindparam("b_error"),
        )
    )
    session.connection().execute(
        statement,
        [
            {"b_id": d.alert_id, "b_sent": now if d.ok else None, "b_error": d.error}
            for d in deliveries
        ],
    )
    audit.record_many(
        session,
        actor,
        [
            audit.Change(
                "alert.sent" if d.ok else "alert.send_failed",
                "alert",
                d.alert_id,
                None,
                {"channel": channel, "attempt": d.attempt}
                | ({"sent_at": now} if d.ok else {"error": d.error}),
            )
            for d in deliveries
        ],
        at=now,
    )


def report(channel: str | None, pending: int, deliveries: Sequence[Delivery]) -> DeliveryReport:
    failed = [d for d in deliveries if not d.ok]
    return DeliveryReport(
        channel=channel,
        pending=pending,
        sent=len(deliveries) - len(failed),
        failed=len(failed),
        deferred=pending - len(deliveries) if channel else 0,
        errors=list(dict.fromkeys(d.error for d in failed if d.error))[:3],
    )


def deliver_pending(
    session: Session,
    kinds: Iterable[str] | None = None,
    now: dt.datetime | None = None,
    *,
    sender: Sender | None = None,
    channel: str | None = None,
    actor: str = ACTOR,
) -> DeliveryReport:
    """Send the pending alerts (of `kinds`, default all) through `sender` (default: the
    configured channel) and record each attempt, in the caller's transaction. Flows use
    deliver_task, which keeps the network calls outside any database transaction."""
    now = now or dt.datetime.now(dt.UTC)
    if sender is None:
        channel, sender = configured_sender()
    alerts = pending_alerts(session, kinds)
    if sender is None:
        return report(None, len(alerts), [])
    channel = channel or "custom sender"
    deliveries = send_all(alerts, sender)
    record_deliveries(session, deliveries, now, channel, actor)
    return report(channel, len(alerts), deliveries)


@task(name="deliver-alerts", cache_policy=NO_CACHE)
def deliver_task(kinds: list[str] | None, now: dt.datetime) -> DeliveryReport:
    """Deliver pending alerts: read them, send them (no transaction open meanwhile), record
    the attempts. A failed send is a warning, never a failed run: the alert stays pending."""
    channel, sender = configured_sender()
    with unit_of_work() as session:
        alerts = pending_alerts(session, kinds)
    if sender is None or not alerts:
        result = report(channel, len(alerts), [])
    else:
        deliveries = send_all(alerts, sender)
        with unit_of_work() as session:
            record_deliveries(session, deliveries, now, channel)
        result = report(channel, len(alerts), deliveries)
    logger = get_run_logger()
    (logger.warning if result.failed or result.deferred else logger.info)(str(result))
    return result
