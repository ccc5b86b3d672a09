"""The shared file reading and validation every feed goes through."""

import pandera.pandas as pa
import pytest
from pandera.typing import Series
from sqlalchemy import func, select

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from schemas.store import IngestionRun, RejectedRow
from tasks.feeds import (
    already_applied,
    file_checksum,
    read_csv_strict,
    record_ingestion,
    refuse_if_too_many,
    validate_frame,
)


class Seats(pa.DataFrameModel):
    code: Series[str] = pa.Field(unique=True)
    seats: Series[int] = pa.Field(ge=0, coerce=True)
    metric: Series[str] = pa.Field(isin=["per_user", "site"])


def write(tmp_path, name, content, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return path


def test_reads_bom_semicolons_and_numbers_rows(tmp_path):
    path = write(tmp_path, "a.csv", "\ufeffcode;seats;metric\nA;3;site\n B ;4;per_user\n")
    frame = read_csv_strict(path, ["code", "seats", "metric"])
    assert list(frame["code"]) == ["A", "B"]
    assert list(frame["_row"]) == [1, 2]


def test_optional_columns_are_added_empty(tmp_path):
    path = write(tmp_path, "a.csv", "code,seats,metric\nA,3,site\n")
    frame = read_csv_strict(path, ["code"], optional=["note"])
    assert frame["note"].isna().all()


@pytest.mark.parametrize(
    ("content", "encoding", "row", "column", "reason"),
    [
        ("", "utf-8", None, None, "the file is empty"),
        ("code,seats,metric\n", "utf-8", None, None, "no data rows"),
        ("code,seats\nA,1\n", "utf-8", 0, "metric", "required column missing"),
        ("code,seats,metric\nA,1,site\nBé,2,site\n", "latin-1", 2, None, "on line 3"),
        ("code,seats,metric\nA,1,site\nB,2\n", "utf-8", 2, None, "expected 3 fields, found 2"),
    ],
)
def test_bad_files_are_refused_with_the_place(tmp_path, content, encoding, row, column, reason):
    path = write(tmp_path, "bad.csv", content, encoding)
    with pytest.raises(InputRejected) as refused:
        read_csv_strict(path, ["code", "seats", "metric"])
    first = refused.value.errors[0]
    assert (first.row, first.column) == (row, column)
    assert reason in first.reason
    assert "bad.csv" in str(refused.value)


def test_validate_frame_names_row_column_value_reason(tmp_path):
    path = write(
        tmp_path,
        "s.csv",
        "code,seats,metric\nA,3,site\nB,-1,site\nC,x,site\nD,1,floating\nA,1,site\n",
    )
    valid, errors = validate_frame(read_csv_strict(path, ["code"]), Seats, str(path))
    found = {(e.row, e.column, e.value, e.reason) for e in errors}
    assert (2, "seats", "-1", "must be at least 0") in found
    assert (3, "seats", "x", "is not a valid whole number") in found
    assert any(r == 4 and c == "metric" and "must be one of" in why for r, c, _, why in found)
    assert {(1, "code"), (5, "code")} <= {(e.row, e.column) for e in errors}
    assert list(valid["code"]) == []  # every remaining row was a duplicate or bad


def test_validate_frame_keeps_good_rows_coerced(tmp_path):
    path = write(tmp_path, "s.csv", "code,seats,metric\nA,3,site\nB,-1,site\n")
    valid, errors = validate_frame(read_csv_strict(path, ["code"]), Seats, str(path))
    assert list(valid["code"]) == ["A"] and valid["seats"].tolist() == [3]
    assert len(errors) == 1
    with pytest.raises(InputRejected, match="1 of 2 rows rejected"):
        refuse_if_too_many(str(path), 2, errors, threshold=0.05)
    refuse_if_too_many(str(path), 2, errors, threshold=0.5)


def test_ingestion_ledger(engine, tmp_path):
    path = write(tmp_path, "s.csv", "code\nA\n")
    checksum = file_checksum(path)
    with unit_of_work(engine) as session:
        assert not already_applied(session, "contracts", checksum)
        from licenseflow.errors import RowError

        record_ingestion(
            session, "contracts", path, checksum, "csv", 2, 1, [RowError("s", 2, "c", "v", "bad")]
        )
    with unit_of_work(engine) as session:
        assert already_applied(session, "contracts", checksum)
        assert not already_applied(session, "installs", checksum)
        assert session.scalar(select(func.count()).select_from(RejectedRow)) == 1
        assert session.scalar(select(IngestionRun.rows_rejected)) == 1
