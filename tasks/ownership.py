"""Stage 4, ownership: every contract has a named owner who is here to answer for it.

A contract that is in force or still to come (end_date >= today) has a gap when:
- no_owner: no owner email at all;
- owner_unknown: the owner email names nobody in the HR roster (once a roster is loaded);
- owner_terminated / owner_on_leave: the owner has left or is away.

For the last two the suggested owner is the owner's manager; if that manager is gone or away
too, the next manager up who is active (the chain is followed at most MAX_HOPS steps).

Each gap becomes one alert (kind "ownership_gap"); the dedupe key names the contract, the gap
and the owner, so re-runs add nothing and a new owner with a new gap is a new alert. Open
ownership alerts whose gap is gone are resolved.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from schemas.store import Alert, Contract, Person, Product
from tasks import audit

KIND = "ownership_gap"
MAX_HOPS = 10
GAP_COLUMNS = [
    "contract_id",
    "contract_number",
    "product_id",
    "product_code",
    "end_date",
    "owner_email",
    "owner_name",
    "owner_status",
    "gap",
    "owner_manager",
    "suggested_owner",
]
_WORDS = {
    "no_owner": "has no owner",
    "owner_unknown": "owner {owner} is not in the HR roster",
    "owner_terminated": "owner {owner} has left (terminated)",
    "owner_on_leave": "owner {owner} is on leave",
}


def find_ownership_gaps(
    contracts: pd.DataFrame, people: pd.DataFrame, today: dt.date
) -> pd.DataFrame:
    """The rule, over plain frames.

    contracts: contract_id, contract_number, product_id, product_code, end_date, owner_email
    people: email, full_name, status, manager_email
    """
    current = contracts[pd.to_datetime(contracts["end_date"]).dt.date >= today].copy()
    owner = current["owner_email"].astype("string").str.strip().str.lower()
    owner = owner.mask(owner == "")
    people = people.assign(email=people["email"].str.lower()).set_index("email")
    status = owner.map(people["status"])
    current["owner_email"] = owner
    current["owner_name"] = owner.map(people["full_name"])
    current["owner_status"] = status
    gap = pd.Series(pd.NA, index=current.index, dtype="string")
    gap[owner.isna()] = "no_owner"
    if len(people):  # with no roster loaded yet, every owner would be "unknown"
        gap[owner.notna() & status.isna()] = "owner_unknown"
    gap[status == "terminated"] = "owner_terminated"
    gap[status == "leave"] = "owner_on_leave"
    current["gap"] = gap
    gaps = current[gap.notna()].copy()
    gaps["owner_manager"] = gaps["owner_email"].map(people["manager_email"].str.lower())
    gaps["suggested_owner"] = _nearest_active_manager(gaps["owner_email"], people)
    return gaps[GAP_COLUMNS].sort_values("contract_number").reset_index(drop=True)


def _nearest_active_manager(emails: pd.Series, people: pd.DataFrame) -> pd.Series:
    """Walk up the manager chain (vectorised, one hop per step) to the first active person."""
    managers = people["manager_email"].str.lower()
    found = pd.Series(pd.NA, index=emails.index, dtype="string")
    current = emails.map(managers)
    for _ in range(MAX_HOPS):
        pending = found.isna() & current.notna()
        if not pending.any():
            break
        active = pending & (current.map(people["status"]) == "active")
        found[active] = current[active]
        current = current.where(~active).map(managers)
    return found


def ownership_gaps(session: Session, today: dt.date) -> pd.DataFrame:
    """Contracts in force or to come whose owner is missing, unknown, gone or away."""
    contracts = pd.DataFrame(
        session.execute(
            select(
                Contract.id.label("contract_id"),
                Contract.contract_number,
                Contract.product_id,
                Product.code.label("product_code"),
                Contract.end_date,
                Contract.owner_email,
            ).join(Product, Product.id == Contract.product_id)
        ).all(),
        columns=[
            "contract_id",
            "contract_number",
            "product_id",
            "product_code",
            "end_date",
            "owner_email",
        ],
    )
    people = pd.DataFrame(
        session.execute(
            select(Person.email, Person.full_name, Person.status, Person.manager_email)
        ).all(),
        columns=["email", "full_name", "status", "manager_email"],
    ).astype("string")
    if contracts.empty:
        return pd.DataFrame(columns=GAP_COLUMNS)
    return find_ownership_gaps(contracts, people, today)


def dedupe_key(gap: dict) -> str:
    return f"{KIND}:{gap['contract_id']}:{gap['gap']}:{gap['owner_email'] or ''}"[:300]


def _plain(record: dict) -> dict:
    return {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in record.items()}


def subject(gap: dict) -> str:
    gap = _plain(gap)
    who = gap["owner_email"]
    if gap.get("owner_name"):
        who = f"{gap['owner_name']} ({who})"
    text = f"Contract {gap['contract_number']} ({gap['product_code']}) "
    text += _WORDS[gap["gap"]].format(owner=who)
    if gap.get("suggested_owner"):
        whose = (
            "their manager"
            if gap["suggested_owner"] == gap.get("owner_manager")
            else "the first active manager above them"
        )
        text += f"; suggested owner: {gap['suggested_owner']} ({whose})"
    return text[:500]


def write_ownership_alerts(
    session: Session,
    gaps: pd.DataFrame,
    *,
    actor: str = "hr-sync",
    now: dt.datetime | None = None,
    resolve_closed: bool = True,
) -> pd.DataFrame:
    """One alert per gap (existing ones untouched); returns the alerts created by this call.

    resolve_closed: open ownership alerts whose gap is not in `gaps` are resolved (pass the
    complete set from ownership_gaps, or False).
    """
    now = now or dt.datetime.now(dt.UTC)
    records = [_plain(r) for r in gaps.to_dict("records")]
    keys = [dedupe_key(g) for g in records]
    rows = [
        {
            "kind": KIND,
            "dedupe_key": key,
            "subject": subject(gap),
            "owner_email": gap["suggested_owner"],
            "contract_id": int(gap["contract_id"]),
            "product_id": int(gap["product_id"]),
            "payload": {
                "gap": gap["gap"],
                "contract_number": gap["contract_number"],
                "owner_email": gap["owner_email"],
                "owner_status": gap["owner_status"],
                "suggested_owner": gap["suggested_owner"],
            },
            "created_at": now,
        }
        for key, gap in zip(keys, records, strict=True)
    ]
    created = insert_alerts(session, rows, actor)
    if resolve_closed:
        resolve_alerts(session, KIND, keep=set(keys), actor=actor, now=now)
    return created


def insert_alerts(session: Session, rows: list[dict], actor: str) -> pd.DataFrame:
    """Insert alert rows whose dedupe key is new (set-based); audit-log the new ones and return
    them (id, kind, dedupe_key, subject, owner_email, contract_id, product_id)."""
    columns = ["id", "kind", "dedupe_key", "subject", "owner_email", "contract_id", "product_id"]
    existing: set[str] = set()
    keys = [r["dedupe_key"] for r in rows]
    for start in range(0, len(keys), 2000):
        existing |= set(
            session.execute(
                select(Alert.dedupe_key).where(Alert.dedupe_key.in_(keys[start : start + 2000]))
            ).scalars()
        )
    new = [r for r in rows if r["dedupe_key"] not in existing]
    if not new:
        return pd.DataFrame(columns=columns)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Alert)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])  # a concurrent run won
        .returning(*(getattr(Alert, c) for c in columns))
    )
    inserted = pd.DataFrame(session.execute(statement, new).all(), columns=columns)
    audit.record_many(
        session,
        actor,
        [
            audit.Change(
                "alert.created",
                "alert",
                int(r.id),
                None,
                {"kind": r.kind, "dedupe_key": r.dedupe_key, "subject": r.subject},
            )
            for r in inserted.itertuples(index=False)
        ],
    )
    return inserted


def resolve_alerts(
    session: Session, kind: str, *, keep: set[str], actor: str, now: dt.datetime
) -> list[int]:
    """Resolve the open alerts of `kind` whose dedupe key is not in `keep`."""
    open_alerts = session.execute(
        select(Alert.id, Alert.dedupe_key).where(Alert.kind == kind, Alert.resolved_at.is_(None))
    ).all()
    gone = [a.id for a in open_alerts if a.dedupe_key not in keep]
    if gone:
        session.execute(update(Alert), [{"id": i, "resolved_at": now} for i in gone])
        audit.record_many(
            session,
            actor,
            [audit.Change("alert.resolved", "alert", i, None, {"resolved_at": now}) for i in gone],
        )
    return gone
