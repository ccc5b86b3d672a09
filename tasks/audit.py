"""The audit log: the one way every change is written down, and how the chain is verified.

Each entry's hash is sha256(previous hash + canonical JSON of the entry), so editing, removing
or inserting an entry breaks the chain from that point on. Entries are written in the same
transaction as the change they describe (pass the change's session).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from schemas.store import AuditLog

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 7_311_001  # advisory lock id serialising appends on PostgreSQL


def _plain(value):
    """JSON-safe copy (dates, decimals to strings) so what is hashed is what is stored."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:  # SQLite hands timestamps back without their zone
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


_HASHED = (
    "at",
    "actor",
    "action",
    "entity",
    "entity_id",
    "before",
    "after",
    "batch_id",
    "flow_run_id",
)


def entry_hash(prev_hash: str, entry: Mapping) -> str:
    body = {
        "at": _utc(entry["at"]).isoformat(timespec="microseconds"),
        "actor": entry["actor"],
        "action": entry["action"],
        "entity": entry["entity"],
        "entity_id": None if entry["entity_id"] is None else str(entry["entity_id"]),
        "before": entry["before"],
        "after": entry["after"],
        "batch_id": entry["batch_id"],
        "flow_run_id": entry["flow_run_id"],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def current_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id) if flow_run.id else None
    except Exception:
        return None


@dataclass(frozen=True)
class Change:
    """One change to write to the audit log."""

    action: str
    entity: str
    entity_id: object = None
    before: dict | None = None
    after: dict | None = None


def record(
    session: Session,
    actor: str,
    action: str,
    entity: str,
    entity_id: object = None,
    *,
    before: dict | None = None,
    after: dict | None = None,
    batch_id: str | None = None,
) -> str:
    """Append one entry in the caller's transaction; returns its hash."""
    return record_many(
        session, actor, [Change(action, entity, entity_id, before, after)], batch_id=batch_id
    )


def record_many(
    session: Session,
    actor: str,
    changes: Iterable[Change],
    *,
    batch_id: str | None = None,
    at: dt.datetime | None = None,
) -> str | None:
    """Append many entries in one statement (bulk changes); returns the last hash."""
    _lock_chain(session)
    prev = session.execute(
        select(AuditLog.hash).order_by(AuditLog.id.desc()).limit(1)
    ).scalar_one_or_none()
    prev = prev or GENESIS
    at = _utc(at or dt.datetime.now(dt.UTC))
    flow_run_id = current_flow_run_id()
    rows = []
    for change in changes:
        entry = {
            "at": at,
            "actor": actor,
            "action": change.action,
            "entity": change.entity,
            "entity_id": None if change.entity_id is None else str(change.entity_id),
            "before": _plain(change.before),
            "after": _plain(change.after),
            "batch_id": batch_id,
            "flow_run_id": flow_run_id,
        }
        entry["prev_hash"] = prev
        entry["hash"] = prev = entry_hash(prev, entry)
        rows.append(entry)
    if not rows:
        return None
    session.execute(insert(AuditLog.__table__), rows)  # Core: no ORM work per entry
    return prev


def _lock_chain(session: Session) -> None:
    # SQLite: the write transaction (BEGIN IMMEDIATE) already serialises appends.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})


def entries(
    session: Session,
    *,
    entity: str | None = None,
    entity_id: object = None,
    batch_id: str | None = None,
    limit: int = 50,
) -> list[AuditLog]:
    """The newest entries first, filtered by entity, entity id and batch (`slm audit log`)."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if entity is not None:
        query = query.where(AuditLog.entity == entity)
    if entity_id is not None:
        query = query.where(AuditLog.entity_id == str(entity_id))
    if batch_id is not None:
        query = query.where(AuditLog.batch_id == batch_id)
    return list(session.execute(query).scalars())


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    last_hash: str | None
    first_bad_id: int | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries} entries, last hash {self.last_hash}"
        return f"audit chain BROKEN at entry {self.first_bad_id}: {self.problem}"


def verify(session: Session, expected_head: str | None = None) -> Verification:
    """Recompute the chain. Reports the first entry that was altered, removed or inserted.

    A removed *last* entry leaves a valid shorter chain; pass the head hash recorded earlier
    (the quarterly report prints it) as expected_head to catch that too.
    """
    prev = GENESIS
    count = 0
    seen_expected = expected_head is None
    last = None  # the entry before this one
    # plain Core rows, not ORM objects or ORM-loaded rows: a million entries in seconds
    table = AuditLog.__table__
    columns = [table.c[c] for c in ("id", "prev_hash", "hash", *_HASHED)]
    session.flush()
    result = (
        session.connection()
        .execute(select(*columns).order_by(table.c.id).execution_options(yield_per=5000))
        .mappings()
    )
    for entry in result:
        count += 1
        if (
            entry["prev_hash"] != prev
            and last is not None
            and entry["prev_hash"] == last["prev_hash"]
        ):
            # this entry links past the one before it: that one was slipped in
            return Verification(
                False,
                count - 1,
                last["prev_hash"],
                last["id"],
                "it was inserted: the entry after it links to the entry before it",
            )
        if entry["prev_hash"] != prev:
            return Verification(
                False,
                count,
                prev,
                entry["id"],
                "its link to the previous entry does not match: an entry before it was "
                "removed, or this one was inserted",
            )
        if entry_hash(prev, entry) != entry["hash"]:
            return Verification(
                False, count, prev, entry["id"], "its content was altered after it was written"
            )
        prev = entry["hash"]
        last = entry
        seen_expected = seen_expected or prev == expected_head
    if not seen_expected:
        return Verification(
            False, count, prev, None, f"the recorded head {expected_head} is no longer in the log"
        )
    return Verification(True, count, None if count == 0 else prev)
