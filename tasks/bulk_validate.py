"""Checking a bulk assignment file before anything changes.

Four layers, each naming every problem as a RowError (row, column, value, reason):

1. the file: encoding, delimiter, header (tasks.feeds.read_csv_strict);
2. each row alone: action, product code present, exactly one of user/device, pilot flag
   (schemas.bulk.BulkRow plus `check_cells`);
3. the rows against the store's reference data: unknown product codes, people, devices, a
   product's metric, terminated people (`resolve`), and rows against each other: duplicates
   and contradictions (`check_duplicates`);
4. the rows against the assignment state: revoking what is not assigned, and seat capacity
   after the whole batch (`check_against_state`), which is run again under the bulk lock right
   before the first change, because the state can move while a batch waits for approval.

The rules are plain functions over DataFrames; the loaders at the bottom are the only IO.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from licenseflow.errors import InputRejected, RowError
from schemas import bulk as B
from schemas.store import Contract, Device, Person, Product
from tasks.assignments import AssignmentService, Capacity, counts_toward
from tasks.export_safety import neutralise
from tasks.feeds import ROW, file_checksum, read_csv_strict, validate_frame

CHUNK = 2000  # values per IN (...) list

# what a row does to the assignment state, decided against the state (column "effect")
ADDS, REMOVES, NO_CHANGE = "adds", "removes", "no_change"


@dataclass
class Validation:
    """The outcome of checking a file: resolved rows and every problem found."""

    file: str
    checksum: str | None
    rows: pd.DataFrame  # resolved rows (see RESOLVED_COLUMNS); empty when the file is unreadable
    errors: list[RowError] = field(default_factory=list)
    capacity: dict[int, Capacity] = field(default_factory=dict)
    costs: dict[int, tuple[Decimal, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


RESOLVED_COLUMNS = [
    ROW,
    B.ACTION,
    B.PRODUCT_CODE,
    B.USER,
    B.DEVICE,
    B.PILOT,
    B.NOTE,
    "product_id",
    "person_id",
    "device_id",
    "code",
    "metric",
    "holder",
]


# --- the whole check -------------------------------------------------------------------


def validate_bulk_file(
    session: Session,
    path: Path | str,
    *,
    override_reason: str | None = None,
    pilot_size: int = 10,
    now: dt.datetime | None = None,
) -> Validation:
    """Check a bulk file against the store, read-only. Never raises for bad input: the
    problems are in Validation.errors (sorted by row). The rows' `pilot` column is the
    effective pilot: the marked rows, or the first `pilot_size` rows when none is marked."""
    path = Path(path)
    name = str(path)
    checksum = file_checksum(path) if path.is_file() else None
    try:
        frame = read_bulk_file(path)
    except InputRejected as refused:
        return Validation(name, checksum, _empty_rows(), list(refused.errors))
    except OSError as exc:
        reason = f"cannot read the file: {exc.strerror or exc}"
        return Validation(name, checksum, _empty_rows(), [RowError(name, None, None, None, reason)])

    frame, errors = check_cells(frame, name)
    if not frame[B.PILOT].any():
        frame[B.PILOT] = frame[ROW].rank(method="first") <= pilot_size
    refs = load_references(session, frame)
    resolved, resolve_errors = resolve(frame, refs, name)
    errors += resolve_errors
    errors += check_duplicates(resolved, name)
    bad_rows = {e.row for e in errors}
    good = resolved[~resolved[ROW].isin(bad_rows)]
    capacity, costs = {}, {}
    if not good.empty:
        product_ids = sorted(int(p) for p in good["product_id"].unique())
        open_seats, capacity = load_state(session, seat_keys(good), now)
        costs = load_costs(session, product_ids, now)
        effects, state_errors = check_against_state(
            good, open_seats, capacity, override_reason, name
        )
        errors += state_errors
        resolved = resolved.merge(effects, on=ROW, how="left")
    else:
        resolved = resolved.assign(effect=pd.Series(dtype="string"))
    return Validation(name, checksum, resolved, sort_errors(errors), capacity, costs)


def sort_errors(errors: Iterable[RowError]) -> list[RowError]:
    return sorted(errors, key=lambda e: (e.row is not None, e.row or 0, e.column or "", e.reason))


# --- 1-2: the file and each row alone ---------------------------------------------------


def read_bulk_file(path: Path) -> pd.DataFrame:
    """The file as strings with `_row`; InputRejected for an unreadable file or header."""
    frame = read_csv_strict(path, B.REQUIRED, B.OPTIONAL)
    if frame[B.USER].isna().all() and frame[B.DEVICE].isna().all():
        header = _header_of(path)
        if B.USER not in header and B.DEVICE not in header:
            reason = "required column missing: a user or a device column (or both)"
            raise InputRejected(str(path), [RowError(str(path), 0, B.USER, None, reason)])
    return frame


def _header_of(path: Path) -> list[str]:
    from tasks.feeds import read_text_utf8, sniff_delimiter

    first = read_text_utf8(path).split("\n", 1)[0]
    return [h.strip() for h in next(csv.reader([first], delimiter=sniff_delimiter(first)))]


def check_cells(frame: pd.DataFrame, file: str) -> tuple[pd.DataFrame, list[RowError]]:
    """Normalise what letter case does not change, run the row model, and check that each row
    names exactly one of a user or a device. Returns every row (checked or not) and errors."""
    frame = frame.copy()
    frame[B.ACTION] = frame[B.ACTION].str.lower()
    frame[B.PILOT] = frame[B.PILOT].str.lower()
    _, errors = validate_frame(frame, B.BulkRow, file)
    neither = frame[B.USER].isna() & frame[B.DEVICE].isna()
    both = frame[B.USER].notna() & frame[B.DEVICE].notna()
    for row in frame.loc[neither, ROW]:
        errors.append(RowError(file, int(row), B.USER, None, "give a user or a device"))
    for row, device in frame.loc[both, [ROW, B.DEVICE]].itertuples(index=False):
        errors.append(
            RowError(file, int(row), B.DEVICE, device, "give a user or a device, not both")
        )
    frame[B.PILOT] = frame[B.PILOT].isin(B.PILOT_YES)
    return frame, errors


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in RESOLVED_COLUMNS + ["effect"]})


# --- 3: reference data and rows against each other ------------------------------------


@dataclass
class References:
    """The store's products, people and devices that a file names (keys normalised)."""

    products: dict[str, dict]  # upper code -> {product_id, code, metric, classification}
    people_by_email: dict[str, dict]  # lower email -> {person_id, email, status, termination}
    people_by_employee_id: dict[str, dict]
    devices: dict[str, dict]  # lower hostname -> {device_id, hostname}


def resolve(frame: pd.DataFrame, refs: References, file: str):
    """Ids for codes, people and devices; errors for what the store does not know or does not
    allow (a product's metric, a terminated person getting a seat, a denied product)."""
    errors: list[RowError] = []
    out = frame.copy()

    def text(value) -> str | None:
        return None if value is None or pd.isna(value) else str(value)

    # plain lists: a column that is empty or absent from the file has no usable string dtype
    codes = [text(v) for v in out[B.PRODUCT_CODE].tolist()]
    users = [text(v) for v in out[B.USER].tolist()]
    hosts = [text(v) for v in out[B.DEVICE].tolist()]
    product = [refs.products.get(c.upper()) if c else None for c in codes]
    person = [
        (refs.people_by_email.get(u.lower()) or refs.people_by_employee_id.get(u)) if u else None
        for u in users
    ]
    device = [refs.devices.get(h.lower()) if h else None for h in hosts]

    def pick(found: list, key: str, dtype: str = "object") -> pd.Series:
        values = [f[key] if f else None for f in found]
        return pd.Series(values, index=out.index, dtype=dtype)

    out["product_id"] = pick(product, "product_id", "Int64")
    out["code"] = pick(product, "code")
    out["metric"] = pick(product, "metric")
    out["person_id"] = pick(person, "person_id", "Int64")
    out["device_id"] = pick(device, "device_id", "Int64")
    out["holder"] = [
        p["email"] if p else (d["hostname"] if d else None)
        for p, d in zip(person, device, strict=True)
    ]

    columns = [out[c].tolist() for c in (ROW, B.ACTION, B.PRODUCT_CODE, B.USER, B.DEVICE)]
    found = zip(*columns, product, person, device, strict=True)
    for row, action, code, user, host, p, who, machine in found:  # plain lists: fast
        row = int(row)
        if pd.notna(code) and not isinstance(p, dict):
            reason = "no product with this code in the store"
            errors.append(RowError(file, row, B.PRODUCT_CODE, code, reason))
        if pd.notna(user) and not isinstance(who, dict):
            reason = "no person with this email or employee id"
            errors.append(RowError(file, row, B.USER, user, reason))
        if pd.notna(host) and not isinstance(machine, dict):
            errors.append(RowError(file, row, B.DEVICE, host, "no device with this hostname"))
        if action != "assign":
            continue
        if isinstance(who, dict) and who["status"] == "terminated":
            since = who["termination_date"]
            when = f" since {since:%Y-%m-%d}" if since else ""
            reason = f"{who['email']} is terminated{when}: no new seats"
            errors.append(RowError(file, row, B.USER, user, reason))
        if not isinstance(p, dict):
            continue
        if p["classification"] != "commercial":
            reason = f"{p['code']} is {p['classification']}: it has no seats to assign"
            errors.append(RowError(file, row, B.PRODUCT_CODE, code, reason))
        elif pd.notna(user) and pd.notna(host):
            continue  # already named: give a user or a device, not both
        elif p["metric"] == "per_user" and pd.notna(host):
            reason = f"{p['code']} is licensed per user: give a user, not a device"
            errors.append(RowError(file, row, B.DEVICE, host, reason))
        elif p["metric"] == "per_device" and pd.notna(user):
            reason = f"{p['code']} is licensed per device: give a device, not a user"
            errors.append(RowError(file, row, B.USER, user, reason))
    return out, errors


def check_duplicates(rows: pd.DataFrame, file: str) -> list[RowError]:
    """A row repeating an earlier one (same action, product and holder, however the holder
    was written: email or employee id), or contradicting it (assign and revoke of the same
    seat). The later row is named, with the earlier one in the reason."""
    product_key = (
        rows["product_id"].astype("string").fillna("code:" + rows[B.PRODUCT_CODE].str.upper())
    )
    holder_key = ("person:" + rows["person_id"].astype("string")).fillna(
        "device:" + rows["device_id"].astype("string")
    )
    holder_key = holder_key.fillna("user:" + rows[B.USER].str.lower()).fillna(
        "host:" + rows[B.DEVICE].str.lower()
    )
    keys = pd.DataFrame({"p": product_key, "h": holder_key, "a": rows[B.ACTION], "r": rows[ROW]})
    keys = keys[keys["h"].notna() & keys["a"].isin(B.ACTIONS)]
    errors = []
    first_of: dict[tuple, int] = {}
    first_action_of: dict[tuple, tuple[str, int]] = {}
    for p, h, a, r in keys.itertuples(index=False):
        what = "user" if h.startswith(("person:", "user:")) else "device"
        if (p, h, a) in first_of:
            reason = f"duplicate of row {first_of[(p, h, a)]} (same action, product and {what})"
            errors.append(RowError(file, int(r), None, None, reason))
            continue
        first_of[(p, h, a)] = int(r)
        earlier = first_action_of.setdefault((p, h), (a, int(r)))
        if earlier[0] != a:
            reason = (
                f"contradicts row {earlier[1]}: assign and revoke of the same product for the "
                f"same {what}; keep one of them"
            )
            errors.append(RowError(file, int(r), B.ACTION, a, reason))
    return errors


# --- 4: rows against the assignment state ------------------------------------------------


def check_against_state(
    rows: pd.DataFrame,
    open_seats: pd.DataFrame,
    capacity: dict[int, Capacity],
    override_reason: str | None,
    file: str,
) -> tuple[pd.DataFrame, list[RowError]]:
    """What each resolved row does to the current state (effect: adds | removes | no_change),
    with errors for a revoke of a seat that is not assigned, and for every product that would
    end above its owned seats after the whole batch, or after the pilot rows alone (named at
    the row that first goes over; skipped when the operator gave an override reason).
    Returns (_row, effect) and errors."""
    errors: list[RowError] = []
    open_keys = set(seat_keys(open_seats))
    row_keys = seat_keys(rows)
    is_open = pd.Series([k in open_keys for k in row_keys], index=rows.index, dtype=bool)
    assign = rows[B.ACTION] == "assign"
    effect = pd.Series(NO_CHANGE, index=rows.index, dtype="string")
    effect[assign & ~is_open] = ADDS
    effect[~assign & is_open] = REMOVES
    for i in rows.index[~assign & ~is_open]:
        column = B.USER if pd.notna(rows.at[i, "person_id"]) else B.DEVICE
        typed = rows.at[i, column] if column in rows.columns else None
        typed = rows.at[i, "holder"] if typed is None or pd.isna(typed) else typed
        reason = (
            f"{rows.at[i, 'code']} is not assigned to {rows.at[i, 'holder']}: nothing to revoke"
        )
        errors.append(RowError(file, int(rows.at[i, ROW]), column, typed, reason))

    if not (override_reason or "").strip():
        whole = _capacity_errors(rows, effect, capacity, file)
        errors += whole
        if B.PILOT in rows.columns and rows[B.PILOT].any():
            over = {int(rows.loc[rows[ROW] == e.row, "product_id"].iat[0]) for e in whole}
            pilot = rows[B.PILOT].astype(bool)
            errors += _capacity_errors(
                rows[pilot], effect[pilot], capacity, file, pilot=True, skip=over
            )
    return pd.DataFrame({ROW: rows[ROW].to_numpy(), "effect": effect.to_numpy()}), errors


def _capacity_errors(rows, effect, capacity, file, *, pilot=False, skip=()) -> list[RowError]:
    """Products above their owned seats after the rows (the whole batch, or the pilot alone:
    the pilot is applied before the revokes of the rollout free any seat)."""
    kind = pd.Series("device", index=rows.index).where(rows["person_id"].isna(), "person")
    counted = pd.Series(
        [counts_toward(m, k) for m, k in zip(rows["metric"], kind, strict=True)],
        index=rows.index,
        dtype=bool,
    )
    errors = []
    for product_id, group in rows.groupby("product_id", sort=True):
        cap = capacity.get(int(product_id))
        if cap is None or cap.owned is None or int(product_id) in skip:
            continue
        idx = group.index
        gained = effect[idx].eq(ADDS) & counted[idx]
        lost = int((effect[idx].eq(REMOVES) & counted[idx]).sum())
        after = cap.used - lost + int(gained.sum())
        if after <= cap.owned:
            continue
        running = cap.used - lost + gained.astype(int).cumsum()
        first_over = running[gained & (running > cap.owned)].index[0]
        code = group.at[first_over, "code"]
        if pilot:
            reason = (
                f"{code}: the pilot alone would put {after} seats in use, {cap.owned} owned "
                "(the revokes that free seats come after it); make them pilot rows too, choose "
                "other pilot rows, or give an override reason"
            )
        else:
            reason = (
                f"{code}: {after} seats in use after this batch, {cap.owned} owned "
                f"({after - cap.owned} over, {cap.used} in use now); remove assignments, buy "
                "seats, or give an override reason"
            )
        typed = group.at[first_over, B.PRODUCT_CODE]
        errors.append(RowError(file, int(group.at[first_over, ROW]), B.PRODUCT_CODE, typed, reason))
    return errors


def seat_keys(frame: pd.DataFrame) -> list[tuple]:
    """(product_id, 'person'|'device', holder id) per row, as the assignment service keys
    seats (frame: product_id, person_id, device_id)."""
    products = frame["product_id"].astype("int64").tolist()
    people = frame["person_id"].astype("Int64").fillna(-1).astype("int64").tolist()
    devices = frame["device_id"].astype("Int64").fillna(-1).astype("int64").tolist()
    return [
        (p, "person", a) if a != -1 else (p, "device", d)
        for p, a, d in zip(products, people, devices, strict=True)
    ]


# --- IO: the store's reference data and state ---------------------------------------------


def _chunks(values: Iterable, size: int = CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def load_references(session: Session, frame: pd.DataFrame) -> References:
    """Only the products, people and devices the file names (set-based lookups)."""
    codes = sorted(set(frame[B.PRODUCT_CODE].dropna().str.upper()))
    users = sorted(set(frame[B.USER].dropna()))
    hosts = sorted(set(frame[B.DEVICE].dropna().str.lower()))
    products: dict[str, dict] = {}
    for chunk in _chunks(codes):
        query = select(Product.id, Product.code, Product.metric, Product.classification).where(
            func.upper(Product.code).in_(chunk)
        )
        for pid, code, metric, classification in session.execute(query):
            products[code.upper()] = {
                "product_id": pid,
                "code": code,
                "metric": metric,
                "classification": classification,
            }
    by_email: dict[str, dict] = {}
    by_employee: dict[str, dict] = {}
    columns = (Person.id, Person.email, Person.employee_id, Person.status, Person.termination_date)
    for chunk in _chunks(users):
        query = select(*columns).where(
            or_(
                func.lower(Person.email).in_(sorted({u.lower() for u in chunk})),
                Person.employee_id.in_(chunk),
            )
        )
        _add_people(session.execute(query), by_email, by_employee)
    devices: dict[str, dict] = {}
    for chunk in _chunks(hosts):
        query = select(Device.id, Device.hostname).where(func.lower(Device.hostname).in_(chunk))
        for did, hostname in session.execute(query):
            devices[hostname.lower()] = {"device_id": did, "hostname": hostname}
    return References(products, by_email, by_employee, devices)


def _add_people(result, by_email, by_employee) -> None:
    for pid, email, employee_id, status, termination in result:
        entry = {
            "person_id": pid,
            "email": email,
            "status": status,
            "termination_date": termination,
        }
        by_email[email.lower()] = entry
        by_employee[employee_id] = entry


def load_state(
    session: Session, keys: Iterable[tuple], now: dt.datetime | None = None
) -> tuple[pd.DataFrame, dict[int, Capacity]]:
    """The open seats among these seat keys (seat_keys of the rows) and the capacity of their
    products, as the assignment service sees them: the rows' own seats, not every seat of
    the products (a product of the reference enterprise has up to 100k)."""
    service = AssignmentService(session, "licenseflow", now=now)
    keys = set(keys)
    return service.open_seats(keys), service.capacity({k[0] for k in keys})


def load_costs(
    session: Session, product_ids: Iterable[int], now: dt.datetime | None = None
) -> dict[int, tuple[Decimal, str]]:
    """Yearly cost of one seat per product: the seat-weighted unit cost of its contracts in
    force today, in their (most used) currency."""
    today = (now or dt.datetime.now(dt.UTC)).date()
    totals: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0, Decimal(0)]))
    for chunk in _chunks(sorted(set(product_ids))):
        query = select(
            Contract.product_id, Contract.seats, Contract.unit_cost, Contract.currency
        ).where(
            Contract.product_id.in_(chunk),
            Contract.start_date <= today,
            Contract.end_date >= today,
        )
        for pid, seats, unit_cost, currency in session.execute(query):
            weight = seats if seats else 1
            slot = totals[pid][currency]
            slot[0] += weight
            slot[1] += Decimal(unit_cost) * weight
    costs = {}
    for pid, by_currency in totals.items():
        currency, (weight, total) = max(by_currency.items(), key=lambda kv: kv[1][0])
        costs[pid] = ((total / weight).quantize(Decimal("0.01")), currency)
    return costs


# --- the error report --------------------------------------------------------------------


def safe_cell(value) -> str:
    """A report cell a spreadsheet will not run as a formula (tasks.export_safety)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return neutralise(str(value))


def error_table(errors: Iterable[RowError]) -> list[dict]:
    return [
        {
            "row": "" if e.row is None else e.row,
            "column": e.column or "",
            "value": safe_cell(e.value),
            "reason": e.reason,
        }
        for e in errors
    ]


def write_error_report(errors: Iterable[RowError], path: Path) -> Path:
    """The row-level error report as CSV (row, column, value, reason)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=B.REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(error_table(errors))
    return path


def recheck_rows(
    session: Session,
    rows: pd.DataFrame,
    override_reason: str | None,
    file: str,
    now: dt.datetime | None = None,
    state: tuple[pd.DataFrame, dict[int, Capacity]] | None = None,
) -> list[RowError]:
    """The checks whose answer can change while a batch waits (a person terminated, a seat
    revoked or taken by someone else), run again on stored rows (tasks.bulk_state.load_rows)
    right before they are applied. `state`: (open seats, capacity) of the rows' products when
    the caller has read them already."""
    if rows.empty:
        return []
    frame = rows.rename(columns={"row_number": ROW}).copy()
    products = _by_id(session, Product, ["code", "metric"], frame["product_id"])
    people = _by_id(session, Person, ["email", "status", "termination_date"], frame["person_id"])
    devices = _by_id(session, Device, ["hostname"], frame["device_id"])
    frame["code"] = [products[int(p)]["code"] for p in frame["product_id"]]
    frame["metric"] = [products[int(p)]["metric"] for p in frame["product_id"]]
    frame[B.PRODUCT_CODE] = frame["code"]
    emails = [None if pd.isna(p) else people[int(p)]["email"] for p in frame["person_id"]]
    hosts = [None if pd.isna(d) else devices[int(d)]["hostname"] for d in frame["device_id"]]
    frame[B.USER] = pd.Series(emails, index=frame.index, dtype="object")
    frame[B.DEVICE] = pd.Series(hosts, index=frame.index, dtype="object")
    frame["holder"] = [e if e is not None else h for e, h in zip(emails, hosts, strict=True)]
    errors = []
    for row, action, person_id in frame[[ROW, B.ACTION, "person_id"]].itertuples(index=False):
        if action != "assign" or pd.isna(person_id):
            continue
        who = people[int(person_id)]
        if who["status"] == "terminated":
            since = who["termination_date"]
            when = f" since {since:%Y-%m-%d}" if since else ""
            reason = f"{who['email']} is terminated{when}: no new seats"
            errors.append(RowError(file, int(row), B.USER, who["email"], reason))
    open_seats, capacity = state or load_state(session, seat_keys(frame), now)
    _, state_errors = check_against_state(frame, open_seats, capacity, override_reason, file)
    return sort_errors(errors + state_errors)


def _by_id(session: Session, model, columns: list[str], ids: pd.Series) -> dict[int, dict]:
    wanted = sorted({int(i) for i in ids.dropna()})
    found: dict[int, dict] = {}
    for chunk in _chunks(wanted):
        query = select(model.id, *(getattr(model, c) for c in columns)).where(model.id.in_(chunk))
        for row in session.execute(query):
            found[row[0]] = dict(zip(columns, row[1:], strict=True))
    return found
