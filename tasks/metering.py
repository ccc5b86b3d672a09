"""Stage 5, usage metering: usage events resolved to people, devices and products, and kept
as daily aggregates (never raw events).

- usage_daily: per day, product and person (or device): sessions, minutes, last activity;
- concurrent_peak: per day and concurrent product: the peak checked out and the denials.

A file is applied once: the ingestion ledger (feed "usage") records it by checksum, and the
file's aggregates are ADDED to what the store holds for the same keys (several files can
cover one day). Applying a file twice is refused by the ledger, so adding is safe.

Who is who (documented for users):
- an email (Entra userPrincipalName, Okta actor.alternateId, canonical user_email) is the
  person with that email, compared case-insensitively;
- a FlexLM user name is the person whose email's local part (before the @) is that name,
  case-insensitively; a local part two people share names nobody (listed as unknown);
- a device (osquery) is the device with that hostname, case-insensitively.
Unknown users and devices are counted and listed, not errors. Apps no catalog alias names
are listed for mapping (the run artifact, `slm usage unmapped`) and become one alert each
(kind "usage_unmapped_app"); their events are not metered.

Days are UTC days. A session is counted on the day it started, with all its minutes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected, RowError
from schemas.store import (
    Alert,
    Assignment,
    ConcurrentPeak,
    Contract,
    Product,
    UsageDaily,
)
from tasks import audit
from tasks.feeds import (
    already_applied,
    claim_file,
    file_checksum,
    record_ingestion,
    refuse_if_too_many,
)
from tasks.ownership import insert_alerts
from tasks.usage_adapters import (
    Recognizer,
    UsageRead,
    concurrent_peaks,
    daily_denials,
    read_usage_file,
)

FEED = "usage"
ACTOR = "usage_metering"
UNMAPPED_KIND = "usage_unmapped_app"
ACTIVE_WINDOW_DAYS = 30  # "active" for the usage-threshold alert: used in the last 30 days
LISTED = 50  # unknown users / unmapped apps named per file in reports

# which catalog alias kind names the apps of each source (canonical app_name: any of them)
ALIAS_KIND = {
    "entra_json": ("entra_apps",),
    "entra_csv": ("entra_apps",),
    "okta": ("okta_apps",),
    "flexlm": ("flexlm_features",),
    "canonical": ("names", "entra_apps", "okta_apps", "flexlm_features"),
    "osquery": ("names",),
}


# --- resolving events to ids ---------------------------------------------------------------


@dataclass
class Resolver:
    """Everything a file's events are resolved against, loaded once per run. People and
    devices are Series indexed by their casefolded key, so a whole column resolves with one
    vectorised reindex."""

    people_by_email: pd.Series  # email -> person id
    people_by_local: pd.Series  # email local part -> person id (parts one person has only)
    devices: pd.Series  # hostname -> device id
    products: dict[str, int]  # product code -> id
    metrics: dict[int, str]  # product id -> metric
    aliases: dict[str, Mapping[str, str]]  # alias kind -> {casefolded alias: product code}
    recognize: Recognizer | None = None  # osquery apps: discovery's recognition

    @classmethod
    def from_frames(
        cls,
        people: pd.DataFrame,
        devices: pd.DataFrame,
        products: pd.DataFrame,
        aliases: Mapping[str, Mapping[str, str]],
        recognize: Recognizer | None = None,
    ) -> Resolver:
        """people: id, email; devices: id, hostname; products: id, code, name, metric."""
        emails = people["email"].astype("str").str.strip().str.lower()
        ids = people["id"].astype("int64").to_numpy()
        local = emails.str.replace(r"@.*$", "", regex=True)
        unique_local = ~local.duplicated(keep=False).to_numpy()
        hosts = devices["hostname"].astype("str").str.strip().str.lower()
        names = {
            str(n).strip().casefold(): c
            for n, c in zip(products["name"], products["code"], strict=True)
        }
        names |= {str(c).casefold(): c for c in products["code"]}
        kinds = {k: dict(v) for k, v in aliases.items()}
        kinds["names"] = names | dict(kinds.get("names", {}))
        return cls(
            people_by_email=_unique_index(emails.to_numpy(), ids),
            people_by_local=_unique_index(local.to_numpy()[unique_local], ids[unique_local]),
            devices=_unique_index(hosts.to_numpy(), devices["id"].astype("int64").to_numpy()),
            products=dict(zip(products["code"], products["id"].astype(int), strict=True)),
            metrics=dict(zip(products["id"].astype(int), products["metric"], strict=True)),
            aliases=kinds,
            recognize=recognize,
        )


def _unique_index(keys, values) -> pd.Series:
    series = pd.Series(values, index=pd.Index(keys, dtype="str"), dtype="float64")
    return series[~series.index.duplicated(keep="first")]


def _fetch(session: Session, sql: str, columns: list[str]) -> pd.DataFrame:
    """A whole-table read through the driver's cursor (no parameters): 100k people in a
    fraction of the time result rows take to build."""
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    data = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pd.DataFrame(dict(zip(columns, data, strict=True)))


def load_resolver(
    session: Session,
    aliases: Mapping[str, Mapping[str, str]],
    recognize: Recognizer | None = None,
) -> Resolver:
    """The store's people, devices and products, with the catalog's aliases."""
    people = _fetch(session, "SELECT id, email FROM person", ["id", "email"])
    devices = _fetch(session, "SELECT id, hostname FROM device", ["id", "hostname"])
    products = _fetch(
        session, "SELECT id, code, name, metric FROM product", ["id", "code", "name", "metric"]
    )
    return Resolver.from_frames(people, devices, products, aliases, recognize)


def catalog_resolver(session: Session, catalog) -> Resolver:
    """The resolver for a catalog (tasks.recognition): its usage aliases, and its recognition
    rules and the analysts' overrides for osquery apps."""
    from tasks import recognition

    recognize = partial(_recognise_apps, catalog=catalog, overrides=recognition.load_overrides())
    return load_resolver(session, recognition.product_lookup(catalog), recognize)


def _recognise_apps(apps: pd.DataFrame, catalog, overrides) -> pd.Series:
    """Product codes of osquery apps (module level: a resolver pickles for Dask workers)."""
    from tasks import recognition

    found = recognition.recognize(apps[["raw_title", "publisher", "version"]], catalog, overrides)
    return found["product_code"]


def _lookup(values: pd.Series, mapping: Mapping) -> pd.Series:
    """Map a column through a dict once per distinct value (sign-in logs repeat a few apps)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    found = [mapping.get(str(u).strip().casefold()) for u in uniques]
    return pd.Series(np.array([*found, None], dtype=object)[codes], index=values.index)


def _ids(values: pd.Series, index: pd.Series, *, by_local: pd.Series | None = None) -> np.ndarray:
    """Ids of a column's values (stripped, lower-cased) in a key-indexed Series, NaN when
    unknown, resolved once per distinct value. With by_local, values without an @ are
    looked up there (FlexLM user names)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    keys = pd.Series(uniques, dtype="str").str.strip().str.lower()
    found = index.reindex(keys.to_numpy()).to_numpy()
    if by_local is not None:
        local = by_local.reindex(keys.to_numpy()).to_numpy()
        email_like = keys.str.contains("@", regex=False).to_numpy(dtype=bool)
        found = np.where(email_like, found, local)
    return np.append(found.astype("float64"), np.nan)[codes]


def resolve_products(events: pd.DataFrame, resolver: Resolver) -> pd.Series:
    """The catalog product code of each event (None when nothing names it)."""
    result = pd.Series(None, index=events.index, dtype=object)
    given = events["product_code"].str.upper()
    result[given.notna()] = given[given.notna()]
    for source, rows in events.groupby("source", sort=False, observed=True):
        pending = rows.index[result[rows.index].isna()]
        for kind in ALIAS_KIND[source]:
            mapping = resolver.aliases.get(kind, {})
            for column in ("app_id", "app"):
                if not len(pending):
                    break
                found = _lookup(events.loc[pending, column], mapping)
                result[found.index[found.notna()]] = found[found.notna()]
                pending = pending[result[pending].isna()]
    return result


def resolve_people(users: pd.Series, resolver: Resolver) -> pd.Series:
    """Person id per user (email, or FlexLM user name = email local part); NaN if unknown."""
    ids = _ids(users, resolver.people_by_email, by_local=resolver.people_by_local)
    return pd.Series(ids, index=users.index)


@dataclass
class Metered:
    """A file's events resolved: daily aggregates and what could not be resolved."""

    daily: pd.DataFrame  # day, product_id, person_id, device_id, sessions, minutes, last_activity
    unknown_users: pd.DataFrame  # source, user, events
    unknown_devices: pd.DataFrame  # source, hostname, events
    unmapped: pd.DataFrame  # source, kind, app, app_id, events
    events_metered: int
    codes: pd.Series  # product code per event (None when unmapped)


def meter(events: pd.DataFrame, resolver: Resolver) -> Metered:
    """Resolve events and aggregate them per UTC day, product and person (or device)."""
    codes = resolve_products(events, resolver)
    product_id = codes.map(resolver.products)
    unknown_code = codes.notna() & product_id.isna()
    unmapped_mask = codes.isna() | unknown_code

    person_id = resolve_people(events["user"], resolver)
    device_id = pd.Series(np.nan, index=events.index)
    device_only = events["user"].isna() & events["hostname"].notna()
    if device_only.any():
        device_id[device_only] = _ids(events.loc[device_only, "hostname"], resolver.devices)
    unknown_user = events["user"].notna() & person_id.isna()
    unknown_device = device_only & device_id.isna()

    usable = ~unmapped_mask & (person_id.notna() | device_id.notna())
    picked = events[usable]
    frame = pd.DataFrame(
        {
            # the UTC day, as datetime64 (date objects are 20x slower to make and group)
            "day": picked["activity_at"].dt.tz_convert(None).to_numpy().astype("datetime64[D]"),
            "product_id": product_id[usable].astype("int64"),
            # -1: none (group keys must not be NaN); person rows have no device and v.v.
            "person_id": person_id[usable].fillna(-1).astype("int64"),
            "device_id": device_id[usable].where(person_id[usable].isna(), -1).fillna(-1),
            "sessions": picked["sessions"],
            "minutes": picked["duration_minutes"],
            "last_activity": picked["activity_at"]
            + pd.to_timedelta(picked["duration_minutes"], unit="m"),
        }
    )
    frame["device_id"] = frame["device_id"].astype("int64")
    daily = frame.groupby(
        ["day", "product_id", "person_id", "device_id"], as_index=False, sort=True
    ).agg(
        sessions=("sessions", "sum"),
        minutes=("minutes", "sum"),
        last_activity=("last_activity", "max"),
    )

    listed_apps = events[unmapped_mask].assign(
        kind=events.loc[unmapped_mask, "source"].map(lambda s: ALIAS_KIND[s][0]),
        app=events.loc[unmapped_mask, "app"].fillna(events.loc[unmapped_mask, "product_code"]),
    )
    return Metered(
        daily=daily,
        unknown_users=_counted(events[unknown_user & ~unmapped_mask], ["source", "user"]),
        unknown_devices=_counted(events[unknown_device & ~unmapped_mask], ["source", "hostname"]),
        unmapped=_counted(listed_apps, ["source", "kind", "app", "app_id"]),
        events_metered=int(usable.sum()),
        codes=codes,
    )


def _counted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "events"])
    counted = frame.groupby(keys, dropna=False, observed=True).size().rename("events")
    return counted.reset_index().sort_values(
        ["events", *keys], ascending=[False] + [True] * len(keys), ignore_index=True
    )


def flexlm_peaks(read: UsageRead, codes: pd.Series, resolver: Resolver) -> pd.DataFrame:
    """Concurrent peak and denials per day and product from a FlexLM file's sessions.

    Features are mapped like the events ('DAEMON:feature' first, then the feature); features
    of one product add up. Unmapped features are listed with the events already."""
    mapping = resolver.aliases.get("flexlm_features", {})
    empty = pd.DataFrame(columns=["day", "product_id", "peak", "denials"])
    if read.sessions is None:
        return empty

    def product_of(frame: pd.DataFrame) -> pd.Series:
        qualified = _lookup(frame["daemon"] + ":" + frame["feature"], mapping)
        plain = _lookup(frame["feature"], mapping)
        return qualified.fillna(plain).map(resolver.products)

    sessions = read.sessions.assign(product_id=product_of(read.sessions)).dropna(
        subset=["product_id"]
    )
    denials = read.denials.assign(product_id=product_of(read.denials)).dropna(subset=["product_id"])
    peaks = concurrent_peaks(sessions, key="product_id")
    denied = daily_denials(denials, key="product_id")
    both = peaks.merge(denied, on=["product_id", "day"], how="outer")
    if both.empty:
        return empty
    both["peak"] = both["peak"].fillna(0).astype("int64")
    both["denials"] = both["denials"].fillna(0).astype("int64")
    both["product_id"] = both["product_id"].astype("int64")
    return both[["day", "product_id", "peak", "denials"]]


# --- writing the store ------------------------------------------------------------------


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _greatest(current, incoming):
    return case((incoming > current, incoming), else_=current)


_UPSERT_SET = (
    "sessions = usage_daily.sessions + excluded.sessions, "
    "minutes = usage_daily.minutes + excluded.minutes, "
    "last_activity = CASE WHEN excluded.last_activity > usage_daily.last_activity "
    "THEN excluded.last_activity ELSE usage_daily.last_activity END"
)


def upsert_usage_daily(session: Session, daily: pd.DataFrame) -> int:
    """Add a file's daily aggregates to the store, set-based: person rows and device rows
    each in one INSERT .. ON CONFLICT against their partial unique index (SQLite: one
    executemany; PostgreSQL: COPY into a staging table, then one INSERT .. SELECT)."""
    if daily.empty:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    raw = session.connection().connection
    last = pd.to_datetime(daily["last_activity"], utc=True)
    written = 0
    for holder, other in (("person_id", "device_id"), ("device_id", "person_id")):
        part = daily[daily[holder] >= 0]
        if part.empty:
            continue
        conflict = f"ON CONFLICT (product_id, {holder}, day) WHERE {other} IS NULL DO UPDATE SET"
        moments = last[part.index].dt.tz_convert(None).to_numpy().astype("datetime64[us]")
        # timestamps as text "YYYY-MM-DD HH:MM:SS.ffffff": SQLAlchemy's form on SQLite (UTC,
        # no zone); PostgreSQL is told the zone
        stamps = pc.cast(pa.array(moments), pa.string())
        if postgres:
            stamps = pc.binary_join_element_wise(stamps, "+00:00", "")
        columns = pd.DataFrame(
            {
                "day": _days(part["day"]),
                "product_id": part["product_id"].astype("int64"),
                "holder": part[holder].astype("int64"),
                "sessions": part["sessions"].astype("int64"),
                "minutes": part["minutes"].astype("float64"),
                "last_activity": stamps.to_pylist(),
            }
        ).sort_values(["product_id", "holder", "day"])  # index order: fewer page splits
        if postgres:
            _copy_upsert(raw, columns, holder, conflict)
        else:
            raw.driver_connection.executemany(
                f"INSERT INTO usage_daily (day, product_id, {holder}, sessions, minutes, "  # noqa: S608
                f"last_activity) VALUES (?, ?, ?, ?, ?, ?) {conflict} {_UPSERT_SET}",
                zip(*(columns[c].tolist() for c in columns.columns), strict=True),
            )
        written += len(columns)
    return written


def _days(values: pd.Series) -> list[str]:
    """Days (dates or datetimes) as ISO text."""
    days = pd.to_datetime(values).to_numpy().astype("datetime64[D]")
    return pc.cast(pa.array(days), pa.string()).to_pylist()


def _copy_upsert(raw, columns: pd.DataFrame, holder: str, conflict: str) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(
        pa.Table.from_pandas(columns, preserve_index=False),
        buffer,
        pacsv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    with raw.driver_connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS stage_usage_daily")
        cursor.execute(
            "CREATE TEMP TABLE stage_usage_daily (day date, product_id bigint, holder bigint, "
            "sessions integer, minutes double precision, last_activity timestamptz)"
        )
        with cursor.copy("COPY stage_usage_daily FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())
        cursor.execute(
            f"INSERT INTO usage_daily (day, product_id, {holder}, sessions, minutes, "  # noqa: S608
            "last_activity) SELECT day, product_id, holder, sessions, minutes, last_activity "
            f"FROM stage_usage_daily {conflict} {_UPSERT_SET}"
        )
        cursor.execute("DROP TABLE stage_usage_daily")


def upsert_concurrent_peaks(session: Session, peaks: pd.DataFrame) -> int:
    """Keep the highest peak per day and product; add the denials (each file once)."""
    if peaks.empty:
        return 0
    insert = _insert(session)
    table = ConcurrentPeak.__table__
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["day", "product_id"],
        set_={
            "peak": _greatest(table.c.peak, statement.excluded.peak),
            "denials": table.c.denials + statement.excluded.denials,
        },
    )
    rows = [
        {"day": d, "product_id": int(p), "peak": int(k), "denials": int(n)}
        for d, p, k, n in peaks[["day", "product_id", "peak", "denials"]].itertuples(
            index=False, name=None
        )
    ]
    session.execute(statement, rows)
    return len(rows)


def write_alerts(session: Session, alerts: list[dict], now: dt.datetime) -> list[dict]:
    """Insert the alerts whose dedupe_key is new (each alert exists once), audit-logged by the
    shared alert writer. Returns the ones written."""
    unique = list({a["dedupe_key"]: a for a in alerts}.values())
    if not unique:
        return []
    rows = [
        {"owner_email": None, "contract_id": None, "deadline": None, **a, "created_at": now}
        for a in unique
    ]
    inserted = insert_alerts(session, rows, ACTOR)
    written = set(inserted["dedupe_key"])
    return [a for a in unique if a["dedupe_key"] in written]


def _chunks(values: list, size: int = 1000):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def unmapped_alerts(unmapped: pd.DataFrame, file: str) -> list[dict]:
    """One alert per app no catalog alias names (dedupe: kind and app)."""
    alerts = []
    for source, kind, app, app_id, events in unmapped.itertuples(index=False, name=None):
        name = app if isinstance(app, str) else app_id
        if not isinstance(name, str):
            continue
        where = "a product code the store does not know" if source == "canonical" else kind
        alerts.append(
            {
                "kind": UNMAPPED_KIND,
                "dedupe_key": f"{UNMAPPED_KIND}:{kind}:{name.strip().casefold()}"[:300],
                "subject": f"Usage of {name!r} ({source}) names no catalog product: add it "
                f"to data/catalog.yaml ({where})"[:500],
                "payload": {
                    "source": source,
                    "alias_kind": kind,
                    "app": None if not isinstance(app, str) else app,
                    "app_id": None if not isinstance(app_id, str) else app_id,
                    "events": int(events),
                    "first_file": file,
                },
            }
        )
    return alerts


def resolve_mapped_alerts(session: Session, resolver: Resolver, now: dt.datetime) -> int:
    """Close the unmapped-app alerts whose app the catalog now names."""
    rows = session.execute(
        select(Alert.id, Alert.dedupe_key, Alert.payload).where(
            Alert.kind == UNMAPPED_KIND, Alert.resolved_at.is_(None)
        )
    ).all()
    closed = []
    for alert_id, key, payload in rows:
        payload = payload or {}
        kind = payload.get("alias_kind", "")
        names = [payload.get("app_id"), payload.get("app")]
        code = next(
            (
                resolver.aliases.get(kind, {}).get(str(n).strip().casefold())
                or resolver.aliases["names"].get(str(n).strip().casefold())
                for n in names
                if n
            ),
            None,
        )
        if code and code in resolver.products:
            closed.append((alert_id, key, code))
    if closed:
        session.execute(
            update(Alert),
            [{"id": alert_id, "resolved_at": now} for alert_id, _, _ in closed],
        )
        audit.record_many(
            session,
            ACTOR,
            [
                audit.Change(
                    "alert.resolved",
                    "alert",
                    alert_id,
                    None,
                    {"resolved_at": now, "mapped_to": code},
                )
                for alert_id, _, code in closed
            ],
            at=now,
        )
    return len(closed)


# --- one file ------------------------------------------------------------------------------


@dataclass
class FileReport:
    """What applying one usage file did (for the run artifact and the ledger message)."""

    file: str
    source: str | None
    status: str  # metered (read, not yet written) | applied | already applied | rejected
    records: int = 0
    events: int = 0
    events_metered: int = 0
    errors: list[RowError] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    people: set[int] = field(default_factory=set)
    devices: set[int] = field(default_factory=set)
    products: set[int] = field(default_factory=set)
    days: set[dt.date] = field(default_factory=set)
    usage_rows: int = 0
    peak_rows: int = 0
    peaks: pd.DataFrame | None = None
    unknown_users: pd.DataFrame | None = None
    unknown_devices: pd.DataFrame | None = None
    unmapped: pd.DataFrame | None = None
    message: str = ""

    def summary(self) -> str:
        parts = [f"{self.records} read", f"{self.events} usage events"]
        parts.append(f"{self.events_metered} metered")
        if self.errors:
            rows = sorted({e.row for e in self.errors if e.row is not None})
            shown = ", ".join(map(str, rows[:20])) + (" ..." if len(rows) > 20 else "")
            parts.append(f"{len(self.errors)} unreadable (lines/rows {shown})")
        for what, frame in (
            ("unknown users", self.unknown_users),
            ("unknown devices", self.unknown_devices),
            ("unmapped apps", self.unmapped),
        ):
            if frame is not None and len(frame):
                parts.append(f"{len(frame)} {what} ({int(frame['events'].sum())} events)")
        parts += [f"{n} {why}" for why, n in self.skipped.items() if n]
        return "; ".join(parts)


def ingest_file(
    session: Session,
    path: Path,
    resolver: Resolver,
    *,
    fmt: str | None = None,
    reject_threshold: float = 0.05,
    now: dt.datetime | None = None,
) -> FileReport:
    """Apply one usage file in the caller's transaction, once (checksum ledger).

    Raises InputRejected (nothing written) when the file cannot be read or more than
    reject_threshold of its records or lines are unreadable; the caller records that
    rejection in its own transaction (record_rejection)."""
    path = Path(path)
    if already_applied(session, FEED, file_checksum(path)):  # apply_metered checks again, locked
        return FileReport(str(path), fmt, "already applied")
    metered = meter_file(path, resolver, fmt=fmt, reject_threshold=reject_threshold)
    return apply_metered(session, metered, now or dt.datetime.now(dt.UTC))


@dataclass
class MeteredFile:
    """A usage file read and metered but not written: what a parallel worker hands back."""

    checksum: str
    report: FileReport  # status "metered"
    daily: pd.DataFrame


def meter_file(
    path: Path, resolver: Resolver, *, fmt: str | None = None, reject_threshold: float = 0.05
) -> MeteredFile:
    """Read, resolve and aggregate one usage file; no store, so files meter in parallel.
    Raises InputRejected as ingest_file does."""
    path = Path(path)
    read = read_usage_file(path, fmt, resolver.recognize)
    refuse_if_too_many(str(path), read.records, read.errors, reject_threshold)
    metered = meter(read.events, resolver)
    report = FileReport(
        file=str(path),
        source=read.source,
        status="metered",
        records=read.records,
        events=len(read.events),
        events_metered=metered.events_metered,
        errors=read.errors,
        skipped=read.skipped,
        people=set(metered.daily.loc[metered.daily["person_id"] >= 0, "person_id"].tolist()),
        devices=set(metered.daily.loc[metered.daily["device_id"] >= 0, "device_id"].tolist()),
        products=set(metered.daily["product_id"].tolist()),
        days={d.date() for d in pd.to_datetime(metered.daily["day"].unique())},
        unknown_users=metered.unknown_users,
        unknown_devices=metered.unknown_devices,
        unmapped=metered.unmapped,
    )
    if read.source == "flexlm":
        report.peaks = flexlm_peaks(read, metered.codes, resolver)
        report.products |= set(report.peaks["product_id"].tolist())
        report.days |= set(report.peaks["day"].tolist())
    return MeteredFile(file_checksum(path), report, metered.daily)


def apply_metered(session: Session, metered: MeteredFile, now: dt.datetime) -> FileReport:
    """Write a metered file in the caller's transaction, once: under the feed's ledger lock,
    so two workers given the same file (on two machines) add its usage once."""
    report = metered.report
    if not claim_file(session, FEED, metered.checksum):
        return FileReport(report.file, report.source, "already applied")
    report.status = "applied"
    report.usage_rows = upsert_usage_daily(session, metered.daily)
    if report.peaks is not None and len(report.peaks):
        report.peak_rows = upsert_concurrent_peaks(session, report.peaks)
    write_alerts(session, unmapped_alerts(report.unmapped, report.file), now)
    report.message = report.summary()
    record_ingestion(
        session,
        FEED,
        report.file,
        metered.checksum,
        report.source,
        report.records,
        report.records - len({e.row for e in report.errors}),
        report.errors,
        status="applied",
        message=report.message,
    )
    return report


def refused_report(path: Path, fmt: str | None, error: InputRejected) -> FileReport:
    """The report of a refused file: plain data, so a parallel worker can hand it back."""
    return FileReport(str(path), fmt, "rejected", errors=list(error.errors), message=str(error))


def record_rejection(session: Session, report: FileReport) -> FileReport:
    """The ledger row of a refused file (its own transaction: nothing else was written)."""
    path = Path(report.file)
    record_ingestion(
        session,
        FEED,
        path,
        file_checksum(path),
        report.source,
        0,
        0,
        report.errors,
        status="rejected",
        message=report.message[:4000],
    )
    return report


# --- alerts from usage (stage 5 triggers) ------------------------------------------------------


def seats_in_force(
    session: Session, product_ids: Iterable[int], day: dt.date
) -> dict[int, int | None]:
    """Seats owned per product on a day (contracts in force); None = a site licence."""
    rows = session.execute(
        select(Contract.product_id, Contract.seats).where(
            Contract.product_id.in_([int(p) for p in product_ids]),
            Contract.start_date <= day,
            Contract.end_date >= day,
        )
    ).all()
    owned: dict[int, int | None] = {}
    for product_id, seats in rows:
        if seats is None or owned.get(product_id, 0) is None:
            owned[product_id] = None
        else:
            owned[product_id] = owned.get(product_id, 0) + seats
    return owned


def peak_alerts(peaks: pd.DataFrame, owned: Mapping[tuple[int, dt.date], int | None]) -> list[dict]:
    """The rules (pure): a peak at or above the seats owned that day, and any denials.

    peaks: day, product_id, code, peak, denials (the store's totals for those days);
    owned: (product_id, day) -> seats owned (None or missing: no limit known, no alert)."""
    alerts = []
    for day, product_id, code, peak, denials in peaks[
        ["day", "product_id", "code", "peak", "denials"]
    ].itertuples(index=False, name=None):
        seats = owned.get((product_id, day))
        if seats is not None and peak >= seats:
            alerts.append(
                {
                    "kind": "concurrent_peak",
                    "dedupe_key": f"concurrent_peak:{code}:{day.isoformat()}",
                    "subject": f"{code}: {peak} licences in use at once on {day} "
                    f"(owned: {seats}); users may be turned away",
                    "product_id": int(product_id),
                    "deadline": None,
                    "payload": {"day": day.isoformat(), "peak": int(peak), "owned": int(seats)},
                }
            )
        if denials > 0:
            alerts.append(
                {
                    "kind": "license_denials",
                    "dedupe_key": f"license_denials:{code}:{day.isoformat()}",
                    "subject": f"{code}: {denials} checkout(s) denied on {day}",
                    "product_id": int(product_id),
                    "deadline": None,
                    "payload": {"day": day.isoformat(), "denials": int(denials)},
                }
            )
    return alerts


def low_usage_alerts(usage: pd.DataFrame, as_of: dt.date) -> list[dict]:
    """The rule (pure): active seats below the product's threshold share of assigned seats.

    usage: product_id, code, threshold, assigned, active (seats whose holder used the product
    in the last ACTIVE_WINDOW_DAYS days). One alert per product and month."""
    alerts = []
    for product_id, code, threshold, assigned, active in usage[
        ["product_id", "code", "threshold", "assigned", "active"]
    ].itertuples(index=False, name=None):
        if pd.isna(threshold) or assigned <= 0:
            continue
        share = active / assigned
        if share < threshold:
            alerts.append(
                {
                    "kind": "usage_below_threshold",
                    "dedupe_key": f"usage_below_threshold:{code}:{as_of:%Y-%m}",
                    "subject": f"{code}: {active} of {assigned} assigned seats used in the last "
                    f"{ACTIVE_WINDOW_DAYS} days ({share:.0%}, threshold {threshold:.0%})",
                    "product_id": int(product_id),
                    "deadline": None,
                    "payload": {
                        "as_of": as_of.isoformat(),
                        "assigned": int(assigned),
                        "active": int(active),
                        "share": round(share, 4),
                        "threshold": float(threshold),
                    },
                }
            )
    return alerts


def usage_alerts(
    session: Session, days: Iterable[dt.date], as_of: dt.date, now: dt.datetime
) -> list[dict]:
    """Evaluate the usage triggers (peaks and denials of the given days, usage shares as of
    `as_of`) and write the new alerts. Returns the alerts written."""
    days = sorted(set(days))
    alerts: list[dict] = []
    if days:
        rows = session.execute(
            select(
                ConcurrentPeak.day,
                ConcurrentPeak.product_id,
                Product.code,
                ConcurrentPeak.peak,
                ConcurrentPeak.denials,
            )
            .join(Product, Product.id == ConcurrentPeak.product_id)
            .where(ConcurrentPeak.day.in_(days))
        ).all()
        peaks = pd.DataFrame(rows, columns=["day", "product_id", "code", "peak", "denials"])
        owned = {}
        for day in days:
            ids = peaks.loc[peaks["day"] == day, "product_id"].tolist()
            for product_id, seats in seats_in_force(session, ids, day).items():
                owned[(product_id, day)] = seats
        alerts += peak_alerts(peaks, owned)
    alerts += low_usage_alerts(usage_shares(session, as_of), as_of)
    return write_alerts(session, alerts, now)


def usage_shares(session: Session, as_of: dt.date) -> pd.DataFrame:
    """Per product with a usage threshold and any usage data: assigned seats and the seats
    whose holder used it in the last ACTIVE_WINDOW_DAYS days."""
    since = as_of - dt.timedelta(days=ACTIVE_WINDOW_DAYS - 1)
    products = session.execute(
        select(Product.id, Product.code, Product.usage_threshold).where(
            Product.usage_threshold.is_not(None),
            select(UsageDaily.id).where(UsageDaily.product_id == Product.id).exists(),
        )
    ).all()
    columns = ["product_id", "code", "threshold", "assigned", "active"]
    if not products:
        return pd.DataFrame(columns=columns)
    ids = [p.id for p in products]
    used = (
        select(UsageDaily.id)
        .where(
            UsageDaily.product_id == Assignment.product_id,
            UsageDaily.day >= since,
            UsageDaily.day <= as_of,
            or_(
                and_(
                    Assignment.person_id.is_not(None), UsageDaily.person_id == Assignment.person_id
                ),
                and_(
                    Assignment.device_id.is_not(None), UsageDaily.device_id == Assignment.device_id
                ),
            ),
        )
        .exists()
    )
    counts = session.execute(
        select(
            Assignment.product_id,
            func.count(Assignment.id),
            func.sum(case((used, 1), else_=0)),
        )
        .where(Assignment.product_id.in_(ids), Assignment.revoked_at.is_(None))
        .group_by(Assignment.product_id)
    ).all()
    by_product = {p: (int(a), int(u or 0)) for p, a, u in counts}
    return pd.DataFrame(
        [(p.id, p.code, p.usage_threshold, *by_product.get(p.id, (0, 0))) for p in products],
        columns=columns,
    )


def product_codes(session: Session, product_ids: Iterable[int]) -> dict[int, str]:
    ids = [int(p) for p in product_ids]
    if not ids:
        return {}
    return dict(session.execute(select(Product.id, Product.code).where(Product.id.in_(ids))).all())


# --- the run's report (pure) -----------------------------------------------------------------


def run_summary(
    reports: list[FileReport],
    alerts: list[dict],
    detection,  # tasks.reclamation.Detection
    notified: int,
    reclaimed: int,
    costs: Mapping[str, object],
) -> dict:
    """What one usage_metering run did, as plain data (the flow's return value)."""
    applied = [r for r in reports if r.status == "applied"]

    def listed(attr: str) -> pd.DataFrame:
        frames = [getattr(r, attr) for r in applied if getattr(r, attr) is not None]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame()
        keys = [c for c in frames[0].columns if c != "events"]
        merged = pd.concat(frames, ignore_index=True)
        return _counted(merged.loc[merged.index.repeat(merged["events"])], keys)

    unknown_users, unmapped = listed("unknown_users"), listed("unmapped")
    return {
        "files": [
            {
                "file": r.file,
                "format": r.source,
                "status": r.status,
                "records": r.records,
                "events": r.events,
                "metered": r.events_metered,
                "unreadable": sorted({e.row for e in r.errors if e.row is not None}),
                "note": r.message if r.status != "applied" else "",
            }
            for r in reports
        ],
        "events_read": sum(r.events for r in applied),
        "events_metered": sum(r.events_metered for r in applied),
        "people_metered": len(set().union(*(r.people for r in applied))),
        "devices_metered": len(set().union(*(r.devices for r in applied))),
        "products_metered": len(set().union(*(r.products for r in applied))),
        "days": sorted({d.isoformat() for r in applied for d in r.days}),
        "unknown_users": unknown_users.head(LISTED).to_dict("records"),
        "unknown_user_count": len(unknown_users),
        "unmapped_apps": unmapped.head(LISTED).to_dict("records"),
        "alerts": sorted(a["dedupe_key"] for a in alerts),
        "new_candidates": _records(detection.new),
        "cancelled_candidates": len(detection.cancelled),
        "notified": notified,
        "reclaimed": reclaimed,
        "new_candidates_monthly_cost": {k: str(v) for k, v in costs.items()},
        "rejected": [r.file for r in reports if r.status == "rejected"],
    }


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if value is None or (not isinstance(value, str | list) and pd.isna(value)):
                clean[key] = None
            elif isinstance(value, pd.Timestamp):
                clean[key] = value.isoformat()
            elif hasattr(value, "item"):
                clean[key] = value.item()
            else:
                clean[key] = value if isinstance(value, int | float | str) else str(value)
        out.append(clean)
    return out


def summary_markdown(summary: dict) -> str:
    costs = summary["new_candidates_monthly_cost"]
    cost_text = ", ".join(f"{v} {k}" for k, v in sorted(costs.items())) or "none"
    lines = [
        "# Usage metering",
        "",
        f"- usage events read: **{summary['events_read']}**, metered: "
        f"**{summary['events_metered']}** (days {', '.join(summary['days']) or '-'})",
        f"- metered: **{summary['people_metered']}** people, **{summary['devices_metered']}**"
        f" devices, **{summary['products_metered']}** products",
        f"- new reclaim candidates: **{len(summary['new_candidates'])}**, worth "
        f"**{cost_text}** a month; cancelled (used again or closed): "
        f"{summary['cancelled_candidates']}; notified: {summary['notified']}; "
        f"reclaimed automatically: {summary['reclaimed']}",
        f"- alerts raised: {len(summary['alerts'])}"
        + (f" ({', '.join(summary['alerts'][:10])})" if summary["alerts"] else ""),
        f"- unknown users: {summary['unknown_user_count']}; apps to map in the catalog: "
        f"{len(summary['unmapped_apps'])}",
        "",
        "| file | format | status | records | usage events | metered | unreadable lines/rows |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for f in summary["files"]:
        bad = ", ".join(map(str, f["unreadable"][:20])) + (
            " ..." if len(f["unreadable"]) > 20 else ""
        )
        lines.append(
            f"| {f['file']} | {f['format'] or ''} | {f['status']} | {f['records']} | "
            f"{f['events']} | {f['metered']} | {bad} |"
        )
    if not summary["files"]:
        lines.append("| (no usage files in the drop folders) | | | | | | |")
    if summary["unmapped_apps"]:
        lines += ["", "## Apps to map (data/catalog.yaml aliases)", ""]
        lines += [
            f"- {a['app'] or a['app_id']} ({a['source']}, {a['kind']}): {a['events']} events"
            for a in summary["unmapped_apps"]
        ]
    if summary["unknown_users"]:
        lines += ["", "## Unknown users (not in the HR roster)", ""]
        lines += [
            f"- {u['user']} ({u['source']}): {u['events']} events" for u in summary["unknown_users"]
        ]
    return "\n".join(lines)


# --- Prefect tasks of the usage_metering flow (thin: each opens its own unit of work) -------


@task(cache_policy=NO_CACHE)
def load_usage_resolver() -> Resolver:
    """The catalog (synced to the store's products) and the store's people and devices."""
    from tasks import recognition

    catalog = recognition.load_catalog()
    with unit_of_work() as session:
        recognition.sync_catalog_to_store(session, catalog)
    with unit_of_work() as session:
        return catalog_resolver(session, catalog)


@dataclass(frozen=True)
class UsageFile:
    """A file to meter, and whether the ledger had it when the run started."""

    path: Path
    fmt: str | None
    applied: bool


@task(cache_policy=NO_CACHE)
def usage_files(files: list[str] | None = None) -> list[UsageFile]:
    """The given files, or every file in the sources' "usage" drop folders."""
    from tasks import sources

    found = [(Path(f), None) for f in files] if files else sources.feed_files(FEED)
    with unit_of_work() as session:
        return [
            UsageFile(path, fmt, already_applied(session, FEED, file_checksum(path)))
            for path, fmt in found
        ]


@task(cache_policy=NO_CACHE)
def meter_usage_file(
    file: UsageFile, resolver: Resolver, reject_threshold: float
) -> MeteredFile | FileReport:
    """Read and aggregate one file without the store, so files meter in parallel (on Dask
    when configured). A file applied before is not read; a refused one comes back as its
    report."""
    if file.applied:
        return FileReport(str(file.path), file.fmt, "already applied")
    try:
        return meter_file(file.path, resolver, fmt=file.fmt, reject_threshold=reject_threshold)
    except InputRejected as refused:
        return refused_report(file.path, file.fmt, refused)


@task(cache_policy=NO_CACHE)
def apply_usage_file(item: MeteredFile | FileReport, now: dt.datetime) -> FileReport:
    """One file, one transaction; a refused file is recorded in the ledger and reported."""
    with unit_of_work() as session:
        if isinstance(item, MeteredFile):
            return apply_metered(session, item, now)
        return record_rejection(session, item) if item.status == "rejected" else item


@task(cache_policy=NO_CACHE)
def close_mapped_app_alerts(resolver: Resolver, now: dt.datetime) -> int:
    with unit_of_work() as session:
        return resolve_mapped_alerts(session, resolver, now)


@task(cache_policy=NO_CACHE)
def raise_usage_alerts(reports: list[FileReport], now: dt.datetime) -> list[dict]:
    """Peaks and denials on the days the files covered; usage shares as of today."""
    days = set().union(*(r.days for r in reports if r.status == "applied"))
    with unit_of_work() as session:
        return usage_alerts(session, days, now.date(), now)


def _rule():
    from licenseflow.settings import get_settings
    from tasks.reclamation import Rule

    settings = get_settings()
    return Rule(inactivity_days=settings.inactivity_days, grace_days=settings.grace_days)


@task(cache_policy=NO_CACHE)
def detect_reclaim_candidates(now: dt.datetime):
    from tasks import reclamation

    with unit_of_work() as session:
        return reclamation.detect(session, now, _rule(), actor=ACTOR)


@task(cache_policy=NO_CACHE)
def notify_reclaim_candidates(now: dt.datetime) -> int:
    from tasks import reclamation

    with unit_of_work() as session:
        return len(reclamation.notify(session, now, actor=ACTOR))


@task(cache_policy=NO_CACHE)
def auto_reclaim_unanswered(now: dt.datetime) -> int:
    """Reclaim what was notified auto_reclaim_after_days ago without an answer (if set)."""
    from licenseflow.settings import get_settings
    from tasks import reclamation

    with unit_of_work() as session:
        done = reclamation.auto_reclaim(
            session, now, get_settings().auto_reclaim_after_days, _rule()
        )
    return 0 if done is None else len(done.reclaimed)


@task(cache_policy=NO_CACHE)
def publish_usage_report(
    reports: list[FileReport], alerts: list[dict], detection, notified: int, reclaimed: int
) -> dict:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from tasks.reclamation import total_monthly_cost

    summary = run_summary(
        reports, alerts, detection, notified, reclaimed, total_monthly_cost(detection.new)
    )
    create_markdown_artifact(
        summary_markdown(summary), key="usage-metering-summary", description="Usage metering"
    )
    create_table_artifact(
        [
            {
                "candidate": c["id"],
                "product": c["code"],
                "holder": c["holder"],
                "last activity": c["last_activity"] or "never",
                "monthly cost": ""
                if c["monthly_cost"] is None
                else f"{c['monthly_cost']} {c['currency'] or ''}",
            }
            for c in summary["new_candidates"]
        ]
        or [{"candidate": "", "product": "(no new reclaim candidates)"}],
        key="usage-reclaim-candidates",
        description="New reclaim candidates and the monthly cost each seat represents",
    )
    if summary["unmapped_apps"]:
        create_table_artifact(
            summary["unmapped_apps"],
            key="usage-unmapped-apps",
            description="Apps in usage logs that no catalog alias names: add them to the catalog",
        )
    return summary
