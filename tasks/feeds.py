"""Reading and checking input files, the same way for every feed.

- read_csv_strict: encoding, delimiter, empty file and required columns, with row numbers;
- validate_frame: a pandera model run lazily, failures turned into RowErrors;
- the ingestion ledger: a file is recorded by checksum, so it is never applied twice, and what
  each feed delivered and rejected stays queryable (sync history).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from licenseflow.errors import InputRejected, RowError
from schemas.store import IngestionRun, RejectedRow

ROW = "_row"  # 1-based data row number (the header is not counted), added to every frame
DELIMITERS = ",;\t|"
MAX_REJECTS_STORED = 10_000
LEDGER_LOCK = 7_311_003  # advisory lock; audit.py uses 7_311_001, bulk_lock.py 7_311_002


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text_utf8(path: Path, header_lines: int = 0) -> str:
    """The file's text; UTF-8 with or without BOM, anything else refused with the line.
    The error's row is the data row (the line minus `header_lines`), like every row error."""
    raw = Path(path).read_bytes()
    refuse_if_empty(path, raw)
    return decode_utf8(path, raw, header_lines)


def refuse_if_empty(path: Path, raw: bytes) -> None:
    if not raw or raw.isspace():
        raise InputRejected(str(path), [RowError(str(path), None, None, None, "the file is empty")])


def decode_utf8(path: Path, raw: bytes, header_lines: int = 0) -> str:
    """raw (the file's bytes from its start) as text without a BOM; not UTF-8: refused,
    naming the line and the byte. (utf-8-sig would count the byte's offset after the BOM.)"""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        reason = (
            f"not UTF-8 text (byte 0x{byte} on line {line}); save the file as UTF-8 "
            "(Excel: 'CSV UTF-8')"
        )
        row = line - header_lines
        raise InputRejected(str(path), [RowError(str(path), row, None, None, reason)]) from None


def sniff_delimiter(header_line: str) -> str:
    try:
        return csv.Sniffer().sniff(header_line, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_csv_strict(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> pd.DataFrame:
    """Read a CSV as strings (empty cells are missing values) with a `_row` column.

    Refuses, naming the problem: a file that is empty, not UTF-8, has no data rows, lacks a
    required column, or has rows with the wrong number of fields.

    Arrow parses the file's bytes as they are (it checks the UTF-8 itself); only a file it
    refuses is decoded in Python, to name the line at fault. Decoding and re-encoding every
    file cost ~1.5 s per 300 MB.
    """
    name = str(path)
    raw = Path(path).read_bytes()
    refuse_if_empty(path, raw)
    end = raw.find(b"\n")
    header_line = decode_utf8(path, raw[: end if end >= 0 else len(raw)], header_lines=1)
    delimiter = sniff_delimiter(header_line)
    header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter))]
    missing = [c for c in required if c not in header]
    if missing:
        reason = f"required column missing (the header has: {', '.join(header)})"
        raise InputRejected(name, [RowError(name, 0, c, None, reason) for c in missing])

    try:
        table, bad_rows = _parse(raw, header, delimiter, name, use_threads=True)
        if bad_rows and any(e.row is None for e in bad_rows):
            # row numbers are only known to a single-threaded parse: redo it to name them
            table, bad_rows = _parse(raw, header, delimiter, name, use_threads=False)
    except pa.ArrowInvalid:  # (a row with bad UTF-8 and a wrong field count lands here too,
        # after pyarrow prints the UnicodeDecodeError it met making that row's text)
        decode_utf8(path, raw, header_lines=1)  # when the fault is the encoding: names the line
        raise
    if bad_rows:
        raise InputRejected(name, bad_rows)
    if table.num_rows == 0:
        raise InputRejected(
            name, [RowError(name, None, None, None, "no data rows under the header")]
        )
    frame = table.to_pandas()
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    for column in optional:
        if column not in frame.columns:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame[ROW] = range(1, len(frame) + 1)
    return frame


def _parse(raw: bytes, header: list[str], delimiter: str, name: str, use_threads: bool):
    bad_rows: list[RowError] = []

    def on_invalid(row) -> str:
        line = None if row.number is None else row.number - 1  # data row, header excluded
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        bad_rows.append(RowError(name, line, None, row.text[:200], reason))
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(raw),
        read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=use_threads),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=True,
        ),
    )
    return table, bad_rows


# --- pandera results as row errors -----------------------------------------------------

_CHECK_WORDS = [
    (re.compile(r"^isin\((.*)\)$"), "must be one of {0}"),
    (re.compile(r"^greater_than_or_equal_to\((.*)\)$"), "must be at least {0}"),
    (re.compile(r"^greater_than\((.*)\)$"), "must be greater than {0}"),
    (re.compile(r"^less_than_or_equal_to\((.*)\)$"), "must be at most {0}"),
    (re.compile(r"^in_range\((.*)\)$"), "must be in the range {0}"),
    (re.compile(r"^str_matches\((.*)\)$"), "does not have the expected form {0}"),
    (re.compile(r"^coerce_dtype\('?(.*?)'?\)$"), "is not a valid {0}"),
    (re.compile(r"^dtype\('?(.*?)'?\)$"), "is not a valid {0}"),
]
_DTYPE_WORDS = {"int64": "whole number", "Int64": "whole number", "float64": "number"}


def describe_check(check: str) -> str:
    """pandera's check name in words a user can act on."""
    check = str(check)
    if check in ("not_nullable", "nullable"):
        return "a value is required"
    if check in ("field_uniqueness", "unique", "multiple_fields_uniqueness"):
        return "duplicate value: it must be unique in the file"
    for pattern, words in _CHECK_WORDS:
        match = pattern.match(check)
        if match:
            arg = match.group(1)
            return words.format(_DTYPE_WORDS.get(arg, arg))
    return check.replace("_", " ")


def validate_frame(frame: pd.DataFrame, model, file: str) -> tuple[pd.DataFrame, list[RowError]]:
    """Run a pandera DataFrameModel lazily. Returns the valid rows (coerced by the model) and
    one RowError per failing cell, numbered with the frame's `_row` column."""
    current = frame.reset_index(drop=True)
    errors: list[RowError] = []
    # A value that cannot be coerced also fails the column's later checks as a whole; those
    # rows are dropped and the rest validated again, so every row's own fault is reported.
    for _ in range(4):
        try:
            return model.validate(current, lazy=True), _sorted(errors)
        except pandera.errors.SchemaErrors as exc:
            row_errors, frame_errors, bad_index = _failures(exc.failure_cases, current, file)
        if not row_errors:
            return current.iloc[0:0], _sorted(errors + frame_errors)
        errors += row_errors
        current = current.drop(index=sorted(bad_index)).reset_index(drop=True)
        if current.empty:
            return current, _sorted(errors)
    raise AssertionError("validation did not settle")  # pragma: no cover


def _failures(cases: pd.DataFrame, frame: pd.DataFrame, file: str):
    row_errors, frame_errors, bad_index = [], [], set()
    for case in cases.itertuples(index=False):
        column = None if pd.isna(case.column) else str(case.column)
        if case.index is None or pd.isna(case.index):
            # about the whole column or frame (missing column, wrong dtype)
            frame_errors.append(
                RowError(file, None, column, case.failure_case, describe_check(case.check))
            )
            continue
        index = int(case.index)
        bad_index.add(index)
        value = frame.at[index, column] if column in frame.columns else case.failure_case
        row = int(frame.at[index, ROW])
        row_errors.append(RowError(file, row, column, _plain(value), describe_check(case.check)))
    return row_errors, frame_errors, bad_index


def _sorted(errors: list[RowError]) -> list[RowError]:
    return sorted(errors, key=lambda e: (e.row is not None, e.row or 0, e.column or ""))


def _plain(value):
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value if isinstance(value, str | int | float) else str(value)


def refuse_if_too_many(file: str, rows_read: int, errors: list[RowError], threshold: float) -> None:
    """A file whose rejected rows pass the threshold share is refused as a whole."""
    rejected_rows = len({e.row for e in errors})
    if errors and (threshold <= 0 or rejected_rows > threshold * max(rows_read, 1)):
        summary = (
            f"{file}: {rejected_rows} of {rows_read} rows rejected "
            f"(allowed: {threshold:.0%}); the file was not applied, nothing was changed"
        )
        raise InputRejected(file, errors, summary)


# --- the ingestion ledger --------------------------------------------------------------


def already_applied(session: Session, feed: str, checksum: str) -> bool:
    return (
        session.execute(
            select(IngestionRun.id).where(
                IngestionRun.feed == feed,
                IngestionRun.file_checksum == checksum,
                IngestionRun.status == "applied",
            )
        ).first()
        is not None
    )


def lock_feed(session: Session, feed: str) -> None:
    """Hold the feed's lock until the caller's transaction ends, so writers of one feed go one
    after the other in any process or machine. PostgreSQL: a transaction advisory lock;
    SQLite: nothing to do, BEGIN IMMEDIATE already holds the only write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:lock AS integer), hashtext(:feed))"),
            {"lock": LEDGER_LOCK, "feed": feed},
        )


def claim_file(session: Session, feed: str, checksum: str) -> bool:
    """Lock the feed for the caller's transaction; True if the file is still to apply. A
    worker given a file another one is applying waits, then finds its ledger row: a file is
    never applied twice, even by two machines at once."""
    lock_feed(session, feed)
    return not already_applied(session, feed, checksum)


def record_ingestion(
    session: Session,
    feed: str,
    file: Path | str,
    checksum: str,
    fmt: str | None,
    rows_read: int,
    rows_accepted: int,
    errors: Iterable[RowError] = (),
    status: str = "applied",
    message: str | None = None,
) -> int:
    """Write one ingestion_run row (and its rejected rows); returns its id."""
    from tasks.audit import current_flow_run_id

    errors = list(errors)
    now = dt.datetime.now(dt.UTC)
    run = IngestionRun(
        feed=feed,
        source_format=fmt,
        file_name=str(file),
        file_checksum=checksum,
        status=status,
        started_at=now,
        finished_at=now,
        rows_read=rows_read,
        rows_accepted=rows_accepted,
        rows_rejected=len({e.row for e in errors}),
        message=message,
        flow_run_id=current_flow_run_id(),
    )
    session.add(run)
    session.flush()
    if errors:
        session.execute(
            insert(RejectedRow),
            [
                {
                    "ingestion_run_id": run.id,
                    "row_number": e.row,
                    "column_name": e.column,
                    "value": None if e.value is None else str(e.value)[:1000],
                    "reason": e.reason,
                }
                for e in errors[:MAX_REJECTS_STORED]
            ],
        )
    return run.id
