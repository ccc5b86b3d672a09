"""Discovery adapters: each tool's installed-software export read into the one canonical
installations frame (schemas.installations), validated, with an error per bad row.

Formats (detected from the file's first bytes, or declared by the caller):
- osquery: results log, JSON lines (`hostIdentifier` is the device) of the tables programs,
  apps, deb_packages, rpm_packages; snapshot lines (`"action": "snapshot"` with `snapshot: [...]`,
  or one row per line with `columns` when logger_snapshot_event_type is on), differential
  lines (`"action": "added"|"removed"` with `columns`) and batch lines (`diffResults`).
  Lines of other scheduled queries are skipped and counted in InstallsRead.ignored.
- intune: the Discovered apps export (AppInvRawData): ApplicationName, ApplicationPublisher,
  ApplicationVersion, DeviceName, ...
- sccm: SMS_InstalledSoftware (ARPDisplayName, ProductName, ProductVersion, Publisher,
  InstallDate + a device name column) or v_GS_INSTALLED_SOFTWARE (the same names ending in 0,
  with Netbios_Name0 or Name0 joined from v_R_System).
- canonical: hostname, software_name, publisher, version (required columns), device_serial, os,
  primary_user_email, install_date, last_seen (optional columns).

Rules every adapter shares:
- install_date accepts yyyymmdd, yyyy-mm-dd and m/d/yyyy (a trailing time, as SCCM and Excel
  write it, is ignored; so is the WMI form 20230415000000.000000+000); last_seen accepts ISO
  8601 (no zone = UTC) or one of those dates.
- (hostname, raw_title, publisher) is unique in the returned frame. In a snapshot file a key
  seen again is a row error on the later row ("duplicate key"). In an osquery log the latest
  snapshot of a host and query replaces its earlier ones, and differential events are folded
  per key in time order (unixTime, counter; within one batch "removed" before "added"), so a
  version upgrade (removed 1.0, added 2.0) is one "added" row with version 2.0, and "added then
  removed" is one "removed" row. The same key twice in one batch with the same action (two
  versions side by side) is a duplicate key error on the later row.
- Pure: no store, no settings, no reject threshold (the discovery scan applies that).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from licenseflow.errors import InputRejected, RowError
from schemas.installations import (
    ADDED,
    CANONICAL_CSV_OPTIONAL,
    CANONICAL_CSV_REQUIRED,
    CHANGE,
    COLUMNS,
    DATE_DTYPE,
    DEVICE_SERIAL,
    HOSTNAME,
    INSTALL_DATE,
    INSTALL_KEY,
    LAST_OPENED_AT,
    LAST_SEEN,
    OS,
    PRESENT,
    PRIMARY_USER_EMAIL,
    PUBLISHER,
    RAW_TITLE,
    REMOVED,
    ROW,
    SOURCE,
    STRING_COLUMNS,
    TIMESTAMP_DTYPE,
    VERSION,
    Installations,
    empty_frame,
)
from tasks.feeds import read_csv_strict, read_text_utf8, sniff_delimiter, validate_frame

FORMATS = ("osquery", "intune", "sccm", "canonical")
OSQUERY_TABLES = ("programs", "apps", "deb_packages", "rpm_packages")
HEAD_BYTES = 1 << 16
MAX_LINE_BYTES = 1 << 26

DATE_FORMS = "yyyymmdd, yyyy-mm-dd or m/d/yyyy"
BAD_DATE = f"not a date: expected {DATE_FORMS}"
BAD_TIMESTAMP = f"not a timestamp: expected ISO 8601 (2026-01-05T06:00:00Z) or {DATE_FORMS}"


@dataclass
class InstallsRead:
    """What one discovery file says, in canonical form."""

    frame: pd.DataFrame  # valid canonical rows (schemas.installations.Installations)
    errors: list[RowError]  # one per rejected row and problem, sorted by row
    fmt: str
    rows_read: int  # install rows in the file (a malformed JSON line counts as one)
    snapshot: bool  # True: the file is the complete inventory of the devices in it
    # hostnames that had a rejected row: a snapshot must not be read as "title removed" there
    rejected_hostnames: frozenset[str] = frozenset()
    # rows replaced by a later snapshot or event for the same host and key (osquery only)
    superseded: int = 0
    # osquery lines of queries that are not software inventory, per query name
    ignored: dict[str, int] = field(default_factory=dict)


# --- detection --------------------------------------------------------------------------

INTUNE_SIGNATURE = frozenset(
    {
        "ApplicationKey",
        "ApplicationId",
        "ApplicationName",
        "ApplicationPublisher",
        "ApplicationShortVersion",
        "ApplicationVersion",
        "DeviceId",
        "DeviceName",
        "OSDescription",
        "OSVersion",
        "Platform",
        "UserId",
        "EmailAddress",
        "UserName",
    }
)
_SCCM_PROPERTIES = (
    "ARPDisplayName",
    "ProductName",
    "ProductVersion",
    "Publisher",
    "InstallDate",
    "InstalledLocation",
    "InstallSource",
    "SoftwareCode",
    "ProductCode",
    "UninstallString",
    "VersionMajor",
    "VersionMinor",
)
SCCM_SIGNATURE = frozenset(
    [*_SCCM_PROPERTIES, *(p + "0" for p in _SCCM_PROPERTIES), "ResourceID", "Netbios_Name0"]
)
CANONICAL_SIGNATURE = frozenset(CANONICAL_CSV_REQUIRED + CANONICAL_CSV_OPTIONAL)
_SIGNATURES = {"intune": INTUNE_SIGNATURE, "sccm": SCCM_SIGNATURE, "canonical": CANONICAL_SIGNATURE}
_EXPECTED = (
    "expected an osquery results log (JSON lines with hostIdentifier), an Intune AppInvRawData "
    "export (ApplicationName, ApplicationPublisher, ApplicationVersion, DeviceName, ...), an "
    "SCCM installed-software export (ARPDisplayName or ProductName, ProductVersion, Publisher "
    "and a device name column, or the same names ending in 0) or the canonical installs CSV "
    f"({', '.join(CANONICAL_CSV_REQUIRED + CANONICAL_CSV_OPTIONAL)})"
)


def detect_format(path: Path | str) -> str:
    """The file's format, one of FORMATS, from its first bytes; InputRejected if unknown."""
    path = Path(path)
    name = str(path)
    text = _head(path)
    lines = [line.strip() for line in text.split("\n")]
    first = next((line for line in lines if line), "")
    if first.startswith("{"):
        return _detect_json(path)
    header = set(_header(first))
    scores = sorted(
        ((len(header & signature), fmt) for fmt, signature in _SIGNATURES.items()), reverse=True
    )
    (best, fmt), (second, _) = scores[0], scores[1]
    if best >= 2 and best > second:
        return fmt
    reason = f"not a known installs format (the header has: {', '.join(_header(first))}); "
    raise InputRejected(name, [RowError(name, 0, None, None, reason + _EXPECTED)])


def _detect_json(path: Path) -> str:
    """osquery if one of the first lines is a JSON object with hostIdentifier. Lines are read
    whole (a snapshot line can hold a host's entire inventory)."""
    name = str(path)
    read = 0
    with open(path, "rb") as handle:
        for _ in range(50):
            line = handle.readline(MAX_LINE_BYTES).removeprefix(b"\xef\xbb\xbf").strip()
            read += len(line)
            if not line and read == 0:
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                if HOST_IN_TEXT.search(line.decode("utf-8", "replace")):
                    return "osquery"  # malformed line, but clearly an osquery result
                continue
            if isinstance(doc, dict) and "hostIdentifier" in doc:
                return "osquery"
            if isinstance(doc, dict):
                keys = ", ".join(list(doc)[:12])
                reason = f"JSON lines without hostIdentifier (the first object has: {keys}); "
                raise InputRejected(name, [RowError(name, None, None, None, reason + _EXPECTED)])
    reason = "starts like JSON but none of its first lines is a JSON object; " + _EXPECTED
    raise InputRejected(name, [RowError(name, None, None, None, reason)])


def _head(path: Path) -> str:
    with open(path, "rb") as handle:
        raw = handle.read(HEAD_BYTES)
    if not raw.strip() and len(raw) < HEAD_BYTES:
        read_text_utf8(path)  # raises "the file is empty"
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if len(raw) == HEAD_BYTES and exc.start >= len(raw) - 3:
            return raw[: exc.start].decode("utf-8-sig")  # a character cut by the read
        csv_header = 1 if path.suffix.lower() == ".csv" else 0  # rows count from the header
        read_text_utf8(path, header_lines=csv_header)  # raises the encoding error, its row
        raise  # pragma: no cover


def _header(line: str) -> list[str]:
    delimiter = sniff_delimiter(line)
    return [h.strip() for h in next(csv.reader([line], delimiter=delimiter))]


# --- reading ----------------------------------------------------------------------------


def read_installs(path: Path | str, fmt: str | None = None) -> InstallsRead:
    """Read one discovery file (format detected unless declared) into the canonical frame.

    File-level problems (empty, not UTF-8, missing columns, unknown format) raise
    InputRejected; row-level problems come back in `errors` with the rows left out."""
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        name = str(path)
        reason = f"unknown format {fmt!r}: declare one of {', '.join(FORMATS)}"
        raise InputRejected(name, [RowError(name, None, None, fmt, reason)])
    readers = {
        "osquery": _read_osquery,
        "intune": _read_intune,
        "sccm": _read_sccm,
        "canonical": _read_canonical,
    }
    return readers[fmt](path)


# --- CSV adapters -----------------------------------------------------------------------

INTUNE_REQUIRED = ("ApplicationName", "ApplicationPublisher", "ApplicationVersion", "DeviceName")
INTUNE_OPTIONAL = ("OSDescription", "OSVersion", "Platform", "EmailAddress")
INTUNE_SOURCES = {
    HOSTNAME: "DeviceName",
    OS: "OSDescription",
    PRIMARY_USER_EMAIL: "EmailAddress",
    RAW_TITLE: "ApplicationName",
    PUBLISHER: "ApplicationPublisher",
    VERSION: "ApplicationVersion",
}


def _read_intune(path: Path) -> InstallsRead:
    name = str(path)
    csv_frame = read_csv_strict(path, INTUNE_REQUIRED, INTUNE_OPTIONAL)
    os_name = _blank_to_na(csv_frame["OSDescription"]).fillna(csv_frame["Platform"])
    raw = _raw_frame(
        len(csv_frame),
        "intune",
        {
            HOSTNAME: csv_frame["DeviceName"],
            OS: _join_text(os_name, csv_frame["OSVersion"]),
            PRIMARY_USER_EMAIL: csv_frame["EmailAddress"],
            RAW_TITLE: csv_frame["ApplicationName"],
            PUBLISHER: csv_frame["ApplicationPublisher"],
            VERSION: csv_frame["ApplicationVersion"],
        },
    )
    return _finish_csv(name, "intune", raw, csv_frame, INTUNE_SOURCES, [])


SCCM_DEVICE_COLUMNS = (
    "Netbios_Name0",
    "Name0",
    "Name",
    "ComputerName",
    "DeviceName",
    "MachineName",
    "ResourceName",
)


def _read_sccm(path: Path) -> InstallsRead:
    name = str(path)
    header = _header(_first_line(path))
    suffix = "0" if {"ARPDisplayName0", "ProductName0"} & set(header) else ""
    arp, product = "ARPDisplayName" + suffix, "ProductName" + suffix
    version, publisher, install_date = (
        p + suffix for p in ("ProductVersion", "Publisher", "InstallDate")
    )
    device = next((c for c in SCCM_DEVICE_COLUMNS if c in header), None)
    missing = []
    if device is None:
        missing.append(
            RowError(
                name,
                0,
                SCCM_DEVICE_COLUMNS[0] if suffix else "Name",
                None,
                "required column missing: the device name, one of "
                f"{', '.join(SCCM_DEVICE_COLUMNS)} (v_GS_INSTALLED_SOFTWARE has only ResourceID: "
                f"join v_R_System for Netbios_Name0); the header has: {', '.join(header)}",
            )
        )
    if arp not in header and product not in header:
        missing.append(
            RowError(
                name,
                0,
                arp,
                None,
                f"required column missing: {arp} or {product}; the header has: {', '.join(header)}",
            )
        )
    if missing:
        raise InputRejected(name, missing)
    titles = [c for c in (arp, product) if c in header]
    csv_frame = read_csv_strict(
        path, [device, *titles, version, publisher], [arp, product, install_date]
    )
    dates, bad_dates = parse_dates(csv_frame[install_date], time_suffix=True)
    raw = _raw_frame(
        len(csv_frame),
        "sccm",
        {
            HOSTNAME: csv_frame[device],
            RAW_TITLE: _blank_to_na(csv_frame[arp]).fillna(csv_frame[product]),
            PUBLISHER: csv_frame[publisher],
            VERSION: csv_frame[version],
            INSTALL_DATE: dates,
        },
    )
    sources = {
        HOSTNAME: device,
        RAW_TITLE: titles[0],
        PUBLISHER: publisher,
        VERSION: version,
        INSTALL_DATE: install_date,
    }
    parse_failures = [(bad_dates, install_date, csv_frame[install_date], BAD_DATE)]
    return _finish_csv(name, "sccm", raw, csv_frame, sources, parse_failures)


def _read_canonical(path: Path) -> InstallsRead:
    name = str(path)
    csv_frame = read_csv_strict(path, CANONICAL_CSV_REQUIRED, CANONICAL_CSV_OPTIONAL)
    dates, bad_dates = parse_dates(csv_frame["install_date"], time_suffix=False)
    seen, bad_seen = parse_timestamps(csv_frame["last_seen"])
    raw = _raw_frame(
        len(csv_frame),
        "canonical",
        {
            HOSTNAME: csv_frame["hostname"],
            DEVICE_SERIAL: csv_frame["device_serial"],
            OS: csv_frame["os"],
            PRIMARY_USER_EMAIL: csv_frame["primary_user_email"],
            RAW_TITLE: csv_frame["software_name"],
            PUBLISHER: csv_frame["publisher"],
            VERSION: csv_frame["version"],
            INSTALL_DATE: dates,
            LAST_SEEN: seen,
        },
    )
    sources = {c: c for c in COLUMNS} | {RAW_TITLE: "software_name"}
    parse_failures = [
        (bad_dates, "install_date", csv_frame["install_date"], BAD_DATE),
        (bad_seen, "last_seen", csv_frame["last_seen"], BAD_TIMESTAMP),
    ]
    return _finish_csv(name, "canonical", raw, csv_frame, sources, parse_failures)


def _finish_csv(name, fmt, raw, csv_frame, sources, parse_failures) -> InstallsRead:
    """The shared end for CSV formats; parse_failures: (mask, source column, raw values,
    reason) per parsed column; sources: canonical column -> the file's column name."""
    rows = csv_frame[ROW].to_numpy()
    errors: list[RowError] = []
    bad = np.zeros(len(raw), dtype=bool)
    for mask, column, values, reason in parse_failures:
        mask = mask.to_numpy()
        for pos in np.flatnonzero(mask):
            errors.append(RowError(name, int(rows[pos]), column, values.iloc[pos], reason))
        bad |= mask
    return _finish(
        name,
        fmt,
        raw,
        rows,
        bad,
        errors,
        lambda column, _pos: sources.get(column, column),
        events=None,
        rows_read=len(raw),
        snapshot=True,
        stripped=True,  # read_csv_strict strips every cell
    )


def _first_line(path: Path) -> str:
    text = _head(path)
    return next((line for line in text.split("\n") if line.strip()), "")


# --- the shared end: clean, validate, unique keys ---------------------------------------


def _raw_frame(n: int, source: str, values: dict[str, pd.Series]) -> pd.DataFrame:
    """A positional frame with every canonical column (ROW excluded), missing ones empty."""
    frame = {}
    for column in COLUMNS:
        if column == ROW:
            continue
        value = values.get(column)
        if isinstance(value, pd.Series):
            value = value.reset_index(drop=True)
        if column in STRING_COLUMNS:
            frame[column] = pd.Series(
                pd.NA if value is None else value, index=range(n), dtype="str"
            )
        elif column == INSTALL_DATE:
            frame[column] = pd.Series(value, index=range(n), dtype=DATE_DTYPE)
        elif column in (LAST_SEEN, LAST_OPENED_AT):
            frame[column] = pd.Series(value, index=range(n), dtype=TIMESTAMP_DTYPE)
        elif column == SOURCE:
            frame[column] = pd.Series(source, index=range(n), dtype="str")
        elif column == CHANGE:
            default = PRESENT if value is None else value
            frame[column] = pd.Series(default, index=range(n), dtype="str")
    return pd.DataFrame(frame)


def _blank_to_na(values: pd.Series) -> pd.Series:
    return values.mask(values.str.strip() == "")


def _clean_text(values: pd.Series, lower: bool = False, strip: bool = True) -> pd.Series:
    if strip:
        values = values.str.strip()
    if lower:
        values = values.str.lower()
    return values.mask(values == "")


def _join_text(left: pd.Series, right: pd.Series) -> pd.Series:
    """'left right', or whichever of the two is there."""
    both = left.str.strip() + " " + right.str.strip()
    return both.fillna(left).fillna(right)


def _finish(
    name: str,
    fmt: str,
    raw: pd.DataFrame,
    rows: np.ndarray,
    bad: np.ndarray,
    errors: list[RowError],
    column_of: Callable[[str, int], str],
    *,
    events: pd.DataFrame | None,
    rows_read: int,
    snapshot: bool,
    superseded: int = 0,
    ignored: dict[str, int] | None = None,
    rejected_hosts: set[str] = frozenset(),
    stripped: bool = False,
) -> InstallsRead:
    """Clean the raw canonical frame, validate it, make the install key unique.

    raw is positional (0..n-1); rows[pos] is the file row of position pos; bad marks positions
    already rejected (their errors are in `errors`); column_of names the source column of a
    canonical column at a position, so errors speak the file's own language."""
    for column in STRING_COLUMNS:
        lower = column in (HOSTNAME, PRIMARY_USER_EMAIL)
        raw[column] = _clean_text(raw[column], lower=lower, strip=not stripped)
    positions = np.flatnonzero(~bad)
    candidate = raw.iloc[positions].reset_index(drop=True)
    candidate[ROW] = positions + 1  # positional while validating; file rows afterwards
    valid, failures = validate_frame(candidate, Installations, name)
    rejected = bad.copy()
    for failure in failures:
        if failure.row is None:
            errors.append(failure)
            continue
        pos = failure.row - 1
        rejected[pos] = True
        errors.append(
            RowError(
                name,
                int(rows[pos]),
                column_of(failure.column, pos),
                failure.value,
                failure.reason,
            )
        )
    valid = valid.reset_index(drop=True)
    valid_pos = valid[ROW].to_numpy() - 1
    if events is None:
        duplicates = _duplicates(valid, list(INSTALL_KEY), np.ones(len(valid), dtype=bool))
        keep = np.ones(len(valid), dtype=bool)
        keep[[index for index, _ in duplicates]] = False
        folded = 0
    else:
        keep, duplicates, folded = _settle_events(valid, events.iloc[valid_pos])
    for index, first_index in duplicates:
        pos = valid_pos[index]
        rejected[pos] = True
        first_row = int(rows[valid_pos[first_index]])
        errors.append(
            RowError(
                name,
                int(rows[pos]),
                column_of(RAW_TITLE, pos),
                valid.at[index, RAW_TITLE],
                f"duplicate key: the same hostname, title and publisher as row {first_row}",
            )
        )
    frame = valid[keep].reset_index(drop=True)
    frame[ROW] = rows[frame[ROW].to_numpy() - 1].astype("int64")
    if events is not None and not frame[ROW].is_monotonic_increasing:
        frame = frame.sort_values(ROW, kind="stable", ignore_index=True)
    frame = frame[list(COLUMNS)] if len(frame) else empty_frame()
    hostnames = {*raw[HOSTNAME].iloc[np.flatnonzero(rejected)].dropna().unique()}
    hostnames |= {h.strip().lower() for h in rejected_hosts if h and h.strip()}
    return InstallsRead(
        frame=frame,
        errors=sorted(errors, key=lambda e: (e.row is not None, e.row or 0, e.column or "")),
        fmt=fmt,
        rows_read=rows_read,
        snapshot=snapshot,
        rejected_hostnames=frozenset(hostnames),
        superseded=superseded + folded,
        ignored=ignored or {},
    )


def _duplicates(frame: pd.DataFrame, key: list[str], among: np.ndarray):
    """(index, index of the first row with the same key) for every later row whose key was
    already seen, among the rows marked `among`. Missing values compare equal."""
    subset = frame.loc[among, key]
    repeated = subset.duplicated(keep="first")
    if not repeated.any():
        return []
    everywhere = subset.duplicated(keep=False)
    first_of = {k: index for index, k in _keys(subset[everywhere & ~repeated])}
    return [(index, first_of[k]) for index, k in _keys(subset[repeated])]


def _keys(frame: pd.DataFrame):
    columns = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in frame]
    return zip(frame.index.tolist(), zip(*columns, strict=True), strict=True)


def _settle_events(valid: pd.DataFrame, events: pd.DataFrame):
    """osquery rows: a unique key per snapshot, per differential batch and action, then the
    events of a key folded into the last one (removed before added within a batch)."""
    events = events.reset_index(drop=True)
    is_snapshot = (events["action"] == "snapshot").to_numpy()
    duplicates = _duplicates(valid, list(INSTALL_KEY), is_snapshot)
    if (~is_snapshot).any():
        batch = valid[list(INSTALL_KEY)].join(events[["query", "t", "counter", "action"]])
        duplicates += _duplicates(batch, list(batch.columns), ~is_snapshot)
    keep = np.ones(len(valid), dtype=bool)
    keep[[index for index, _ in duplicates]] = False
    kept = valid.loc[keep, list(INSTALL_KEY)]
    folded = 0
    if kept.duplicated().any():
        order = kept.join(events[["t", "counter", "line"]])
        order["rank"] = events["action"].map(ACTION_RANK)
        order = order.sort_values(["t", "counter", "rank", "line"], kind="stable")
        last = ~order.duplicated(list(INSTALL_KEY), keep="last")
        dropped = order.index[~last.to_numpy()]
        keep[dropped] = False
        folded = len(dropped)
    return keep, duplicates, folded


ACTION_RANK = {REMOVED: 0, "snapshot": 1, ADDED: 2}


# --- osquery ----------------------------------------------------------------------------

ITEM_FIELDS = (
    "name",
    "version",
    "publisher",
    "install_date",
    "bundle_short_version",
    "bundle_version",
    "bundle_identifier",
    "last_opened_time",
    "maintainer",
    "vendor",
    "release",
    "install_time",
)
NUMERIC_ITEM_FIELDS = ("last_opened_time", "install_time")
SERIAL_DECORATIONS = ("hardware_serial", "serial_number", "serial")
DECORATION_FIELDS = (*SERIAL_DECORATIONS, "os_name", "os_version")
EPOCH = pd.Timestamp(0, tz="UTC")
SKIP = "_skip"  # marks an item the careful parse already reported as bad
# where each canonical column comes from, per osquery table
OSQUERY_FIELDS = {
    "programs": {RAW_TITLE: "name", PUBLISHER: "publisher", VERSION: "version"},
    "apps": {RAW_TITLE: "name", PUBLISHER: None, VERSION: "bundle_short_version"},
    "deb_packages": {RAW_TITLE: "name", PUBLISHER: "maintainer", VERSION: "version"},
    "rpm_packages": {RAW_TITLE: "name", PUBLISHER: "vendor", VERSION: "version"},
}
_OSQUERY_SOURCES = {
    HOSTNAME: "hostIdentifier",
    LAST_SEEN: "unixTime",
    DEVICE_SERIAL: "decorations.hardware_serial",
    OS: "decorations.os_name",
}
_ITEM_SOURCES = {INSTALL_DATE: "install_date", LAST_OPENED_AT: "last_opened_time"}
_NOT_INVENTORY = ("running_apps",)  # osquery tables whose names end like ours


def _read_osquery(path: Path) -> InstallsRead:
    name = str(path)
    # read_text_utf8 refuses empty and non-UTF-8 files, naming the line
    table, line_numbers, errors, rejected_lines = _parse_json_lines(read_text_utf8(path), name)
    return _osquery_frame(name, table, line_numbers, errors, rejected_lines)


def _json_schema(numbers: dict[str, bool]) -> pa.Schema:
    """The fields read from each line; everything else is skipped, never materialised."""

    def kind(field_name: str):
        return pa.float64() if numbers.get(field_name) else pa.string()

    item = pa.struct([(f, kind(f)) for f in ITEM_FIELDS] + [(SKIP, pa.string())])
    items = pa.list_(item)
    return pa.schema(
        [
            ("name", pa.string()),
            ("hostIdentifier", pa.string()),
            ("unixTime", kind("unixTime")),
            ("calendarTime", pa.string()),
            ("counter", kind("counter")),
            ("action", pa.string()),
            ("decorations", pa.struct([(f, pa.string()) for f in DECORATION_FIELDS])),
            ("snapshot", items),
            ("columns", item),
            ("diffResults", pa.struct([(REMOVED, items), (ADDED, items)])),
        ]
    )


def _parse_json_lines(text: str, name: str):
    """The lines as an Arrow table (one row per non-blank line), their line numbers, the errors
    of lines that are not well-formed, and the device (or None) of each line rejected whole.

    Fast path: Arrow reads the whole text at once with the types the first line shows. If
    any line is malformed or typed otherwise, the careful path goes line by line."""
    start = re.search(r"\S", text).start()  # read_text_utf8 refused a blank file
    end = text.find("\n", start)
    numbers = _number_kinds(text[start : end if end >= 0 else None])
    lines = text.count("\n") + (not text.endswith("\n"))
    if numbers is not None:
        data = text.encode("utf-8")
        del text  # only the bytes while Arrow parses (the caller's text goes too)
        try:
            table = _arrow_json(data, _json_schema(numbers))
        except pa.ArrowInvalid:
            table = None
        if table is not None:
            if table.num_rows == lines:
                line_numbers = np.arange(1, table.num_rows + 1, dtype="int64")
            else:  # blank lines, which Arrow skips
                numbers = [i for i, line in enumerate(data.split(b"\n"), 1) if line.strip()]
                line_numbers = np.array(numbers, dtype="int64")
            return table, line_numbers, [], []
        text = data.decode("utf-8")
    return _parse_json_lines_carefully(text.rstrip(), name)


def _arrow_json(data: bytes, schema: pa.Schema) -> pa.Table:
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    block = 1 << 24
    while True:
        try:
            read = pajson.ReadOptions(block_size=block)
            return pajson.read_json(io.BytesIO(data), read_options=read, parse_options=options)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block > len(data):
                raise
            block *= 4  # a line longer than a block (a host with a huge snapshot)


def _number_kinds(first_line: str) -> dict[str, bool] | None:
    """Which fields this log writes as JSON numbers, judged from its first line."""
    try:
        doc = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    kinds = {key: _is_number(doc.get(key)) for key in ("unixTime", "counter")}
    for item_field in NUMERIC_ITEM_FIELDS:  # osquery --logger_numerics
        kinds[item_field] = doc.get("numerics") is True
    return kinds


def _parse_json_lines_carefully(text: str, name: str):
    """Line by line: report malformed lines and wrong types, and rewrite the good lines with
    every value as text so that Arrow reads them all. One output row per input line."""
    errors: list[RowError] = []
    out: list[bytes] = []
    rejected: list[str | None] = []  # the device of each line rejected whole, when readable
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        clean = None
        if line:
            try:
                clean = _clean_line(orjson.loads(line), number, name, errors)
            except orjson.JSONDecodeError as exc:
                errors.append(RowError(name, number, None, line[:200], f"malformed JSON: {exc}"))
            if clean is None:
                host = HOST_IN_TEXT.search(line)
                rejected.append(host.group(1) if host else None)
        out.append(b"{}" if clean is None else orjson.dumps(clean))
    table = _arrow_json(b"\n".join(out), _json_schema({}))
    return table, np.arange(1, table.num_rows + 1, dtype="int64"), errors, rejected


HOST_IN_TEXT = re.compile(r'"hostIdentifier"\s*:\s*"([^"\\]+)"')


def _clean_line(doc, number: int, name: str, errors: list[RowError]) -> dict | None:
    if not isinstance(doc, dict):
        reason = "wrong type: a line must be a JSON object"
        errors.append(RowError(name, number, None, _excerpt(doc), reason))
        return None
    clean: dict = {}
    for key in ("name", "hostIdentifier", "unixTime", "calendarTime", "counter", "action"):
        value = doc.get(key)
        if value is None:
            continue
        if not _scalar(value):
            reason = "wrong type: expected text or a number"
            errors.append(RowError(name, number, key, _excerpt(value), reason))
            return None
        clean[key] = _as_text(value)
    decorations = doc.get("decorations")
    if isinstance(decorations, dict):
        clean["decorations"] = {
            k: _as_text(v) for k, v in decorations.items() if k in DECORATION_FIELDS and _scalar(v)
        }
    if doc.get("snapshot") is not None:
        clean["snapshot"] = _clean_items(doc["snapshot"], "snapshot", number, name, errors)
        if clean["snapshot"] is None:
            return None
    if doc.get("columns") is not None:
        clean["columns"] = _clean_item(doc["columns"], "columns", number, name, errors)
        if clean["columns"] is None:
            return None
    if doc.get("diffResults") is not None:
        diff = doc["diffResults"]
        if not isinstance(diff, dict):
            reason = "wrong type: expected an object with added and removed"
            errors.append(RowError(name, number, "diffResults", _excerpt(diff), reason))
            return None
        clean["diffResults"] = {}
        for action in (REMOVED, ADDED):
            place = f"diffResults.{action}"
            items = _clean_items(diff.get(action) or [], place, number, name, errors)
            if items is None:
                return None
            clean["diffResults"][action] = items
    return clean


def _clean_items(items, place: str, number: int, name: str, errors: list[RowError]):
    if not isinstance(items, list):
        reason = "wrong type: expected a list of rows"
        errors.append(RowError(name, number, place, _excerpt(items), reason))
        return None
    cleaned = []
    for index, item in enumerate(items):
        clean = _clean_item(item, f"{place}[{index}]", number, name, errors)
        cleaned.append({SKIP: "1"} if clean is None else clean)
    return cleaned


def _clean_item(item, place: str, number: int, name: str, errors: list[RowError]):
    if not isinstance(item, dict):
        reason = "wrong type: expected an object of column values"
        errors.append(RowError(name, number, place, _excerpt(item), reason))
        return None
    clean = {}
    for key in ITEM_FIELDS:
        value = item.get(key)
        if value is None:
            continue
        if not _scalar(value):
            reason = "wrong type: expected text or a number"
            errors.append(RowError(name, number, f"{place}.{key}", _excerpt(value), reason))
            return None
        clean[key] = _as_text(value)
    return clean


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar(value) -> bool:
    return isinstance(value, str) or _is_number(value)


def _as_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _excerpt(value) -> str:
    return orjson.dumps(value).decode()[:200]


def _none(value):
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _lines_frame(table: pa.Table, line_numbers: np.ndarray) -> pd.DataFrame:
    """One row per line: where it is, which query and device, what kind of result."""

    def text(column: str) -> pd.Series:
        return pd.Series(table.column(column).to_pandas(), dtype="str")

    def present(array) -> np.ndarray:
        return pc.is_valid(array).to_numpy(zero_copy_only=False)

    action = text("action")
    has_snapshot = present(table.column("snapshot"))
    has_columns = present(table.column("columns"))
    has_diff = present(table.column("diffResults"))
    is_snapshot = (action == "snapshot").to_numpy()
    is_event = action.isin([ADDED, REMOVED]).to_numpy()
    kind = np.select(
        [
            is_snapshot & has_snapshot,
            is_snapshot & has_columns,
            is_event & has_columns,
            action.isna().to_numpy() & has_diff,
        ],
        ["snapshot", "snapshot_event", "event", "batch"],
        default="",
    )
    decorations = table.column("decorations")
    serial = None
    for key in SERIAL_DECORATIONS:
        values = pd.Series(pc.struct_field(decorations, key).to_pandas(), dtype="str")
        serial = values if serial is None else serial.fillna(values)
    os_name = pd.Series(pc.struct_field(decorations, "os_name").to_pandas(), dtype="str")
    os_version = pd.Series(pc.struct_field(decorations, "os_version").to_pandas(), dtype="str")
    counter = pd.to_numeric(pd.Series(table.column("counter").to_pandas()), errors="coerce")
    return pd.DataFrame(
        {
            "line": line_numbers,
            "query": text("name"),
            "host": text("hostIdentifier"),
            "action": action,
            "kind": kind,
            "unixTime": table.column("unixTime").to_pandas(),  # numbers, or text
            "calendarTime": text("calendarTime"),
            "counter": counter.fillna(0).to_numpy(),
            "serial": serial,
            "os": _join_text(os_name, os_version),
            "empty": ~(
                has_snapshot
                | has_columns
                | has_diff
                | action.notna().to_numpy()
                | text("name").notna().to_numpy()
                | text("hostIdentifier").notna().to_numpy()
            ),
        }
    )


def _table_of_query(query: str, table: pa.Table, lines: pd.DataFrame) -> str | None:
    """The inventory table a scheduled query reads: from its name (programs,
    pack_inventory_deb_packages, ...), else from the columns it returns; None if it is no
    software inventory."""
    lowered = query.lower()
    if lowered.endswith(_NOT_INVENTORY):
        return None
    for candidate in OSQUERY_TABLES:
        if re.search(rf"(^|[^a-z]){candidate}$", lowered) or (
            candidate != "apps" and lowered.endswith(candidate)
        ):
            return candidate
    first = lines.index[(lines["query"] == query) & (lines["kind"] != "")]
    if len(first) == 0:
        return None
    line = table.slice(int(first[0]), 1).to_pylist()[0]
    item = line.get("columns") or next(
        iter((line.get("snapshot") or []) + _batch_items(line.get("diffResults"))), None
    )
    fields = {k for k, v in (item or {}).items() if v is not None}
    if "name" not in fields:
        return None
    if fields & {"bundle_short_version", "bundle_identifier", "last_opened_time"}:
        return "apps"
    if "maintainer" in fields:
        return "deb_packages"
    if "vendor" in fields and fields & {"release", "install_time"}:
        return "rpm_packages"
    if "publisher" in fields:
        return "programs"
    return None


def _batch_items(diff) -> list:
    return [] if not diff else (diff.get(REMOVED) or []) + (diff.get(ADDED) or [])


def _line_times(lines: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """When each line was logged (UTC), from unixTime, else calendarTime; and which lines have
    a unixTime that is not a number."""
    raw = lines["unixTime"]
    seconds = raw if raw.dtype.kind == "f" else pd.to_numeric(raw.str.strip(), errors="coerce")
    bad = np.array(raw.notna() & seconds.isna(), dtype=bool)
    seen = pd.to_datetime(seconds, unit="s", utc=True).astype(TIMESTAMP_DTYPE)
    missing = seen.isna() & lines["calendarTime"].notna()
    if missing.any():
        calendar = lines.loc[missing, "calendarTime"].str.replace(r"\s+", " ", regex=True)
        parsed = pd.to_datetime(
            calendar, format="%a %b %d %H:%M:%S %Y UTC", utc=True, errors="coerce"
        )
        seen[missing] = parsed.astype(TIMESTAMP_DTYPE)
    return seen, bad


def _latest_snapshots(lines: pd.DataFrame, is_snapshot: np.ndarray) -> np.ndarray:
    """Snapshot lines replaced by a later snapshot of the same host and query."""
    snap = lines.loc[is_snapshot, ["hostkey", "query", "t", "counter", "line", "kind"]]
    if snap.empty:
        return np.zeros(len(lines), dtype=bool)
    ordered = snap.sort_values(["t", "counter", "line"], kind="stable")
    last = ordered.groupby(["hostkey", "query"], dropna=False, sort=False).tail(1)
    merged = snap.reset_index().merge(
        last, on=["hostkey", "query"], how="left", suffixes=("", "_last")
    )
    current = (
        (merged["t"] == merged["t_last"])
        & (merged["counter"] == merged["counter_last"])
        & ((merged["kind"] == "snapshot_event") | (merged["line"] == merged["line_last"]))
    )
    older = np.zeros(len(lines), dtype=bool)
    older[merged.loc[~current.to_numpy(), "index"].to_numpy()] = True
    return older


def _explode(table: pa.Table, lines: pd.DataFrame, take: np.ndarray):
    """Every result row of the chosen lines: the Arrow items, and per item its line (index
    into `lines`), its index in its list (-1 for `columns`), its place and its action."""
    parts, line_idx, item_idx, places, actions = [], [], [], [], []

    def add_lists(selected: np.ndarray, lists: pa.ChunkedArray, place: str, action_of):
        if not len(selected):
            return
        chosen = lists.take(pa.array(selected)).combine_chunks()
        counts = pc.fill_null(pc.list_value_length(chosen), 0).to_numpy()
        parts.append(pc.list_flatten(chosen))
        starts = np.cumsum(counts) - counts
        line_idx.append(np.repeat(selected, counts))
        item_idx.append(np.arange(counts.sum()) - np.repeat(starts, counts))
        places.append(np.full(counts.sum(), place, dtype=object))
        actions.append(np.repeat(action_of(selected), counts))

    kind = lines["kind"].to_numpy()
    action = lines["action"].to_numpy(dtype=object)
    snapshot_action = lambda selected: np.full(len(selected), "snapshot", dtype=object)  # noqa: E731
    add_lists(
        np.flatnonzero(take & (kind == "snapshot")),
        table.column("snapshot"),
        "snapshot",
        snapshot_action,
    )
    events = np.flatnonzero(take & np.isin(kind, ["snapshot_event", "event"]))
    if len(events):
        parts.append(table.column("columns").take(pa.array(events)).combine_chunks())
        line_idx.append(events)
        item_idx.append(np.full(len(events), -1))
        places.append(np.full(len(events), "columns", dtype=object))
        actions.append(action[events])
    batches = np.flatnonzero(take & (kind == "batch"))
    diff = table.column("diffResults")
    for which in (REMOVED, ADDED):
        add_lists(
            batches,
            pc.struct_field(diff, which),
            f"diffResults.{which}",
            lambda selected, which=which: np.full(len(selected), which, dtype=object),
        )
    item_type = table.schema.field("columns").type
    items = pa.concat_arrays(parts) if parts else pa.array([], type=item_type)

    def cat(arrays, dtype):
        return np.concatenate(arrays).astype(dtype) if arrays else np.array([], dtype=dtype)

    return (
        items,
        cat(line_idx, "int64"),
        cat(item_idx, "int64"),
        cat(places, object),
        cat(actions, object),
    )


def _osquery_frame(name, table, line_numbers, errors, rejected_lines) -> InstallsRead:
    """rejected_lines: the device (or None) of each line the careful parse rejected whole."""
    lines = _lines_frame(table, line_numbers)

    # which inventory table each query reads; other queries' lines are skipped
    tables = {q: _table_of_query(q, table, lines) for q in lines["query"].dropna().unique()}
    lines["table"] = lines["query"].map(tables).astype(object)
    other = ~lines["empty"] & lines["table"].isna()
    ignored = lines.loc[other, "query"].fillna("(no name)").value_counts()
    inventory = (~lines["empty"] & ~other).to_numpy()

    # whole-line problems: no device, an unknown action, a time that is not a time
    problems = np.zeros(len(lines), dtype=bool)
    no_host = inventory & (lines["host"].fillna("").str.strip() == "").to_numpy()
    for number in lines.loc[no_host, "line"]:
        errors.append(RowError(name, int(number), "hostIdentifier", None, "a value is required"))
    problems |= no_host
    bad_kind = inventory & ~problems & (lines["kind"] == "").to_numpy()
    for number, action in lines.loc[bad_kind, ["line", "action"]].itertuples(index=False):
        if action in ("snapshot", ADDED, REMOVED):
            column = "snapshot" if action == "snapshot" else "columns"
            errors.append(RowError(name, int(number), column, None, "a value is required"))
        else:
            reason = "expected snapshot, added or removed (or a diffResults batch)"
            errors.append(RowError(name, int(number), "action", _none(action), reason))
    problems |= bad_kind
    seen, bad_time = _line_times(lines)
    bad_time &= inventory & ~problems
    for number, value in lines.loc[bad_time, ["line", "unixTime"]].itertuples(index=False):
        reason = "wrong type: expected a number of seconds since 1970"
        errors.append(RowError(name, int(number), "unixTime", _none(value), reason))
    problems |= bad_time
    usable = inventory & ~problems

    # the latest snapshot of a host and query replaces its earlier ones in the same file
    lines["seen"] = seen
    lines["t"] = ((seen - EPOCH) / pd.Timedelta(seconds=1)).fillna(0).to_numpy()
    lines["hostkey"] = lines["host"].str.strip().str.lower()
    is_snapshot = usable & lines["kind"].isin(["snapshot", "snapshot_event"]).to_numpy()
    older = _latest_snapshots(lines, is_snapshot)

    items, at_line, at_index, at_place, at_action = _explode(table, lines, usable)
    rows_read = len(at_line) + len(rejected_lines) + int(problems.sum())
    keep = ~older[at_line]
    if len(items):
        keep &= pc.is_null(pc.struct_field(items, SKIP)).to_numpy(zero_copy_only=False)
    superseded = int(older[at_line].sum())
    keep_array = pa.array(keep)
    items = items.filter(keep_array)
    at_line, at_index, at_place, at_action = (
        a[keep] for a in (at_line, at_index, at_place, at_action)
    )

    item_table = lines["table"].to_numpy()[at_line]
    raw, bad, parse_errors = _osquery_items(
        name, items, item_table, lines, at_line, at_index, at_place, at_action
    )
    errors.extend(parse_errors)
    events = pd.DataFrame(
        {
            "query": lines["query"].to_numpy(dtype=object)[at_line],
            "t": lines["t"].to_numpy()[at_line],
            "counter": lines["counter"].to_numpy()[at_line],
            "line": lines["line"].to_numpy()[at_line],
            "action": at_action,
        }
    )
    differential = bool((usable & lines["kind"].isin(["event", "batch"]).to_numpy()).any())

    def column_of(column: str, pos: int) -> str:
        return _osquery_source(column, item_table[pos], at_place[pos], int(at_index[pos]))

    return _finish(
        name,
        "osquery",
        raw,
        lines["line"].to_numpy()[at_line],
        bad,
        errors,
        column_of,
        events=events,
        rows_read=rows_read,
        snapshot=not differential,
        superseded=superseded,
        ignored={str(k): int(v) for k, v in ignored.items()},
        rejected_hosts={*lines.loc[problems, "host"].dropna(), *filter(None, rejected_lines)},
    )


def _place(place: str, index: int) -> str:
    return place if index < 0 else f"{place}[{index}]"


def _osquery_source(column: str, table: str, place: str, index: int) -> str:
    """The field of the log a canonical column came from, e.g. snapshot[3].publisher."""
    if column in _OSQUERY_SOURCES:
        return _OSQUERY_SOURCES[column]
    field_name = OSQUERY_FIELDS.get(table, {}).get(column) or _ITEM_SOURCES.get(column, column)
    if column == INSTALL_DATE and table == "rpm_packages":
        field_name = "install_time"
    return f"{_place(place, index)}.{field_name}"


def _osquery_items(name, items, item_table, lines, at_line, at_index, at_place, at_action):
    """The canonical raw frame of the result rows, and their parse errors. Each table's own
    fields are read only when the file has rows of that table."""
    n = len(items)
    errors: list[RowError] = []
    bad = np.zeros(n, dtype=bool)
    rows = lines["line"].to_numpy()[at_line]
    is_table = {t: item_table == t for t in OSQUERY_TABLES}
    has = {t: bool(mask.any()) for t, mask in is_table.items()}

    def item(field_name: str) -> pd.Series:
        if n == 0:
            return pd.Series([], dtype="str")
        values = pc.struct_field(items, field_name).to_pandas()
        return values if values.dtype == "str" else values.astype("str")

    def seconds(field_name: str, table: str) -> pd.Series:
        """A field holding seconds since 1970 (a JSON number or text), for one table's rows;
        values that are not numbers are reported."""
        values = pc.struct_field(items, field_name).to_pandas()
        if values.dtype == "str":
            text = values.str.strip()
            parsed = pd.to_numeric(text, errors="coerce")
            wrong = is_table[table] & (text.notna() & (text != "") & parsed.isna()).to_numpy()
            report(wrong, field_name, values, "wrong type: expected a number of seconds since 1970")
            values = parsed
        return values.where(is_table[table] & (values > 0))  # osquery writes -1 for "never"

    def report(mask: np.ndarray, field_name: str, values: pd.Series, reason: str):
        for pos in np.flatnonzero(mask):
            place = _place(at_place[pos], int(at_index[pos]))
            errors.append(
                RowError(name, int(rows[pos]), f"{place}.{field_name}", values.iloc[pos], reason)
            )
        bad[mask] = True

    publisher = pd.Series(pd.NA, index=range(n), dtype="str")
    for table, field_name in (
        ("programs", "publisher"),
        ("deb_packages", "maintainer"),
        ("rpm_packages", "vendor"),
    ):
        if has[table]:
            publisher = publisher.fillna(item(field_name).where(is_table[table]))

    version = item("version")
    if has["rpm_packages"]:  # rpm: version-release, as rpm -q prints it
        release = item("release").str.strip()
        with_release = is_table["rpm_packages"] & release.fillna("").ne("").to_numpy()
        version = version.where(~with_release, version + "-" + release)
    if has["apps"]:
        app_version = _blank_to_na(item("bundle_short_version")).fillna(item("bundle_version"))
        version = version.where(~is_table["apps"], app_version)

    install_date = pd.Series(pd.NA, index=range(n), dtype=DATE_DTYPE)
    if has["programs"]:
        program_dates = item("install_date").where(is_table["programs"])
        install_date, bad_date = parse_dates(program_dates, time_suffix=False)
        report(bad_date.to_numpy(), "install_date", program_dates, BAD_DATE)
    if has["rpm_packages"]:
        installed = pd.to_datetime(seconds("install_time", "rpm_packages"), unit="s")
        install_date = install_date.fillna(installed.astype(DATE_DTYPE))

    last_opened = pd.Series(pd.NaT, index=range(n), dtype=TIMESTAMP_DTYPE)
    if has["apps"]:
        opened = seconds("last_opened_time", "apps")
        last_opened = pd.to_datetime(opened, unit="s", utc=True).astype(TIMESTAMP_DTYPE)

    at = pd.Series(at_line)
    raw = _raw_frame(
        n,
        "osquery",
        {
            HOSTNAME: lines["host"].take(at),
            DEVICE_SERIAL: lines["serial"].take(at),
            OS: lines["os"].take(at),
            RAW_TITLE: item("name"),
            PUBLISHER: publisher,
            VERSION: version,
            INSTALL_DATE: install_date,
            LAST_SEEN: lines["seen"].take(at),
            LAST_OPENED_AT: last_opened,
            CHANGE: pd.Series(at_action, dtype="str").replace("snapshot", PRESENT),
        },
    )
    return raw, bad, errors


# --- dates and times --------------------------------------------------------------------


def _each_distinct(values: pd.Series, parse) -> tuple[pd.Series, pd.Series]:
    """parse(distinct values) -> (parsed, bad mask), spread back to every row: an inventory's
    2M dates hold a few hundred distinct values, and parsing them row by row cost seconds."""
    codes, distinct = pd.factorize(values.reset_index(drop=True).astype("str"))
    parsed, bad = parse(pd.Series(distinct, dtype="str"))
    parsed = pd.Series(parsed.array.take(codes, allow_fill=True), dtype=parsed.dtype)
    bad = np.append(bad.to_numpy(dtype=bool), False)[codes]  # code -1: the False appended
    return parsed, pd.Series(bad)


def parse_dates(values: pd.Series, *, time_suffix: bool) -> tuple[pd.Series, pd.Series]:
    """Dates written as yyyymmdd, yyyy-mm-dd or m/d/yyyy (time_suffix: a trailing time is
    allowed and ignored, as is the WMI form yyyymmddHHMMSS.ffffff+zzz). Returns the dates
    (Arrow date32, missing where empty or bad) and a mask of the values that are not dates."""
    return _each_distinct(values, lambda v: _parse_dates(v, time_suffix=time_suffix))


def _parse_dates(values: pd.Series, *, time_suffix: bool) -> tuple[pd.Series, pd.Series]:
    text = values.str.strip()
    text = text.mask(text == "")
    # the common forms each parsed in one go (a format that fails per value is slow)
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
    dashed = text.str.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}")
    compact = (text.str.len() == 8) & text.str.isdigit()
    for mask, form in ((dashed, "%Y-%m-%d"), (compact, "%Y%m%d")):
        if mask.all():
            parsed = pd.to_datetime(text, format=form, errors="coerce").astype("datetime64[us]")
        elif mask.any():
            parsed[mask] = pd.to_datetime(text[mask], format=form, errors="coerce")
    other = text.notna() & ~dashed & ~compact
    if other.any():
        tail = r"(?:[ T].*)?" if time_suffix else ""
        wmi = r"(?:\d{6}\.\d{6}[+-]\S*)?" if time_suffix else ""
        iso = text[other]
        iso = iso.str.replace(rf"^(\d{{4}})(\d{{2}})(\d{{2}}){wmi}$", r"\1-\2-\3", regex=True)
        mdy = rf"^(\d{{1,2}})/(\d{{1,2}})/(\d{{4}}){tail}$"
        iso = iso.str.replace(mdy, r"\3-\1-\2", regex=True)
        if time_suffix:
            iso = iso.str.replace(r"^(\d{4}-\d{1,2}-\d{1,2})[ T].*$", r"\1", regex=True)
        parsed[other] = pd.to_datetime(iso, format="%Y-%m-%d", errors="coerce")
    bad = text.notna() & parsed.isna()
    return parsed.astype(DATE_DTYPE), bad


def parse_timestamps(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """UTC timestamps written in ISO 8601 (no zone = UTC), or a date (midnight UTC). Returns
    the timestamps and a mask of the values that are neither."""
    return _each_distinct(values, _parse_timestamps)


def _parse_timestamps(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = values.str.strip()
    text = text.mask(text == "")
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    parsed = parsed.astype(TIMESTAMP_DTYPE)
    retry = parsed.isna() & text.notna()
    if retry.any():
        dates, _ = parse_dates(text[retry], time_suffix=False)
        as_time = pd.to_datetime(dates.astype("datetime64[us]")).dt.tz_localize("UTC")
        parsed[retry] = as_time.astype(TIMESTAMP_DTYPE).to_numpy()
    bad = text.notna() & parsed.isna()
    return parsed, bad
