"""Validation of bulk files: one file per kind of bad input (tests/data/bulk/), each refused
with the exact row, column, value and reason, the batch recorded as invalid, and the store's
seats untouched; on SQLite and PostgreSQL. Plus what must pass: BOM and semicolons, an
override for capacity, and the impact preview computed by hand."""

from __future__ import annotations

import csv

import pytest
from test_bulk_world import BULK_DATA, build_world, seat_state, store_fingerprint

from licenseflow.db import unit_of_work
from licenseflow.errors import BatchStateError
from tasks.bulk import submit
from tasks.bulk_state import get_batch

PILOT_VALUES = "['yes', 'y', 'true', '1', 'x', 'no', 'n', 'false', '0']"
E3_OVER = (
    "MS-M365-E3: 5 seats in use after this batch, 4 owned (1 over, 3 in use now); remove "
    "assignments, buy seats, or give an override reason"
)
BAD_FILES = {
    "bad_encoding": [
        (
            2,
            None,
            None,
            "not UTF-8 text (byte 0xe9 on line 3); save the file as UTF-8 (Excel: 'CSV UTF-8')",
        )
    ],
    "missing_column": [
        (
            0,
            "product_code",
            None,
            "required column missing (the header has: action, product, user, device, pilot, note)",
        )
    ],
    "wrong_field_count": [
        (2, None, "assign,MS-VISIO-PLAN2,dan@example.com,,", "expected 6 fields, found 5")
    ],
    "duplicate_rows": [(3, None, None, "duplicate of row 1 (same action, product and user)")],
    "missing_fields": [
        (1, "product_code", None, "a value is required"),
        (2, "user", None, "give a user or a device"),
        (3, "device", "pc-2", "give a user or a device, not both"),
        (4, "action", None, "a value is required"),
    ],
    "bad_action": [
        (2, "action", "transfer", "must be one of ['assign', 'revoke']"),
        (3, "pilot", "maybe", f"must be one of {PILOT_VALUES}"),
    ],
    "unknown_product": [
        (2, "product_code", "MS-VISIO-PLAN3", "no product with this code in the store")
    ],
    "unknown_user": [
        (2, "user", "zoe@example.com", "no person with this email or employee id"),
        (3, "user", "E-404", "no person with this email or employee id"),
    ],
    "terminated_user": [
        (
            2,
            "user",
            "eve@example.com",
            "eve@example.com is terminated since 2026-02-01: no new seats",
        )
    ],
    "unknown_device": [(2, "device", "pc-99", "no device with this hostname")],
    "revoke_not_assigned": [
        (
            2,
            "user",
            "cat@example.com",
            "MS-VISIO-PLAN2 is not assigned to cat@example.com: nothing to revoke",
        ),
        (3, "device", "pc-2", "WINRAR is not assigned to pc-2: nothing to revoke"),
    ],
    "contradictory": [
        (
            3,
            "action",
            "revoke",
            "contradicts row 1: assign and revoke of the same product for the same user; keep "
            "one of them",
        )
    ],
    "over_capacity": [(3, "product_code", "MS-M365-E3", E3_OVER)],
    "pilot_over_capacity": [
        (
            2,
            "product_code",
            "MS-M365-E3",
            "MS-M365-E3: the pilot alone would put 5 seats in use, 4 owned (the revokes that "
            "free seats come after it); make them pilot rows too, choose other pilot rows, or "
            "give an override reason",
        )
    ],
    "wrong_metric": [
        (1, "device", "pc-2", "MS-VISIO-PLAN2 is licensed per user: give a user, not a device"),
        (2, "user", "dan@example.com", "WINRAR is licensed per device: give a device, not a user"),
        (3, "product_code", "UTORRENT", "UTORRENT is denied: it has no seats to assign"),
    ],
}


# what the file alone shows (no store lookup): SQLite is enough; the rest on both databases
FILE_ONLY = {"bad_encoding", "missing_column", "wrong_field_count", "missing_fields", "bad_action"}


@pytest.mark.parametrize("name", sorted(FILE_ONLY))
def test_bad_file_alone_is_refused_with_row_and_reason(sqlite_engine, name):
    check_refused(sqlite_engine, name)


@pytest.mark.parametrize("name", sorted(set(BAD_FILES) - FILE_ONLY))
def test_bad_file_is_refused_with_row_and_reason_and_changes_nothing(engine, name):
    check_refused(engine, name)


def check_refused(engine, name):
    build_world(engine)
    before = store_fingerprint(engine)
    result = submit(engine, BULK_DATA / f"{name}.csv", "alice")

    assert result.state == "invalid"
    assert [(e.row, e.column, e.value, e.reason) for e in result.errors] == BAD_FILES[name]
    assert store_fingerprint(engine) == before
    with unit_of_work(engine) as session:
        batch = get_batch(session, result.batch_id)
        assert batch.state == "invalid"
        assert batch.backup_path is None
    with open(result.error_report, newline="", encoding="utf-8") as handle:
        report = list(csv.DictReader(handle))
    assert [(r["row"], r["reason"]) for r in report] == [
        ("" if row is None else str(row), reason) for row, _, _, reason in BAD_FILES[name]
    ]


def test_bom_and_semicolons_are_read(sqlite_engine):
    build_world(sqlite_engine)
    result = submit(sqlite_engine, BULK_DATA / "good_semicolon_bom.csv", "alice")
    assert (result.state, result.errors) == ("validated", [])
    assert result.impact["adds"] == 1 and result.impact["removes"] == 1


def test_capacity_override_with_a_reason_is_accepted_and_shown(sqlite_engine):
    build_world(sqlite_engine)
    result = submit(
        sqlite_engine,
        BULK_DATA / "over_capacity.csv",
        "alice",
        override_reason="true-up ordered, PO 4711",
    )
    assert result.state == "validated"
    e3 = next(p for p in result.impact["products"] if p["code"] == "MS-M365-E3")
    assert (e3["owned"], e3["before"], e3["after"], e3["over_by"]) == (4, 3, 5, 1)
    with unit_of_work(sqlite_engine) as session:
        assert get_batch(session, result.batch_id).override_reason == "true-up ordered, PO 4711"


def test_blank_override_reason_is_no_override(sqlite_engine):
    build_world(sqlite_engine)
    result = submit(sqlite_engine, BULK_DATA / "over_capacity.csv", "alice", override_reason=" ")
    assert result.state == "invalid"


def test_dry_run_figures_match_a_hand_count(engine):
    """good.csv against the world, by hand:
    VISIO (5 owned, 120/yr): ann, bob + cat, dan - bob (ann already has it) -> 2 -> 3, +120
    E3 (4 owned, 360/yr): ann, bob, cat + dan - cat -> 3 -> 3, 0
    WINRAR (3 owned, 30/yr): pc-1 + pc-2 - pc-1 -> 1 -> 1, 0
    MATLAB (concurrent, not priced per seat): + fay -> 0 -> 1
    people whose seats change: cat, dan, bob, fay = 4; devices: pc-2, pc-1 = 2
    rows: 9 = 5 adds + 3 removes + 1 already in place."""
    build_world(engine)
    before = seat_state(engine)
    result = submit(engine, BULK_DATA / "good.csv", "alice", dry_run=True)
    impact = result.impact
    assert (impact["rows"], impact["adds"], impact["removes"], impact["no_change"]) == (9, 5, 3, 1)
    assert (impact["people_affected"], impact["devices_affected"]) == (4, 2)
    assert impact["cost_change"] == {"EUR": "120.00"}
    table = {
        p["code"]: (p["owned"], p["before"], p["after"], p["cost_change"])
        for p in impact["products"]
    }
    assert table == {
        "MS-VISIO-PLAN2": (5, 2, 3, "120.00"),
        "MS-M365-E3": (4, 3, 3, "0.00"),
        "WINRAR": (3, 1, 1, "0.00"),
        "MATHWORKS-MATLAB": (None, 0, 1, None),
    }
    assert seat_state(engine) == before


def test_pilot_rows_are_the_marked_ones_or_the_first_n(sqlite_engine):
    from tasks.bulk_state import load_rows

    build_world(sqlite_engine)
    marked = submit(sqlite_engine, BULK_DATA / "good.csv", "alice", pilot_size=5)
    unmarked = submit(sqlite_engine, BULK_DATA / "good_semicolon_bom.csv", "alice", pilot_size=1)
    with unit_of_work(sqlite_engine) as session:
        assert list(load_rows(session, marked.batch_id).query("pilot")["row_number"]) == [1, 6]
        assert list(load_rows(session, unmarked.batch_id).query("pilot")["row_number"]) == [1]


def test_same_file_while_waiting_or_applied_is_refused(sqlite_engine):
    from tasks.bulk import back_up

    build_world(sqlite_engine)
    first = submit(sqlite_engine, BULK_DATA / "good.csv", "alice")
    again = submit(sqlite_engine, BULK_DATA / "good.csv", "alice")  # validated only: fine
    assert again.state == "validated"
    back_up(sqlite_engine, first.batch_id)
    with pytest.raises(BatchStateError, match=f"already submitted as batch {first.batch_id}"):
        submit(sqlite_engine, BULK_DATA / "good.csv", "alice")


def test_error_report_cells_cannot_run_as_formulas(sqlite_engine, tmp_path):
    build_world(sqlite_engine)
    path = tmp_path / "evil.csv"
    path.write_text('action,product_code,user\nassign,MS-VISIO-PLAN2,"=HYPERLINK(""x"")"\n')
    result = submit(sqlite_engine, path, "alice")
    with open(result.error_report, newline="", encoding="utf-8") as handle:
        report = list(csv.DictReader(handle))
    assert [(r["row"], r["value"]) for r in report] == [("1", '\'=HYPERLINK("x")')]
