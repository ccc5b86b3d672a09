"""The one way to open the store: engine, sessions, a unit of work, migrations, and the fast
bulk paths in and out of it (bulk_load, read_table)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Engine, Select, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from licenseflow.settings import PROJECT_ROOT, get_settings

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
_READ_ONLY = "licenseflow_read_only"  # execution option of read_only() connections


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # Take the write lock at BEGIN so two writers serialise instead of failing mid-way
    # (this is what makes "two callers take the last seat: one wins" hold on SQLite).
    # A read_only() transaction begins deferred: a WAL snapshot that blocks no writer, and
    # query_only makes any write in it fail (pooled connections: set on every BEGIN).
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def get_engine(url: str | None = None) -> Engine:
    """Engine for `url` (default: the configured store). Cached per URL."""
    # resolve before the cache: a cache keyed on None kept the first store for the process
    return _engine_for(url or get_settings().store_url)


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "isolation_level": None}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: commits when the block ends, rolls back on any exception."""
    engine = engine or get_engine()
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session


@contextmanager
def read_only(engine: Engine | None = None) -> Iterator[Session]:
    """One read-only transaction over a consistent snapshot of the store, for long reads
    (reconciliation, the quarterly report, `slm position`) that must not keep the daily flows
    waiting: on SQLite a deferred BEGIN (WAL: readers never block the writer) instead of the
    write lock; on PostgreSQL REPEATABLE READ, READ ONLY (one snapshot for every statement).
    Writing in it fails."""
    engine = engine or get_engine()
    options: dict = {_READ_ONLY: True}
    if is_postgres(engine):
        options |= {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect() as connection:
        connection = connection.execution_options(**options)
        with Session(connection) as session, session.begin():
            yield session


def alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine | None = None) -> None:
    """Bring the store's schema to the newest migration (what `slm init` does)."""
    from alembic import command

    command.upgrade(alembic_config(engine or get_engine()), "head")


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:
            return None


IN_LIST_SIZE = 10_000  # values per IN (...) list: under SQLite's (32766) and PostgreSQL's
# (65535) bind-parameter limits


def chunks(values: Iterable, size: int = IN_LIST_SIZE) -> Iterator[list]:
    """values in lists of at most `size`, for IN (...) lists within the drivers' limits."""
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def bulk_load(session: Session, table: str, frame: pd.DataFrame) -> None:
    """The fastest way each database takes rows: COPY on PostgreSQL, one executemany on
    SQLite. This is also the 'bare load' the benchmark compares the whole scan against.
    Datetime columns go to SQLite as the text SQLAlchemy keeps them in."""
    session.flush()  # the raw connection sees the session's pending changes too
    raw = session.connection().connection.driver_connection
    columns = ", ".join(frame.columns)
    if session.get_bind().dialect.name == "postgresql":
        buffer = io.BytesIO()
        pacsv.write_csv(
            pa.Table.from_pandas(frame, preserve_index=False),
            buffer,
            pacsv.WriteOptions(include_header=False, quoting_style="needed"),
        )
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy,
        ):
            copy.write(buffer.getbuffer())
        return
    marks = ", ".join("?" * len(frame.columns))
    plain = frame.astype(object).where(frame.notna(), None)
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            plain[column] = _sqlite_timestamps(frame[column])
    raw.executemany(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - fixed names
        plain.itertuples(index=False, name=None),
    )


def _sqlite_timestamps(column: pd.Series) -> list:
    """Timestamps as the text SQLAlchemy keeps a DateTime in on SQLite (UTC, microseconds),
    formatted in numpy (strftime per value took seconds for 330k rows); None for NaT."""
    if column.empty:
        return []
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    text = np.char.replace(
        np.datetime_as_string(column.to_numpy("datetime64[us]"), unit="us"), "T", " "
    )
    missing = column.isna().tolist()
    return [None if gone else value for value, gone in zip(text.tolist(), missing, strict=True)]


def read_table(session: Session, query: str | Select, schema: pa.Schema) -> pa.Table:
    """A query's rows as an Arrow table, the fastest way each database gives them: COPY TO
    on PostgreSQL (no Python object per value), the raw cursor on SQLite. A Select is
    rendered with its values inline (quoted by SQLAlchemy), as COPY takes no parameters."""
    session.flush()
    if isinstance(query, Select):
        dialect = session.get_bind().dialect
        query = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    raw = session.connection().connection.driver_connection
    if session.get_bind().dialect.name == "postgresql":
        buffer = io.BytesIO()
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy,
        ):
            for block in copy:
                buffer.write(block)
        buffer.seek(0)
        if not buffer.getbuffer().nbytes:
            return schema.empty_table()
        return pacsv.read_csv(
            buffer,
            pacsv.ReadOptions(column_names=schema.names),
            convert_options=pacsv.ConvertOptions(column_types=schema),
        )
    rows = raw.execute(query).fetchall()
    columns = list(zip(*rows, strict=True)) or [[] for _ in schema]
    return pa.table(
        [pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )
