"""The contracts feed: reading and checking contract files, loading them into the store,
flagging possible duplicate purchases, and the `slm contracts` commands."""

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from licenseflow.commands.contracts import register
from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from schemas.store import Alert, AuditLog, Contract, IngestionRun, Product, RejectedRow, Vendor
from tasks import audit
from tasks.contracts import (
    list_contracts,
    load_contracts,
    load_contracts_task,
    possible_duplicates,
    read_contracts,
)

DATA = Path(__file__).parent / "data" / "contracts"
GOOD_CSV = DATA / "contracts.csv"
GOOD_YAML = DATA / "contracts.yaml"
HEADER = GOOD_CSV.read_text().splitlines()[0]
# contracts.csv by hand: 7 contracts; 6 products (MS-M365-E3 twice); 5 vendors (Microsoft,
# Adobe, MathWorks, win.rar GmbH, Zoom); C-2025-001 and C-2025-007 (both MS-M365-E3) overlap
# from 2026-01-01 to 2026-06-30: 1 alert. Audit: 5 + 6 + 7 creations + 1 alert = 19 entries.
GOOD_COUNTS = {"vendor": 5, "product": 6, "contract": 7, "alert": 1, "audit_log": 19}


def load(engine, path):
    with unit_of_work(engine) as session:
        return load_contracts(session, path)


def counts(engine) -> dict[str, int]:
    tables = {"vendor": Vendor, "product": Product, "contract": Contract, "alert": Alert}
    tables["audit_log"] = AuditLog
    with unit_of_work(engine) as session:
        return {
            name: session.scalar(select(func.count()).select_from(model))
            for name, model in tables.items()
        }


def store_state(engine) -> list[tuple]:
    with unit_of_work(engine) as session:
        frame = list_contracts(session)
    return [tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)]


def contract(engine, number) -> dict:
    with unit_of_work(engine) as session:
        frame = list_contracts(session)
    row = frame[frame["contract"] == number].iloc[0].to_dict()
    return {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in row.items()}


# --- loading into the store -----------------------------------------------------------------


def test_good_csv_gives_the_hand_counted_store(engine):
    result = load(engine, GOOD_CSV)

    assert (result.created, result.updated, result.unchanged) == (7, 0, 0)
    assert not result.skipped_already_applied
    assert counts(engine) == GOOD_COUNTS
    site = contract(engine, "C-2025-006")
    assert (site["metric"], site["seats"], site["currency"]) == ("site", None, "USD")
    assert site["unit_cost"] == Decimal("18000.00") and site["auto_renew"] is True
    winrar = contract(engine, "C-2025-005")  # notice_days left empty, unit_cost "29"
    assert (winrar["notice_days"], winrar["unit_cost"], winrar["seats"]) == (0, Decimal("29"), 200)
    m365 = contract(engine, "C-2025-001")
    assert m365["owner"] == "it-licensing@example.com"  # lower-cased
    assert (m365["start_date"], m365["end_date"]) == (dt.date(2025, 7, 1), dt.date(2026, 6, 30))
    assert contract(engine, "C-2025-003")["owner"] is None  # unowned: accepted
    assert contract(engine, "C-2025-004")["auto_renew"] is True  # "Yes"
    assert contract(engine, "C-2025-007")["metric"] == "per_user"  # "Per_User"
    with unit_of_work(engine) as session:
        run = session.scalars(select(IngestionRun)).one()
        assert (run.feed, run.status, run.rows_read, run.rows_accepted) == (
            "contracts",
            "applied",
            7,
            7,
        )
        assert (
            session.scalar(
                select(func.count()).select_from(Contract).where(Contract.source_run_id == run.id)
            )
            == 7
        )
        assert audit.verify(session).ok


def test_yaml_gives_the_same_store_as_csv(engine):
    from_yaml = load(engine, GOOD_YAML)
    state_yaml, counts_yaml = store_state(engine), counts(engine)

    from_csv = load(engine, GOOD_CSV)

    assert from_yaml.created == 7
    assert (from_csv.created, from_csv.updated, from_csv.unchanged) == (0, 0, 7)
    assert counts_yaml == GOOD_COUNTS
    assert counts(engine) == counts_yaml  # nothing logged: nothing changed
    assert store_state(engine) == state_yaml


def test_reloading_the_same_file_changes_nothing(engine):
    load(engine, GOOD_CSV)
    before, state = counts(engine), store_state(engine)

    again = load(engine, GOOD_CSV)

    assert again.skipped_already_applied
    assert (again.created, again.updated, again.unchanged) == (0, 0, 0)
    assert counts(engine) == before and store_state(engine) == state
    with unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(IngestionRun)) == 1


def test_changed_file_updates_with_before_and_after_and_deletes_nothing(engine, tmp_path):
    load(engine, GOOD_CSV)
    lines = GOOD_CSV.read_text().splitlines()
    # a partial file: C-2025-002 with 150 seats instead of 120, C-2025-003 unchanged
    changed = tmp_path / "contracts-2.csv"
    changed.write_text("\n".join([HEADER, lines[2].replace(",120,", ",150,"), lines[3]]) + "\n")

    result = load(engine, changed)

    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    assert counts(engine) == GOOD_COUNTS | {"audit_log": 20}  # all 7 contracts still there
    assert contract(engine, "C-2025-002")["seats"] == 150
    with unit_of_work(engine) as session:
        entry = session.scalars(select(AuditLog).order_by(AuditLog.id.desc()).limit(1)).one()
    assert (entry.action, entry.entity, entry.entity_id) == ("update", "contract", "C-2025-002")
    assert (entry.before["seats"], entry.after["seats"]) == (120, 150)
    assert {k for k in entry.after if entry.after[k] != entry.before[k]} == {"seats"}


BAD_FILES = [
    ("missing_column.csv", 0, "currency", None, "required column missing"),
    ("wrong_type.csv", 2, "seats", "ten", "is not a valid whole number"),
    ("bad_date.csv", 2, "start_date", "2025-02-30", "is not a valid date written YYYY-MM-DD"),
    ("unknown_metric.csv", 2, "metric", "floating", "must be one of ['per_user', 'per_device'"),
    ("unknown_metric.yaml", 2, "metric", "floating", "must be one of ['per_user', 'per_device'"),
    ("negative_seats.csv", 2, "seats", "-5", "must be greater than 0"),
    # the feeds reader names the file's line (header = line 1) for an encoding problem
    ("latin1.csv", 2, None, None, "not UTF-8 text (byte 0xfc on line 3)"),
    ("empty.csv", None, None, None, "the file is empty"),
    (
        "duplicate_id.csv",
        3,
        "contract_id",
        "C-2025-001",
        "duplicate contract_id: C-2025-001 is already on row 1",
    ),
    (
        "end_before_start.csv",
        2,
        "end_date",
        "2024-12-31",
        "the contract ends before it starts (start_date 2025-01-01)",
    ),
    (
        "notice_too_long.csv",
        2,
        "notice_days",
        120,
        "the notice period is longer than the term (89 days from 2025-01-01 to 2025-03-31)",
    ),
    ("bad_syntax.yaml", 5, None, None, "not valid YAML: expected ',' or ']'"),
]


def test_bad_files_are_refused_with_the_place_and_change_nothing(engine):
    load(engine, GOOD_CSV)
    before, state = counts(engine), store_state(engine)

    for name, row, column, value, reason in BAD_FILES:
        path = DATA / name
        with pytest.raises(InputRejected) as refused:
            load(engine, path)

        [error] = refused.value.errors
        assert (error.file, error.row, error.column, error.value) == (
            str(path),
            row,
            column,
            value,
        ), name
        assert reason in error.reason, name
        assert str(path) in str(refused.value)
        assert counts(engine) == before and store_state(engine) == state, name
        with unit_of_work(engine) as session:  # the refusal is in the sync history
            run = session.scalars(select(IngestionRun).order_by(IngestionRun.id.desc())).first()
            stored = session.scalars(
                select(RejectedRow).where(RejectedRow.ingestion_run_id == run.id)
            ).one()
        assert (run.status, run.file_name, run.rows_accepted, run.rows_rejected) == (
            "rejected",
            str(path),
            0,
            1,
        ), name
        assert (stored.row_number, stored.column_name, stored.reason) == (
            row,
            column,
            error.reason,
        ), name


@pytest.mark.parametrize(
    ("field", "value", "column", "reason"),
    [
        ("seats", "", "seats", "a value is required for a per_user contract"),
        ("seats", "0", "seats", "must be greater than 0"),
        ("metric", "site", "seats", "a site license has unlimited seats"),
        ("product_code", "ms-m365-e3", "product_code", "must be upper-case letters, digits"),
        ("unit_cost", "-1", "unit_cost", "must be at least 0"),
        ("unit_cost", "1.234", "unit_cost", "must have at most 2 decimals"),
        ("unit_cost", '"1,200.00"', "unit_cost", "is not a valid number"),
        ("currency", "EURO", "currency", "must be an ISO 4217 currency code of 3 letters"),
        ("auto_renew", "maybe", "auto_renew", "must be one of"),
        ("notice_days", "-1", "notice_days", "must be at least 0"),
        ("owner_email", "it-licensing", "owner_email", "is not an email address"),
        ("end_date", "30/06/2026", "end_date", "is not a valid date written YYYY-MM-DD"),
        ("vendor", "", "vendor", "a value is required"),
    ],
)
def test_row_rules(tmp_path, field, value, column, reason):
    fields = HEADER.split(",")
    good = "C-1,MS-M365-E3,Microsoft 365 E3,Microsoft,per_user,10,432.00,EUR,2025-07-01,"
    good += "2026-06-30,true,30,CC-100,it@example.com"
    cells = good.split(",")
    cells[fields.index(field)] = value
    path = tmp_path / "one.csv"
    other = good.replace("C-1", "C-0").replace("MS-M365-E3", "MS-VISIO-PLAN2")
    path.write_text(f"{HEADER}\n{other}\n{','.join(cells)}\n")

    read = read_contracts(path)

    assert [(e.row, e.column) for e in read.errors] == [(2, column)]
    assert reason in read.errors[0].reason
    assert list(read.frame["contract_id"]) == ["C-0"]  # the good row stays readable


def test_one_product_has_one_metric_and_misspelt_columns_are_refused(tmp_path):
    path = tmp_path / "two.csv"
    rows = [
        "C-1,MS-M365-E3,Microsoft 365 E3,Microsoft,per_user,10,432.00,EUR,2025-07-01,"
        "2026-06-30,true,30,CC-100,it@example.com",
        "C-2,MS-M365-E3,Microsoft 365 E3,Microsoft,per_device,10,432.00,EUR,2026-07-01,"
        "2027-06-30,true,30,CC-100,it@example.com",
    ]
    path.write_text("\n".join([HEADER.replace("notice_days", "notice_dayz"), *rows]) + "\n")

    errors = read_contracts(path).errors

    assert [(e.row, e.column) for e in errors] == [(0, "notice_dayz"), (2, "metric")]
    assert "did you mean 'notice_days'" in errors[0].reason
    assert "has metric per_user on row 1: a product has one metric" in errors[1].reason


def test_possible_duplicates_pairs_overlapping_terms_of_one_product():
    frame = pd.DataFrame(
        [
            ("A", "P1", "2025-01-01", "2025-12-31"),
            ("B", "P1", "2025-12-31", "2026-12-30"),  # shares one day with A
            ("C", "P1", "2026-12-31", "2027-12-31"),  # starts the day after B ends
            ("D", "P2", "2025-01-01", "2025-12-31"),  # another product
            ("E", "P1", "2025-06-01", "2025-06-30"),  # inside A
        ],
        columns=["contract_id", "product_code", "start_date", "end_date"],
    )

    pairs = possible_duplicates(frame)

    found = [
        (p.product_code, p.contract_a, p.contract_b, f"{p.overlap_start:%F}", f"{p.overlap_end:%F}")
        for p in pairs.itertuples()
    ]
    assert found == [
        ("P1", "A", "B", "2025-12-31", "2025-12-31"),
        ("P1", "A", "E", "2025-06-01", "2025-06-30"),
    ]


def test_overlapping_contracts_are_flagged_once_not_rejected(engine, tmp_path):
    first = load(engine, GOOD_CSV)
    assert first.alerts_created == 1
    with unit_of_work(engine) as session:
        alert = session.scalars(select(Alert)).one()
        flagged = session.get(Contract, alert.contract_id).contract_number
    assert alert.kind == "possible_duplicate_purchase"
    assert alert.dedupe_key == "possible_duplicate_purchase:C-2025-001|C-2025-007"
    assert flagged == "C-2025-007" and alert.owner_email == "it-licensing@example.com"

    # C-2025-001 changes (seats): the pair is reported again but not alerted twice
    lines = GOOD_CSV.read_text().splitlines()
    changed = tmp_path / "changed.csv"
    changed.write_text(f"{HEADER}\n{lines[1].replace(',500,', ',520,')}\n")
    again = load(engine, changed)
    assert list(again.duplicates["contract_b"]) == ["C-2025-007"] and again.alerts_created == 0

    # a new contract overlapping both M365 contracts already in the store: two new pairs
    extra = tmp_path / "extra.csv"
    extra.write_text(
        f"{HEADER}\nC-2026-010,MS-M365-E3,Microsoft 365 E3,Microsoft,per_user,10,432.00,EUR,"
        "2026-03-01,2026-03-31,false,0,CC-600,\n"
    )
    third = load(engine, extra)
    assert third.created == 1 and third.alerts_created == 2
    pairs = zip(third.duplicates["contract_a"], third.duplicates["contract_b"], strict=True)
    assert sorted(pairs) == [
        ("C-2025-001", "C-2026-010"),
        ("C-2025-007", "C-2026-010"),
    ]
    assert counts(engine)["alert"] == 3


def test_contract_metric_is_authoritative_for_an_existing_product(engine):
    with unit_of_work(engine) as session:
        session.add(Product(code="MS-M365-E3", name="M365 E3 (catalog)", metric="per_device"))

    load(engine, GOOD_CSV)

    with unit_of_work(engine) as session:
        product = session.scalars(select(Product).where(Product.code == "MS-M365-E3")).one()
        vendor = session.get(Vendor, product.vendor_id).name
        entry = session.scalars(
            select(AuditLog).where(AuditLog.entity == "product", AuditLog.action == "update")
        ).one()
    assert (product.name, product.metric, vendor) == ("M365 E3 (catalog)", "per_user", "Microsoft")
    assert (entry.before["metric"], entry.after["metric"]) == ("per_device", "per_user")


def test_prefect_task_opens_its_own_transaction(sqlite_engine):
    from prefect.logging import disable_run_logger

    with disable_run_logger():
        result = load_contracts_task.fn(str(GOOD_CSV))

    assert result.created == 7 and counts(sqlite_engine)["contract"] == 7


# --- the command line -------------------------------------------------------------------------


def cli() -> typer.Typer:
    app, run_app = typer.Typer(), typer.Typer()
    app.add_typer(run_app, name="run")
    register(app, run_app)
    return app


def test_cli_load_and_list(sqlite_engine):
    runner, app = CliRunner(), cli()

    loaded = runner.invoke(app, ["contracts", "load", str(GOOD_CSV)])
    assert loaded.exit_code == 0, loaded.output
    assert "7 created, 0 updated, 0 unchanged" in loaded.output
    assert (
        "possible duplicate purchase: MS-M365-E3 contracts C-2025-001 and C-2025-007 overlap "
        "2026-01-01 to 2026-06-30" in loaded.output
    )
    assert "already applied" in runner.invoke(app, ["contracts", "load", str(GOOD_CSV)]).output

    refused = runner.invoke(app, ["contracts", "load", str(DATA / "bad_date.csv")])
    assert refused.exit_code == 1
    assert "row 2, column 'start_date' (value '2025-02-30')" in refused.output

    listed = runner.invoke(app, ["contracts", "list", "--json"])
    records = {r["contract"]: r for r in json.loads(listed.output)}
    assert len(records) == 7
    assert records["C-2025-006"]["seats"] is None and records["C-2025-006"]["vendor"] == "Zoom"
    assert records["C-2025-002"]["unit_cost"] == "239.88"
    assert records["C-2025-002"]["end_date"] == "2025-12-31"

    table = runner.invoke(app, ["contracts", "list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "Contracts (7)" in table.output
    line = next(x for x in table.output.splitlines() if "C-2025-006" in x)
    assert "unlimited (site)" in line and "18,000.00 USD" in line
    assert "(unowned)" in next(x for x in table.output.splitlines() if "C-2025-003" in x)
