"""The quarterly audit report on a small company whose figures are computed by hand, on
SQLite and PostgreSQL: the sections, the three exports against THE position, formula
injection, the per-vendor pack, and an HTML page that loads nothing from the network.

The company (quarter 2026Q3 = 2026-07-01 .. 2026-09-30, reported as of 2026-09-30):
- Adobe: Acrobat Pro (per_user), contract AC-1 10 seats x 240 USD (2026-01-01 .. 2026-12-31),
  held by p1, p2, p3 since 2026-05-04: consumed 3, surplus 7.
  A product named =HYPERLINK("http://x") (per_user, code ADOBE-PHOTOSHOP), contract PS-1
  2 seats x 300 USD (2026-01-01 .. 2027-06-30), held by p1, p2, p3 (the third over
  capacity, override logged): shortfall 1, true-up exposure 300.
- Autodesk: AutoCAD (per_user), contract AU-0 5 seats x 1,900 USD (2025-08-01 ..
  2026-07-31) and its renewal AU-1 5 seats x 2,000 USD bought 2026-08-01 (no owner: an
  ownership gap). p5 held a seat from 2026-06-01, revoked by offboarding on 2026-09-10
  (saving 2,000 a year); p4 was given one on 2026-08-05: consumed 1, surplus 4.
- BitTorrent: uTorrent (denied) installed on ws-9 since 2026-07-15 (unauthorised).
Spend in force on 2026-09-30: 10 x 240 + 2 x 300 + 5 x 2,000 = 13,000 USD.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from licenseflow.db import unit_of_work
from schemas.store import (
    Assignment,
    BulkBatch,
    BulkBatchEvent,
    BulkBatchRow,
    Contract,
    Device,
    Installation,
    Person,
    Product,
    ReclaimCandidate,
    Vendor,
)
from tasks import audit
from tasks.assignments import AssignmentService
from tasks.data_quality import write_summary
from tasks.export_safety import neutralise
from tasks.reconciliation import position_as_of
from tasks.report_data import SECTION_KEYS, Quarter, ReportPeriod, gather
from tasks.report_render import write_report, write_workbook

D = dt.date
INJECTED = '=HYPERLINK("http://x")'
SAFE = "'" + INJECTED
PERIOD = ReportPeriod(Quarter(2026, 3), D(2026, 9, 30))
NOW = dt.datetime(2026, 10, 1, 6, 0, tzinfo=dt.UTC)


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def arrange(engine, reports_dir: Path) -> None:
    with unit_of_work(engine) as session:
        vendors = {n: Vendor(name=n) for n in ("Adobe", "Autodesk", "BitTorrent")}
        session.add_all(vendors.values())
        session.flush()
        products = {
            code: Product(
                code=code, name=name, vendor_id=vendors[v].id, metric="per_user", classification=c
            )
            for code, name, v, c in (
                ("ADOBE-ACROBAT-PRO", "Acrobat Pro", "Adobe", "commercial"),
                ("ADOBE-PHOTOSHOP", INJECTED, "Adobe", "commercial"),
                ("AUTODESK-AUTOCAD", "AutoCAD", "Autodesk", "commercial"),
                ("UTORRENT", "uTorrent", "BitTorrent", "denied"),
            )
        }
        session.add_all(products.values())
        session.flush()
        for number, code, seats, cost, start, end, owner in (
            (
                "AC-1",
                "ADOBE-ACROBAT-PRO",
                10,
                "240",
                D(2026, 1, 1),
                D(2026, 12, 31),
                "ana@example.com",
            ),
            ("PS-1", "ADOBE-PHOTOSHOP", 2, "300", D(2026, 1, 1), D(2027, 6, 30), "ana@example.com"),
            (
                "AU-0",
                "AUTODESK-AUTOCAD",
                5,
                "1900",
                D(2025, 8, 1),
                D(2026, 7, 31),
                "ana@example.com",
            ),
            ("AU-1", "AUTODESK-AUTOCAD", 5, "2000", D(2026, 8, 1), D(2027, 7, 31), None),
        ):
            session.add(
                Contract(
                    contract_number=number,
                    product_id=products[code].id,
                    seats=seats,
                    unit_cost=Decimal(cost),
                    currency="USD",
                    start_date=start,
                    end_date=end,
                    owner_email=owner,
                )
            )
        session.add(
            Person(employee_id="E0", email="ana@example.com", full_name="Ana", status="active")
        )
        for i in range(1, 6):
            session.add(
                Person(
                    employee_id=f"E{i}",
                    email=f"p{i}@example.com",
                    full_name=f"Person {i}",
                    department="Design",
                    status="active",
                )
            )
        device = Device(hostname="ws-9", primary_user_email="p4@example.com")
        session.add(device)
        session.flush()
        session.add(
            Installation(
                install_key="k-utorrent",
                device_id=device.id,
                raw_title="uTorrent",
                product_id=products["UTORRENT"].id,
                source="osquery",
                row_hash="h",
                first_seen=at(D(2026, 7, 15)),
                last_seen=at(D(2026, 9, 29)),
            )
        )
        # a contract change written to the audit log during the quarter
        audit.record_many(
            session,
            "contracts-feed",
            [audit.Change("update", "contract", "PS-1", {"seats": 1}, {"seats": 2})],
            at=at(D(2026, 8, 15)),
        )
    with unit_of_work(engine) as session:
        service = AssignmentService(session, "seed", now=at(D(2026, 5, 4)))
        for person in ("p1", "p2", "p3"):
            service.assign("ADOBE-ACROBAT-PRO", person=f"{person}@example.com")
            service.assign(
                "ADOBE-PHOTOSHOP", person=f"{person}@example.com", override_reason="design sprint"
            )
    with unit_of_work(engine) as session:
        AssignmentService(session, "seed", now=at(D(2026, 6, 1))).assign(
            "AUTODESK-AUTOCAD", person="p5@example.com"
        )
    with unit_of_work(engine) as session:
        AssignmentService(session, "helpdesk", now=at(D(2026, 8, 5))).assign(
            "AUTODESK-AUTOCAD", person="p4@example.com", reason="new hire"
        )
    with unit_of_work(engine) as session:
        AssignmentService(session, "hr-sync", now=at(D(2026, 9, 10))).revoke(
            "AUTODESK-AUTOCAD", person="p5@example.com", reason="offboarding"
        )
        p5 = session.query(Person).filter_by(email="p5@example.com").one()
        p5.status, p5.termination_date = "terminated", D(2026, 9, 10)
    with unit_of_work(engine) as session:
        acrobat = session.query(Product).filter_by(code="ADOBE-ACROBAT-PRO").one()
        p3 = session.query(Person).filter_by(email="p3@example.com").one()
        seat = session.query(Assignment).filter_by(product_id=acrobat.id, person_id=p3.id).one()
        session.add(
            ReclaimCandidate(
                assignment_id=seat.id,
                product_id=acrobat.id,
                state="reclaimed",
                detected_at=at(D(2026, 8, 20)),
                notified_at=at(D(2026, 8, 21)),
                resolved_at=at(D(2026, 10, 5)),
                monthly_cost=Decimal("20.00"),
            )
        )
        session.add(
            BulkBatch(
                id="B-1",
                state="rolled_out",
                requester="ana@example.com",
                approver="ben@example.com",
                file_name="wave.csv",
                file_checksum="0" * 64,
                row_count=1,
                created_at=at(D(2026, 8, 10)),
                updated_at=at(D(2026, 8, 12)),
            )
        )
        session.flush()
        for state, day in (("validated", 10), ("approved", 11), ("rolled_out", 12)):
            session.add(
                BulkBatchEvent(batch_id="B-1", state=state, at=at(D(2026, 8, day)), actor="ops")
            )
        session.add(
            BulkBatchRow(
                batch_id="B-1",
                row_number=1,
                action="assign",
                product_id=acrobat.id,
                person_id=p3.id,
                pilot=True,
            )
        )
        # B-2 was requested in September, touches both vendors, and was never approved
        autocad = session.query(Product).filter_by(code="AUTODESK-AUTOCAD").one()
        session.add(
            BulkBatch(
                id="B-2",
                state="awaiting_approval",
                requester="ana@example.com",
                file_name="mixed.csv",
                file_checksum="1" * 64,
                row_count=2,
                created_at=at(D(2026, 9, 20)),
                updated_at=at(D(2026, 9, 20)),
            )
        )
        session.flush()
        session.add(
            BulkBatchEvent(
                batch_id="B-2", state="awaiting_approval", at=at(D(2026, 9, 20)), actor="ops"
            )
        )
        for number, product in enumerate((acrobat, autocad), 1):
            session.add(
                BulkBatchRow(
                    batch_id="B-2",
                    row_number=number,
                    action="revoke",
                    product_id=product.id,
                    person_id=p3.id,
                    pilot=False,
                )
            )
    for day, ok in (("2026-09-28", False), ("2026-10-05", True)):
        write_summary(
            {
                "day": day,
                "success": ok,
                "failed": 0 if ok else 1,
                "data_docs": None,
                "error": None,
                "checks": [
                    {
                        "check": "current_contracts",
                        "expectation": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "owner_email"},
                        "success": ok,
                        "rows": 3,
                        "unexpected": 0 if ok else 1,
                        "examples": [] if ok else ["AU-1"],
                    }
                ],
            },
            reports_dir,
        )


@pytest.fixture
def report(engine, runtime_dir):
    """The company on the test's database, gathered (not yet written)."""
    reports = runtime_dir / "reports"
    arrange(engine, reports)
    data = gather(engine, PERIOD, reports_dir=reports, now=NOW)
    with unit_of_work(engine) as session:
        position = position_as_of(session, PERIOD.as_of)  # THE position, for comparison
    return data, position, reports


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The company's report written once (SQLite) for the tests of the files alone."""
    from licenseflow.db import get_engine, upgrade

    folder = tmp_path_factory.mktemp("report")
    engine = get_engine(f"sqlite:///{folder / 'store.db'}")
    upgrade(engine)
    arrange(engine, folder / "reports")
    data = gather(engine, PERIOD, reports_dir=folder / "reports", now=NOW)
    files = write_report(data, folder / "reports")
    engine.dispose()
    return data, files


# --- reading the exports back --------------------------------------------------------------


class Tables(HTMLParser):
    """Every <table id="table-KEY">: header texts and row texts; and every src/href."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict] = {}
        self.links: list[tuple[str, str, str]] = []
        self.styles: list[str] = []
        self._table = None
        self._cell = None
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name, value in attrs.items():
            if name in ("src", "href", "xlink:href", "srcset", "poster", "data") and value:
                self.links.append((tag, name, value))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), {"header": [], "rows": []})
        elif tag == "tr" and self._table is not None:
            self._table["rows"].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if tag == "th":
                self._table["header"].append(text)
            else:
                self._table["rows"][-1].append(text)
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.styles.append(data)


def html_table(path: Path, key: str) -> list[dict]:
    parser = Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    table = parser.tables[f"table-{key}"]
    return [dict(zip(table["header"], row, strict=True)) for row in table["rows"] if row]


def sheet_rows(path: Path, sheet: str) -> list[dict]:
    book = load_workbook(path, read_only=True)
    rows = list(book[sheet].iter_rows(values_only=True))
    book.close()
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def csv_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _number(text: str) -> float | None:
    return None if text in ("", "unlimited") else float(text.replace(",", ""))


# --- the tests -----------------------------------------------------------------------------

FIGURES = ["entitled", "consumed", "assigned", "shortfall", "surplus", "reclaimable"]
MONEY = ["unit_cost", "true_up_cost", "waste", "annual_cost"]


def test_figures_in_html_workbook_and_csv_equal_the_position(report):
    data, position, reports = report
    files = write_report(data, reports)
    assert files.html == reports / "2026Q3" / "quarterly_report_2026Q3.html"

    by_code = position.set_index("product_code")
    # hand-computed: the position itself is what we think it is
    assert by_code.loc["ADOBE-PHOTOSHOP", "shortfall"] == 1
    assert by_code.loc["ADOBE-PHOTOSHOP", "true_up_cost"] == 300.0
    assert by_code.loc["ADOBE-ACROBAT-PRO", "surplus"] == 7
    assert by_code.loc["AUTODESK-AUTOCAD", ["entitled", "consumed"]].tolist() == [5, 1]
    assert by_code["annual_cost"].sum() == 13_000.0

    html = {r["product code"]: r for r in html_table(files.html, "position")}
    sheet = {r["product_code"]: r for r in sheet_rows(files.workbook, "position")}
    text = {r["product_code"]: r for r in csv_rows(files.csvs["position"])}
    assert set(html) == set(sheet) == set(text) == set(by_code.index)
    for code, expected in by_code.iterrows():
        for column in FIGURES + MONEY:
            want = (
                None
                if expected[column] is None or expected[column] != expected[column]
                else float(expected[column])
            )
            assert _number(html[code][column.replace("_", " ")]) == want, (code, column)
            assert (None if sheet[code][column] is None else float(sheet[code][column])) == want
            assert _number(text[code][column]) == want, (code, column)
        assert sheet[code]["vendor"] == expected["vendor"] == text[code]["vendor"]

    summary = {(r["measure"], r["currency"]): r for r in sheet_rows(files.workbook, "summary")}
    assert summary[("Spend in force (per year)", "USD")]["value"] == 13_000.0
    assert summary[("True-up exposure", "USD")]["value"] == 300.0
    assert summary[("Savings realised: offboarded seats (per year)", "USD")]["value"] == 2_000.0
    assert data.verification.ok
    cards = html_table(files.html, "audit_verification")[0]
    assert cards["chain"] == "intact"
    assert cards["last hash"] == data.verification.last_hash
    assert int(cards["entries"].replace(",", "")) == data.verification.entries


def test_sections_hold_the_quarter_as_computed_by_hand(report):
    data, _, _ = report
    s = data.sections
    changes = s["contract_changes"]
    assert changes[["contract_number", "change"]].values.tolist() == [
        ["AU-1", "term starts"],
        ["PS-1", "changed"],
    ]
    assert changes.iloc[1]["detail"] == "seats: 1 -> 2"

    seats = s["seat_changes"].set_index("product_code")
    assert seats.loc[
        "AUTODESK-AUTOCAD", ["assigned", "revoked", "offboarding", "net"]
    ].tolist() == [1, 1, 1, 0]
    assert "ADOBE-ACROBAT-PRO" not in seats.index  # assigned in May: before the quarter
    log = s["seat_change_log"]
    assert log[["action", "cause", "holder"]].values.tolist() == [
        ["assign", "", "p4@example.com"],
        ["revoke", "offboarding", "p5@example.com"],
    ]

    saving = s["savings"]
    assert saving[["cause", "product_code", "seats", "annual_saving"]].values.tolist() == [
        ["offboarding", "AUTODESK-AUTOCAD", 1, 2000.0]
    ]
    batches = s["bulk_batches"]
    assert batches[["batch_id", "requester", "approver", "outcome", "products"]].fillna(
        ""
    ).values.tolist() == [
        ["B-1", "ana@example.com", "ben@example.com", "rolled_out", "ADOBE-ACROBAT-PRO"],
        ["B-2", "ana@example.com", "", "awaiting_approval", "ADOBE-ACROBAT-PRO, AUTODESK-AUTOCAD"],
    ]
    assert batches["approved_at"].iloc[0] == pd.Timestamp("2026-08-11 09:00", tz="UTC")
    # reclaimed on 2026-10-05, after the quarter: at its end the candidate was notified
    candidate = s["reclamation"].iloc[0]
    assert (candidate["holder"], candidate["outcome"]) == ("p3@example.com", "notified")
    assert pd.isna(candidate["resolved_at"])

    flags = s["installs_flagged"]
    assert flags[["kind", "product_code", "excess"]].values.tolist() == [
        ["unauthorised_software", "UTORRENT", 1]
    ]
    assert s["unauthorised_devices"]["hostname"].tolist() == ["ws-9"]
    assert s["renewals"]["contract_number"].tolist() == ["AC-1"]  # ends 2026-12-31
    assert s["ownership_gaps"][["contract_number", "gap"]].values.tolist() == [["AU-1", "no_owner"]]
    risk = s["vendor_risk"].set_index("vendor")["risk"].to_dict()
    assert risk == {"Adobe": "high", "Autodesk": "medium", "BitTorrent": "medium"}
    # the data-quality run of 2026-09-28, not the later one
    quality = s["data_quality"]
    assert quality[["check", "result", "examples"]].values.tolist() == [
        ["current_contracts", "FAILED", "AU-1"]
    ]
    assert str(quality["run_day"].iloc[0]) == "2026-09-28"
    assert s["audit_verification"]["chain"].tolist() == ["intact"]
    assert list(s) == SECTION_KEYS


def test_workbook_reopens_with_a_sheet_per_section(written):
    data, files = written
    book = load_workbook(files.workbook)
    assert book.sheetnames == ["report", *SECTION_KEYS]
    sheet = book["position"]
    assert sheet.freeze_panes == "A2"
    assert (
        sheet.auto_filter.ref
        == f"A1:{sheet.cell(1, sheet.max_column).column_letter}{sheet.max_row}"
    )
    assert sheet["A1"].font.bold and sheet["A1"].fill.fgColor.rgb.endswith("2F6690")
    assert sheet.column_dimensions["B"].width >= len("product_name")
    header = [c.value for c in sheet[1]]
    row = {h: c for h, c in zip(header, sheet[2], strict=True)}
    assert row["consumed"].data_type == "n" and isinstance(row["consumed"].value, int)
    assert row["unit_cost"].number_format == "#,##0.00"
    changes = book["contract_changes"]
    first = {c.value: v for c, v in zip(changes[1], changes[2], strict=True)}
    assert first["date"].is_date and first["date"].value.date() == D(2026, 8, 1)
    about = {r[0].value: r[1].value for r in book["report"].iter_rows(min_row=2)}
    assert about["audit_last_hash"] == data.verification.last_hash
    assert about["quarter"] == "2026Q3"
    # rows are streamed into the sheets in chunks: one row a chunk gives the same workbook
    again = write_workbook(data, files.workbook.with_name("chunked.xlsx"), chunk_rows=1)
    chunked = load_workbook(again)
    for name in book.sheetnames:
        expected = list(book[name].iter_rows(values_only=True))
        assert list(chunked[name].iter_rows(values_only=True)) == expected, name
    assert chunked["seat_change_log"].max_row == len(data.sections["seat_change_log"]) + 1


def _all_text_cells(files) -> list[str]:
    """Every text cell of the workbook and of the CSVs."""
    texts = []
    book = load_workbook(files.workbook)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            texts += [c.value for c in row if c.data_type in ("s", "f") and c.value is not None]
    for path in files.csvs.values():
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.reader(handle):
                texts += row
    return texts


def test_a_formula_in_a_product_name_arrives_neutralised_in_every_export(written):
    _, files = written
    book = load_workbook(files.workbook)
    cells = [
        c
        for sheet in book.worksheets
        for row in sheet.iter_rows()
        for c in row
        if isinstance(c.value, str) and "HYPERLINK" in c.value
    ]
    assert cells and all(c.value == SAFE and c.data_type == "s" for c in cells)
    assert {c.parent.title for c in cells} == {"position", "contract_changes"}
    texts = _all_text_cells(files)
    assert SAFE in texts
    formulas = [t for t in texts if t and t.startswith(("=", "+", "@", "\t", "\r"))]
    assert formulas == []
    # negative counts are numbers, never text starting with "-": only neutralised text may
    assert [t for t in texts if t.startswith("-") and not _is_number(t)] == []
    html = {r["product code"]: r for r in html_table(files.html, "position")}
    assert html["ADOBE-PHOTOSHOP"]["product name"] == SAFE
    raw = files.html.read_text(encoding="utf-8")
    assert (
        "&#39;=HYPERLINK(&#34;http://x&#34;)" in raw
        or "&#39;=HYPERLINK(&quot;http://x&quot;)" in raw
    )
    assert INJECTED not in raw.replace(neutralise(INJECTED), "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_vendor_pack_holds_only_that_vendors_rows(engine, runtime_dir):
    reports = runtime_dir / "reports"
    arrange(engine, reports)
    data = gather(engine, PERIOD, "autodesk", reports_dir=reports, now=NOW)
    assert data.vendor == "Autodesk"
    files = write_report(data, reports)
    assert files.html.parent == reports / "2026Q3" / "vendors" / "autodesk"
    for key, frame in data.sections.items():
        if "vendor" in frame.columns:
            assert set(frame["vendor"]) <= {"Autodesk"}, key
    assert data.sections["position"]["product_code"].tolist() == ["AUTODESK-AUTOCAD"]
    # B-1 touched Acrobat only; of B-2, only its AutoCAD row is Autodesk's
    batches = data.sections["bulk_batches"]
    assert batches[["batch_id", "products", "vendors"]].values.tolist() == [
        ["B-2", "AUTODESK-AUTOCAD", "Autodesk"]
    ]
    assert data.sections["seat_changes"]["product_code"].tolist() == ["AUTODESK-AUTOCAD"]
    spend = data.sections["summary"].set_index(["measure", "currency"])["value"]
    assert spend[("Spend in force (per year)", "USD")] == 10_000.0
    others = [
        "Adobe",
        "ADOBE",
        "Acrobat",
        "HYPERLINK",
        "BitTorrent",
        "UTORRENT",
        "uTorrent",
        "p1@",
        "AC-1",
        "PS-1",
    ]
    exported = [files.html.read_text(encoding="utf-8")]
    exported += [str(t) for t in _all_text_cells(files)]
    for text in exported:
        assert not [o for o in others if o in text], text[:200]


def test_an_unknown_vendor_is_refused_with_the_names_it_knows(sqlite_engine, runtime_dir):
    from tasks.report_data import ReportError

    arrange(sqlite_engine, runtime_dir / "reports")
    with pytest.raises(ReportError, match="Autodesk"):
        gather(sqlite_engine, PERIOD, "Autodes")


NETWORK = ("http://", "https://", "//", "ftp://")


def test_the_html_loads_nothing_from_the_network(written):
    _, files = written
    parser = Tables()
    parser.feed(files.html.read_text(encoding="utf-8"))
    loaded = [
        (tag, name, value)
        for tag, name, value in parser.links
        if value.strip().lower().startswith(NETWORK)
    ]
    assert loaded == []
    assert [link for link in parser.links if link[0] in ("script", "img", "link", "iframe")] == []
    assert {link[2][0] for link in parser.links} <= {"#"}  # only anchors inside the page
    style = "".join(parser.styles)
    assert "@import" not in style and "url(" not in style
    assert "<svg" in files.html.read_text(encoding="utf-8")  # the charts are inline


def test_the_run_summary_is_plain_json(written):
    from tasks.report_render import report_summary

    data, files = written
    summary = report_summary(data, files)
    assert json.loads(json.dumps(summary))["rows"]["position"] == 3
