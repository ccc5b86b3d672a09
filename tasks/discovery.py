"""The daily discovery scan's work: diff a file's installations against the store and write
only what changed, set-based.

One file = one transaction. The store's narrow (install_key, row_hash) of the file's devices
is read once and compared with the file in Arrow; only the rows that change something (new,
changed, named removed: ~4% of a daily inventory) are staged (executemany on SQLite, COPY on
PostgreSQL), and four statements insert, update and mark removed. Unchanged rows are neither
staged nor written: a device's last scan time is kept once on the device (device.last_seen),
not on each of its 2M installation rows.

Snapshot files (every format but osquery's differential log) are a device's complete
inventory: what the store has for a device in the file but the file does not list was
removed. Differential files only add and remove what they name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import column, func, literal, select, table, text
from sqlalchemy.orm import Session

from licenseflow.db import bulk_load, read_table
from schemas.installations import CHANGE, HOSTNAME, PUBLISHER, RAW_TITLE, VERSION
from schemas.store import Device, Installation, Product

STAGE_COLUMNS = [
    "install_key",
    "hostname",
    "raw_title",
    "publisher",
    "version",
    "normalized_title",
    "product_id",
    "source",
    "install_date",
    "row_hash",
    "change",
]
DEVICE_COLUMNS = ["hostname", "serial", "os", "primary_user_email", "seen_at", "complete"]


@dataclass
class Delta:
    """What one file changed."""

    new: int = 0
    changed: int = 0
    removed: int = 0
    devices_new: int = 0
    devices_seen: int = 0

    def __add__(self, other: Delta) -> Delta:
        return Delta(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.new, self.changed, self.removed, self.devices_new, self.devices_seen)


@dataclass
class StagedInstalls:
    """A validated, recognised file ready to apply."""

    installs: pd.DataFrame  # STAGE_COLUMNS
    devices: pd.DataFrame  # DEVICE_COLUMNS
    snapshot: bool
    recognised: int = 0
    unmatched_titles: list[str] = field(default_factory=list)


# --- pure preparation ------------------------------------------------------------------


def _hex_hash(frame: pd.DataFrame) -> pd.Series:
    """A stable 64-bit hash per row as a decimal string (vectorised; stable across runs)."""
    hashed = pd.util.hash_pandas_object(frame.astype("string").fillna("\x00"), index=False)
    return hashed.astype(str)


def _iso_dates(values: pd.Series) -> pd.Series:
    """yyyy-mm-dd text (missing stays missing), cast in Arrow: pandas formats dates one by one."""
    dates = pc.cast(pa.array(values, type=pa.date32(), from_pandas=True), pa.string())
    return pd.Series(dates, index=values.index, dtype="str")


def _lookup_each_distinct(values: pd.Series, mapping: dict) -> pd.Series:
    """values.map(mapping) as nullable integers, looked up once per distinct value."""
    codes, distinct = pd.factorize(values)
    found = pd.array([mapping.get(v) for v in distinct] + [None], dtype="Int64")
    return pd.Series(found[codes], index=values.index)  # code -1 (missing): the None


_LAST_FACTS = {"serial": "last", "os": "last", "primary_user_email": "last"}


def _device_facts(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per hostname: the latest seen_at, and each fact's last known value in
    seen_at order (missing first). When each device's rows carry one seen_at (the usual
    export) the file order already is that order, so the 2M rows need no sort."""
    grouped = rows.groupby("hostname", sort=False)
    facts = grouped.agg({**_LAST_FACTS, "seen_at": ["min", "max", "count", "size"]})
    seen = facts["seen_at"]
    one_time = ((seen["min"] == seen["max"]) & (seen["count"] == seen["size"])) | (
        seen["count"] == 0
    )
    if not one_time.all():
        ordered = rows.sort_values("seen_at", na_position="first", kind="stable")
        facts = ordered.groupby("hostname", sort=False).agg({**_LAST_FACTS, "seen_at": "max"})
        return facts.reset_index()
    facts = facts.droplevel(1, axis=1).loc[:, list(_LAST_FACTS)]
    facts["seen_at"] = seen["max"]
    return facts.reset_index()


def prepare(
    installs: pd.DataFrame,
    recognised: pd.DataFrame,
    product_ids: dict[str, int],
    snapshot: bool,
    incomplete_hosts: frozenset[str] = frozenset(),
) -> StagedInstalls:
    """Canonical installations (+ recognition columns) -> the staging rows and device rows.

    `recognised` is tasks.recognition.recognize(...) of the same frame (same index):
    normalized_title and product_code. Keys are unique per file (the adapters fold
    differential events). `incomplete_hosts`: devices with a rejected row; their inventory
    in this file is not complete, so nothing of theirs is marked removed. Pure: no store.
    """
    frame = installs.copy()
    frame["normalized_title"] = recognised["normalized_title"]
    frame["product_id"] = _lookup_each_distinct(recognised["product_code"], product_ids)
    frame["install_key"] = _hex_hash(frame[[HOSTNAME, RAW_TITLE, PUBLISHER]])
    frame["install_date"] = _iso_dates(frame["install_date"])
    frame["row_hash"] = _hex_hash(
        frame[[VERSION, "install_date", "normalized_title", "product_id", "source"]]
    )
    frame["change"] = frame[CHANGE].where(frame[CHANGE] != "added", "present")
    stage = frame[STAGE_COLUMNS].reset_index(drop=True)

    seen = frame.get("last_seen")
    devices = pd.DataFrame(
        {
            "hostname": frame[HOSTNAME],
            "serial": frame.get("device_serial"),
            "os": frame.get("os"),
            "primary_user_email": frame.get("primary_user_email"),
            "seen_at": seen if seen is not None else pd.NaT,
        }
    )
    devices = _device_facts(devices)
    devices["complete"] = (~devices["hostname"].isin(incomplete_hosts)).astype(int)
    devices = devices[DEVICE_COLUMNS]
    unmatched = recognised.loc[recognised["product_code"].isna(), "normalized_title"]
    return StagedInstalls(
        installs=stage,
        devices=devices,
        snapshot=snapshot,
        recognised=int(recognised["product_code"].notna().sum()),
        unmatched_titles=sorted(unmatched.dropna().unique().tolist()),
    )


# --- staging and applying (IO) -----------------------------------------------------------

_STAGE_DDL = {
    "sqlite": """
        CREATE TEMP TABLE stage_install (install_key TEXT, hostname TEXT, raw_title TEXT,
            publisher TEXT, version TEXT, normalized_title TEXT, product_id INTEGER,
            source TEXT, install_date TEXT, row_hash TEXT, change TEXT);
        CREATE TEMP TABLE stage_device (hostname TEXT PRIMARY KEY, serial TEXT, os TEXT,
            primary_user_email TEXT, seen_at TEXT, complete INTEGER);
        CREATE TEMP TABLE stage_removed (id INTEGER PRIMARY KEY)
    """,
    "postgresql": """
        CREATE TEMP TABLE stage_install (install_key TEXT, hostname TEXT, raw_title TEXT,
            publisher TEXT, version TEXT, normalized_title TEXT, product_id BIGINT,
            source TEXT, install_date DATE, row_hash TEXT, change TEXT) ON COMMIT DROP;
        CREATE TEMP TABLE stage_device (hostname TEXT PRIMARY KEY, serial TEXT, os TEXT,
            primary_user_email TEXT, seen_at TIMESTAMPTZ, complete INTEGER)
            ON COMMIT DROP;
        CREATE TEMP TABLE stage_removed (id BIGINT PRIMARY KEY) ON COMMIT DROP
    """,
}


def _execute_script(session: Session, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            session.execute(text(statement))


def create_staging(session: Session) -> None:
    dialect = session.get_bind().dialect.name
    _execute_script(
        session,
        "DROP TABLE IF EXISTS stage_install; DROP TABLE IF EXISTS stage_device; "
        "DROP TABLE IF EXISTS stage_removed",
    )
    _execute_script(session, _STAGE_DDL[dialect])


# the file's devices (after their upsert), and whether the file lists all their titles
_STAGE_DEVICE = table("stage_device", column("hostname"), column("complete"))
FILE_DEVICES = select(Device.id, _STAGE_DEVICE.c.complete).join(
    _STAGE_DEVICE, _STAGE_DEVICE.c.hostname == Device.hostname
)
FILE_DEVICES_SCHEMA = pa.schema([("id", pa.int64()), ("complete", pa.int8())])
# The store's open installations, narrow. Removed rows are not read (their number grows with
# every day of history): a file row whose key is only there removed is staged like a new
# one, and the update reopens it.
OPEN_INSTALLS = select(
    Installation.id,
    Installation.device_id,
    Installation.install_key,
    Installation.row_hash,
    literal(1).label("open"),
).where(Installation.removed_at.is_(None))
INSTALLS_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("device_id", pa.int64()),
        ("install_key", pa.string()),
        ("row_hash", pa.string()),
        ("open", pa.int8()),
    ]
)
# what the diff compares the file with: the installs with their device's completeness
STORED_SCHEMA = INSTALLS_SCHEMA.remove(1).append(pa.field("complete", pa.int8()))


def read_stored(session: Session) -> pa.Table:
    """The store's installations of the file's devices, narrow (STORED_SCHEMA).

    When the file covers a quarter of the devices or more (a daily full inventory) the whole
    table is read and filtered here: on the 2M-row reference store, joining the rows to the
    devices in the database cost more (1.8 s) than reading the rows of other devices."""
    devices = read_table(session, FILE_DEVICES, FILE_DEVICES_SCHEMA)
    query = OPEN_INSTALLS
    if devices.num_rows * 4 < session.execute(select(func.count()).select_from(Device)).scalar():
        query = query.where(Installation.device_id.in_(FILE_DEVICES.with_only_columns(Device.id)))
    rows = read_table(session, query, INSTALLS_SCHEMA)
    at = pc.index_in(rows["device_id"], value_set=devices["id"])  # null: another device
    if at.null_count:
        listed = pc.is_valid(at)
        rows, at = rows.filter(listed), at.filter(listed)
    complete = pc.take(devices["complete"], at)
    return pa.table([*rows.drop_columns("device_id").columns, complete], schema=STORED_SCHEMA)


# open rows of complete devices the file no longer lists (their ids staged). PostgreSQL: an
# array, so the rows are found by primary key whatever the planner guesses of removed_at (as
# a join it went over all 2M rows: 3.1 s against 0.4 s)
REMOVE_ABSENT_SQL = {
    "postgresql": """
        UPDATE installation SET removed_at = :now, last_seen = :now
        WHERE removed_at IS NULL AND id = ANY(ARRAY(SELECT id FROM stage_removed))
    """,
    "sqlite": """
        UPDATE installation SET removed_at = :now, last_seen = :now
        WHERE removed_at IS NULL AND id IN (SELECT id FROM stage_removed)
    """,
}


def _comparable(file_values: pd.Series, stored_values: pa.ChunkedArray) -> list:
    """Both as 64-bit integers when they are (the scan's keys and hashes are decimal 64-bit
    hashes: looking 2M of them up is ~2x faster than as text), else both as text."""
    pair = [pa.array(file_values, pa.string()), stored_values]
    try:
        return [pc.cast(values, pa.uint64()) for values in pair]
    except pa.ArrowInvalid:  # a key written some other way (tests, imports): compare text
        return pair


def diff_installs(
    installs: pd.DataFrame, stored: pa.Table, snapshot: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the file's rows that change the store, ids of stored rows to mark removed
    because a complete snapshot no longer lists them). Pure, vectorised in Arrow.

    A present row changes the store when its key is new, its row_hash differs or the stored
    row was removed; a removed row when the store has it open. Everything else (~96% of a
    daily inventory) is left alone."""
    keys, stored_keys = _comparable(installs["install_key"], stored["install_key"])
    at = pc.index_in(keys, value_set=stored_keys)  # null: not in the store
    hashes, stored_hashes = _comparable(installs["row_hash"], stored["row_hash"])
    same = pc.equal(hashes, pc.take(stored_hashes, at))
    is_open = pc.equal(pc.take(stored["open"], at), 1)
    unchanged = pc.fill_null(pc.and_(same, is_open), False).to_numpy(zero_copy_only=False)
    still_open = pc.fill_null(is_open, False).to_numpy(zero_copy_only=False)
    change = installs["change"].to_numpy()
    write = np.where(change == "removed", still_open, ~unchanged)
    if not snapshot:
        return write, np.empty(0, dtype="int64")
    listed = np.zeros(stored.num_rows, dtype=bool)
    listed[pc.drop_null(at).to_numpy()] = True
    open_complete = pc.and_(pc.equal(stored["open"], 1), pc.equal(stored["complete"], 1))
    absent = open_complete.to_numpy(zero_copy_only=False) & ~listed
    return write, stored["id"].to_numpy()[absent]


def apply_staged(session: Session, staged: StagedInstalls, now: dt.datetime) -> Delta:
    """Apply one staged file in the caller's transaction; returns what changed."""
    postgres = session.get_bind().dialect.name == "postgresql"
    create_staging(session)
    devices = staged.devices.copy()
    devices["seen_at"] = pd.to_datetime(devices["seen_at"].fillna(pd.Timestamp(now)), utc=True)
    bulk_load(session, "stage_device", devices)
    if postgres:
        # temp tables have no statistics until analysed: without them the planner picks
        # nested loops over the store's 2M installations
        session.execute(text("ANALYZE stage_device"))
    params = {"now": now, "source": staged.installs["source"].iloc[0]}
    delta = Delta(devices_seen=len(devices))

    delta.devices_new = session.execute(
        text(
            """
            INSERT INTO device (hostname, serial, os, primary_user_email, source,
                                first_seen, last_seen)
            SELECT s.hostname, s.serial, s.os, s.primary_user_email, :source, :now, s.seen_at
            FROM stage_device s
            WHERE NOT EXISTS (SELECT 1 FROM device d WHERE d.hostname = s.hostname)
            """
        ),
        params,
    ).rowcount
    session.execute(
        text(
            """
            UPDATE device SET
                last_seen = CASE WHEN device.last_seen IS NULL OR s.seen_at > device.last_seen
                                 THEN s.seen_at ELSE device.last_seen END,
                serial = COALESCE(s.serial, device.serial),
                os = COALESCE(s.os, device.os),
                primary_user_email = COALESCE(s.primary_user_email, device.primary_user_email)
            FROM stage_device s WHERE device.hostname = s.hostname
            """
        )
    )

    if postgres:  # the diff reads, then writes: no other writer in between (SQLite: the
        # device writes above already hold the database's write lock)
        session.execute(text("LOCK TABLE installation IN SHARE ROW EXCLUSIVE MODE"))
    stored = read_stored(session)
    write, absent_ids = diff_installs(staged.installs, stored, staged.snapshot)
    bulk_load(session, "stage_install", staged.installs[write])
    bulk_load(session, "stage_removed", pd.DataFrame({"id": absent_ids}))
    session.execute(text("CREATE INDEX ix_stage_install_key ON stage_install (install_key)"))
    if postgres:
        _execute_script(session, "ANALYZE stage_install; ANALYZE stage_removed")
    index_driven = postgres and int(write.sum()) + len(absent_ids) < stored.num_rows // 10
    if index_driven:
        # A daily delta is a few percent of the store: each write finds its rows through
        # installation's indexes (install_key, id). Left to itself the planner, often without
        # statistics for a table filled by one big load, hashed all 2M rows per statement
        # (2M-row reference store: the writes took 6.2 s, 3.1 s this way).
        _execute_script(
            session, "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
        )

    delta.new = session.execute(
        text(
            """
            INSERT INTO installation (install_key, device_id, raw_title, publisher, version,
                normalized_title, product_id, source, install_date, row_hash,
                first_seen, last_seen)
            SELECT s.install_key, d.id, s.raw_title, s.publisher, s.version,
                s.normalized_title, s.product_id, s.source, s.install_date, s.row_hash,
                :now, :now
            FROM stage_install s JOIN device d ON d.hostname = s.hostname
            WHERE s.change = 'present'
              AND NOT EXISTS (SELECT 1 FROM installation i WHERE i.install_key = s.install_key)
            """
        ),
        params,
    ).rowcount
    delta.changed = session.execute(
        text(
            """
            UPDATE installation SET version = s.version, normalized_title = s.normalized_title,
                product_id = s.product_id, source = s.source, install_date = s.install_date,
                row_hash = s.row_hash, last_seen = :now, removed_at = NULL
            FROM stage_install s
            WHERE installation.install_key = s.install_key AND s.change = 'present'
              AND (installation.row_hash <> s.row_hash OR installation.removed_at IS NOT NULL)
              AND installation.first_seen < :now
            """
        ),
        params,
    ).rowcount
    removed_named = session.execute(
        text(
            """
            UPDATE installation SET removed_at = :now, last_seen = :now
            FROM stage_install s
            WHERE installation.install_key = s.install_key AND s.change = 'removed'
              AND installation.removed_at IS NULL
            """
        ),
        params,
    ).rowcount
    removed_absent = session.execute(
        text(REMOVE_ABSENT_SQL["postgresql" if postgres else "sqlite"]), params
    ).rowcount
    delta.removed = removed_named + removed_absent
    if index_driven:
        _execute_script(session, "RESET enable_hashjoin; RESET enable_mergejoin")
    _execute_script(
        session, "DROP TABLE stage_install; DROP TABLE stage_device; DROP TABLE stage_removed"
    )
    return delta


def product_ids(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Product.code, Product.id)).tuples().all())


def recognition_rate(session: Session) -> float | None:
    """Share of open installations recognised as a catalog product."""
    total, matched = session.execute(
        text("SELECT COUNT(*), COUNT(product_id) FROM installation WHERE removed_at IS NULL")
    ).one()
    return None if not total else matched / total


# --- compliance flags from what is installed ---------------------------------------------

FLAG_SQL = text(
    """
    WITH installed AS (
        SELECT i.product_id, COUNT(DISTINCT i.device_id) AS devices,
               COUNT(DISTINCT d.primary_user_email) AS users
        FROM installation i JOIN device d ON d.id = i.device_id
        WHERE i.removed_at IS NULL AND i.product_id IS NOT NULL
        GROUP BY i.product_id
    ), entitled AS (
        SELECT product_id, COUNT(*) AS contracts, SUM(seats) AS seats,
               SUM(CASE WHEN seats IS NULL THEN 1 ELSE 0 END) AS unlimited,
               MAX(unit_cost) AS unit_cost
        FROM contract WHERE start_date <= :today AND end_date >= :today
        GROUP BY product_id
    )
    SELECT p.id AS product_id, p.code AS product_code, p.name AS product_name,
           v.name AS vendor, p.metric, p.classification,
           ins.devices AS installed_devices, ins.users AS installed_users,
           COALESCE(e.contracts, 0) AS contracts, e.seats, COALESCE(e.unlimited, 0) AS unlimited,
           e.unit_cost
    FROM installed ins JOIN product p ON p.id = ins.product_id
    LEFT JOIN vendor v ON v.id = p.vendor_id
    LEFT JOIN entitled e ON e.product_id = p.id
    WHERE p.classification IN ('commercial', 'denied')
    """
)


def compliance_flags(installed: pd.DataFrame) -> pd.DataFrame:
    """Products installed without the right to be: the rule, as a plain function.

    - denied software installed anywhere: unauthorised;
    - a commercial product with no contract in force: unlicensed (every install);
    - a per-device product installed on more devices than its seats: unlicensed (the excess).
    Returns one row per flagged product with kind, excess installs and the reason.
    """
    rows = []
    for row in installed.itertuples(index=False):  # one row per product, not per install
        if row.classification == "denied":
            kind, excess = "unauthorised_software", row.installed_devices
            reason = "denied software is installed"
        elif row.contracts == 0:
            kind, excess = "unlicensed_install", row.installed_devices
            reason = "commercial product installed with no contract in force"
        elif (
            row.metric == "per_device"
            and not row.unlimited
            and row.seats is not None
            and not pd.isna(row.seats)
            and row.installed_devices > row.seats
        ):
            kind, excess = "unlicensed_install", row.installed_devices - int(row.seats)
            reason = f"installed on {row.installed_devices} devices, {int(row.seats)} seats owned"
        else:
            continue
        rows.append({**row._asdict(), "kind": kind, "excess": int(excess), "reason": reason})
    columns = [*installed.columns, "kind", "excess", "reason"]
    return pd.DataFrame(rows, columns=columns).sort_values("excess", ascending=False)


def write_flag_alerts(session: Session, flags: pd.DataFrame, now: dt.datetime) -> list[str]:
    """One open alert per flagged product; cleared flags get resolved. Returns the product
    codes flagged for the first time (no open alert before this run)."""
    from schemas.store import Alert

    open_alerts = session.execute(
        select(Alert).where(
            Alert.kind.in_(["unlicensed_install", "unauthorised_software"]),
            Alert.resolved_at.is_(None),
        )
    ).scalars()
    open_by_key = {(a.kind, a.product_id): a for a in open_alerts}
    new_codes = []
    for row in flags.itertuples(index=False):
        if (row.kind, row.product_id) in open_by_key:
            open_by_key.pop((row.kind, row.product_id))
            continue
        session.add(
            Alert(
                kind=row.kind,
                dedupe_key=f"{row.kind}:{row.product_code}:{now:%Y-%m-%dT%H:%M:%S}",
                subject=f"{row.product_name}: {row.reason}",
                product_id=row.product_id,
                payload={"excess": row.excess, "installed_devices": row.installed_devices},
                created_at=now,
            )
        )
        new_codes.append(row.product_code)
    for alert in open_by_key.values():  # the condition is gone
        alert.resolved_at = now
    return new_codes
