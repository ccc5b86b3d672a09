"""The contracts feed (lifecycle stage 1, inventory): read a contracts file, check it, and bring
vendors, products and contracts in the store up to date with it.

The columns and rules are in schemas/contracts.py. The feed is strict: one bad row refuses the
whole file and nothing changes. A file already applied (same checksum) is skipped. Contracts
are matched by contract number and never deleted: a contract missing from a later file stays,
because a file may hold only part of the inventory. Two contracts of one product with
overlapping terms are accepted and flagged as a possible duplicate purchase (an alert row).
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import pandas as pd
import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected, RowError
from schemas.contracts import (
    AUTO_RENEW,
    AUTO_RENEW_VALUES,
    COLUMNS,
    CONTRACT_ID,
    COST_CENTER,
    CURRENCY,
    DATES,
    DUPLICATE_CONTRACT,
    END_DATE,
    METRIC,
    NOTICE_DAYS,
    OPTIONAL,
    OWNER_EMAIL,
    PRODUCT_CODE,
    PRODUCT_NAME,
    REQUIRED,
    SEATS,
    START_DATE,
    UNIT_COST,
    VENDOR,
    ContractRow,
    parse_dates,
    rule_errors,
)
from schemas.store import Alert, Contract, IngestionRun, Product, Vendor
from tasks import audit
from tasks.feeds import (
    ROW,
    claim_file,
    file_checksum,
    read_csv_strict,
    read_text_utf8,
    record_ingestion,
    validate_frame,
)

FEED = "contracts"
YAML_KEY = "contracts"
FORMATS = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}
DUPLICATE_ALERT = "possible_duplicate_purchase"
DUPLICATE_COLUMNS = [PRODUCT_CODE, "contract_a", "contract_b", "overlap_start", "overlap_end"]
CENT = Decimal("0.01")
_CHUNK = 5_000  # ids per IN (...) query, well under SQLite's variable limit
# the contract columns a file sets (besides product_id, source_run_id, updated_at)
_STORED = [
    "contract_number",
    "seats",
    "unit_cost",
    "currency",
    "start_date",
    "end_date",
    "auto_renew",
    "notice_days",
    "cost_center",
    "owner_email",
]


# --- reading: pure, no store ---------------------------------------------------------------


@dataclass(frozen=True)
class ContractsRead:
    """A contracts file as read: the valid rows (typed, see typed()), every problem found,
    how many rows the file had and its format (csv | yaml)."""

    frame: pd.DataFrame
    errors: list[RowError]
    rows_read: int
    fmt: str


def read_contracts(path: Path | str) -> ContractsRead:
    """Read and check a contracts file (.csv, .yaml or .yml). Rows are numbered as a person
    counts them: CSV data rows under the header, YAML entries by position in the list (1-based).

    A file that cannot be read at all (empty, not UTF-8, a required column missing, YAML
    syntax) raises InputRejected; problems in rows come back in `errors`, with the remaining
    good rows in `frame`.
    """
    path = Path(path)
    name = str(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        reason = f"not a contracts file: use .csv, .yaml or .yml (got {path.suffix or 'none'!r})"
        raise InputRejected(name, [RowError(name, None, None, None, reason)])
    if not path.is_file():
        raise InputRejected(name, [RowError(name, None, None, None, "no such file")])
    if fmt == "csv":
        raw = read_csv_strict(path, REQUIRED, OPTIONAL)
        errors, rows_read = _unknown_column_errors(raw.columns, name, row=0), len(raw)
    else:
        raw, errors, rows_read = _read_yaml(path)
    raw = _normalise(raw)

    valid, row_errors = validate_frame(raw[[*COLUMNS, ROW]], ContractRow, name)
    frame = typed(valid)
    errors = errors + _name_earlier_rows(row_errors, raw) + rule_errors(frame, name)
    bad_rows = {e.row for e in errors}
    frame = frame[~frame[ROW].isin(bad_rows)].reset_index(drop=True)
    return ContractsRead(frame, _sorted(errors), rows_read, fmt)


def typed(valid: pd.DataFrame) -> pd.DataFrame:
    """The model-checked text as values: dates as datetime64, auto_renew as bool,
    notice_days as int (empty = 0), seats as nullable Int64 (NULL = site), unit_cost float."""
    out = valid[[*COLUMNS, ROW]].reset_index(drop=True).copy()
    for column in DATES:
        out[column] = parse_dates(out[column])
    out[AUTO_RENEW] = out[AUTO_RENEW].map(AUTO_RENEW_VALUES).astype(bool)
    out[SEATS] = out[SEATS].astype("Int64")
    out[NOTICE_DAYS] = out[NOTICE_DAYS].astype("Int64").fillna(0)
    out[UNIT_COST] = out[UNIT_COST].astype("float64")
    return out


def _normalise(raw: pd.DataFrame) -> pd.DataFrame:
    """Empty cells are missing; letter case does not matter where the value is a code."""
    out = raw.copy()
    for column in COLUMNS:
        values = out[column].astype("str")
        out[column] = values.mask(values.str.strip() == "")
    out[METRIC] = out[METRIC].str.lower()
    out[CURRENCY] = out[CURRENCY].str.upper()
    out[AUTO_RENEW] = out[AUTO_RENEW].str.lower()
    out[OWNER_EMAIL] = out[OWNER_EMAIL].str.lower()
    return out


def _read_yaml(path: Path) -> tuple[pd.DataFrame, list[RowError], int]:
    name = str(path)
    text = read_text_utf8(path)  # empty file, encoding
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(exc, "problem", None) or str(exc)
        where = "" if mark is None else f" (line {line}, column {mark.column + 1})"
        reason = f"not valid YAML: {problem}{where}"
        raise InputRejected(name, [RowError(name, line, None, None, reason)]) from None
    if not isinstance(document, dict) or not isinstance(document.get(YAML_KEY), list):
        reason = f"expected a '{YAML_KEY}:' key holding a list of contracts (one mapping each)"
        raise InputRejected(name, [RowError(name, None, YAML_KEY, None, reason)])
    entries = document[YAML_KEY]
    if not entries:
        reason = f"no contracts under the '{YAML_KEY}:' key"
        raise InputRejected(name, [RowError(name, None, YAML_KEY, None, reason)])

    records, errors, keys = [], [], {}
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            reason = "expected a mapping of contract fields (contract_id: ..., product_code: ...)"
            errors.append(RowError(name, position, None, _short(entry), reason))
            continue
        record, fine = {ROW: position}, True
        for key, value in entry.items():
            keys.setdefault(str(key), position)
            if isinstance(value, dict | list):
                reason = "expected a single value, not a list or mapping"
                errors.append(RowError(name, position, str(key), _short(value), reason))
                fine = False
            elif key in COLUMNS:
                record[key] = _yaml_text(value)
        if fine:
            records.append(record)
    errors += _unknown_column_errors(keys, name, row=keys)
    frame = pd.DataFrame.from_records(records, columns=[*COLUMNS, ROW])
    for column in COLUMNS:
        frame[column] = pd.array(frame[column].tolist(), dtype="str")
    return frame, errors, len(entries)


def _yaml_text(value) -> str | None:
    """YAML's own types back to the text a CSV would hold (dates, booleans, numbers)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def _short(value) -> str:
    return str(value)[:200]


def _unknown_column_errors(columns: Iterable[str], name: str, row) -> list[RowError]:
    """An unknown column that looks like a misspelt known one (notice_dayz) is refused: it
    would otherwise be ignored and its values lost. Other extra columns pass through."""
    errors = []
    for column in columns:
        if column in COLUMNS or column == ROW:
            continue
        close = difflib.get_close_matches(column.lower(), COLUMNS, n=1, cutoff=0.8)
        if close:
            at = row[column] if isinstance(row, dict) else row
            reason = f"unknown column: did you mean {close[0]!r}?"
            errors.append(RowError(name, at, column, None, reason))
    return errors


def _name_earlier_rows(errors: list[RowError], raw: pd.DataFrame) -> list[RowError]:
    """A repeated contract_id names the row where the contract first appears."""
    first_row = raw.drop_duplicates(CONTRACT_ID).set_index(CONTRACT_ID)[ROW]
    named = []
    for error in errors:
        if error.column == CONTRACT_ID and error.reason == DUPLICATE_CONTRACT:
            reason = (
                f"duplicate contract_id: {error.value} is already on row "
                f"{first_row[error.value]} (each contract once per file)"
            )
            error = replace(error, reason=reason)
        named.append(error)
    return named


def _sorted(errors: list[RowError]) -> list[RowError]:
    """By row; one error per row, column and reason (pandera reports a value that cannot be
    coerced twice: once coercing, once checking the dtype)."""
    unique = dict.fromkeys(errors)
    return sorted(unique, key=lambda e: (e.row is not None, e.row or 0, e.column or ""))


# --- rules: plain functions over frames ----------------------------------------------------


def possible_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs of contracts of the same product whose terms overlap (both days inclusive): a
    possible duplicate purchase. `frame` needs contract_id, product_code, start_date and
    end_date. One row per pair, contract_a < contract_b, with the overlapping days."""
    terms = frame[[CONTRACT_ID, PRODUCT_CODE, START_DATE, END_DATE]].copy()
    for column in DATES:
        terms[column] = pd.to_datetime(terms[column])
    pairs = terms.merge(terms, on=PRODUCT_CODE, suffixes=("_a", "_b"))
    a, b = pairs[f"{CONTRACT_ID}_a"], pairs[f"{CONTRACT_ID}_b"]
    overlap = (
        (a < b)
        & (pairs[f"{START_DATE}_a"] <= pairs[f"{END_DATE}_b"])
        & (pairs[f"{START_DATE}_b"] <= pairs[f"{END_DATE}_a"])
    )
    pairs = pairs[overlap]
    out = pd.DataFrame(
        {
            PRODUCT_CODE: pairs[PRODUCT_CODE],
            "contract_a": pairs[f"{CONTRACT_ID}_a"],
            "contract_b": pairs[f"{CONTRACT_ID}_b"],
            "overlap_start": pairs[[f"{START_DATE}_a", f"{START_DATE}_b"]].max(axis=1),
            "overlap_end": pairs[[f"{END_DATE}_a", f"{END_DATE}_b"]].min(axis=1),
        },
        columns=DUPLICATE_COLUMNS,
    )
    return out.sort_values(DUPLICATE_COLUMNS[:3]).reset_index(drop=True)


def duplicate_key(contract_a: str, contract_b: str) -> str:
    first, second = sorted([contract_a, contract_b])
    return f"{DUPLICATE_ALERT}:{first}|{second}"


# --- loading into the store ----------------------------------------------------------------


@dataclass
class ContractsLoad:
    """What one load did. duplicates: the possible duplicate purchases that involve this
    file's contracts (columns DUPLICATE_COLUMNS), alerted once each (alerts_created new)."""

    file: str
    checksum: str
    skipped_already_applied: bool
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=DUPLICATE_COLUMNS)
    )
    ingestion_run_id: int | None = None
    alerts_created: int = 0

    def summary(self) -> str:
        if self.skipped_already_applied:
            return f"{self.file}: already applied (checksum {self.checksum[:12]}), nothing changed"
        return (
            f"{self.file}: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged; {len(self.duplicates)} possible duplicate purchase(s)"
        )


def load_contracts(
    session: Session, path: Path | str, actor: str = "contracts-feed"
) -> ContractsLoad:
    """Bring vendors, products and contracts in line with a contracts file, in the caller's
    transaction (open it with licenseflow.db.unit_of_work).

    - the same file again (by checksum) is skipped: nothing changes;
    - any bad row refuses the whole file (InputRejected naming file, row, column, value and
      reason) and nothing changes; the refusal itself is kept in the sync history
      (ingestion_run "rejected" with its rejected rows) in a separate transaction, so the
      caller's rollback does not erase it. On SQLite call this before any other write in the
      caller's transaction (the separate transaction needs the write lock);
    - vendors and products are created as needed; the contract's metric is authoritative for
      its product (an existing product's metric follows the file; its name is kept, its
      vendor filled in when it had none);
    - contracts are matched by contract number: created, or updated when any field differs;
      each change audit-logged with before/after; unchanged ones are not touched;
    - a contract missing from a later file is NOT deleted (files may be partial);
    - overlapping terms of one product's contracts (in the file or already in the store) are
      flagged: one alert per pair (kind possible_duplicate_purchase), never twice.
    """
    path = Path(path)
    name = str(path)
    checksum = file_checksum(path) if path.is_file() else ""
    rows_read = 0
    try:
        read = read_contracts(path)
        rows_read = read.rows_read
        if read.errors:
            rejected = len({e.row for e in read.errors})
            summary = (
                f"{name}: {rejected} of {rows_read} rows rejected; the contracts feed takes no "
                "bad rows, so the file was not applied and nothing was changed"
            )
            raise InputRejected(name, read.errors, summary)
    except InputRejected as refused:
        if checksum:  # a file that exists: its refusal joins the sync history
            fmt = FORMATS.get(path.suffix.lower())
            _record_rejection(session, path, checksum, fmt, rows_read, refused)
        raise

    if not claim_file(session, FEED, checksum):  # waits for another worker applying it
        return ContractsLoad(name, checksum, skipped_already_applied=True)

    frame = read.frame
    run_id = record_ingestion(
        session, FEED, path, checksum, read.fmt, read.rows_read, len(frame), status="applied"
    )
    now = dt.datetime.now(dt.UTC)
    changes: list[audit.Change] = []
    vendor_ids = _upsert_vendors(session, frame, changes)
    product_ids = _upsert_products(session, frame, vendor_ids, changes)
    created, updated, unchanged = _upsert_contracts(
        session, frame, product_ids, run_id, now, changes
    )
    duplicates, alerts_created = _flag_duplicates(session, set(frame[CONTRACT_ID]), now, changes)
    audit.record_many(session, actor, changes)

    result = ContractsLoad(
        name, checksum, False, created, updated, unchanged, duplicates, run_id, alerts_created
    )
    session.execute(
        update(IngestionRun).where(IngestionRun.id == run_id).values(message=result.summary())
    )
    return result


def _record_rejection(session, path, checksum, fmt, rows_read, refused: InputRejected) -> None:
    bind = session.get_bind()
    try:
        with unit_of_work(getattr(bind, "engine", bind)) as own:
            record_ingestion(
                own,
                FEED,
                path,
                checksum,
                fmt,
                rows_read,
                0,
                refused.errors,
                status="rejected",
                message=str(refused).split("\n", 1)[0],
            )
    except OperationalError as exc:  # e.g. SQLite locked by the caller's own transaction
        refused.add_note(f"(the refusal could not be recorded in the sync history: {exc})")


def _upsert_vendors(session: Session, frame: pd.DataFrame, changes: list) -> dict[str, int]:
    names = sorted(set(frame[VENDOR]))
    ids = {}
    for chunk in _chunks(names):
        ids |= dict(
            session.execute(select(Vendor.name, Vendor.id).where(Vendor.name.in_(chunk))).all()
        )
    new = [{"name": n} for n in names if n not in ids]
    if new:
        created = session.execute(insert(Vendor).returning(Vendor.name, Vendor.id), new)
        ids |= dict(created.all())
        changes += [audit.Change("create", "vendor", n["name"], None, n) for n in new]
    return ids


def _upsert_products(
    session: Session, frame: pd.DataFrame, vendor_ids: dict[str, int], changes: list
) -> dict[str, int]:
    """Products by code. New: code, name, vendor, metric from the file's first row of it.
    Existing: the metric follows the file; the vendor is filled in when missing."""
    wanted = frame.drop_duplicates(PRODUCT_CODE).set_index(PRODUCT_CODE)
    codes = sorted(wanted.index)
    existing = {}
    for chunk in _chunks(codes):
        rows = session.execute(
            select(Product.id, Product.code, Product.name, Product.metric, Product.vendor_id)
            .add_columns(Vendor.name.label("vendor"))
            .outerjoin(Vendor, Vendor.id == Product.vendor_id)
            .where(Product.code.in_(chunk))
        )
        existing |= {r.code: r for r in rows}
    vendor_names = {v: n for n, v in vendor_ids.items()}
    vendor_names |= {r.vendor_id: r.vendor for r in existing.values() if r.vendor_id}

    def view(code, name, vendor_id, metric):
        return {
            "code": code,
            "name": name,
            "vendor": vendor_names.get(vendor_id, vendor_id),
            "metric": metric,
        }

    new, changed = [], []
    for code in codes:
        row = wanted.loc[code]
        vendor_id = vendor_ids[row[VENDOR]]
        if code not in existing:
            new.append(
                {
                    "code": code,
                    "name": row[PRODUCT_NAME],
                    "vendor_id": vendor_id,
                    "metric": row[METRIC],
                }
            )
            continue
        old = existing[code]
        after = {"id": old.id, "metric": row[METRIC], "vendor_id": old.vendor_id or vendor_id}
        if (after["metric"], after["vendor_id"]) != (old.metric, old.vendor_id):
            changed.append(after)
            changes.append(
                audit.Change(
                    "update",
                    "product",
                    code,
                    view(code, old.name, old.vendor_id, old.metric),
                    view(code, old.name, after["vendor_id"], after["metric"]),
                )
            )
    ids = {code: r.id for code, r in existing.items()}
    if new:
        created = session.execute(insert(Product).returning(Product.code, Product.id), new)
        ids |= dict(created.all())
        changes += [
            audit.Change(
                "create",
                "product",
                p["code"],
                None,
                view(p["code"], p["name"], p["vendor_id"], p["metric"]),
            )
            for p in new
        ]
    if changed:
        session.execute(update(Product), changed)
    return ids


def _contract_view(record: dict) -> dict:
    """A contract as the audit log and the comparison see it (product by code)."""
    return {
        "contract_number": record["contract_number"],
        "product_code": record["product_code"],
        "seats": record["seats"],
        "unit_cost": record["unit_cost"],
        "currency": record["currency"],
        "start_date": record["start_date"],
        "end_date": record["end_date"],
        "auto_renew": bool(record["auto_renew"]),
        "notice_days": int(record["notice_days"]),
        "cost_center": record["cost_center"],
        "owner_email": record["owner_email"],
    }


def _file_records(frame: pd.DataFrame) -> list[dict]:
    records = []
    for row in frame.to_dict("records"):
        seats = row[SEATS]
        records.append(
            {
                "contract_number": row[CONTRACT_ID],
                "product_code": row[PRODUCT_CODE],
                "seats": None if pd.isna(seats) else int(seats),
                "unit_cost": Decimal(str(round(float(row[UNIT_COST]), 2))).quantize(CENT),
                "currency": row[CURRENCY],
                "start_date": row[START_DATE].date(),
                "end_date": row[END_DATE].date(),
                "auto_renew": bool(row[AUTO_RENEW]),
                "notice_days": int(row[NOTICE_DAYS]),
                "cost_center": _text(row[COST_CENTER]),
                "owner_email": _text(row[OWNER_EMAIL]),
            }
        )
    return records


def _text(value) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _upsert_contracts(
    session: Session,
    frame: pd.DataFrame,
    product_ids: dict[str, int],
    run_id: int,
    now: dt.datetime,
    changes: list,
) -> tuple[int, int, int]:
    records = _file_records(frame)
    numbers = [r["contract_number"] for r in records]
    existing = {}
    for chunk in _chunks(numbers):
        rows = session.execute(
            select(Contract.id, Product.code.label("product_code"))
            .add_columns(*(getattr(Contract, c) for c in _STORED))
            .join(Product, Product.id == Contract.product_id)
            .where(Contract.contract_number.in_(chunk))
        )
        for row in rows.mappings():
            old = dict(row) | {"unit_cost": Decimal(row["unit_cost"]).quantize(CENT)}
            existing[row["contract_number"]] = (row["id"], _contract_view(old))

    new, changed, unchanged = [], [], 0
    for record in records:
        after = _contract_view(record)
        values = {k: v for k, v in record.items() if k != "product_code"}
        values |= {
            "product_id": product_ids[record["product_code"]],
            "source_run_id": run_id,
            "updated_at": now,
        }
        if record["contract_number"] not in existing:
            new.append(values)
            changes.append(
                audit.Change("create", "contract", record["contract_number"], None, after)
            )
            continue
        contract_id, before = existing[record["contract_number"]]
        if before == after:
            unchanged += 1
            continue
        changed.append(values | {"id": contract_id})
        changes.append(audit.Change("update", "contract", record["contract_number"], before, after))
    if new:
        session.execute(insert(Contract), new)
    if changed:
        session.execute(update(Contract), changed)
    return len(new), len(changed), unchanged


def store_terms(session: Session) -> pd.DataFrame:
    """Every contract's term in the store, with the ids an alert refers to."""
    rows = session.execute(
        select(
            Contract.contract_number.label(CONTRACT_ID),
            Product.code.label(PRODUCT_CODE),
            Contract.start_date.label(START_DATE),
            Contract.end_date.label(END_DATE),
            Contract.id.label("contract_pk"),
            Product.id.label("product_pk"),
            Contract.owner_email.label(OWNER_EMAIL),
        ).join(Product, Product.id == Contract.product_id)
    )
    return pd.DataFrame(rows.mappings().all(), columns=list(rows.keys()))


def _flag_duplicates(
    session: Session, file_contracts: set[str], now: dt.datetime, changes: list
) -> tuple[pd.DataFrame, int]:
    """Possible duplicate purchases involving the file's contracts, each alerted once."""
    terms = store_terms(session)
    pairs = possible_duplicates(terms)
    pairs = pairs[
        pairs["contract_a"].isin(file_contracts) | pairs["contract_b"].isin(file_contracts)
    ]
    pairs = pairs.reset_index(drop=True)
    if pairs.empty:
        return pairs, 0
    by_number = terms.set_index(CONTRACT_ID)
    alerts = []
    for pair in pairs.to_dict("records"):
        a, b = by_number.loc[pair["contract_a"]], by_number.loc[pair["contract_b"]]
        start, end = pair["overlap_start"].date(), pair["overlap_end"].date()
        alerts.append(
            {
                "kind": DUPLICATE_ALERT,
                "dedupe_key": duplicate_key(pair["contract_a"], pair["contract_b"]),
                "subject": (
                    f"Possible duplicate purchase of {pair[PRODUCT_CODE]}: contracts "
                    f"{pair['contract_a']} and {pair['contract_b']} overlap from {start} to {end}"
                ),
                "owner_email": _text(a[OWNER_EMAIL]) or _text(b[OWNER_EMAIL]),
                "contract_id": int(b["contract_pk"]),
                "product_id": int(b["product_pk"]),
                "payload": {
                    "product_code": pair[PRODUCT_CODE],
                    "contracts": [pair["contract_a"], pair["contract_b"]],
                    "overlap_start": start.isoformat(),
                    "overlap_end": end.isoformat(),
                },
                "created_at": now,
            }
        )
    keys = [a["dedupe_key"] for a in alerts]
    known = set()
    for chunk in _chunks(keys):
        known |= set(session.scalars(select(Alert.dedupe_key).where(Alert.dedupe_key.in_(chunk))))
    fresh = [a for a in alerts if a["dedupe_key"] not in known]
    if fresh:
        created = session.execute(insert(Alert).returning(Alert.id, Alert.dedupe_key), fresh)
        ids = dict((key, id_) for id_, key in created.tuples())
        changes += [
            audit.Change(
                "create",
                "alert",
                ids[a["dedupe_key"]],
                None,
                {k: a[k] for k in ("kind", "dedupe_key", "subject", "payload")},
            )
            for a in fresh
        ]
    return pairs, len(fresh)


def _chunks(values: list) -> Iterable[list]:
    values = list(values)
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


# --- reading the inventory back ------------------------------------------------------------


def list_contracts(session: Session) -> pd.DataFrame:
    """Every contract with its product and vendor, ordered by product and contract number."""
    rows = session.execute(
        select(
            Contract.contract_number.label("contract"),
            Product.code.label("product"),
            Product.name.label("product_name"),
            Vendor.name.label("vendor"),
            Product.metric.label("metric"),
            Contract.seats,
            Contract.unit_cost,
            Contract.currency,
            Contract.start_date,
            Contract.end_date,
            Contract.auto_renew,
            Contract.notice_days,
            Contract.cost_center,
            Contract.owner_email.label("owner"),
        )
        .join(Product, Product.id == Contract.product_id)
        .outerjoin(Vendor, Vendor.id == Product.vendor_id)
        .order_by(Product.code, Contract.contract_number)
    )
    frame = pd.DataFrame(rows.mappings().all(), columns=list(rows.keys()))
    frame["seats"] = frame["seats"].astype("Int64")  # NULL = site, unlimited
    return frame


# --- Prefect -------------------------------------------------------------------------------


@task(name="load-contracts", cache_policy=NO_CACHE, retries=0)
def load_contracts_task(path: str) -> ContractsLoad:
    """Load one contracts file in its own transaction (for flows)."""
    with unit_of_work() as session:
        result = load_contracts(session, path)
    get_run_logger().info(result.summary())
    return result
