"""Shared pieces of the synthetic-enterprise generator: the company's parameters, seeded
random streams, and fast vectorised writers (GUIDs, dates, CSV with pyarrow, text lines).

Every step draws from its own random stream (`stream(company, "people")`), so changing one
step never shifts the numbers another step draws, and a seed always gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

DOMAIN = "example.com"
EPOCH = dt.date(1970, 1, 1)
DAY = 86_400


@dataclass(frozen=True)
class Company:
    """What to generate. `date` is the data's "today"; usage covers the `days` before it."""

    people: int = 500
    devices: int = 600
    date: dt.date = dt.date(2026, 11, 23)
    days: int = 120
    seed: int = 7
    usage_rate: float = 0.3  # usage events per active person per working day
    installs_per_device: float = 20.0  # mean installed titles per device
    tail_products: int = 0  # synthetic "Vendor N Product M" products in the long tail

    @property
    def today(self) -> int:
        """`date` as days since 1970-01-01."""
        return (self.date - EPOCH).days


def stream(company: Company, step: str) -> np.random.Generator:
    """The random stream of one generation step."""
    return np.random.default_rng([company.seed, zlib.crc32(step.encode())])


def width(count: int) -> int:
    """Digits of a running number (WS-0001 for up to 9,999 devices, WS-00001 beyond)."""
    return max(4, len(str(max(count, 1))))


def fixed_strings(chars: np.ndarray) -> pa.Array:
    """Rows of a (n, k) uint8 array of ASCII codes as n strings of k characters."""
    n, k = chars.shape
    offsets = (np.arange(n + 1, dtype=np.int32) * k).tobytes()
    data = np.ascontiguousarray(chars, dtype=np.uint8).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def numbered(prefix: str, numbers: np.ndarray, digits: int) -> pa.Array:
    """prefix + zero-padded numbers, e.g. WS-0001 (vectorised, no Python string per row)."""
    numbers = np.asarray(numbers, dtype="int64")
    powers = 10 ** np.arange(digits - 1, -1, -1, dtype="int64")
    body = (numbers[:, None] // powers) % 10 + ord("0")
    head = np.broadcast_to(
        np.frombuffer(prefix.encode(), dtype=np.uint8), (len(numbers), len(prefix))
    )
    return fixed_strings(np.hstack([head, body.astype(np.uint8)]))


def guids(rng: np.random.Generator, n: int, *, upper: bool = False) -> pa.Array:
    """n random version-4 GUIDs as text (vectorised)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    alphabet = b"0123456789ABCDEF" if upper else b"0123456789abcdef"
    digits = np.frombuffer(alphabet, dtype=np.uint8)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = digits[raw >> 4]
    hexed[:, 1::2] = digits[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        out[:, at : at + stop - start] = hexed[:, start:stop]
    return fixed_strings(out)


def frame(columns: dict) -> pd.DataFrame:
    """A DataFrame whose text columns stay Arrow-backed (no Python string per row)."""
    return pd.DataFrame(
        {
            name: pd.arrays.ArrowStringArray(values) if isinstance(values, pa.Array) else values
            for name, values in columns.items()
        }
    )


def categories(codes: np.ndarray, labels) -> pd.Categorical:
    """Integer codes as a categorical of the given labels."""
    return pd.Categorical.from_codes(np.asarray(codes, dtype="int64"), categories=list(labels))


def pick(values, index: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """values[index] as Arrow text (null where `missing`)."""
    index = pa.array(np.asarray(index, dtype="int64"), mask=missing)
    return text(values).take(index)


def iso_day(day: int) -> str:
    """Days since 1970 as YYYY-MM-DD."""
    return (EPOCH + dt.timedelta(days=int(day))).isoformat()


def days_text(days: np.ndarray, fmt: str = "%Y-%m-%d") -> pa.Array:
    """Days since 1970 as text (each distinct day formatted once, then taken)."""
    days = np.asarray(days, dtype="int64")
    if len(days) == 0:
        return pa.array([], type=pa.string())
    low = int(days.min())
    span = np.arange(low, int(days.max()) + 1, dtype="int64")
    labels = pc.strftime(pa.array(span * DAY).cast(pa.timestamp("s", tz="UTC")), format=fmt)
    return labels.take(pa.array(days - low))


def times_text(seconds: np.ndarray, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> pa.Array:
    """Unix seconds (UTC) as text; `fmt` holds "%H:%M:%S" once. The date parts are formatted
    once per distinct day and the clock taken from a table (Arrow's strftime per row is
    slow)."""
    seconds = np.asarray(seconds, dtype="int64")
    day, clock = np.divmod(seconds, DAY)
    before, after = fmt.split("%H:%M:%S")
    parts = [days_text(day, before) if before else "", _clock().take(pa.array(clock))]
    parts.append(days_text(day, after) if after else "")
    return join(*parts)


_CLOCK: list[pa.Array] = []


def _clock() -> pa.Array:
    """HH:MM:SS for every second of a day."""
    if not _CLOCK:
        t = np.arange(DAY)
        digits = [t // 36000, t // 3600 % 10, t // 600 % 6, t // 60 % 10, t // 10 % 6, t % 10]
        chars = np.full((DAY, 8), ord(":"), dtype=np.uint8)
        for column, value in zip((0, 1, 3, 4, 6, 7), digits, strict=True):
            chars[:, column] = value + ord("0")
        _CLOCK.append(fixed_strings(chars))
    return _CLOCK[0]


def text(values) -> pa.Array:
    """Any array or Series of strings (None = empty cell) as an Arrow string array."""
    if isinstance(values, pd.Series):
        values = pa.array(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
    if pa.types.is_dictionary(values.type) or values.type == pa.large_string():
        values = values.cast(pa.string())
    return values


def join(*parts, null_as: str | None = None) -> pa.Array:
    """Element-wise concatenation of text arrays and scalars (a null part gives null unless
    null_as replaces it)."""
    arrays = []
    for part in parts:
        if isinstance(part, str):
            arrays.append(pa.scalar(part))
        else:
            array = text(part)
            arrays.append(array if null_as is None else pc.fill_null(array, null_as))
    return pc.binary_join_element_wise(*arrays, "")


def write_csv(path: Path, columns: dict, *, bom: bool = False) -> int:
    """Write columns (name -> array) as CSV: the header as given, values quoted where needed,
    empty cells for nulls. Returns the number of data rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: text(values) for name, values in columns.items()})
    with open(path, "wb") as handle:
        if bom:
            handle.write(b"\xef\xbb\xbf")
        handle.write((",".join(columns) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, batch_size=64 * 1024)
        pacsv.write_csv(table, handle, write_options=options)
    return table.num_rows


def write_text(path: Path, pieces: pa.Array, *, head: str = "", tail: str = "") -> None:
    """Write head, every piece back to back, then tail (pieces carry their own separators).
    The Arrow data buffer of each chunk is written as it is: no Python string per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(head.encode())
        step = 1 << 19
        for start in range(0, len(pieces), step):
            chunk = pa.concat_arrays([text(pieces).slice(start, step)])  # own offsets
            offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[: len(chunk) + 1]
            data = chunk.buffers()[2]
            if data is not None:
                handle.write(memoryview(data)[offsets[0] : offsets[-1]])
        handle.write(tail.encode())


def json_text(values) -> pa.Array:
    """Text values as JSON string literals (quotes and backslashes escaped; null -> null)."""
    array = text(values)
    escaped = pc.replace_substring(array, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    quoted = pc.binary_join_element_wise(pa.scalar('"'), escaped, pa.scalar('"'), "")
    return pc.fill_null(quoted, "null")


def sample_weighted(
    rng: np.random.Generator, weights: np.ndarray, k: int, *, replace: bool = False
) -> np.ndarray:
    """k indices drawn with probability proportional to weights (without replacement: at
    most the number of non-zero weights)."""
    weights = np.asarray(weights, dtype="float64")
    positive = int((weights > 0).sum())
    k = min(k, positive) if not replace else k
    if k <= 0 or positive == 0:
        return np.zeros(0, dtype="int64")
    return np.sort(rng.choice(len(weights), size=k, replace=replace, p=weights / weights.sum()))
