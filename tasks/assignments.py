"""The assignment service: the one code path that gives or takes back a seat.

Bulk changes, HR offboarding, reclamation, imports and the CLI all call it; nothing else writes
assignment rows. What it guarantees:

- capacity by metric: per_user counts distinct people, per_device distinct devices; site,
  concurrent and per_core products are not seat-limited when a seat is assigned;
- no seat beyond what is owned, unless the caller gives an override reason (kept on the row
  and in the audit log);
- no seat for a terminated person or an unknown device;
- idempotent: assigning what is assigned, or revoking what is not, changes nothing and says so;
- history: a revoke closes the row (revoked_at), never deletes it, so any past state can be
  rebuilt (`open_assignments(as_of=...)`);
- two callers taking the last seat at once: exactly one wins (PostgreSQL: the product rows are
  locked FOR UPDATE before the count; SQLite: every transaction is BEGIN IMMEDIATE).

The rules (`owned_seats`, `plan_changes`, `over_capacity`) are plain functions; the service
class is the IO around them, working set-based so 10k changes are a handful of statements.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from licenseflow.db import chunks
from licenseflow.errors import AssignmentRefused, CapacityExceeded
from schemas.store import Assignment, Contract, Device, Person, Product
from tasks import audit

SEAT_LIMITED = ("per_user", "per_device")
HOLDER_OF_METRIC = {"per_user": "person", "per_device": "device"}
SHOWN = 20  # problems named in an exception message

Key = tuple[int, str, int]  # (product_id, "person" | "device", holder id)


@dataclass(frozen=True)
class SeatChange:
    action: Literal["assign", "revoke"]
    product_id: int
    person_id: int | None = None  # exactly one of person_id / device_id
    device_id: int | None = None
    reason: str | None = None
    assigned_at: dt.datetime | None = None  # keep an original date (imports, rollback restores)

    @property
    def key(self) -> Key:
        if self.person_id is not None:
            return (self.product_id, "person", self.person_id)
        return (self.product_id, "device", self.device_id)


@dataclass(frozen=True)
class Outcome:
    change: SeatChange
    status: Literal["assigned", "revoked", "unchanged"]
    assignment_id: int | None
    message: str  # e.g. "already assigned since 2026-03-02", "was not assigned"


@dataclass(frozen=True)
class Capacity:
    product_id: int
    metric: str
    owned: int | None  # None = not seat-limited (site, concurrent, per_core at assign time)
    used: int  # distinct people (per_user) or devices (per_device) holding a seat

    @property
    def free(self) -> int | None:
        return None if self.owned is None else self.owned - self.used


@dataclass(frozen=True)
class Problem:
    """Why one change of a list was refused; index is its position in the list."""

    index: int
    change: SeatChange
    reason: str
    label: str = ""  # the change in words, e.g. "assign MS-M365-E3 to ann@example.com"

    def __str__(self) -> str:
        return f"change {self.index + 1} ({self.label}): {self.reason}"


@dataclass(frozen=True)
class Overrun:
    """A product that would be over capacity after a list of changes."""

    product_id: int
    code: str
    metric: str
    owned: int
    before: int
    after: int

    def __str__(self) -> str:
        return (
            f"{self.code} ({self.metric}): {self.owned} seats owned, {self.before} in use, "
            f"{self.after} after this change ({self.after - self.owned} over)"
        )


# --- the rules (no IO) --------------------------------------------------------------------


def owned_seats(metric: str, seats_in_force: Iterable[int | None]) -> int | None:
    """Seats owned of a product from its contracts in force. None = not limited: a metric
    that is not seat-limited at assignment time, or a site contract (seats NULL)."""
    if metric not in SEAT_LIMITED:
        return None
    seats = list(seats_in_force)
    if any(s is None for s in seats):
        return None
    return int(sum(seats))


def counts_toward(metric: str, kind: str) -> bool:
    """Does a holder of this kind use up a seat of a product with this metric?"""
    return HOLDER_OF_METRIC.get(metric, kind) == kind


@dataclass
class Step:
    """What one change will do: the planned outcome before anything is written."""

    index: int
    change: SeatChange
    status: Literal["assigned", "revoked", "unchanged"]
    message: str
    closes: tuple[int, ...] = ()  # ids of open rows a revoke closes
    closes_step: int | None = None  # a revoke of a row assigned earlier in the same list
    revoked_by_step: int | None = None  # set on an assign whose new row a later change revokes


@dataclass
class Plan:
    steps: list[Step]
    opened: set[Key] = field(default_factory=set)  # holders that gain a seat
    closed: set[Key] = field(default_factory=set)  # holders that lose their seat


def plan_changes(
    changes: Sequence[SeatChange], open_now: dict[Key, list[tuple[int, dt.datetime]]]
) -> Plan:
    """Apply the changes in order to the open state, in memory. open_now maps each holder key
    to its open rows (id, assigned_at); usually one, more only for data from elsewhere."""
    is_open = {key: True for key in open_now}
    new_row: dict[Key, int] = {}  # key -> index of the step that creates its open row
    steps: list[Step] = []
    for index, change in enumerate(changes):
        key = change.key
        if change.action == "assign":
            if is_open.get(key):
                if key in new_row:
                    message = "already assigned earlier in this list"
                else:
                    since = min(at for _, at in open_now[key])
                    message = f"already assigned since {since:%Y-%m-%d}"
                steps.append(Step(index, change, "unchanged", message))
                continue
            is_open[key] = True
            new_row[key] = index
            steps.append(Step(index, change, "assigned", "assigned"))
        else:
            if not is_open.get(key):
                steps.append(Step(index, change, "unchanged", "was not assigned"))
                continue
            is_open[key] = False
            if key in new_row:
                creator = new_row.pop(key)
                steps[creator].revoked_by_step = index
                steps.append(
                    Step(
                        index,
                        change,
                        "revoked",
                        "revoked (assigned earlier in this list)",
                        closes_step=creator,
                    )
                )
            else:
                rows = open_now[key]
                since = min(at for _, at in rows)
                steps.append(
                    Step(
                        index,
                        change,
                        "revoked",
                        f"revoked (assigned since {since:%Y-%m-%d})",
                        closes=tuple(i for i, _ in rows),
                    )
                )
    opened = {k for k, now_open in is_open.items() if now_open and k not in open_now}
    closed = {k for k, now_open in is_open.items() if not now_open and k in open_now}
    return Plan(steps, opened, closed)


def over_capacity(
    plan: Plan, metrics: dict[int, str], capacity: dict[int, Capacity], codes: dict[int, str]
) -> list[Overrun]:
    """Products that gain a seat and end above what is owned after the whole list."""
    gained: dict[int, int] = defaultdict(int)
    lost: dict[int, int] = defaultdict(int)
    for product_id, kind, _ in plan.opened:
        if counts_toward(metrics[product_id], kind):
            gained[product_id] += 1
    for product_id, kind, _ in plan.closed:
        if counts_toward(metrics[product_id], kind):
            lost[product_id] += 1
    overruns = []
    for product_id in sorted(gained):
        cap = capacity[product_id]
        after = cap.used + gained[product_id] - lost[product_id]
        if cap.owned is not None and after > cap.owned:
            overruns.append(
                Overrun(product_id, codes[product_id], cap.metric, cap.owned, cap.used, after)
            )
    return overruns


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:  # SQLite hands timestamps back without their zone
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


# --- the service --------------------------------------------------------------------------


class AssignmentService:
    """Assign and revoke seats in the caller's transaction (pass a unit_of_work session)."""

    def __init__(
        self,
        session: Session,
        actor: str,
        *,
        batch_id: str | None = None,
        now: dt.datetime | None = None,
    ):
        self.session = session
        self.actor = actor
        self.batch_id = batch_id
        self.now = _utc(now or dt.datetime.now(dt.UTC))

    @property
    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    # --- resolving what a person typed ---------------------------------------------------

    def resolve_person(self, key: str) -> Person:
        """A person by email (any case) or employee id."""
        key = (key or "").strip()
        person = self.session.execute(
            select(Person).where(
                or_(func.lower(Person.email) == key.lower(), Person.employee_id == key)
            )
        ).scalar_one_or_none()
        if person is None:
            raise AssignmentRefused(f"no person with email or employee id {key!r} in the store")
        return person

    def resolve_device(self, hostname: str) -> Device:
        name = (hostname or "").strip().lower()
        device = self.session.execute(
            select(Device).where(func.lower(Device.hostname) == name)
        ).scalar_one_or_none()
        if device is None:
            raise AssignmentRefused(f"unknown device {hostname!r}: no device with that hostname")
        return device

    def resolve_product(self, code: str) -> Product:
        code = (code or "").strip()
        product = self.session.execute(
            select(Product).where(func.upper(Product.code) == code.upper())
        ).scalar_one_or_none()
        if product is None:
            raise AssignmentRefused(f"no product with code {code!r} in the store")
        return product

    # --- one seat ------------------------------------------------------------------------

    def assign(
        self,
        product_code: str,
        *,
        person: str | None = None,
        device: str | None = None,
        reason: str | None = None,
        override_reason: str | None = None,
    ) -> Outcome:
        change = SeatChange("assign", *self._resolve(product_code, person, device), reason=reason)
        return self.apply([change], override_reason=override_reason)[0]

    def revoke(
        self,
        product_code: str,
        *,
        person: str | None = None,
        device: str | None = None,
        reason: str,
    ) -> Outcome:
        if not (reason or "").strip():
            raise AssignmentRefused("a revoke needs a reason")
        change = SeatChange("revoke", *self._resolve(product_code, person, device), reason=reason)
        return self.apply([change])[0]

    def _resolve(self, product_code, person, device) -> tuple[int, int | None, int | None]:
        if (person is None) == (device is None):
            raise AssignmentRefused("name exactly one of a person or a device")
        product = self.resolve_product(product_code)
        if person is not None:
            return product.id, self.resolve_person(person).id, None
        return product.id, None, self.resolve_device(device).id

    def revoke_all_for_person(self, person_id: int, reason: str) -> list[Outcome]:
        """Every open seat of a person (offboarding), in one apply."""
        if self.session.get(Person, person_id) is None:
            raise AssignmentRefused(f"no person with id {person_id}")
        products = self.session.execute(
            select(Assignment.product_id)
            .where(Assignment.person_id == person_id, Assignment.revoked_at.is_(None))
            .distinct()
            .order_by(Assignment.product_id)
        ).scalars()
        changes = [SeatChange("revoke", p, person_id=person_id, reason=reason) for p in products]
        return self.apply(changes)

    # --- many seats ----------------------------------------------------------------------

    def apply(
        self,
        changes: Sequence[SeatChange],
        *,
        override_reason: str | None = None,
        allow_terminated: bool = False,
    ) -> list[Outcome]:
        """Apply a list of changes all-or-nothing, set-based.

        Validates every change first (AssignmentRefused naming each offending one), then
        checks capacity per product after the whole list (CapacityExceeded naming product,
        owned and after, unless override_reason is given: then it is kept on the new rows and
        logged). Nothing is written on refusal. One audit entry per real change, in one
        record_many; unchanged changes write nothing.

        allow_terminated (imports of the current state only: a seat a terminated person
        still holds is a fact to record, offboarding then revokes it) needs override_reason,
        which is kept on those rows and logged like a capacity override.
        """
        changes = list(changes)
        if not changes:
            return []
        override_reason = (override_reason or "").strip() or None
        if allow_terminated and override_reason is None:
            raise AssignmentRefused("recording seats of terminated people needs an override reason")
        products = self._lock_products({c.product_id for c in changes})
        people, devices = self._holders(changes)
        problems = self._problems(changes, products, people, devices, allow_terminated)
        if problems:
            shown = "\n".join(f"  - {p}" for p in problems[:SHOWN])
            more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
            error = AssignmentRefused(
                f"{len(problems)} of {len(changes)} change(s) refused; nothing was changed\n"
                f"{shown}{more}"
            )
            error.problems = problems
            raise error

        plan = plan_changes(changes, self._open_rows(changes))
        metrics = {pid: p["metric"] for pid, p in products.items()}
        codes = {pid: p["code"] for pid, p in products.items()}
        gaining = {pid for pid, _, _ in plan.opened}
        capacity = self.capacity(gaining) if gaining else {}
        overruns = over_capacity(plan, metrics, capacity, codes)
        if overruns and override_reason is None:
            error = CapacityExceeded(
                "not enough seats; nothing was changed (buy seats, revoke some, or give an "
                "override reason):\n" + "\n".join(f"  - {o}" for o in overruns)
            )
            error.overruns = overruns
            raise error
        overridden = {o.product_id: o for o in overruns}
        return self._write(plan, products, people, devices, overridden, override_reason)

    def _lock_products(self, product_ids: set[int]) -> dict[int, dict]:
        """The products of the changes; on PostgreSQL their rows stay locked until commit, so
        a concurrent caller counting the same product's seats waits for this one."""
        found: dict[int, dict] = {}
        for chunk in chunks(sorted(product_ids)):
            query = (
                select(Product.id, Product.code, Product.metric)
                .where(Product.id.in_(chunk))
                .order_by(Product.id)
            )
            if self._postgres:
                query = query.with_for_update()
            for row in self.session.execute(query):
                found[row.id] = {"code": row.code, "metric": row.metric}
        return found

    def _holders(self, changes) -> tuple[dict[int, dict], dict[int, dict]]:
        person_ids = {c.person_id for c in changes if c.person_id is not None}
        device_ids = {c.device_id for c in changes if c.device_id is not None}
        people: dict[int, dict] = {}
        for chunk in chunks(sorted(person_ids)):
            rows = self.session.execute(
                select(Person.id, Person.email, Person.status, Person.termination_date).where(
                    Person.id.in_(chunk)
                )
            )
            people.update(
                {r[0]: {"email": r[1], "status": r[2], "termination_date": r[3]} for r in rows}
            )
        devices: dict[int, dict] = {}
        for chunk in chunks(sorted(device_ids)):
            rows = self.session.execute(
                select(Device.id, Device.hostname).where(Device.id.in_(chunk))
            )
            devices.update({r[0]: {"hostname": r[1]} for r in rows})
        return people, devices

    @staticmethod
    def _problems(changes, products, people, devices, allow_terminated) -> list[Problem]:
        problems = []
        for index, change in enumerate(changes):
            reason = _refusal(change, products, people, devices, allow_terminated)
            if reason:
                problems.append(
                    Problem(index, change, reason, _label(change, products, people, devices))
                )
        return problems

    def _open_rows(self, changes) -> dict[Key, list[tuple[int, dt.datetime]]]:
        """The open rows of the (product, holder) pairs the changes touch."""
        open_now: dict[Key, list[tuple[int, dt.datetime]]] = defaultdict(list)
        for row in self._open_rows_of({c.key for c in changes}):
            open_now[_key(row)].append((row.assignment_id, _utc(row.assigned_at)))
        return dict(open_now)

    def _open_rows_of(self, keys: set[Key]) -> list:
        """The open rows (seat_query's columns, by id within each query) of the products and
        holders of these keys, a chunk of holders and of products per query: a superset
        (a holder's other products among them) that callers narrow to their keys."""
        product_ids = sorted({k[0] for k in keys})
        rows = []
        for kind, column in (("person", Assignment.person_id), ("device", Assignment.device_id)):
            for holders in chunks(sorted({k[2] for k in keys if k[1] == kind})):
                for products in chunks(product_ids):
                    query = seat_query().where(
                        column.in_(holders),
                        Assignment.product_id.in_(products),
                        Assignment.revoked_at.is_(None),
                    )
                    rows += self._fetch(query.order_by(Assignment.id))
        return rows

    def _write(self, plan, products, people, devices, overridden, override_reason):
        now = self.now
        new_steps = [s for s in plan.steps if s.status == "assigned"]
        close_steps = [s for s in plan.steps if s.status == "revoked"]
        by_index = {s.index: s for s in plan.steps}
        rows = []
        for step in new_steps:
            change = step.change
            revoker = by_index[step.revoked_by_step] if step.revoked_by_step is not None else None
            rows.append(
                {
                    "product_id": change.product_id,
                    "person_id": change.person_id,
                    "device_id": change.device_id,
                    "assigned_at": _utc(change.assigned_at) if change.assigned_at else now,
                    "assigned_by": self.actor,
                    "assign_reason": change.reason,
                    "override_reason": override_reason
                    if _overridden(change, overridden, people)
                    else None,
                    "revoked_at": now if revoker else None,
                    "revoked_by": self.actor if revoker else None,
                    "revoke_reason": revoker.change.reason if revoker else None,
                    "batch_id": self.batch_id,
                }
            )
        new_ids: dict[int, int] = {}
        if rows:
            ids = self._reserve_ids(len(rows))
            for row, row_id in zip(rows, ids, strict=True):
                row["id"] = row_id
            self.session.execute(insert(Assignment.__table__), rows)
            new_ids = dict(zip((s.index for s in new_steps), ids, strict=True))
        closes = [
            {"row_id": row_id, "reason": step.change.reason}
            for step in close_steps
            for row_id in step.closes
        ]
        if closes:
            table = Assignment.__table__
            self.session.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"), table.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=self.actor, revoke_reason=bindparam("reason")),
                closes,
            )

        outcomes, entries = [], []
        for step in plan.steps:
            change = step.change
            if step.status == "assigned":
                assignment_id = new_ids[step.index]
            elif step.status == "revoked":
                assignment_id = (
                    new_ids[step.closes_step] if step.closes_step is not None else step.closes[0]
                )
            else:
                assignment_id = None
            outcomes.append(Outcome(change, step.status, assignment_id, step.message))
            if step.status == "unchanged":
                continue
            entries.append(
                self._entry(
                    step, assignment_id, products, people, devices, overridden, override_reason
                )
            )
        for overrun in overridden.values():
            entries.append(
                audit.Change(
                    "capacity_override",
                    "product",
                    overrun.product_id,
                    before={"owned": overrun.owned, "in_use": overrun.before},
                    after={
                        "product": overrun.code,
                        "owned": overrun.owned,
                        "in_use": overrun.after,
                        "over_by": overrun.after - overrun.owned,
                        "override_reason": override_reason,
                    },
                )
            )
        audit.record_many(self.session, self.actor, entries, batch_id=self.batch_id)
        return outcomes

    def _reserve_ids(self, count: int) -> list[int]:
        """Ids for new rows, known before the INSERT (RETURNING over 10k rows is 3x slower on
        PostgreSQL). PostgreSQL: taken from the sequence; SQLite: after the highest id, safe
        because this transaction holds the write lock and assignments are never deleted."""
        if self._postgres:
            ids = self.session.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence('assignment', 'id')) "
                    "FROM generate_series(1, :n)"
                ),
                {"n": count},
            ).scalars()
            return sorted(ids)
        highest = self.session.execute(select(func.max(Assignment.id))).scalar() or 0
        return list(range(highest + 1, highest + 1 + count))

    def _entry(self, step, assignment_id, products, people, devices, overridden, override):
        change = step.change
        holder = (
            {"person_id": change.person_id, "person": people[change.person_id]["email"]}
            if change.person_id is not None
            else {"device_id": change.device_id, "device": devices[change.device_id]["hostname"]}
        )
        seat = {"product": products[change.product_id]["code"], **holder}
        if step.status == "assigned":
            after = {
                **seat,
                "assigned_at": _utc(change.assigned_at or self.now).isoformat(),
                "reason": change.reason,
            }
            if change.person_id is not None and _terminated(people[change.person_id]):
                after["person_status"] = "terminated"
            if _overridden(change, overridden, people):
                after["override_reason"] = override
            return audit.Change("assign", "assignment", assignment_id, None, after)
        before = {**seat, "open": True}
        after = {**seat, "revoked_at": self.now.isoformat(), "reason": change.reason}
        if len(step.closes) > 1:
            after["closed_rows"] = list(step.closes)
        return audit.Change("revoke", "assignment", assignment_id, before, after)

    # --- reading -------------------------------------------------------------------------

    def capacity(self, product_ids: Iterable[int]) -> dict[int, Capacity]:
        """Seats owned (contracts in force on the service's date) and in use, per product."""
        ids = sorted(set(product_ids))
        today = self.now.date()
        metric: dict[int, str] = {}
        seats: dict[int, list[int | None]] = defaultdict(list)
        used: dict[int, tuple[int, int]] = {}
        for chunk in chunks(ids):
            metric.update(
                self.session.execute(
                    select(Product.id, Product.metric).where(Product.id.in_(chunk))
                ).all()
            )
            for product_id, count in self.session.execute(
                select(Contract.product_id, Contract.seats).where(
                    Contract.product_id.in_(chunk),
                    Contract.start_date <= today,
                    Contract.end_date >= today,
                )
            ):
                seats[product_id].append(count)
            for product_id, people, machines in self.session.execute(
                select(
                    Assignment.product_id,
                    func.count(Assignment.person_id.distinct()),
                    func.count(Assignment.device_id.distinct()),
                )
                .where(Assignment.product_id.in_(chunk), Assignment.revoked_at.is_(None))
                .group_by(Assignment.product_id)
            ):
                used[product_id] = (people, machines)
        result = {}
        for product_id, product_metric in metric.items():
            people, machines = used.get(product_id, (0, 0))
            in_use = {"per_user": people, "per_device": machines}.get(
                product_metric, people + machines
            )
            owned = owned_seats(product_metric, seats.get(product_id, []))
            result[product_id] = Capacity(product_id, product_metric, owned, in_use)
        return result

    def open_assignments(
        self, product_ids: Iterable[int] | None = None, *, as_of: dt.datetime | None = None
    ) -> pd.DataFrame:
        """Open seats now, or as they stood at `as_of` (history is never deleted).
        Columns: SEAT_COLUMNS (assignment_id, product_id, person_id, device_id, assigned_at,
        assigned_by), sorted by assignment_id."""
        query = seat_query().order_by(Assignment.id)
        if as_of is None:
            query = query.where(Assignment.revoked_at.is_(None))
        else:
            moment = _utc(as_of)
            query = query.where(
                Assignment.assigned_at <= moment,
                or_(Assignment.revoked_at.is_(None), Assignment.revoked_at > moment),
            )
        rows = []
        if product_ids is None:
            rows = self._fetch(query)
        else:
            for chunk in chunks(sorted(set(product_ids))):
                rows += self._fetch(query.where(Assignment.product_id.in_(chunk)))
        return _seat_frame(rows)

    def open_seats(self, keys: Iterable[Key]) -> pd.DataFrame:
        """The open seats of these (product, kind, holder) keys only, as open_assignments
        returns them: a bulk batch of 10k rows reads its own seats, not the 330k other seats
        of the products it touches."""
        wanted = set(keys)
        rows = [row for row in self._open_rows_of(wanted) if _key(row) in wanted]
        rows.sort(key=lambda row: row.assignment_id)
        return _seat_frame(rows)

    def _fetch(self, query) -> list:
        """Rows of a read of seats, through Core: the ORM's per-row work doubled the time of
        reading 330k seats. Flushed first, so pending ORM changes are seen as with
        session.execute."""
        self.session.flush()
        return self.session.connection().execute(query).all()


SEAT_COLUMNS = [
    "assignment_id",
    "product_id",
    "person_id",
    "device_id",
    "assigned_at",
    "assigned_by",
]


def seat_query():
    """The open_assignments columns of assignment rows (filters are the caller's)."""
    return select(
        Assignment.id.label("assignment_id"),
        Assignment.product_id,
        Assignment.person_id,
        Assignment.device_id,
        Assignment.assigned_at,
        Assignment.assigned_by,
    )


def _seat_frame(rows) -> pd.DataFrame:
    """Rows of seat_query as a typed frame, built column-wise: pandas inspects every Row
    object otherwise (3 s for 330k seats)."""
    values = zip(*rows, strict=True) if rows else [[]] * len(SEAT_COLUMNS)
    return typed_seats(pd.DataFrame(dict(zip(SEAT_COLUMNS, values, strict=True))))


def typed_seats(frame: pd.DataFrame) -> pd.DataFrame:
    """Seat columns typed as open_assignments gives them: ids Int64, assigned_at UTC (from
    datetimes or the database's ISO text), assigned_by string."""
    for column in ("assignment_id", "product_id", "person_id", "device_id"):
        frame[column] = frame[column].astype("Int64")
    frame["assigned_at"] = pd.to_datetime(frame["assigned_at"], format="ISO8601", utc=True)
    frame["assigned_by"] = frame["assigned_by"].astype("string")
    return frame


def _key(row) -> Key:
    """The seat key of a seat_query row."""
    if row.person_id is not None:
        return (row.product_id, "person", row.person_id)
    return (row.product_id, "device", row.device_id)


def _refusal(
    change: SeatChange, products, people, devices, allow_terminated: bool = False
) -> str | None:
    """Why a change cannot be applied, in words; None if it can."""
    if change.action not in ("assign", "revoke"):
        return f"unknown action {change.action!r} (assign or revoke)"
    if (change.person_id is None) == (change.device_id is None):
        return "name exactly one of a person or a device"
    product = products.get(change.product_id)
    if product is None:
        return f"unknown product id {change.product_id}"
    if change.person_id is not None:
        person = people.get(change.person_id)
        if person is None:
            return f"unknown person id {change.person_id}"
        if change.action == "assign" and person["status"] == "terminated" and not allow_terminated:
            since = person["termination_date"]
            when = f" since {since:%Y-%m-%d}" if since else ""
            return f"{person['email']} is terminated{when}: no new seats"
        if change.action == "assign" and product["metric"] == "per_device":
            return f"{product['code']} is licensed per device: assign it to a device"
    else:
        if change.device_id not in devices:
            return f"unknown device id {change.device_id}"
        if change.action == "assign" and product["metric"] == "per_user":
            return f"{product['code']} is licensed per user: assign it to a person"
    return None


def _label(change: SeatChange, products, people, devices) -> str:
    product = products.get(change.product_id, {}).get("code", f"product id {change.product_id}")
    if change.person_id is not None:
        holder = people.get(change.person_id, {}).get("email", f"person id {change.person_id}")
    else:
        holder = devices.get(change.device_id, {}).get("hostname", f"device id {change.device_id}")
    word = "to" if change.action == "assign" else "from"
    return f"{change.action} {product} {word} {holder}"


def _terminated(person: dict) -> bool:
    return person["status"] == "terminated"


def _overridden(change: SeatChange, overridden: dict, people: dict) -> bool:
    """Does this new seat stand on the override: its product went over capacity, or it is
    recorded for a terminated person (imports)?"""
    if change.product_id in overridden:
        return True
    return change.person_id is not None and _terminated(people[change.person_id])
