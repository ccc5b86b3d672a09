"""What the reconciliation reads from the store (set-based: one aggregate query per fact, no
per-row round trips) and the snapshots it keeps for drift.

Everything is read as it stood at the END of the date (before the next midnight, UTC), from
history: seats open then (assignment.assigned_at / revoked_at), installations present then
(first_seen / removed_at), contracts in force, people's status then (person_status_history),
usage and concurrent peaks up to that day. What has no history is read as it is now: a
person's cost center and department, a device's cores and primary user.
"""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from schemas.store import Product, ReconciliationSnapshot
from tasks.reconciliation import Facts, Rules, window_start

SNAPSHOT_FIELDS = [
    "entitled",
    "consumed",
    "assigned",
    "installed",
    "active",
    "shortfall",
    "surplus",
    "reclaimable",
    "true_up_cost",
    "waste",
]


def end_of_day(day: dt.date) -> dt.datetime:
    """The first moment after `day` (UTC): "as of the day" means strictly before it."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


# --- reading big results fast ------------------------------------------------------------------
# SQLAlchemy builds a Row object per result row (about 20 us each here): for the 2M
# installations and the 400k seats of the reference enterprise that alone takes a minute.
# These reads go to the DBAPI cursor of the session's own connection (same transaction) with
# plain SQL and named parameters, and build the frame from the tuples in one go.

_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite


def _sqlite_value(value):
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime(_SQLITE_DATETIME)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def fetch_frame(session: Session, sql: str, columns: list[str], **params) -> pd.DataFrame:
    """Run `sql` (named parameters written :name) in the session's transaction and return
    its rows as a frame with `columns`. Dates and datetimes come back as the driver gives
    them (SQLite: text); convert with pd.to_datetime."""
    connection = session.connection()
    raw = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        cursor = raw.cursor()
        cursor.execute(re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql), params)
    else:
        cursor = raw.execute(sql, {k: _sqlite_value(v) for k, v in params.items()})
    rows = cursor.fetchall()
    cursor.close()
    return pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _ints(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.array(frame[column].astype(object), dtype="Int64")
    return frame


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, format="ISO8601")


def _days(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.astype("string").str.slice(0, 10), format="%Y-%m-%d")


def read_products(session: Session) -> pd.DataFrame:
    """Commercial products (freeware and denied software have no position)."""
    frame = fetch_frame(
        session,
        """
        SELECT p.id, p.code, p.name, v.name, p.metric, p.inactivity_days
        FROM product p LEFT JOIN vendor v ON v.id = p.vendor_id
        WHERE p.classification = 'commercial'
        """,
        ["product_id", "product_code", "product_name", "vendor", "metric", "inactivity_days"],
    )
    return _ints(frame, "product_id", "inactivity_days")


def read_contracts(session: Session) -> pd.DataFrame:
    frame = fetch_frame(
        session,
        "SELECT product_id, seats, unit_cost, currency, start_date, end_date FROM contract",
        ["product_id", "seats", "unit_cost", "currency", "start_date", "end_date"],
    )
    frame["unit_cost"] = pd.to_numeric(frame["unit_cost"].astype(object)).astype("float64")
    for column in ("start_date", "end_date"):
        frame[column] = _days(frame[column]).dt.date
    return _ints(frame, "product_id", "seats")


def read_seats(session: Session, day: dt.date) -> pd.DataFrame:
    """Seats open at the end of `day`."""
    frame = fetch_frame(
        session,
        """
        SELECT product_id, person_id, device_id, assigned_at FROM assignment
        WHERE assigned_at < :end AND (revoked_at IS NULL OR revoked_at >= :end)
        """,
        ["product_id", "person_id", "device_id", "assigned_at"],
        end=end_of_day(day),
    )
    frame["assigned_at"] = _utc(frame["assigned_at"])
    return _ints(frame, "product_id", "person_id", "device_id")


def read_installed(session: Session, day: dt.date, product_ids: pd.Series) -> pd.DataFrame:
    """(product, device) of the installations of `product_ids` present at the end of `day`.
    One sequential scan: the product filter and the deduplication are done in pandas."""
    frame = fetch_frame(
        session,
        """
        SELECT product_id, device_id FROM installation
        WHERE product_id IS NOT NULL AND first_seen < :end
          AND (removed_at IS NULL OR removed_at >= :end)
        """,
        ["product_id", "device_id"],
        end=end_of_day(day),
    )
    frame = frame[frame["product_id"].isin(product_ids)].drop_duplicates()
    return frame.astype("int64").reset_index(drop=True)


_LAST_USE_SQLITE = """
    WITH RECURSIVE holder(id) AS (
        SELECT MIN({key}) FROM usage_daily INDEXED BY uq_usage_daily_{kind}
        WHERE {other} IS NULL AND product_id = :product
        UNION ALL
        SELECT (SELECT MIN({key}) FROM usage_daily INDEXED BY uq_usage_daily_{kind}
                WHERE {other} IS NULL AND product_id = :product AND {key} > holder.id)
        FROM holder WHERE holder.id IS NOT NULL
    )
    SELECT id, (SELECT MAX(day) FROM usage_daily INDEXED BY uq_usage_daily_{kind}
                WHERE {other} IS NULL AND product_id = :product AND {key} = holder.id
                  AND day >= :since AND day <= :day)
    FROM holder WHERE id IS NOT NULL
"""
_LAST_USE = """
    SELECT product_id, {key}, MAX(day) FROM usage_daily
    WHERE {other} IS NULL AND day >= :since AND day <= :day
    GROUP BY product_id, {key}
"""


def _last_use(session: Session, kind: str, product_ids, since: dt.date, day: dt.date):
    """product_id, <kind>_id, last_day: each holder's last use between `since` and `day`."""
    key, other = ("person_id", "device_id") if kind == "person" else ("device_id", "person_id")
    columns = ["product_id", key, "last_day"]
    if not _sqlite(session):
        sql = _LAST_USE.format(key=key, other=other)
        return fetch_frame(session, sql, columns, since=since, day=day)
    # SQLite: a loose index scan per product over the covering unique index (product,
    # holder, day): two index seeks per holder instead of reading every usage row (a
    # GROUP BY reads all 11M rows of a quarter: 5x slower; left to itself SQLite also
    # prefers the day index and sorts)
    sql = _LAST_USE_SQLITE.format(key=key, other=other, kind=kind)
    frames = []
    for product in sorted(int(p) for p in product_ids):
        found = fetch_frame(session, sql, [key, "last_day"], product=product, since=since, day=day)
        found = found[found["last_day"].notna()]
        if len(found):
            frames.append(found.assign(product_id=product)[columns])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def read_usage(session: Session, day: dt.date, since: dt.date, product_ids=None) -> pd.DataFrame:
    """Last use per (product, person) and per (product, device) between `since` and `day`,
    for `product_ids` (None: the products with any usage)."""
    if product_ids is None:
        product_ids = read_metered(session, day)
    people = _ints(_last_use(session, "person", product_ids, since, day), "product_id", "person_id")
    devices = _ints(
        _last_use(session, "device", product_ids, since, day), "product_id", "device_id"
    )
    frame = pd.concat(
        [
            people.assign(device_id=pd.array([pd.NA] * len(people), dtype="Int64")),
            devices.assign(person_id=pd.array([pd.NA] * len(devices), dtype="Int64")),
        ],
        ignore_index=True,
    )
    frame = frame[["product_id", "person_id", "device_id", "last_day"]]
    frame["last_day"] = _days(frame["last_day"])
    return _ints(frame, "product_id", "person_id", "device_id")


def read_metered(session: Session, day: dt.date) -> set[int]:
    """Products with any usage on or before `day` (whose seats can be judged by usage)."""
    frame = fetch_frame(
        session,
        """
        SELECT p.id FROM product p
        WHERE EXISTS (SELECT 1 FROM usage_daily u WHERE u.product_id = p.id AND u.day <= :day)
        """,
        ["product_id"],
        day=day,
    )
    return {int(p) for p in frame["product_id"]}


def read_peaks(session: Session, day: dt.date, since: dt.date) -> pd.DataFrame:
    frame = fetch_frame(
        session,
        "SELECT product_id, day, peak FROM concurrent_peak WHERE day >= :since AND day <= :day",
        ["product_id", "day", "peak"],
        since=since,
        day=day,
    )
    frame["day"] = _days(frame["day"]).dt.date
    return _ints(frame, "product_id", "peak")


def read_people(session: Session, day: dt.date) -> pd.DataFrame:
    """person_id, email, status as of `day`, cost_center, department.

    Status as of the day: the latest status change effective on or before it; a person with
    none is terminated if their termination date is reached, else as the store has them now
    (a termination still ahead of the day counts as active)."""
    people = fetch_frame(
        session,
        """
        SELECT id, email, status, cost_center, department, termination_date FROM person
        """,
        ["person_id", "email", "current", "cost_center", "department", "termination_date"],
    )
    history = fetch_frame(
        session,
        """
        SELECT person_id, status, effective_date, id FROM person_status_history
        WHERE effective_date <= :day
        """,
        ["person_id", "status", "effective_date", "id"],
        day=day,
    )
    history["effective_date"] = _days(history["effective_date"])
    latest = (
        history.sort_values(["person_id", "effective_date", "id"])
        .drop_duplicates("person_id", keep="last")
        .set_index("person_id")["status"]
    )
    left = _days(people["termination_date"])
    reached = (left.notna() & (left <= pd.Timestamp(day))).to_numpy()
    ahead = (left.notna() & (left > pd.Timestamp(day))).to_numpy()
    current = people["current"].astype(object)
    fallback = current.where(~(ahead & (current == "terminated").to_numpy()), "active")
    fallback = fallback.where(~reached, "terminated")
    people["status"] = people["person_id"].map(latest).astype(object).fillna(fallback)
    people = people.drop(columns=["current", "termination_date"])
    return _ints(people, "person_id")


def read_devices(session: Session, people: pd.DataFrame) -> pd.DataFrame:
    """device_id, cores, person_id (the primary user, matched by email case-insensitively)."""
    frame = fetch_frame(
        session,
        "SELECT id, cores, primary_user_email FROM device",
        ["device_id", "cores", "email"],
    )
    by_email = pd.Series(
        people["person_id"].to_numpy(), index=people["email"].astype(str).str.lower().to_numpy()
    )
    by_email = by_email[~by_email.index.duplicated()]
    frame["person_id"] = frame["email"].astype("string").str.lower().map(by_email)
    return _ints(frame.drop(columns=["email"]), "device_id", "cores", "person_id")


def read_facts(session: Session, day: dt.date, rules: Rules = Rules()) -> Facts:
    """Everything the position rules need, as of the end of `day`."""
    products = read_products(session)
    longest = max([rules.window_days, *products["inactivity_days"].dropna().astype(int)])
    since = window_start(day, longest)
    people = read_people(session, day)
    metered = read_metered(session, day)
    commercial = set(products["product_id"].astype(int))
    return Facts(
        day=day,
        products=products,
        contracts=read_contracts(session),
        seats=read_seats(session, day),
        installed=read_installed(session, day, products["product_id"]),
        usage=read_usage(session, day, since, metered & commercial),
        metered=metered,
        peaks=read_peaks(session, day, window_start(day, rules.window_days)),
        people=people,
        devices=read_devices(session, people),
    )


# --- snapshots ------------------------------------------------------------------------------


def write_snapshot(
    session: Session, run_key: str, day: dt.date, taken_at: dt.datetime, position: pd.DataFrame
) -> int:
    """Store the position as run `run_key`'s snapshot (re-running the same key replaces it)."""
    if position.empty:
        return 0
    rows = []
    for record in position.to_dict("records"):
        row = {
            "run_key": run_key,
            "as_of": day,
            "taken_at": taken_at,
            "product_id": int(record["product_id"]),
        }
        for name in SNAPSHOT_FIELDS:
            value = record[name]
            missing = value is None or pd.isna(value)
            if name in ("true_up_cost", "waste"):
                row[name] = 0 if missing else round(float(value), 2)
            else:
                row[name] = None if missing else int(value)
        rows.append(row)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(ReconciliationSnapshot)
    statement = statement.on_conflict_do_update(
        index_elements=["run_key", "product_id"],
        set_={
            name: getattr(statement.excluded, name)
            for name in ["as_of", "taken_at", *SNAPSHOT_FIELDS]
        },
    )
    session.execute(statement, rows)
    return len(rows)


def previous_snapshot(session: Session, run_key: str, day: dt.date) -> pd.DataFrame:
    """The latest snapshot of another run as of `day` or earlier (empty if none):
    run_key, as_of, taken_at, product_code and SNAPSHOT_FIELDS."""
    S = ReconciliationSnapshot
    latest = session.execute(
        select(S.run_key, S.as_of)
        .where(S.run_key != run_key, S.as_of <= day)
        .order_by(S.as_of.desc(), S.taken_at.desc(), S.id.desc())
        .limit(1)
    ).first()
    columns = ["run_key", "as_of", "taken_at", "product_code", *SNAPSHOT_FIELDS]
    if latest is None:
        return pd.DataFrame(columns=columns)
    result = session.execute(
        select(
            S.run_key,
            S.as_of,
            S.taken_at,
            Product.code,
            *(getattr(S, name) for name in SNAPSHOT_FIELDS),
        )
        .join(Product, Product.id == S.product_id)
        .where(S.run_key == latest.run_key)
    )
    return pd.DataFrame(result.all(), columns=columns)
