"""Usage adapters: each tool's export turned into the canonical usage frame (schemas/usage.py).

Formats read:
- entra_json: Microsoft Graph auditLogs/signIns (a `{"value": [...]}` page or a bare array, as
  the Entra portal's "Download JSON" gives); only status.errorCode 0 (success) counts;
- entra_csv: the Entra portal's sign-in CSV (Date (UTC), Username, Application, Application
  ID, Status, ...); only Status "Success" counts;
- okta: Okta System Log JSON array; user.authentication.sso events with outcome SUCCESS; the
  app is the target of type AppInstance (displayName, then alternateId), the user is
  actor.alternateId;
- flexlm: FlexNet/FlexLM debug logs (OUT / IN / DENIED / TIMESTAMP lines) turned into
  checkout sessions per user, host and feature, plus concurrent peaks and denials;
- osquery: the `apps` table (macOS) with last_opened_time: a last use on a device;
- canonical: user_email, product_code or app_name, activity_at, duration_minutes.

No per-event Python loops on the hot path: JSON is parsed once (orjson) and turned into
columns by pyarrow with a fixed schema; FlexLM lines are matched by regular expressions over
the whole text (pyarrow compute) and OUT/IN pairs are matched by sorting and cumulative
counts. A record or line that cannot be read is a RowError with its number (never dropped
silently); the caller decides whether the file stands (tasks/metering.py, reject threshold).
"""

from __future__ import annotations

import gc
import io
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from licenseflow.errors import InputRejected, RowError
from schemas import usage as schema
from tasks.feeds import ROW, read_csv_strict, read_text_utf8, validate_frame

FORMATS = schema.SOURCES
# discovery's recognition: a frame with raw_title, publisher, version -> product code per row
Recognizer = Callable[[pd.DataFrame], pd.Series]
STRING = "str"  # pandas 3: Arrow-backed strings, missing = NaN


@dataclass
class UsageRead:
    """What one usage file held."""

    file: str
    source: str
    events: pd.DataFrame  # the canonical usage frame
    records: int  # records (JSON), data rows (CSV) or lines (logs) read
    errors: list[RowError] = field(default_factory=list)  # unreadable records or lines
    skipped: dict[str, int] = field(default_factory=dict)  # read but not usage, by reason
    sessions: pd.DataFrame | None = None  # FlexLM checkout sessions (for concurrent peaks)
    denials: pd.DataFrame | None = None  # FlexLM DENIED lines


# --- shared helpers -------------------------------------------------------------------


def empty_events() -> pd.DataFrame:
    return _events(pd.DataFrame(index=pd.RangeIndex(0)), "canonical")


def _events(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Complete a frame to the canonical columns and dtypes (missing columns empty)."""
    n = len(frame)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["source"] = pd.Series([source] * n, dtype=STRING)
    out["line"] = _column(frame, "line", np.zeros(n, dtype="int64")).astype("int64")
    for column in ("user", "hostname", "app", "app_id", "product_code"):
        values = _column(frame, column, pd.Series(pd.NA, index=out.index, dtype=STRING))
        values = values.astype(STRING).str.strip()
        out[column] = values.where(values != "", None)
    at = _column(frame, "activity_at", pd.Series(pd.NaT, index=out.index, dtype="M8[us, UTC]"))
    out["activity_at"] = pd.to_datetime(at, utc=True).dt.as_unit("us")
    duration = _column(frame, "duration_minutes", np.zeros(n))
    out["duration_minutes"] = pd.to_numeric(duration).astype("float64").fillna(0.0)
    out["sessions"] = _column(frame, "sessions", np.ones(n, dtype="int64")).astype("int64")
    return out


def _column(frame: pd.DataFrame, name: str, default):
    if name in frame.columns:
        return frame[name].reset_index(drop=True)
    return pd.Series(default, index=pd.RangeIndex(len(frame)))


@contextmanager
def _gc_paused():
    # Parsing builds millions of small objects; the cyclic collector scanning them again and
    # again makes a 250 MB JSON file 3x slower to load. None of them form cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_json(path: Path):
    raw = Path(path).read_bytes()
    if not raw.strip():
        raise InputRejected(str(path), [RowError(str(path), None, None, None, "the file is empty")])
    try:
        with _gc_paused():
            return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        line = raw.count(b"\n", 0, exc.pos) + 1
        reason = f"not valid JSON ({exc.msg} at line {line}, column {exc.colno})"
        raise InputRejected(str(path), [RowError(str(path), line, None, None, reason)]) from None


def _records(document, path: Path, wrapper_key: str | None) -> list:
    if isinstance(document, dict) and wrapper_key and isinstance(document.get(wrapper_key), list):
        return document[wrapper_key]
    if isinstance(document, list):
        return document
    shape = f'a {{"{wrapper_key}": [...]}} object or ' if wrapper_key else ""
    reason = f"expected {shape}a JSON array of records"
    raise InputRejected(str(path), [RowError(str(path), None, None, None, reason)])


def read_json_records(
    path: Path, arrow_type: pa.StructType, wrapper_key: str | None
) -> pa.StructArray:
    """The records of a JSON export (an array, or {wrapper_key: [...]}) as one struct array
    holding only the fields of `arrow_type` (missing = null).

    Fast path: Arrow's JSON reader parses the whole document in C++ and keeps only those
    fields (a 390 MB Graph page: ~4 s and ~0.6 GB, where building Python objects first takes
    twice the time and 2.7 GB). Anything it refuses (broken JSON, a value of another type)
    is read again the slow way, which names the problem or converts the odd value."""
    raw = Path(path).read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    start = raw.lstrip()[:1]
    if start == b"[":
        body, key = b'{"value":' + raw + b"}", "value"
    elif start == b"{" and wrapper_key:
        body, key = raw, wrapper_key
    else:
        body = None
    if body is not None:
        schema = pa.schema([(key, pa.list_(arrow_type))])
        try:
            table = pajson.read_json(
                io.BytesIO(body),
                read_options=pajson.ReadOptions(block_size=len(body) + 1),
                parse_options=pajson.ParseOptions(
                    explicit_schema=schema,
                    unexpected_field_behavior="ignore",
                    newlines_in_values=True,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            table = None
        del body
        if table is not None and table.num_rows == 1 and table.column(key).null_count == 0:
            return pc.list_flatten(table.column(key)).combine_chunks()
    records = _records(_load_json(path), path, wrapper_key)
    return _columns_of(records, arrow_type)


def _columns_of(records: list, arrow_type: pa.StructType) -> pa.StructArray:
    """Records to one struct array with the fields we read (missing keys = null), in C++."""
    try:
        return pa.array(records, type=arrow_type, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # A value of an unexpected type somewhere: read everything as text, slower but safe.
        flat = pd.json_normalize(records)
        arrays = {}
        for f in arrow_type:
            arrays[f.name] = _text_field(flat, f.name, f.type)
        return pa.StructArray.from_arrays(list(arrays.values()), names=list(arrays))


def _text_field(flat: pd.DataFrame, name: str, arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_struct(arrow_type):
        children = [_text_field(flat, f"{name}.{f.name}", f.type) for f in arrow_type]
        return pa.StructArray.from_arrays(children, names=[f.name for f in arrow_type])
    if pa.types.is_list(arrow_type):
        values = flat[name] if name in flat.columns else pd.Series([None] * len(flat))
        return pa.array(
            [v if isinstance(v, list) else None for v in values], type=arrow_type, from_pandas=True
        )
    values = flat[name] if name in flat.columns else pd.Series([None] * len(flat))
    text = (
        values.astype(object)
        .where(values.notna(), None)
        .map(lambda v: None if v is None else str(v))
    )
    return pa.array(text, type=pa.string(), from_pandas=True).cast(arrow_type, safe=False)


def _field(struct: pa.StructArray, *path: str) -> pd.Series:
    array = struct
    for name in path:
        array = pc.struct_field(array, name)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return pd.Series(array, dtype=STRING)
    return pd.Series(array.to_pandas())


def _missing_errors(
    file: str, frame: pd.DataFrame, checks: dict[str, pd.Series], numbers: pd.Series
) -> tuple[pd.Series, list[RowError]]:
    """RowErrors for rows where a required value is missing; returns (bad mask, errors)."""
    bad = pd.Series(False, index=frame.index)
    errors = []
    for column, missing in checks.items():
        missing = missing.fillna(True).astype(bool)
        bad |= missing
        for number in numbers[missing].tolist():
            errors.append(RowError(file, int(number), column, None, "a value is required"))
    return bad, errors


# --- Microsoft Entra ID sign-in logs --------------------------------------------------

_SIGNIN = pa.struct(
    [
        ("createdDateTime", pa.string()),
        ("userPrincipalName", pa.string()),
        ("appDisplayName", pa.string()),
        ("appId", pa.string()),
        ("status", pa.struct([("errorCode", pa.int64())])),
    ]
)


def read_entra_json(path: Path) -> UsageRead:
    """Graph auditLogs/signIns JSON: one event per successful sign-in (errorCode 0)."""
    file = str(path)
    struct = read_json_records(path, _SIGNIN, "value")
    frame = pd.DataFrame(
        {
            "line": np.arange(1, len(struct) + 1),
            "user": _field(struct, "userPrincipalName"),
            "app": _field(struct, "appDisplayName"),
            "app_id": _field(struct, "appId").str.lower(),
            "created": _field(struct, "createdDateTime"),
            "error_code": _field(struct, "status", "errorCode"),
        }
    )
    frame["activity_at"] = schema.parse_utc(frame["created"])
    bad, errors = _missing_errors(
        file,
        frame,
        {
            "createdDateTime": frame["activity_at"].isna(),
            "userPrincipalName": frame["user"].isna(),
            "appDisplayName": frame["app"].isna() & frame["app_id"].isna(),
            "status.errorCode": frame["error_code"].isna(),
        },
        frame["line"],
    )
    ok = ~bad
    failed = ok & (frame["error_code"] != 0)
    events = _events(frame[ok & ~failed], "entra_json")
    return UsageRead(
        file, "entra_json", events, len(frame), errors, {"failed sign-ins": int(failed.sum())}
    )


ENTRA_CSV_REQUIRED = ("Date (UTC)", "Username", "Application", "Status")
ENTRA_CSV_OPTIONAL = ("Application ID",)


def read_entra_csv(path: Path) -> UsageRead:
    """The Entra portal's sign-in CSV: one event per row with Status 'Success'."""
    file = str(path)
    raw = read_csv_strict(path, ENTRA_CSV_REQUIRED, ENTRA_CSV_OPTIONAL)
    frame = pd.DataFrame(
        {
            "line": raw[ROW],
            "user": raw["Username"],
            "app": raw["Application"],
            "app_id": raw["Application ID"].str.lower(),
            "status": raw["Status"].str.casefold(),
        }
    )
    frame["activity_at"] = _parse_portal_dates(raw["Date (UTC)"])
    bad, errors = _missing_errors(
        file,
        frame,
        {"Username": frame["user"].isna(), "Application": frame["app"].isna()},
        frame["line"],
    )
    undated = frame["activity_at"].isna()
    for number, value in zip(
        frame.loc[undated, "line"], raw.loc[undated, "Date (UTC)"], strict=True
    ):
        reason = "a value is required" if pd.isna(value) else "is not a date and time"
        errors.append(RowError(file, int(number), "Date (UTC)", _plain(value), reason))
    bad |= undated
    ok = ~bad
    failed = ok & (frame["status"] != "success")
    events = _events(frame[ok & ~failed], "entra_csv")
    errors.sort(key=lambda e: e.row or 0)
    return UsageRead(
        file, "entra_csv", events, len(frame), errors, {"failed sign-ins": int(failed.sum())}
    )


def _parse_portal_dates(values: pd.Series) -> pd.Series:
    """ISO 8601 as the portal writes it; a locale form ("3/2/2026, 2:05:00 PM") as fallback."""
    parsed = schema.parse_utc(values)
    retry = parsed.isna() & values.notna()
    if retry.any():
        other = pd.to_datetime(values[retry], errors="coerce", utc=True, format="mixed")
        parsed[retry] = other.dt.as_unit("us")
    return parsed


def _plain(value):
    return None if value is None or pd.isna(value) else str(value)


# --- Okta System Log --------------------------------------------------------------------

_OKTA_EVENT = pa.struct(
    [
        ("eventType", pa.string()),
        ("published", pa.string()),
        ("actor", pa.struct([("alternateId", pa.string())])),
        ("outcome", pa.struct([("result", pa.string())])),
        (
            "target",
            pa.list_(
                pa.struct(
                    [
                        ("type", pa.string()),
                        ("alternateId", pa.string()),
                        ("displayName", pa.string()),
                    ]
                )
            ),
        ),
    ]
)
OKTA_SSO = "user.authentication.sso"


def read_okta_json(path: Path) -> UsageRead:
    """Okta System Log events: successful user.authentication.sso into an AppInstance."""
    file = str(path)
    struct = read_json_records(path, _OKTA_EVENT, None)
    n = len(struct)
    frame = pd.DataFrame(
        {
            "line": np.arange(1, n + 1),
            "event_type": _field(struct, "eventType"),
            "user": _field(struct, "actor", "alternateId"),
            "result": _field(struct, "outcome", "result"),
            "published": _field(struct, "published"),
        }
    )
    # the first AppInstance target of each event, found over the flattened target lists
    targets = pc.struct_field(struct, "target")
    flat = pc.list_flatten(targets)
    parents = pc.list_parent_indices(targets).to_numpy()
    is_app = pc.fill_null(pc.equal(pc.struct_field(flat, "type"), "AppInstance"), False)
    apps = pd.DataFrame(
        {
            "parent": parents,
            "name": pd.Series(pc.struct_field(flat, "displayName"), dtype=STRING),
            "label": pd.Series(pc.struct_field(flat, "alternateId"), dtype=STRING),
        }
    )[is_app.to_numpy(zero_copy_only=False)].drop_duplicates("parent")
    frame["app"] = apps.set_index("parent")["name"].reindex(frame.index).astype(STRING)
    frame["app_id"] = apps.set_index("parent")["label"].reindex(frame.index).astype(STRING)
    frame["activity_at"] = schema.parse_utc(frame["published"])

    sso = frame["event_type"] == OKTA_SSO
    sso = sso.fillna(False).astype(bool)
    success = (frame["result"] == "SUCCESS").fillna(False).astype(bool)
    candidates = frame[sso]
    bad, errors = _missing_errors(
        file,
        candidates,
        {
            "published": candidates["activity_at"].isna(),
            "actor.alternateId": candidates["user"].isna(),
            "target[AppInstance]": candidates["app"].isna() & candidates["app_id"].isna(),
        },
        candidates["line"],
    )
    keep = candidates[~bad & success[sso]]
    skipped = {
        "other event types": int((~sso).sum()),
        "unsuccessful sign-ons": int((sso & ~success).sum()),
    }
    return UsageRead(file, "okta", _events(keep, "okta"), n, errors, skipped)


# --- FlexNet / FlexLM debug logs --------------------------------------------------------

_PREFIX = (
    r"^\s*(?P<hh>\d{1,2}):(?P<mm>\d{2}):(?P<ss>\d{2})\s+\((?P<daemon>[^()\s]+)\)"
    r"\s*(?P<rest>.*?)\s*$"
)
_KEYWORD = r"^(?P<kw>OUT|IN|DENIED|TIMESTAMP)\b"
_EVENT = (
    r'^(?P<kind>OUT|IN|DENIED):\s+"(?P<feature>[^"]+)"\s+(?P<user>[^@\s]+)@(?P<host>\S+)'
    r"(?:\s+(?P<tail>.*))?$"
)
_TIMESTAMP = r"^TIMESTAMP\s+(?P<mo>\d{1,2})/(?P<dd>\d{1,2})/(?P<yyyy>\d{4})$"
_LICENSES = r"\((?P<n>\d+) licenses?\)"
WRAP_SECONDS = 12 * 3600  # a time this much earlier than the line before = the next day

SESSION_COLUMNS = [
    "daemon",
    "feature",
    "user",
    "host",
    "start",
    "end",
    "licenses",
    "start_line",
    "end_line",
]


@dataclass
class FlexlmLog:
    """A parsed FlexLM debug log: its dated OUT/IN/DENIED lines and the lines it could not
    read. `start`/`end` are the first and last dated moments of the log."""

    events: pd.DataFrame  # line, daemon, kind, feature, user, host, at, licenses, inactive
    errors: list[RowError]
    lines: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None


def parse_flexlm(text: str, file: str = "<flexlm>", tz: str = "UTC") -> FlexlmLog:
    """Read the lines of a FlexLM debug log (its times are the license server's, in `tz`).

    TIMESTAMP m/d/yyyy lines give the date; a time of day more than 12 hours earlier than the
    line before means midnight passed. An OUT/IN/DENIED line before the first TIMESTAMP is an
    error (its date is unknown). Lines that are not `H:MM:SS (daemon) ...`, and OUT/IN/DENIED/
    TIMESTAMP lines that do not have their documented form, are RowErrors with their number.
    """
    raw_lines = text.split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    lines = pa.array(raw_lines, type=pa.string())
    del raw_lines
    numbers = np.arange(1, len(lines) + 1)
    blank = pc.equal(pc.utf8_trim_whitespace(lines), "").to_numpy(zero_copy_only=False)

    prefix = pc.extract_regex(lines, _PREFIX)
    has_prefix = pc.is_valid(prefix).to_numpy(zero_copy_only=False)
    hh = _int_field(prefix, "hh")
    mm = _int_field(prefix, "mm")
    ss = _int_field(prefix, "ss")
    time_ok = (hh < 24) & (mm < 60) & (ss < 60)
    rest = pc.struct_field(prefix, "rest")
    keyword = pc.struct_field(pc.extract_regex(rest, _KEYWORD), "kw").to_numpy(zero_copy_only=False)
    event = pc.extract_regex(rest, _EVENT)
    event_ok = pc.is_valid(event).to_numpy(zero_copy_only=False)
    stamp = pc.extract_regex(rest, _TIMESTAMP)
    stamp_date = pd.to_datetime(
        pd.DataFrame(
            {
                "year": _int_field(stamp, "yyyy"),
                "month": _int_field(stamp, "mo"),
                "day": _int_field(stamp, "dd"),
            }
        ),
        errors="coerce",
    ).to_numpy()
    is_stamp_kw = keyword == "TIMESTAMP"
    is_event_kw = np.isin(keyword, ["OUT", "IN", "DENIED"])

    errors: list[RowError] = []
    problems = [
        (~blank & ~has_prefix, "not a FlexLM log line: no 'H:MM:SS (daemon)' prefix"),
        (has_prefix & ~time_ok, "time of day out of range"),
        (
            has_prefix & time_ok & is_event_kw & ~event_ok,
            'does not have the form OUT|IN|DENIED: "feature" user@host',
        ),
        (
            has_prefix & time_ok & is_stamp_kw & np.isnat(stamp_date),
            "TIMESTAMP without a valid date m/d/yyyy",
        ),
    ]
    bad = np.zeros(len(numbers), dtype=bool)
    for mask, reason in problems:
        for index in np.flatnonzero(mask & ~bad):
            value = lines[int(index)].as_py()[:200]
            errors.append(RowError(file, int(numbers[index]), None, value, reason))
        bad |= mask
    errors.sort(key=lambda e: e.row)

    good = has_prefix & ~bad
    dated = pd.DataFrame(
        {
            "line": numbers[good],
            "seconds": (hh * 3600 + mm * 60 + ss)[good],
            "stamp": np.where(is_stamp_kw, stamp_date, np.datetime64("NaT"))[good],
            "is_event": (is_event_kw & event_ok)[good],
        }
    )
    segment = dated["stamp"].notna().cumsum()
    before_first = dated["is_event"] & (segment == 0)
    if before_first.any():
        first = int(dated.loc[before_first, "line"].iloc[0])
        reason = (
            "an OUT/IN/DENIED line before any TIMESTAMP line: its date is unknown "
            "(the log must carry a TIMESTAMP m/d/yyyy line before its first event)"
        )
        raise InputRejected(file, [RowError(file, first, None, lines[first - 1].as_py(), reason)])
    earlier = dated.groupby(segment)["seconds"].shift() - dated["seconds"]
    midnight = (earlier > WRAP_SECONDS).astype("int64")
    days = midnight.groupby(segment).cumsum()
    anchor = dated["stamp"].ffill()
    local = anchor + pd.to_timedelta(days, unit="D") + pd.to_timedelta(dated["seconds"], unit="s")
    # a local time that occurs twice (DST ends) is read as the later, standard-time one
    local = local.dt.tz_localize(
        tz, ambiguous=np.zeros(len(local), dtype=bool), nonexistent="shift_forward"
    )
    dated["at"] = local.dt.tz_convert("UTC").dt.as_unit("us")
    dated = dated[segment > 0]

    picked = dated.loc[dated["is_event"], ["line", "at"]]
    index = picked["line"].to_numpy() - 1
    parts = event.take(pa.array(index))
    tail = pc.struct_field(parts, "tail")
    licenses = _int_field(pc.extract_regex(tail, _LICENSES), "n", default=1)
    events = pd.DataFrame(
        {
            "line": picked["line"].to_numpy(),
            "daemon": pd.Series(
                pc.struct_field(prefix, "daemon").take(pa.array(index)), dtype=STRING
            ),
            "kind": pd.Series(pc.struct_field(parts, "kind"), dtype=STRING),
            "feature": pd.Series(pc.struct_field(parts, "feature"), dtype=STRING),
            "user": pd.Series(pc.struct_field(parts, "user"), dtype=STRING),
            "host": pd.Series(pc.utf8_lower(pc.struct_field(parts, "host")), dtype=STRING),
            "at": picked["at"].to_numpy(),
            "licenses": np.maximum(licenses, 1),
            "inactive": pc.fill_null(pc.match_substring(tail, "(INACTIVE)"), False).to_numpy(
                zero_copy_only=False
            ),
        }
    )
    events["at"] = pd.to_datetime(events["at"], utc=True).dt.as_unit("us")
    start = dated["at"].min() if len(dated) else None
    end = dated["at"].max() if len(dated) else None
    return FlexlmLog(events, errors, len(numbers), start, end)


def _int_field(struct: pa.Array, name: str, default: int = 0) -> np.ndarray:
    values = pc.struct_field(struct, name)
    return pc.fill_null(pc.cast(values, pa.int64()), default).to_numpy(zero_copy_only=False)


def flexlm_sessions(log: FlexlmLog) -> pd.DataFrame:
    """Checkout sessions per (daemon, feature, user, host): the k-th OUT pairs with the k-th IN.

    Vectorised: within each key, an IN that finds nothing checked out (more INs than OUTs so
    far, the running count's new minimum) was checked out before this log began; it becomes a
    session from the log's start (start_line 0). An OUT never checked in is open until the
    log's end (end_line 0). licenses are the OUT's count ("(N licenses)", default 1).
    """
    moves = log.events[log.events["kind"].isin(["OUT", "IN"])]
    if moves.empty:
        return pd.DataFrame({c: [] for c in SESSION_COLUMNS}).astype(
            {
                "start": "M8[us, UTC]",
                "end": "M8[us, UTC]",
                "licenses": "int64",
                "start_line": "int64",
                "end_line": "int64",
            }
        )
    key = ["daemon", "feature", "user", "host"]
    moves = moves.sort_values([*key, "line"], kind="stable")
    out = (moves["kind"] == "OUT").astype("int64")
    back = (moves["kind"] == "IN").astype("int64")
    outs = out.groupby([moves[k] for k in key], sort=False).cumsum()
    ins = back.groupby([moves[k] for k in key], sort=False).cumsum()
    # running INs-without-OUT so far: the running maximum of (INs - OUTs), floored at 0
    excess = (ins - outs).clip(lower=0)
    orphans = excess.groupby([moves[k] for k in key], sort=False).cummax()
    previous = orphans.groupby([moves[k] for k in key], sort=False).shift(fill_value=0)
    orphan_in = (back == 1) & (orphans > previous)

    starts = moves.loc[out == 1, [*key, "line", "at", "licenses"]].copy()
    starts["rank"] = outs[out == 1]
    matched = moves.loc[(back == 1) & ~orphan_in, [*key, "line", "at"]].copy()
    matched["rank"] = (ins - orphans)[(back == 1) & ~orphan_in]
    sessions = starts.merge(
        matched, on=[*key, "rank"], how="left", suffixes=("_start", "_end"), validate="1:1"
    )
    sessions = sessions.rename(
        columns={
            "at_start": "start",
            "at_end": "end",
            "line_start": "start_line",
            "line_end": "end_line",
        }
    )
    sessions["end"] = sessions["end"].fillna(log.end)
    sessions["end_line"] = sessions["end_line"].fillna(0).astype("int64")

    before = moves.loc[orphan_in, [*key, "line", "at", "licenses"]].rename(
        columns={"line": "end_line", "at": "end"}
    )
    before["start"] = log.start
    before["start_line"] = 0
    sessions = pd.concat([sessions[SESSION_COLUMNS], before[SESSION_COLUMNS]], ignore_index=True)
    sessions["start"] = pd.to_datetime(sessions["start"], utc=True).dt.as_unit("us")
    sessions["end"] = pd.to_datetime(sessions["end"], utc=True).dt.as_unit("us")
    return sessions.sort_values(["start", "start_line"], kind="stable", ignore_index=True)


def concurrent_peaks(sessions: pd.DataFrame, key: str = "feature") -> pd.DataFrame:
    """Peak licenses checked out at once per key and UTC day: columns key, day, peak.

    Every session adds its licenses at its start and gives them back at its end (an open
    session keeps them to the log's end); the running level per key, in time order (the
    log's line order within a second), gives the peak. A day's peak also counts what was
    still checked out when the day began.
    """
    if sessions.empty:
        return pd.DataFrame({key: pd.Series(dtype=object), "day": [], "peak": []})
    plus = pd.DataFrame(
        {
            key: sessions[key],
            "at": sessions["start"],
            "order": sessions["start_line"],
            "delta": sessions["licenses"],
        }
    )
    closed = sessions["end_line"] > 0
    minus = pd.DataFrame(
        {
            key: sessions.loc[closed, key],
            "at": sessions.loc[closed, "end"],
            "order": sessions.loc[closed, "end_line"],
            "delta": -sessions.loc[closed, "licenses"],
        }
    )
    moves = pd.concat([plus, minus], ignore_index=True).sort_values(
        [key, "at", "order"], kind="stable"
    )
    level = moves.groupby(key, sort=False, observed=True)["delta"].cumsum()
    moves["level"] = np.maximum(level, level - moves["delta"])  # before and after each move
    moves["day"] = moves["at"].dt.date
    peaks = moves.groupby([key, "day"], observed=True, as_index=False)["level"].max()
    return peaks.rename(columns={"level": "peak"})


def daily_denials(denials: pd.DataFrame, key: str = "feature") -> pd.DataFrame:
    """DENIED lines per key and UTC day: columns key, day, denials."""
    if denials.empty:
        return pd.DataFrame({key: pd.Series(dtype=object), "day": [], "denials": []})
    counted = denials.assign(day=denials["at"].dt.date)
    return (
        counted.groupby([key, "day"], observed=True, as_index=False)
        .size()
        .rename(columns={"size": "denials"})
    )


def read_flexlm_log(path: Path, tz: str = "UTC") -> UsageRead:
    """A FlexLM debug log: a usage event per checkout session, and the sessions and denials
    for the concurrent peak per feature and day."""
    file = str(path)
    log = parse_flexlm(read_text_utf8(path), file, tz)
    sessions = flexlm_sessions(log)
    minutes = (sessions["end"] - sessions["start"]).dt.total_seconds() / 60
    events = _events(
        pd.DataFrame(
            {
                "line": np.where(
                    sessions["start_line"] > 0, sessions["start_line"], sessions["end_line"]
                ),
                "user": sessions["user"],
                "hostname": sessions["host"],
                "app": sessions["feature"],
                "app_id": sessions["daemon"] + ":" + sessions["feature"],
                "activity_at": sessions["start"],
                "duration_minutes": minutes.clip(lower=0),
                # a session begun before this log was counted by the log before it
                "sessions": (sessions["start_line"] > 0).astype("int64"),
            }
        ),
        "flexlm",
    )
    denied = log.events[log.events["kind"] == "DENIED"].reset_index(drop=True)
    moves = log.events["kind"].isin(["OUT", "IN"])
    skipped = {
        "IN lines without an OUT in this log": int((sessions["start_line"] == 0).sum()),
        "checkouts still open at the end of the log": int((sessions["end_line"] == 0).sum()),
        "IN (INACTIVE): returned after an idle timeout": int(
            (log.events["inactive"] & moves).sum()
        ),
        "DENIED": len(denied),
    }
    return UsageRead(file, "flexlm", events, log.lines, log.errors, skipped, sessions, denied)


# --- osquery apps (macOS) ----------------------------------------------------------------


def events_from_osquery_apps(apps: pd.DataFrame) -> pd.DataFrame:
    """osquery `apps` rows (hostname, raw_title or name, last_opened_at; product_code when
    recognised) to last-use markers on devices.

    An app never opened (no last_opened_at) is not usage, nor is a differential "removed"
    row. sessions = 0: the row says when the app was last used, not that it was used again
    (the same time comes back in every scan)."""
    title = "raw_title" if "raw_title" in apps.columns else "name"
    opened = pd.to_datetime(apps["last_opened_at"], utc=True, errors="coerce")
    used = opened.notna() & (opened > pd.Timestamp("1971-01-01", tz="UTC"))
    if "change" in apps.columns:
        used &= apps["change"].astype(str) != "removed"
    used = used.to_numpy()
    line = apps[ROW] if ROW in apps.columns else pd.Series(np.arange(1, len(apps) + 1))
    code = apps["product_code"] if "product_code" in apps.columns else None
    return _events(
        pd.DataFrame(
            {
                "line": np.asarray(line)[used],
                "hostname": apps.loc[used, "hostname"].astype(STRING).str.lower().to_numpy(),
                "app": apps.loc[used, title].to_numpy(),
                "product_code": None if code is None else code[used].to_numpy(),
                "activity_at": opened[used].to_numpy(),
                "sessions": 0,
            }
        ),
        "osquery",
    )


def read_osquery_apps(path: Path, recognize: Recognizer | None = None) -> UsageRead:
    """An osquery results log (as the discovery adapters read it): the `apps` rows with a
    last_opened_time. `recognize` (raw_title, publisher, version -> product code) names the
    products the way discovery does; without it, app names are matched to product names."""
    from tasks.discovery_adapters import read_installs

    installs = read_installs(path, "osquery")
    apps = installs.frame
    if recognize is not None and len(apps):
        apps = apps.assign(product_code=recognize(apps).to_numpy())
    return UsageRead(
        str(path), "osquery", events_from_osquery_apps(apps), installs.rows_read, installs.errors
    )


# --- the canonical CSV --------------------------------------------------------------------


def read_canonical_csv(path: Path) -> UsageRead:
    """user_email, product_code or app_name, activity_at, duration_minutes."""
    file = str(path)
    raw = read_csv_strict(path, schema.CANONICAL_REQUIRED, schema.CANONICAL_OPTIONAL)
    unnamed = raw[schema.PRODUCT_CODE].isna() & raw[schema.APP_NAME].isna()
    errors = [
        RowError(file, int(row), schema.PRODUCT_CODE, None, "needs a product_code or an app_name")
        for row in raw.loc[unnamed, ROW]
    ]
    valid, more = validate_frame(raw[~unnamed], schema.CanonicalUsageCsv, file)
    errors = sorted(errors + more, key=lambda e: (e.row or 0, e.column or ""))
    events = _events(
        pd.DataFrame(
            {
                "line": valid[ROW],
                "user": valid[schema.USER_EMAIL],
                "app": valid[schema.APP_NAME],
                "product_code": valid[schema.PRODUCT_CODE].str.upper(),
                "activity_at": schema.parse_utc(valid[schema.ACTIVITY_AT]),
                "duration_minutes": valid[schema.DURATION_MINUTES],
            }
        ),
        "canonical",
    )
    return UsageRead(file, "canonical", events, len(raw), errors)


# --- format detection and the one entry point ----------------------------------------------

READERS = {
    "entra_json": read_entra_json,
    "entra_csv": read_entra_csv,
    "okta": read_okta_json,
    "flexlm": read_flexlm_log,
    "osquery": read_osquery_apps,
    "canonical": read_canonical_csv,
}


def detect_format(path: Path) -> str:
    """The usage format of a file, from its name and its first bytes."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(65536).decode("utf-8-sig", errors="replace")
    stripped = head.lstrip()
    if stripped.startswith(("{", "[")):
        if '"eventType"' in head or '"actor"' in head:
            return "okta"
        if '"appDisplayName"' in head or '"userPrincipalName"' in head:
            return "entra_json"
        if '"hostIdentifier"' in head:
            return "osquery"
    else:
        first = head.split("\n", 1)[0]
        if "Date (UTC)" in first:
            return "entra_csv"
        if schema.USER_EMAIL in first:
            return "canonical"
        if "TIMESTAMP" in head or " OUT: " in head or path.suffix.lower() == ".log":
            return "flexlm"
    reason = (
        "cannot tell which usage format this is; declare it in the sources file "
        f"(format: one of {', '.join(FORMATS)})"
    )
    raise InputRejected(str(path), [RowError(str(path), None, None, None, reason)])


def read_usage_file(
    path: Path, fmt: str | None = None, recognize: Recognizer | None = None
) -> UsageRead:
    """Read any usage file into the canonical frame, validated (schemas.usage.UsageEvents).
    `recognize` is used for osquery files (see read_osquery_apps)."""
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        reason = f"unknown usage format {fmt!r} (known: {', '.join(FORMATS)})"
        raise InputRejected(str(path), [RowError(str(path), None, None, fmt, reason)])
    if fmt == "osquery":
        result = read_osquery_apps(Path(path), recognize)
    else:
        result = READERS[fmt](Path(path))
    result.events = schema.UsageEvents.validate(result.events)
    return result
