"""Loading the current assignment state: the canonical CSV and Microsoft Graph exports."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal

import pytest
from conftest import TESTS_DATA
from sqlalchemy import select

from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected
from schemas.store import Assignment, AuditLog, Contract, Device, IngestionRun, Person, Product
from tasks import audit
from tasks.assignment_feeds import graph_sku_map, import_pending, load_assignments

DATA = TESTS_DATA / "assignments"
GRAPH = DATA / "graph"
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
SKU_MAP = {"SPE_E3": "MS-M365-E3", "spe_e5": "MS-M365-E5", "VISIOCLIENT": "MS-VISIO-PLAN2"}


@pytest.fixture
def world(engine):
    """Four per_user products and WINRAR per_device; E3 owns 2 seats by contract; five
    people (eve terminated) and one device."""
    with unit_of_work(engine) as session:
        for code, metric in [
            ("MS-M365-E3", "per_user"),
            ("MS-M365-E5", "per_user"),
            ("MS-VISIO-PLAN2", "per_user"),
            ("WINRAR", "per_device"),
        ]:
            session.add(Product(code=code, name=code, metric=metric))
        session.flush()
        e3 = session.execute(select(Product.id).where(Product.code == "MS-M365-E3")).scalar()
        session.add(
            Contract(
                contract_number="EA-1",
                product_id=e3,
                seats=2,
                unit_cost=Decimal("250"),
                currency="EUR",
                start_date=TODAY - dt.timedelta(days=30),
                end_date=TODAY + dt.timedelta(days=300),
            )
        )
        for number, (name, status) in enumerate(
            [
                ("ana.ruiz", "active"),
                ("ben.okafor", "active"),
                ("chen.li", "active"),
                ("dana.berg", "leave"),
                ("eve.tan", "terminated"),
            ],
            start=1,
        ):
            session.add(
                Person(
                    employee_id=f"E{number:03d}",
                    email=f"{name}@example.com",
                    full_name=name,
                    status=status,
                )
            )
        session.add(Device(hostname="pc-0042"))
    return engine


def seats(engine):
    """Open seats as (product code, holder, assigned_at date, override_reason)."""
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(
                Product.code,
                Person.email,
                Device.hostname,
                Assignment.assigned_at,
                Assignment.override_reason,
            )
            .join(Product, Product.id == Assignment.product_id)
            .outerjoin(Person, Person.id == Assignment.person_id)
            .outerjoin(Device, Device.id == Assignment.device_id)
            .where(Assignment.revoked_at.is_(None))
            .order_by(Product.code, Person.email, Device.hostname)
        ).all()
    return [(c, p or d, at.date().isoformat(), o) for c, p, d, at, o in rows]


def runs(engine):
    with unit_of_work(engine) as session:
        return session.execute(
            select(IngestionRun.status, IngestionRun.rows_rejected).order_by(IngestionRun.id)
        ).all()


# --- canonical CSV ------------------------------------------------------------------------


def test_canonical_csv_records_the_seats_as_they_are(world, tmp_path):
    path = tmp_path / "seats.csv"
    shutil.copy(DATA / "seats.csv", path)
    result = load_assignments(path, actor="importer", now=NOW)

    # 5 rows: ana, ben (by employee id, code in lower case), eve (terminated), a device,
    # and ana again (already held -> unchanged)
    assert (result.assigned, result.unchanged) == (4, 1)
    imported = "imported from seats.csv"
    assert seats(world) == [
        ("MS-M365-E3", "ana.ruiz@example.com", "2024-05-17", imported),
        ("MS-M365-E3", "ben.okafor@example.com", "2025-01-09", imported),
        ("MS-M365-E3", "eve.tan@example.com", "2023-02-01", imported),
        ("WINRAR", "pc-0042", "2026-03-02", imported),  # no assigned_at: the import's time
    ]
    # E3: 2 seats owned, 3 people hold one; WINRAR: none owned: recorded, overrides logged
    assert result.overrides == ["MS-M365-E3: 2 owned, 3 in use", "WINRAR: 0 owned, 1 in use"]
    assert result.terminated_holders == ["eve.tan@example.com"]
    with unit_of_work(world) as session:
        entries = session.execute(select(AuditLog).order_by(AuditLog.id)).scalars().all()
        assert audit.verify(session).ok
    assert [e.action for e in entries] == ["assign"] * 4 + ["capacity_override"] * 2
    assert {e.actor for e in entries} == {"importer"}
    assert entries[2].after["person_status"] == "terminated"
    assert {e.after["override_reason"] for e in entries} == {imported}
    assert runs(world) == [("applied", 0)]

    again = load_assignments(path, now=NOW)
    assert again.skipped_already_applied
    assert len(seats(world)) == 4


def test_bad_canonical_csv_is_refused_whole(world):
    path = DATA / "seats_bad.csv"
    with pytest.raises(InputRejected) as refused:
        load_assignments(path, now=NOW)
    found = [(e.row, e.column, e.value, e.reason) for e in refused.value.errors]
    assert found == [
        (2, "user", "nobody@example.com", "no person with this email or employee id in the "
         "store (HR roster)"),
        (3, "device", "ghost-99", "no device with this hostname in the store"),
        (4, "product_code", "NO-SUCH-PRODUCT", "no product with this code in the store"),
        (5, "user", "chen.li@example.com", "exactly one of user or device"),
        (6, "assigned_at", "last tuesday", "an ISO date (YYYY-MM-DD) or date-time"),
    ]  # fmt: skip
    assert "5 of 6 rows rejected" in str(refused.value)
    assert seats(world) == []  # row 1 was fine, but nothing was changed
    assert runs(world) == [("rejected", 5)]  # the refusal is in the sync history


def test_a_rule_of_the_service_becomes_a_row_error(world, tmp_path):
    path = tmp_path / "seats.csv"
    path.write_text("product_code,user,device\nWINRAR,,pc-0042\nMS-M365-E3,,pc-0042\n")
    with pytest.raises(InputRejected) as refused:
        load_assignments(path, now=NOW)
    [error] = refused.value.errors
    assert (error.row, error.value) == (2, "assign MS-M365-E3 to pc-0042")
    assert error.reason == "MS-M365-E3 is licensed per user: assign it to a person"
    assert seats(world) == []


# --- Microsoft Graph ----------------------------------------------------------------------


def test_graph_exports_give_entitlements_and_seats(world):
    result = load_assignments(
        GRAPH / "users.json", skus=GRAPH / "subscribedSkus.json", sku_map=SKU_MAP, now=NOW
    )
    with unit_of_work(world) as session:
        contracts = session.execute(
            select(Contract.contract_number, Product.code, Contract.seats, Contract.unit_cost)
            .join(Product, Product.id == Contract.product_id)
            .where(Contract.contract_number.like("GRAPH-%"))
            .order_by(Contract.contract_number)
        ).all()
        graph_e5 = session.execute(
            select(Contract).where(Contract.contract_number == "GRAPH-SPE_E5")
        ).scalar_one()
        assert (graph_e5.start_date, graph_e5.end_date) == (TODAY, dt.date(2027, 3, 2))
        assert audit.verify(session).ok
    # entitlements = prepaidUnits.enabled; FLOW_FREE is not in the mapping: no contract;
    # E3 is bought through contract EA-1 (2 seats): Graph's 4 prepaid are reported beside it,
    # not stored as a second entitlement
    assert result.covered_by_contracts == ["SPE_E3: Graph prepaid 4, contracts 2"]
    assert contracts == [
        ("GRAPH-SPE_E5", "MS-M365-E5", 2, Decimal("0.00")),
        ("GRAPH-VISIOCLIENT", "MS-VISIO-PLAN2", 2, Decimal("0.00")),
    ]
    imported = "imported from users.json"
    # ana by mail (other case), ben by userPrincipalName, eve terminated but recorded
    assert [(code, who) for code, who, _, _ in seats(world)] == [
        ("MS-M365-E3", "ana.ruiz@example.com"),
        ("MS-M365-E3", "ben.okafor@example.com"),
        ("MS-M365-E3", "eve.tan@example.com"),
        ("MS-M365-E5", "chen.li@example.com"),
        ("MS-M365-E5", "dana.berg@example.com"),
        ("MS-VISIO-PLAN2", "ben.okafor@example.com"),
    ]
    assert {o for *_, o in seats(world) if o} == {imported}  # eve's seat only
    assert result.assigned == 6
    assert result.overrides == ["MS-M365-E3: 2 owned, 3 in use"]  # recorded, not refused
    assert result.unknown_skus == ["FLOW_FREE"]
    assert result.unmatched_users == ["vendor.guest_partner.com#EXT#@contoso.onmicrosoft.com"]
    assert result.terminated_holders == ["eve.tan@example.com"]
    checks = {
        c.sku_part_number: (c.product_code, c.consumed_units, c.licensed_in_file, c.imported)
        for c in result.sku_checks
    }
    assert checks == {
        "SPE_E3": ("MS-M365-E3", 4, 4, 3),  # the guest's license is not imported
        "SPE_E5": ("MS-M365-E5", 2, 2, 2),
        "VISIOCLIENT": ("MS-VISIO-PLAN2", 1, 1, 1),
        "FLOW_FREE": (None, 2, 2, 0),
    }
    assert runs(world) == [("applied", 1)]  # the unmatched guest is in the sync history

    again = load_assignments(
        GRAPH / "users.json", skus=GRAPH / "subscribedSkus.json", sku_map=SKU_MAP, now=NOW
    )
    assert again.skipped_already_applied


def test_graph_reimport_moves_entitlements_on(world, tmp_path):
    load_assignments(
        GRAPH / "users.json", skus=GRAPH / "subscribedSkus.json", sku_map=SKU_MAP, now=NOW
    )
    document = json.loads((GRAPH / "subscribedSkus.json").read_text())
    e5 = next(s for s in document["value"] if s["skuPartNumber"] == "SPE_E5")
    e5["prepaidUnits"]["enabled"] = 5
    skus = tmp_path / "subscribedSkus.json"
    skus.write_text(json.dumps(document))
    later = NOW + dt.timedelta(days=40)
    result = load_assignments(GRAPH / "users.json", skus=skus, sku_map=SKU_MAP, now=later)
    assert (result.contracts_created, result.contracts_updated) == (0, 2)  # end moved on
    assert (result.assigned, result.unchanged) == (0, 6)
    with unit_of_work(world) as session:
        contract = session.execute(
            select(Contract).where(Contract.contract_number == "GRAPH-SPE_E5")
        ).scalar_one()
        assert (contract.seats, contract.start_date, contract.end_date) == (
            5,
            TODAY,
            later.date() + dt.timedelta(days=365),
        )
        update = session.execute(
            select(AuditLog).where(AuditLog.entity_id == "GRAPH-SPE_E5").order_by(AuditLog.id)
        ).scalars().all()[-1]  # fmt: skip
    assert (update.action, update.before["seats"], update.after["seats"]) == ("update", 2, 5)


def test_graph_with_the_catalog_mapping(world):
    mapping = graph_sku_map()
    assert mapping["spe_e3"] == "MS-M365-E3" and mapping["visioclient"] == "MS-VISIO-PLAN2"
    result = load_assignments(GRAPH / "users.json", skus=GRAPH / "subscribedSkus.json", now=NOW)
    assert result.assigned == 6 and result.unknown_skus == ["FLOW_FREE"]


def test_graph_refusals(world, tmp_path):
    users, skus = GRAPH / "users.json", GRAPH / "subscribedSkus.json"
    with pytest.raises(InputRejected) as refused:
        load_assignments(users, skus=skus, sku_map=SKU_MAP | {"VISIOCLIENT": "NOPE"}, now=NOW)
    [error] = refused.value.errors
    assert (error.row, error.column, error.value) == (3, "skuPartNumber", "VISIOCLIENT")
    assert "maps to product NOPE, which is not in the store" in error.reason

    broken = tmp_path / "users.json"
    broken.write_text('{"value": [\n  {"userPrincipalName": "a@b.c",}\n]}')
    with pytest.raises(InputRejected, match=r"not valid JSON: .* \(line 2"):
        load_assignments(broken, skus=skus, sku_map=SKU_MAP, now=NOW)

    broken.write_text(json.dumps({"value": [{"userPrincipalName": "ana.ruiz@example.com"}]}))
    with pytest.raises(InputRejected, match="assignedLicenses missing"):
        load_assignments(broken, skus=skus, sku_map=SKU_MAP, now=NOW)

    bad_skus = tmp_path / "skus.json"
    bad_skus.write_text(
        json.dumps({"value": [{"skuId": "x", "skuPartNumber": "SPE_E3", "consumedUnits": -1}]})
    )
    with pytest.raises(InputRejected) as refused:
        load_assignments(users, skus=bad_skus, sku_map=SKU_MAP, now=NOW)
    assert [(e.row, e.column) for e in refused.value.errors] == [
        (1, "skuId"),
        (1, "prepaidUnits.enabled"),
        (1, "consumedUnits"),
    ]
    with pytest.raises(InputRejected, match="needs its subscribedSkus export"):
        load_assignments(users, now=NOW)
    assert seats(world) == []


def test_import_pending_takes_the_drop_folder(world, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    for source in (GRAPH / "users.json", GRAPH / "subscribedSkus.json", DATA / "seats.csv"):
        shutil.copy(source, folder / source.name)
    (folder / "zz_bad.csv").write_text("product_code,user\nNO-SUCH,ana.ruiz@example.com\n")
    sources = tmp_path / "sources.yaml"
    sources.write_text("feeds:\n  assignments:\n    - {folder: drop}\n")
    results = import_pending(sources, now=NOW)
    by_file = {r.file.rsplit("/", 1)[-1]: r for r in results}
    assert set(by_file) == {"seats.csv", "users.json", "zz_bad.csv"}
    assert by_file["seats.csv"].assigned == 4
    assert by_file["users.json"].assigned == 3  # E5 x2 and Visio; the E3 seats were held
    assert "no product with this code" in by_file["zz_bad.csv"].refused
    again = {r.file.rsplit("/", 1)[-1]: r for r in import_pending(sources, now=NOW)}
    # the applied files are skipped; the refused one is tried again and refused again
    assert again["seats.csv"].skipped_already_applied
    assert again["users.json"].skipped_already_applied
    assert again["zz_bad.csv"].refused
