"""Loading the current assignment state: who holds which seat today, from an authoritative
system, through the assignment service.

Two shapes (columns and rules in schemas/assignments.py):
- the canonical CSV: product_code, user (email or employee id) or device (hostname),
  assigned_at (kept as given);
- Microsoft Graph exports: subscribedSkus JSON (the tenant's entitlements) and users JSON
  (assignedLicenses), SKUs mapped to products by the catalog's graph_skus aliases.

Imports are facts, not requests: a seat beyond what is owned, or held by a person HR says is
terminated, is recorded with the override reason "imported from <file>" (on the row and in the
audit log) instead of being refused; offboarding and the weekly position then act on it.
People, devices and products must exist: an unknown one is a row error, and any row error
refuses the whole file with nothing changed (the refusal is kept in the sync history).

Graph specifics (decisions):
- each subscribed SKU mapped to a product becomes the contract "GRAPH-<skuPartNumber>" with
  seats = prepaidUnits.enabled, unit cost 0 (Graph carries no price; a contracts file with the
  real purchase should carry it), currency USD. Graph carries no term either: start = the day
  of the first import, end = the day of the latest import + 1 year, moved on by each import,
  so the entitlement stays in force while the tenant reports it and renewal alerts fire if
  the exports stop. A product already bought through a contracts-feed contract in force gets
  no GRAPH- contract (its seats would count twice): the prepaid count is reported beside the
  contract's seats instead.
- users are matched to people by mail, then userPrincipalName, then employeeId. Users with
  licenses but no person in the store (guests, service accounts, leavers missing from HR) are
  not imported and are reported, not refused: a Graph tenant always has some, and listing them
  is the point. SKUs not in the catalog are reported and skipped.
- consumedUnits (Graph's count) is compared with the licenses found in the users file, per
  SKU, as a completeness check of the export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from licenseflow.db import get_engine, unit_of_work
from licenseflow.errors import AssignmentRefused, InputRejected, RowError
from schemas.assignments import (
    ASSIGNED_AT,
    DEVICE,
    ONE_HOLDER,
    OPTIONAL,
    PRODUCT_CODE,
    REQUIRED,
    USER,
    AssignmentRow,
    parse_moment,
)
from schemas.store import Contract, Device, IngestionRun, Person, Product
from tasks import audit
from tasks.assignments import AssignmentService, Outcome, SeatChange
from tasks.feeds import (
    ROW,
    claim_file,
    file_checksum,
    read_csv_strict,
    read_text_utf8,
    record_ingestion,
    validate_frame,
)

FEED = "assignments"
ACTOR = "assignments-feed"
GRAPH_CONTRACT_PREFIX = "GRAPH-"
GRAPH_TERM = dt.timedelta(days=365)
GRAPH_CURRENCY = "USD"
CHUNK = 5_000
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class SkuCheck:
    """One subscribed SKU: Graph's own counts beside what the users file shows."""

    sku_part_number: str
    sku_id: str
    product_code: str | None  # None: not in the catalog's graph_skus
    prepaid_enabled: int
    consumed_units: int
    licensed_in_file: int  # users in the file holding it
    imported: int  # of those, matched to a person in the store

    @property
    def difference(self) -> int:
        """consumedUnits minus licenses found: non-zero means the users export is partial
        (or Graph counts group-based or pending licenses the file does not show)."""
        return self.consumed_units - self.licensed_in_file


@dataclass
class AssignmentsLoad:
    """What one import did."""

    file: str
    fmt: str
    checksum: str
    skipped_already_applied: bool = False
    rows_read: int = 0
    assigned: int = 0
    unchanged: int = 0
    overrides: list[str] = field(default_factory=list)  # over-capacity products, recorded
    terminated_holders: list[str] = field(default_factory=list)  # seats of terminated people
    contracts_created: int = 0
    contracts_updated: int = 0
    # SKUs whose product is bought through a contracts-feed contract: Graph's prepaid count is
    # shown beside those seats, not stored as a second entitlement (that would count twice)
    covered_by_contracts: list[str] = field(default_factory=list)
    unknown_skus: list[str] = field(default_factory=list)
    unmatched_users: list[str] = field(default_factory=list)
    sku_checks: list[SkuCheck] = field(default_factory=list)
    ingestion_run_id: int | None = None
    refused: str | None = None  # import_pending only: why this file was refused

    def summary(self) -> str:
        if self.refused:
            return self.refused.split("\n", 1)[0]
        if self.skipped_already_applied:
            return f"{self.file}: already applied (checksum {self.checksum[:12]}), nothing changed"
        parts = [f"{self.file}: {self.assigned} seat(s) recorded, {self.unchanged} already held"]
        if self.fmt == "graph":
            parts.append(
                f"{self.contracts_created} entitlement(s) created, {self.contracts_updated} updated"
            )
            if self.covered_by_contracts:
                parts.append(f"entitled by contracts: {'; '.join(self.covered_by_contracts)}")
            if self.unknown_skus:
                parts.append(f"SKUs not in the catalog: {', '.join(self.unknown_skus)}")
            if self.unmatched_users:
                parts.append(f"{len(self.unmatched_users)} licensed user(s) not in the store")
        if self.overrides:
            parts.append(f"over capacity (recorded): {'; '.join(self.overrides)}")
        if self.terminated_holders:
            parts.append(f"{len(self.terminated_holders)} seat(s) held by terminated people")
        return "; ".join(parts)


# --- reading files (no store) -------------------------------------------------------------


def read_canonical(path: Path | str) -> tuple[pd.DataFrame, list[RowError], int]:
    """The canonical CSV checked row by row: (valid rows, row errors, rows read)."""
    name = str(path)
    raw = read_csv_strict(Path(path), REQUIRED, OPTIONAL)
    valid, errors = validate_frame(raw, AssignmentRow, name)
    both_or_neither = valid[USER].isna() == valid[DEVICE].isna()
    for row in valid[both_or_neither].to_dict("records"):
        given = None if pd.isna(row[USER]) else row[USER]
        errors.append(RowError(name, int(row[ROW]), USER, given, ONE_HOLDER))
    valid = valid[~both_or_neither].reset_index(drop=True)
    return valid, sorted(errors, key=lambda e: (e.row or 0, e.column or "")), len(raw)


def read_graph_json(path: Path | str) -> list[dict]:
    """The items of a Graph export: {"value": [...]}, a bare list, or a list of pages."""
    name = str(path)
    text = read_text_utf8(Path(path))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise InputRejected(name, [RowError(name, exc.lineno, None, None, reason)]) from None
    pages = document if isinstance(document, list) else [document]
    items: list = []
    for page in pages:
        if isinstance(page, dict) and isinstance(page.get("value"), list):
            items += page["value"]
        elif isinstance(page, dict) and "value" not in page and isinstance(document, list):
            items.append(page)  # a bare list of items
        else:
            reason = 'expected a Microsoft Graph export: {"value": [...]}'
            raise InputRejected(name, [RowError(name, None, None, None, reason)])
    bad = [i for i, item in enumerate(items, start=1) if not isinstance(item, dict)]
    if bad:
        errors = [RowError(name, i, None, None, "not a JSON object") for i in bad]
        raise InputRejected(name, errors)
    return items


def _count(item: dict, *keys: str):
    value = item
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None, value
    return value, value


def read_subscribed_skus(path: Path | str) -> tuple[pd.DataFrame, list[RowError]]:
    """subscribedSkus: one row per SKU (sku_id lower-cased, sku_part_number, enabled,
    consumed, _row = the item's number in the export)."""
    name = str(path)
    rows, errors = [], []
    for number, item in enumerate(read_graph_json(path), start=1):
        sku_id, part = item.get("skuId"), item.get("skuPartNumber")
        enabled, enabled_given = _count(item, "prepaidUnits", "enabled")
        consumed, consumed_given = _count(item, "consumedUnits")
        problems = []
        if not isinstance(sku_id, str) or not GUID.match(sku_id):
            problems.append(("skuId", sku_id, "must be a GUID"))
        if not isinstance(part, str) or not part.strip():
            problems.append(("skuPartNumber", part, "a value is required"))
        if enabled is None:
            problems.append(("prepaidUnits.enabled", enabled_given, "must be a whole number >= 0"))
        if consumed is None:
            problems.append(("consumedUnits", consumed_given, "must be a whole number >= 0"))
        errors += [RowError(name, number, c, v, r) for c, v, r in problems]
        if not problems:
            rows.append([sku_id.lower(), part.strip(), enabled, consumed, number])
    frame = pd.DataFrame(rows, columns=["sku_id", "sku_part_number", "enabled", "consumed", ROW])
    duplicated = frame[frame["sku_id"].duplicated()]
    for sku_id, number in zip(duplicated["sku_id"], duplicated[ROW], strict=True):
        errors.append(
            RowError(name, int(number), "skuId", sku_id, "duplicate value: it must be unique")
        )
    return frame, errors


def read_graph_users(path: Path | str) -> tuple[pd.DataFrame, list[RowError], int]:
    """users: one row per (user, assigned license): upn, mail, employee_id, sku_id, _row.
    Users without licenses give no row. Returns (licenses, errors, users read)."""
    name = str(path)
    users = read_graph_json(path)
    rows, errors = [], []
    for number, item in enumerate(users, start=1):
        upn, mail = item.get("userPrincipalName"), item.get("mail")
        licenses = item.get("assignedLicenses")
        if not isinstance(upn, str) or not upn.strip():
            errors.append(RowError(name, number, "userPrincipalName", upn, "a value is required"))
            continue
        if not isinstance(licenses, list):
            reason = (
                "assignedLicenses missing: export users with "
                "$select=userPrincipalName,mail,employeeId,assignedLicenses"
            )
            errors.append(RowError(name, number, "assignedLicenses", None, reason))
            continue
        for license_ in licenses:
            sku_id = license_.get("skuId") if isinstance(license_, dict) else None
            if not isinstance(sku_id, str) or not GUID.match(sku_id):
                errors.append(
                    RowError(name, number, "assignedLicenses.skuId", sku_id, "must be a GUID")
                )
                continue
            rows.append(
                [upn.strip(), _clean(mail), _clean(item.get("employeeId")), sku_id.lower(), number]
            )
    columns = ["upn", "mail", "employee_id", "sku_id", ROW]
    return (
        pd.DataFrame(rows, columns=columns).drop_duplicates(["upn", "sku_id"]),
        errors,
        len(users),
    )


def _clean(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


# --- resolving against the store --------------------------------------------------------------


def _chunks(values: Iterable, size: int = CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def product_ids_by_code(session: Session, codes: Iterable[str]) -> dict[str, int]:
    """{CODE (upper-cased): id} for the codes that exist."""
    wanted = sorted({c.strip().upper() for c in codes if isinstance(c, str)})
    found: dict[str, int] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(func.upper(Product.code), Product.id).where(func.upper(Product.code).in_(chunk))
        )
        found.update(dict(rows.all()))
    return found


def person_ids_by_key(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """{key: id} for keys that are a person's email (any case) or employee id."""
    keys = sorted({k.strip() for k in keys if isinstance(k, str) and k.strip()})
    by_email: dict[str, int] = {}
    by_employee: dict[str, int] = {}
    for chunk in _chunks(keys):
        lowered = sorted({k.lower() for k in chunk})
        for email, employee_id, person_id in session.execute(
            select(func.lower(Person.email), Person.employee_id, Person.id).where(
                or_(func.lower(Person.email).in_(lowered), Person.employee_id.in_(chunk))
            )
        ):
            by_email[email] = person_id
            by_employee[employee_id] = person_id
    found = {}
    for key in keys:
        person_id = by_email.get(key.lower(), by_employee.get(key))
        if person_id is not None:
            found[key] = person_id
    return found


def device_ids_by_hostname(session: Session, hostnames: Iterable[str]) -> dict[str, int]:
    """{hostname (lower-cased): id} for the hostnames that exist."""
    wanted = sorted({h.strip().lower() for h in hostnames if isinstance(h, str)})
    found: dict[str, int] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(func.lower(Device.hostname), Device.id).where(
                func.lower(Device.hostname).in_(chunk)
            )
        )
        found.update(dict(rows.all()))
    return found


# --- the canonical CSV --------------------------------------------------------------------


def _canonical_changes(
    session: Session, frame: pd.DataFrame, name: str, now: dt.datetime
) -> tuple[list[SeatChange], list[int], list[RowError]]:
    """Seat changes for the valid rows, with their row numbers; unknown names as errors."""
    products = product_ids_by_code(session, frame[PRODUCT_CODE])
    people = person_ids_by_key(session, frame[USER].dropna())
    devices = device_ids_by_hostname(session, frame[DEVICE].dropna())
    moments = parse_moment(frame[ASSIGNED_AT])
    changes, rows, errors = [], [], []
    for position, row in enumerate(frame.to_dict("records")):
        number = int(row[ROW])
        code, user, device = row[PRODUCT_CODE], _clean(row[USER]), _clean(row[DEVICE])
        product_id = products.get(code.strip().upper())
        problems = []
        if product_id is None:
            problems.append((PRODUCT_CODE, code, "no product with this code in the store"))
        if user is not None and user not in people:
            reason = "no person with this email or employee id in the store (HR roster)"
            problems.append((USER, user, reason))
        if device is not None and device.lower() not in devices:
            problems.append((DEVICE, device, "no device with this hostname in the store"))
        if problems:
            errors += [RowError(name, number, c, v, r) for c, v, r in problems]
            continue
        moment = moments.iloc[position]
        changes.append(
            SeatChange(
                "assign",
                product_id,
                person_id=people.get(user) if user is not None else None,
                device_id=devices.get(device.lower()) if device is not None else None,
                reason=f"imported from {name}",
                assigned_at=now if pd.isna(moment) else moment.to_pydatetime(),
            )
        )
        rows.append(number)
    return changes, rows, errors


def _record_seats(
    service: AssignmentService,
    changes: list[SeatChange],
    rows: list[int],
    name: str,
    source: str,
) -> list[Outcome]:
    """The seats through the service, recorded even beyond capacity or for terminated people
    (imports are facts); a change the service still refuses becomes a row error."""
    try:
        return service.apply(
            changes, override_reason=f"imported from {source}", allow_terminated=True
        )
    except AssignmentRefused as refused:
        problems = getattr(refused, "problems", [])
        errors = [RowError(name, rows[p.index], None, p.label, p.reason) for p in problems]
        errors = errors or [RowError(name, None, None, None, str(refused))]
        raise InputRejected(name, errors) from None


def _load_canonical(
    session: Session, path: Path, checksum: str, actor: str, now: dt.datetime
) -> AssignmentsLoad:
    name = str(path)
    frame, errors, rows_read = read_canonical(path)
    changes, rows, store_errors = _canonical_changes(session, frame, name, now)
    errors = sorted(errors + store_errors, key=lambda e: (e.row or 0, e.column or ""))
    if errors:
        raise InputRejected(name, errors, _refusal_summary(name, errors, rows_read))
    result = AssignmentsLoad(name, "canonical_csv", checksum, rows_read=rows_read)
    result.ingestion_run_id = record_ingestion(
        session, FEED, path, checksum, "canonical_csv", rows_read, rows_read
    )
    service = AssignmentService(session, actor, now=now)
    capacity_before = service.capacity({c.product_id for c in changes})
    outcomes = _record_seats(service, changes, rows, name, path.name)
    _tally(result, service, outcomes, capacity_before)
    return result


# --- Microsoft Graph ----------------------------------------------------------------------


def graph_sku_map(catalog_path: Path | str | None = None) -> dict[str, str]:
    """skuPartNumber (casefolded) -> product code, from the catalog's graph_skus aliases."""
    from tasks.recognition import alias_map, load_catalog

    return dict(alias_map(load_catalog(catalog_path), "graph_skus"))


def _load_graph(
    session: Session,
    users_path: Path,
    skus_path: Path,
    checksum: str,
    actor: str,
    now: dt.datetime,
    sku_map: Mapping[str, str],
) -> AssignmentsLoad:
    users_name, skus_name = str(users_path), str(skus_path)
    skus, sku_errors = read_subscribed_skus(skus_path)
    licenses, user_errors, users_read = read_graph_users(users_path)
    mapping = {str(k).strip().casefold(): v for k, v in sku_map.items()}
    skus["product_code"] = skus["sku_part_number"].str.casefold().map(mapping)
    mapped = skus[skus["product_code"].notna()]
    products = product_ids_by_code(session, mapped["product_code"])
    for part, code, number in zip(
        mapped["sku_part_number"], mapped["product_code"], mapped[ROW], strict=True
    ):
        if code.upper() not in products:
            reason = f"maps to product {code}, which is not in the store (run `slm catalog sync`)"
            sku_errors.append(RowError(skus_name, int(number), "skuPartNumber", part, reason))
    if sku_errors:
        raise InputRejected(skus_name, sku_errors)
    if user_errors:
        raise InputRejected(
            users_name, user_errors, _refusal_summary(users_name, user_errors, users_read)
        )

    # who is who: mail, then userPrincipalName, then employeeId
    people = person_ids_by_key(
        session,
        pd.concat([licenses["mail"], licenses["upn"], licenses["employee_id"]]).dropna(),
    )
    licenses["person_id"] = [
        next((people[k] for k in (mail, upn, emp) if k is not None and k in people), None)
        for mail, upn, emp in zip(
            licenses["mail"], licenses["upn"], licenses["employee_id"], strict=True
        )
    ]
    sku_product = dict(zip(mapped["sku_id"], mapped["product_code"].str.upper(), strict=True))
    licenses["product_code"] = licenses["sku_id"].map(sku_product)

    result = AssignmentsLoad(users_name, "graph", checksum, rows_read=users_read)
    known_ids = set(skus["sku_id"])
    unknown = skus[skus["product_code"].isna()]["sku_part_number"].tolist()
    unknown += sorted(set(licenses["sku_id"]) - known_ids)  # in users, not subscribed
    result.unknown_skus = unknown
    importable = licenses[licenses["product_code"].notna()]
    unmatched = importable[importable["person_id"].isna()]
    result.unmatched_users = sorted(set(unmatched["upn"]))
    not_imported = [
        RowError(
            users_name,
            int(number),
            "userPrincipalName",
            upn,
            f"no person with this email in the store: its {code} license was not imported",
        )
        for upn, code, number in zip(
            unmatched["upn"], unmatched["product_code"], unmatched[ROW], strict=True
        )
    ]
    result.ingestion_run_id = record_ingestion(
        session,
        FEED,
        users_path,
        checksum,
        "graph",
        users_read,
        users_read - len({e.row for e in not_imported}),
        not_imported,
    )

    contract_changes = _store_graph_entitlements(session, mapped, products, result, now)
    matched = importable[importable["person_id"].notna()]
    changes = [
        SeatChange(
            "assign",
            products[code],
            person_id=int(person_id),
            reason=f"imported from {users_name}",
            assigned_at=now,
        )
        for code, person_id in zip(matched["product_code"], matched["person_id"], strict=True)
    ]
    service = AssignmentService(session, actor, now=now)
    capacity_before = service.capacity({c.product_id for c in changes})
    outcomes = _record_seats(
        service, changes, [int(r) for r in matched[ROW]], users_name, users_path.name
    )
    _tally(result, service, outcomes, capacity_before)
    # logged after the seats: the service locks the products before it appends to the log,
    # and every writer takes those two locks in that order (no deadlock on PostgreSQL)
    audit.record_many(session, actor, contract_changes)

    in_file = Counter(licenses["sku_id"])
    imported = Counter(matched["sku_id"])
    result.sku_checks = [
        SkuCheck(
            row.sku_part_number,
            row.sku_id,
            None if pd.isna(row.product_code) else row.product_code,
            int(row.enabled),
            int(row.consumed),
            in_file[row.sku_id],
            imported[row.sku_id],
        )
        for row in skus.itertuples(index=False)
    ]
    return result


def _store_graph_entitlements(session, mapped, products, result, now) -> list[audit.Change]:
    """GRAPH-<skuPartNumber> contracts: created, or seats and end moved on. Returns the audit
    entries to write."""
    today = now.date()
    numbers = [GRAPH_CONTRACT_PREFIX + part for part in mapped["sku_part_number"]]
    existing = {
        c.contract_number: c
        for c in session.execute(
            select(Contract).where(Contract.contract_number.in_(numbers))
        ).scalars()
    }
    bought = _contract_seats_in_force(session, today)
    changes = []
    for row, number in zip(mapped.itertuples(index=False), numbers, strict=True):
        product_id = products[row.product_code.upper()]
        if product_id in bought:
            seats = bought[product_id]
            result.covered_by_contracts.append(
                f"{row.sku_part_number}: Graph prepaid {int(row.enabled)}, contracts "
                f"{'site' if seats is None else seats}"
            )
            continue
        contract = existing.get(number)
        if contract is None:
            contract = Contract(
                contract_number=number,
                product_id=product_id,
                seats=int(row.enabled),
                unit_cost=Decimal("0.00"),
                currency=GRAPH_CURRENCY,
                start_date=today,
                end_date=today + GRAPH_TERM,
                auto_renew=False,
                notice_days=0,
                source_run_id=result.ingestion_run_id,
                updated_at=now,
            )
            session.add(contract)
            changes.append(audit.Change("create", "contract", number, None, _view(contract)))
            result.contracts_created += 1
            continue
        before = _view(contract)
        contract.seats = int(row.enabled)
        contract.product_id = product_id
        contract.end_date = max(contract.end_date, today + GRAPH_TERM)
        after = _view(contract)
        if after != before:
            contract.source_run_id = result.ingestion_run_id
            contract.updated_at = now
            changes.append(audit.Change("update", "contract", number, before, after))
            result.contracts_updated += 1
    session.flush()
    return changes


def _contract_seats_in_force(session: Session, today) -> dict[int, int | None]:
    """Seats per product of the contracts-feed contracts in force (None: a site license)."""
    rows = session.execute(
        select(Contract.product_id, Contract.seats).where(
            ~Contract.contract_number.startswith(GRAPH_CONTRACT_PREFIX),
            Contract.start_date <= today,
            Contract.end_date >= today,
        )
    ).all()
    seats: dict[int, int | None] = {}
    for product_id, count in rows:
        if product_id in seats and (seats[product_id] is None or count is None):
            seats[product_id] = None
        else:
            seats[product_id] = (seats.get(product_id) or 0) + count if count is not None else None
    return seats


def _view(contract: Contract) -> dict:
    return {
        "contract_number": contract.contract_number,
        "product_id": contract.product_id,
        "seats": contract.seats,
        "unit_cost": str(contract.unit_cost),
        "currency": contract.currency,
        "start_date": contract.start_date.isoformat(),
        "end_date": contract.end_date.isoformat(),
        "source": "Microsoft Graph subscribedSkus",
    }


# --- shared ---------------------------------------------------------------------------------


def _tally(result: AssignmentsLoad, service, outcomes: list[Outcome], capacity_before) -> None:
    result.assigned = sum(o.status == "assigned" for o in outcomes)
    result.unchanged = sum(o.status == "unchanged" for o in outcomes)
    after = service.capacity(capacity_before)
    codes = dict(
        service.session.execute(
            select(Product.id, Product.code).where(Product.id.in_(list(after)))
        ).all()
    )
    result.overrides = [
        f"{codes[pid]}: {cap.owned} owned, {cap.used} in use"
        for pid, cap in sorted(after.items())
        if cap.owned is not None and cap.used > cap.owned
    ]
    assigned_people = {o.change.person_id for o in outcomes if o.status == "assigned"}
    assigned_people.discard(None)
    terminated = select(Person.email).where(Person.status == "terminated")
    result.terminated_holders = sorted(
        email
        for chunk in _chunks(sorted(assigned_people))  # 100k people: over PostgreSQL's limit
        for email in service.session.execute(terminated.where(Person.id.in_(chunk))).scalars()
    )


def _refusal_summary(name: str, errors: list[RowError], rows_read: int) -> str:
    rejected = len({e.row for e in errors})
    return (
        f"{name}: {rejected} of {rows_read} rows rejected; an assignments file is applied "
        "whole or not at all, so nothing was changed"
    )


def _combined_checksum(*paths: Path) -> str:
    return hashlib.sha256("".join(file_checksum(p) for p in paths).encode()).hexdigest()


def _record_rejection(engine: Engine, path, checksum, fmt, refused: InputRejected) -> None:
    """Keep a refusal in the sync history, in its own transaction (the import's rolled back)."""
    try:
        with unit_of_work(engine) as session:
            record_ingestion(
                session,
                FEED,
                path,
                checksum,
                fmt,
                0,
                0,
                refused.errors,
                status="rejected",
                message=str(refused).split("\n", 1)[0],
            )
    except OperationalError as exc:  # pragma: no cover - e.g. the store is locked
        refused.add_note(f"(the refusal could not be recorded in the sync history: {exc})")


def detect_graph_kind(path: Path | str) -> str:
    """'skus' for a subscribedSkus export, 'users' for a users export."""
    items = read_graph_json(path)
    if any("skuPartNumber" in item for item in items):
        return "skus"
    return "users"


def load_assignments(
    path: Path | str,
    *,
    skus: Path | str | None = None,
    sku_map: Mapping[str, str] | None = None,
    actor: str = ACTOR,
    engine: Engine | None = None,
    now: dt.datetime | None = None,
) -> AssignmentsLoad:
    """Import one assignments file in its own transaction: a canonical CSV, or a Graph users
    JSON with its subscribedSkus JSON (`skus`; sku_map defaults to the catalog's graph_skus).

    All or nothing: any row error raises InputRejected (file, row, column, value, reason),
    nothing changes, and the refusal is kept in the sync history. The same file(s) again are
    skipped (checksum). Seats already held are left as they are (assigned_at kept)."""
    engine = engine or get_engine()
    path = Path(path)
    now = now or dt.datetime.now(dt.UTC)
    graph = path.suffix.lower() == ".json"
    fmt = "graph" if graph else "canonical_csv"
    if graph and skus is None:
        reason = "a Graph users export needs its subscribedSkus export (--skus FILE)"
        raise InputRejected(str(path), [RowError(str(path), None, None, None, reason)])
    paths = [path, Path(skus)] if graph else [path]
    for p in paths:
        if not p.is_file():
            raise InputRejected(str(p), [RowError(str(p), None, None, None, "no such file")])
    checksum = _combined_checksum(*paths) if graph else file_checksum(path)
    if graph and sku_map is None:
        sku_map = graph_sku_map()
    try:
        with unit_of_work(engine) as session:
            if not claim_file(session, FEED, checksum):  # waits for another worker on it
                return AssignmentsLoad(str(path), fmt, checksum, skipped_already_applied=True)
            if graph:
                result = _load_graph(session, path, Path(skus), checksum, actor, now, sku_map)
            else:
                result = _load_canonical(session, path, checksum, actor, now)
            session.execute(
                update(IngestionRun)
                .where(IngestionRun.id == result.ingestion_run_id)
                .values(message=result.summary()[:2000])
            )
            return result
    except InputRejected as refused:
        _record_rejection(engine, path, checksum, fmt, refused)
        raise


def import_pending(
    sources_file: Path | str | None = None,
    *,
    actor: str = ACTOR,
    engine: Engine | None = None,
    now: dt.datetime | None = None,
) -> list[AssignmentsLoad]:
    """Every file in the "assignments" drop folders (data/sources.yaml), in name order:
    canonical CSVs, and Graph users JSON paired with the subscribedSkus JSON of the same
    folder. Files already applied are skipped; a refused file is reported (its `refused`
    says why) and the others still load."""
    from tasks.sources import feed_files

    files = feed_files(FEED, Path(sources_file) if sources_file else None)
    by_folder: dict[Path, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    results = []
    for path, _fmt in files:
        if path.suffix.lower() == ".json":
            try:
                kind = detect_graph_kind(path)
            except InputRejected as refused:
                results.append(AssignmentsLoad(str(path), "graph", "", refused=str(refused)))
                continue
            by_folder[path.parent][kind].append(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            by_folder[path.parent]["csv"].append(path)
    for _folder, kinds in sorted(by_folder.items()):
        skus = sorted(kinds["skus"])[-1] if kinds["skus"] else None
        jobs = [(p, None) for p in kinds["csv"]] + [(p, skus) for p in kinds["users"]]
        for path, skus_path in sorted(jobs):
            try:
                results.append(
                    load_assignments(path, skus=skus_path, actor=actor, engine=engine, now=now)
                )
            except InputRejected as refused:
                fmt = "graph" if path.suffix.lower() == ".json" else "canonical_csv"
                results.append(AssignmentsLoad(str(path), fmt, "", refused=str(refused)))
    return results


@task(name="import-assignment-state", cache_policy=NO_CACHE, retries=0)
def import_pending_task(
    sources_file: str | None = None, now: dt.datetime | None = None
) -> list[AssignmentsLoad]:
    """Import the pending assignment-state files (for flows: assignment_sync runs it before
    offboarding, so seats imported for terminated people are revoked the same day)."""
    results = import_pending(sources_file, now=now)
    logger = get_run_logger()
    for result in results:
        (logger.warning if result.refused else logger.info)(result.summary())
    return results
