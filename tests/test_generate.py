"""The synthetic-enterprise generator (benchmarks/generate.py): a tiny company is
deterministic and internally consistent; the committed demo (data/demo) is what the
generator makes, tells the story the other flows demonstrate, and every feed reader reads
it without a row error."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.generate import DEMO, DEMO_OUT, generate
from benchmarks.synth_common import Company
from benchmarks.synth_devices import make_devices
from benchmarks.synth_people import make_people

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "data" / "sources.yaml"
TINY = Company(
    people=30,
    devices=40,
    date=dt.date(2026, 11, 23),
    days=14,
    seed=3,
    usage_rate=2.0,
    installs_per_device=12.0,
    tail_products=20,
)
HEADERS = {
    "hr/roster.csv": "employee_id,email,full_name,department,cost_center,manager_email,status,"
    "hire_date,termination_date",
    "contracts/contracts.csv": "contract_id,product_code,product_name,vendor,metric,seats,"
    "unit_cost,currency,start_date,end_date,auto_renew,notice_days,cost_center,owner_email",
    "installs/intune/AppInvRawData.csv": "ApplicationKey,ApplicationName,ApplicationPublisher,"
    "ApplicationShortVersion,ApplicationVersion,DeviceId,DeviceName,OSDescription,OSVersion,"
    "Platform,UserId,EmailAddress,UserName",
    "installs/sccm/installed_software.csv": "ComputerName,ARPDisplayName,ProductName,"
    "ProductVersion,Publisher,InstallDate",
    "installs/canonical/installs.csv": "hostname,device_serial,os,primary_user_email,"
    "software_name,publisher,version,install_date,last_seen",
    "assignments/assignments.csv": "product_code,user,device,assigned_at",
    "usage/entra_signins.csv": "Date (UTC),Request ID,User agent,Correlation ID,User ID,User,"
    "Username,User type,Application,Application ID,Resource,IP address,Location,Status,"
    "Sign-in error code,Failure reason",
    "usage/canonical_usage.csv": "user_email,product_code,app_name,activity_at,duration_minutes",
    "bulk/onboarding_wave.csv": "action,product_code,user,device,pilot,note",
}
WITH_BOM = {"installs/intune/AppInvRawData.csv", "usage/entra_signins.csv"}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _csv(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype=str, keep_default_na=False, encoding="utf-8-sig")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    generate(out, TINY)
    return out


def test_a_seed_gives_the_same_bytes_and_another_seed_others(tiny, tmp_path):
    generate(tmp_path / "again", TINY)
    assert _files(tmp_path / "again") == _files(tiny)
    generate(tmp_path / "other", Company(**{**TINY.__dict__, "seed": 4}))
    assert _files(tmp_path / "other")["hr/roster.csv"] != _files(tiny)["hr/roster.csv"]


def test_every_csv_has_its_header_and_parses(tiny):
    for name, header in HEADERS.items():
        raw = (tiny / name).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") == (name in WITH_BOM), name
        rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
        assert ",".join(rows[0]) == header, name
        assert len(rows) > 1, name
        assert {len(r) for r in rows} == {len(rows[0])}, name


def test_the_tiny_company_is_consistent(tiny):
    people = make_people(TINY)
    hosts = set(make_devices(TINY, people)["hostname"])
    roster = _csv(tiny, "hr/roster.csv")
    emails = set(roster["email"])
    assert len(roster) == 30 and len(emails) == 30
    assert (roster["manager_email"] == "").sum() == 1  # the CEO
    assert set(roster["manager_email"]) - {""} <= emails
    assert set(roster["status"]) <= {"active", "leave", "terminated"}
    ended = roster["termination_date"] != ""
    assert (ended == (roster["status"] == "terminated")).sum() == 30 - 2  # two leave soon
    assert (
        roster.loc[ended & (roster["status"] == "active"), "termination_date"] > "2026-11-23"
    ).all()

    seen = set()
    seen |= set(_csv(tiny, "installs/intune/AppInvRawData.csv")["DeviceName"])
    seen |= set(_csv(tiny, "installs/sccm/installed_software.csv")["ComputerName"])
    seen |= set(_csv(tiny, "installs/canonical/installs.csv")["hostname"])
    for line in (tiny / "installs/osquery/inventory.log").read_text().splitlines():
        doc = json.loads(line)
        assert {"name", "hostIdentifier", "calendarTime", "unixTime", "decorations"} <= set(doc)
        assert doc["action"] == "snapshot" and doc["snapshot"]
        assert doc["name"] in {
            f"pack_inventory_{t}" for t in ("programs", "apps", "deb_packages", "rpm_packages")
        }
        assert doc["decorations"]["hostname"] == doc["hostIdentifier"].lower()
        seen.add(doc["hostIdentifier"])
    assert seen and seen <= hosts

    seats = _csv(tiny, "assignments/assignments.csv")
    assert ((seats["user"] == "") != (seats["device"] == "")).all()
    assert set(seats["user"]) - {""} <= emails
    assert set(seats["device"]) - {""} <= hosts
    users = json.loads((tiny / "assignments/graph_users.json").read_text())["value"]
    licensed = {u["userPrincipalName"] for u in users if u["assignedLicenses"]}
    assert licensed <= emails
    usage = _csv(tiny, "usage/canonical_usage.csv")
    assert ((usage["product_code"] == "") != (usage["app_name"] == "")).all()

    for log in (tiny / "usage/flexlm").glob("*.log"):
        lines = log.read_text().splitlines()
        stamp = next(i for i, x in enumerate(lines) if " TIMESTAMP " in x)
        first_out = next((i for i, x in enumerate(lines) if " OUT: " in x), len(lines))
        assert stamp < first_out, log.name
        users = set(re.findall(r'(?:OUT|IN|DENIED): "[^"]+" ([^@\s]+)@(\S+)', log.read_text()))
        assert {u for u, _ in users} <= {e.split("@")[0] for e in emails}
        assert {h for _, h in users} <= hosts


def test_the_demo_is_what_the_generator_makes(tmp_path):
    generate(tmp_path, DEMO, sources_file=False)
    assert _files(tmp_path) == _files(DEMO_OUT)


def test_the_demo_tells_the_story():
    contracts = _csv(DEMO_OUT, "contracts/contracts.csv")
    roster = _csv(DEMO_OUT, "hr/roster.csv").set_index("email")
    today = pd.Timestamp("2026-11-23")
    ends = (pd.to_datetime(contracts["end_date"]) - today).dt.days
    assert {25, 55, 85, 200, 400} <= set(ends)
    assert ends[(ends <= 90)].sort_values().tolist() == [25, 55, 85]
    assert contracts.loc[ends == 85, ["auto_renew", "notice_days"]].values.tolist() == [
        ["true", "60"]
    ]
    assert contracts.loc[contracts["seats"] == "", "metric"].tolist() == ["site"]
    metric = contracts.set_index("product_code")["metric"]
    assert metric["MATHWORKS-MATLAB"] == metric["DS-SOLIDWORKS"] == "concurrent"
    assert metric["MS-SQL-SERVER-STD"] == "per_core"
    owners = contracts["owner_email"]
    assert (owners == "").sum() == 1
    assert roster.loc[owners[owners != ""], "status"].tolist().count("terminated") == 1
    assert contracts["product_code"].value_counts().max() == 2  # one product bought twice

    owned = (
        contracts.assign(seats=pd.to_numeric(contracts["seats"]))
        .groupby("product_code")["seats"]
        .sum()
    )
    seats = _csv(DEMO_OUT, "assignments/assignments.csv")
    held = seats.groupby("product_code").size()
    users = json.loads((DEMO_OUT / "assignments/graph_users.json").read_text())["value"]
    skus = json.loads((DEMO_OUT / "assignments/graph_subscribedSkus.json").read_text())["value"]
    for sku in skus:
        assert sku["consumedUnits"] <= sku["prepaidUnits"]["enabled"]
        assert sku["consumedUnits"] == sum(
            any(x["skuId"] == sku["skuId"] for x in u["assignedLicenses"]) for u in users
        )
    over = {code for code, n in held.items() if n > owned[code]}
    assert over == {"AUTODESK-AUTOCAD"}  # the one shortfall
    visio = next(s for s in skus if s["skuPartNumber"] == "VISIOCLIENT")
    assert visio["consumedUnits"] < visio["prepaidUnits"]["enabled"] / 4  # the big surplus
    holders = seats[seats["user"] != ""]
    assert (holders["user"].map(roster["status"]) == "terminated").sum() >= 5

    wave = _csv(DEMO_OUT, "bulk/onboarding_wave.csv")
    assert len(wave) == 40 and (wave["pilot"] == "true").sum() == 8
    assert set(wave["product_code"]) == {"ADOBE-ACROBAT-PRO", "JETBRAINS-PYCHARM-PRO"}
    assert (wave["user"].map(roster["status"]) == "active").all()
    assert (wave["user"].map(roster["termination_date"]) == "").all()
    already = set(zip(holders["product_code"], holders["user"], strict=True))
    assert not already & set(zip(wave["product_code"], wave["user"], strict=True))
    for code, adding in wave.groupby("product_code").size().items():
        assert held[code] + adding <= owned[code]


def test_demo_titles_are_recognised_as_the_catalog_says():
    from tasks.discovery_adapters import read_installs
    from tasks.recognition import load_catalog, recognize
    from tasks.sources import feed_files

    frames = [read_installs(path, fmt).frame for path, fmt in feed_files("installs", SOURCES)]
    installs = recognize(pd.concat(frames, ignore_index=True), load_catalog())
    code = installs.drop_duplicates("raw_title").set_index("raw_title")["product_code"]
    expected = {
        "Microsoft 365 Apps for enterprise - en-us": "MS-M365-E3",
        "Adobe Acrobat DC (64-bit)": "ADOBE-ACROBAT-PRO",
        "Adobe Acrobat Reader DC": "ADOBE-ACROBAT-READER",
        "JetBrains PyCharm 2023.2.1": "JETBRAINS-PYCHARM-PRO",
        "Google Chrome": "GOOGLE-CHROME",
        "Mozilla Firefox (x64 en-US)": "MOZILLA-FIREFOX",
        "7-Zip 22.01 (x64)": "7ZIP",
        "VLC media player": "VLC",
        "Tableau Desktop 2023.1": "TABLEAU-DESKTOP",
        "MATLAB R2023a": "MATHWORKS-MATLAB",
        "SOLIDWORKS 2022 SP05": "DS-SOLIDWORKS",
        "Autodesk AutoCAD 2024 - English": "AUTODESK-AUTOCAD",
        "Zoom Workplace": "ZOOM-WORKPLACE",
        "VMware Workstation": "VMWARE-WORKSTATION-PRO",
        "WinRAR 6.24 (64-bit)": "WINRAR",
        "µTorrent": "UTORRENT",
        "CCleaner": "CCLEANER-FREE",
        "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.36.32532": "MS-VCREDIST",
    }
    assert {title: code.get(title) for title in expected} == expected
    assert pd.isna(code["Contoso Expense Helper"])  # an internal tool nobody catalogued
    # more WinRAR installs than its per-device seats
    winrar = installs.loc[installs["product_code"] == "WINRAR", "hostname"].nunique()
    contracts = _csv(DEMO_OUT, "contracts/contracts.csv").set_index("product_code")
    assert winrar > int(contracts.loc["WINRAR", "seats"])


def test_every_demo_file_is_read_without_a_row_error():
    from tasks.assignment_feeds import read_canonical, read_graph_users, read_subscribed_skus
    from tasks.bulk_validate import check_cells, read_bulk_file
    from tasks.contracts import read_contracts
    from tasks.discovery_adapters import read_installs
    from tasks.people import read_roster
    from tasks.sources import feed_files
    from tasks.usage_adapters import read_usage_file

    errors, read = {}, 0

    def check(path: Path, rows: int, found: list) -> None:
        nonlocal read
        read += 1
        assert rows > 0, path
        errors[path.name] = found

    for path, _ in feed_files("hr", SOURCES):
        frame, found = read_roster(path)
        check(path, len(frame), found)
    for path, _ in feed_files("contracts", SOURCES):
        result = read_contracts(path)
        check(path, len(result.frame), result.errors)
    for path, fmt in feed_files("installs", SOURCES):
        result = read_installs(path, fmt)
        check(path, len(result.frame), result.errors)
    for path, fmt in feed_files("usage", SOURCES):
        result = read_usage_file(path, fmt)
        check(path, len(result.events), result.errors)
    for path, _ in feed_files("assignments", SOURCES):
        if path.suffix == ".csv":
            frame, found, _ = read_canonical(path)
        elif "Skus" in path.name:
            frame, found = read_subscribed_skus(path)
        else:
            frame, found, _ = read_graph_users(path)
        check(path, len(frame), found)
    bulk = DEMO_OUT / "bulk" / "onboarding_wave.csv"
    frame, found = check_cells(read_bulk_file(bulk), str(bulk))
    check(bulk, len(frame), found)
    assert read == 16
    assert {name: e for name, e in errors.items() if e} == {}
