"""Software recognition: normalising messy titles, matching them to catalog products,
analyst overrides, suggestions, the catalog file's validation, and the catalog in the store."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from licenseflow.commands import catalog as catalog_commands
from licenseflow.db import unit_of_work
from licenseflow.errors import InputRejected, LicenseflowError
from schemas.catalog import IGNORE, parse_catalog
from schemas.store import AuditLog, Device, Installation, Product, Vendor
from tasks import audit, recognition
from tasks.recognition import (
    alias_map,
    apply_override_to_store,
    confirm_override,
    load_catalog,
    load_overrides,
    normalize_publisher,
    normalize_title,
    recognize,
    suggest,
    sync_catalog_to_store,
    unmatched_titles,
)

LABELLED = Path(__file__).parent / "data" / "recognition" / "labelled_titles.csv"

FIXED = {  # code: metric, from the project brief
    "MS-M365-E3": "per_user",
    "MS-M365-E5": "per_user",
    "MS-VISIO-PLAN2": "per_user",
    "MS-PROJECT-PLAN3": "per_user",
    "MS-VISUAL-STUDIO-PRO": "per_user",
    "MS-SQL-SERVER-STD": "per_core",
    "ADOBE-ACROBAT-PRO": "per_user",
    "ADOBE-CC-ALL-APPS": "per_user",
    "ADOBE-PHOTOSHOP": "per_user",
    "AUTODESK-AUTOCAD": "per_user",
    "AUTODESK-REVIT": "per_user",
    "JETBRAINS-INTELLIJ-ULTIMATE": "per_user",
    "JETBRAINS-PYCHARM-PRO": "per_user",
    "TABLEAU-DESKTOP": "per_user",
    "MATHWORKS-MATLAB": "concurrent",
    "DS-SOLIDWORKS": "concurrent",
    "ZOOM-WORKPLACE": "per_user",
    "SLACK-PRO": "per_user",
    "ATLASSIAN-JIRA": "per_user",
    "SALESFORCE-SALES-CLOUD": "per_user",
    "VMWARE-WORKSTATION-PRO": "per_device",
    "WINRAR": "per_device",
    "GOOGLE-CHROME": "per_device",
    "MOZILLA-FIREFOX": "per_device",
    "7ZIP": "per_device",
    "VLC": "per_device",
    "NOTEPADPP": "per_device",
    "UTORRENT": "per_device",
    "CCLEANER-FREE": "per_device",
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def frame(rows):
    """rows: (raw_title, publisher, version)."""
    return pd.DataFrame(rows, columns=["raw_title", "publisher", "version"], dtype="str")


def codes_of(catalog, rows, overrides=None):
    got = recognize(frame(rows), catalog, overrides)["product_code"]
    return [None if pd.isna(code) else code for code in got]


# --- the hand-labelled titles -----------------------------------------------------------------


def test_every_hand_labelled_title_is_recognised_as_labelled(catalog):
    labelled = pd.read_csv(LABELLED, dtype="str", keep_default_na=False, na_values=[""])
    assert len(labelled) >= 100
    got = recognize(labelled, catalog)
    expected = labelled["expected_product_code"].fillna("")
    actual = got["product_code"].fillna("")
    wrong = got.assign(expected=expected, actual=actual)[expected != actual]
    accuracy = 1 - len(wrong) / len(labelled)
    listing = wrong[["raw_title", "normalized_title", "expected", "actual"]].to_string()
    assert wrong.empty, f"accuracy {accuracy:.1%} on {len(labelled)} titles; wrong:\n{listing}"
    # the list exercises every feed shape and both outcomes
    assert set(labelled["source"]) >= {"windows_arp", "macos_apps", "osquery_deb", "intune"}
    assert expected.eq("").sum() >= 10
    assert set(expected) - {""} <= catalog.codes()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("Microsoft Visio Viewer 2016", "MS-VISIO-VIEWER"),
        ("Adobe Acrobat Reader DC - Deutsch", "ADOBE-ACROBAT-READER"),
        ("Microsoft Teams", "MS-TEAMS"),
        ("Microsoft Visual C++ 2015 Redistributable (x86) - 14.0.23026", "MS-VCREDIST"),
        ("PyCharm Community Edition 2023.2.1", "JETBRAINS-PYCHARM-COMMUNITY"),
        ("IntelliJ IDEA Community Edition 2023.3.2", "JETBRAINS-INTELLIJ-COMMUNITY"),
        ("VMware Workstation 16 Player", "VMWARE-WORKSTATION-PLAYER"),
        ("Autodesk AutoCAD LT 2024 - English", "AUTODESK-AUTOCAD-LT"),
        ("Adobe Photoshop Lightroom Classic", "ADOBE-LIGHTROOM"),
    ],
)
def test_look_alikes_are_not_taken_for_the_licensed_product(catalog, raw, code):
    assert codes_of(catalog, [(raw, None, None)]) == [code]


def test_publisher_rule_needs_the_publisher(catalog):
    rows = [
        ("code", "Microsoft Corporation <vscode-linux@microsoft.com>", "1.85.1"),
        ("code", None, "1.85.1"),
        ("code", "Some Other Maintainer", "1.0"),
    ]
    assert codes_of(catalog, rows) == ["MS-VSCODE", None, None]


def test_version_ranges_split_oracle_java_by_release(catalog):
    rows = [
        ("Java 8 Update 211", "Oracle Corporation", "8.0.2110.12"),  # first OTN release
        ("Java 8 Update 202", "Oracle Corporation", "8.0.2020.8"),  # last free update
        ("Java 8 Update 381", "Oracle Corporation", None),  # no version: not provable
    ]
    assert codes_of(catalog, rows) == ["ORACLE-JAVA-SE", "ORACLE-JAVA-FREE", "ORACLE-JAVA-FREE"]


def test_recognize_keeps_the_index_and_handles_missing_values(catalog):
    installs = frame([("7-Zip 22.01 (x64)", "Igor Pavlov", "22.01"), (None, None, None)])
    installs.index = [10, 20]
    got = recognize(installs, catalog)
    assert list(got.index) == [10, 20]
    assert got.loc[10, "product_code"] == "7ZIP"
    assert got.loc[10, "match_kind"] == "rule"
    assert got.loc[10, "normalized_title"] == "7-zip"
    assert pd.isna(got.loc[20, "product_code"]) and pd.isna(got.loc[20, "match_kind"])
    assert list(installs.columns) == ["raw_title", "publisher", "version"]  # input untouched


def test_recognize_normalises_each_unique_title_once(catalog, monkeypatch):
    calls = []
    original = recognition.normalize_title
    monkeypatch.setattr(recognition, "normalize_title", lambda t: calls.append(t) or original(t))
    pattern = [
        ("Google Chrome", "Google LLC", "120.0"),
        ("code", "Microsoft Corporation", "1.85.1"),  # its rule checks the publisher
        ("VLC media player", "VideoLAN", "3.0.20"),
        ("code", None, "1.0"),
    ]
    installs = frame(pattern * 5_000)
    got = recognize(installs, catalog)
    assert sorted(calls) == ["Google Chrome", "VLC media player", "code"]
    expected = ["GOOGLE-CHROME", "MS-VSCODE", "VLC", None] * 5_000
    assert [None if pd.isna(c) else c for c in got["product_code"]] == expected
    assert got["normalized_title"].tolist()[:4] == [
        "google chrome",
        "code",
        "vlc media player",
        "code",
    ]


# --- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        # bitness
        ("7-Zip 22.01 (x64)", "7-zip"),
        ("Notepad++ (64-bit x64)", "notepad++"),
        ("Zoom(64bit)", "zoom"),
        ("Wireshark 4.2.0 64-bit", "wireshark"),
        ("Adobe Photoshop CS6 (64 Bit)", "adobe photoshop cs6"),
        # language suffixes
        ("Microsoft 365 Apps for enterprise - en-us", "microsoft 365 apps for enterprise"),
        ("Mozilla Firefox (x64 en-US)", "mozilla firefox"),
        ("Adobe Acrobat Reader DC - Deutsch", "adobe acrobat reader dc"),
        ("Microsoft Access database engine 2016 (English)", "microsoft access database engine"),
        ("Microsoft Visual Studio 2010 Professional - ENU", "microsoft visual studio professional"),
        # edition spellings
        ("Microsoft Office Pro Plus 2013", "microsoft office professional plus"),
        ("Microsoft Office 365 ProPlus", "microsoft office 365 professional plus"),
        ("PyCharm Community Edition", "pycharm community"),
        ("IntelliJ IDEA CE.app", "intellij idea community"),
        ("Microsoft Office Home & Student 2021", "microsoft office home and student"),
        # trademark signs
        ("Microsoft® Office Professional Plus 2019", "microsoft office professional plus"),
        ("Java(TM) SE Development Kit 17.0.8", "java se development kit"),
        ("Intel(R) Chipset Device Software", "intel chipset device software"),
        ("Acme™ Designer", "acme designer"),
        # versions and years
        ("JetBrains PyCharm 2023.2.1", "jetbrains pycharm"),
        ("MATLAB R2023a", "matlab"),
        ("SOLIDWORKS 2022 SP05", "solidworks"),
        ("Java 8 Update 381", "java 8"),
        ("TreeSize Free V4.6.3", "treesize free"),
        ("Tableau 2023.1 (20231.23.0322.1400)", "tableau"),
        (
            "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33130",
            "microsoft visual c++ redistributable",
        ),  # noqa: E501
        ("virtualbox-7.0", "virtualbox"),
        # what must survive
        ("Microsoft 365 - en-us", "microsoft 365"),
        ("Autodesk 3ds Max 2024", "autodesk 3ds max"),
        ("google-chrome-stable", "google-chrome-stable"),
        ("Microsoft Teams (work or school)", "microsoft teams (work or school)"),
        ("µTorrent", "μtorrent"),
        ("  ", ""),
        (None, ""),
    ],
)
def test_normalize_title(raw, normalised):
    assert normalize_title(raw) == normalised


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            list("abcdeinprstuvx0123456789 .-()&+,_™®")
            + ["en-us", " - ", "x64", "64-bit", "2016", " pro", " plus", "(r)", "edition", " sp"]
        ),
        max_size=20,
    ).map("".join)
)
def test_normalize_title_is_idempotent(text):
    once = normalize_title(text)
    assert normalize_title(once) == once


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Adobe Systems Incorporated", "adobe systems"),
        ("Microsoft Corporation", "microsoft"),
        ("JetBrains s.r.o.", "jetbrains"),
        ("Tableau Software, LLC", "tableau software"),
        ("Dassault Systèmes SolidWorks Corp", "dassault systemes solidworks"),
        ("Microsoft Corporation <vscode-linux@microsoft.com>", "microsoft"),
        (None, ""),
    ],
)
def test_normalize_publisher(raw, normalised):
    assert normalize_publisher(raw) == normalised


# --- overrides and suggestions ----------------------------------------------------------------


def test_an_override_wins_over_the_rules(catalog, tmp_path):
    path = tmp_path / "overrides.yaml"
    rows = [("Microsoft SQL Server 2019 (64-bit)", "Microsoft Corporation", "15.0.2000.5")]
    assert codes_of(catalog, rows) == ["MS-SQL-SERVER-STD"]  # the rule's conservative guess

    entry = confirm_override(
        "Microsoft SQL Server 2019 (64-bit)", "ms-sql-server-dev", path=path, actor="ana"
    )
    assert entry["title"] == "microsoft sql server" and entry["product_code"] == "MS-SQL-SERVER-DEV"
    got = recognize(frame(rows), catalog, load_overrides(path))
    assert got["product_code"].tolist() == ["MS-SQL-SERVER-DEV"]
    assert got["match_kind"].tolist() == ["override"]

    saved = yaml.safe_load(path.read_text())["overrides"]
    assert [(e["title"], e["product_code"], e["confirmed_by"]) for e in saved] == [
        ("microsoft sql server", "MS-SQL-SERVER-DEV", "ana")
    ]


def test_a_publisher_override_applies_to_that_publisher_only(catalog, tmp_path):
    path = tmp_path / "overrides.yaml"
    confirm_override("Designer", "CORELDRAW", path=path, publisher="Corel Corporation")
    rows = [("Designer 5.1", "Corel Corp.", "5"), ("Designer 5.1", "Someone Else", "5")]
    assert codes_of(catalog, rows, load_overrides(path)) == ["CORELDRAW", None]


def test_confirming_again_replaces_the_earlier_override(catalog, tmp_path):
    path = tmp_path / "overrides.yaml"
    confirm_override("Contoso Payroll Client 4.2", "SAS-BASE", path=path)
    confirm_override("contoso payroll client", IGNORE, path=path)
    assert load_overrides(path) == {("contoso payroll client", None): IGNORE}
    got = recognize(
        frame([("Contoso Payroll Client 5.0", None, None)]), catalog, load_overrides(path)
    )
    assert got["product_code"].isna().all() and got["match_kind"].tolist() == ["ignored"]


def test_confirming_an_unknown_product_code_is_refused(catalog, tmp_path):
    path = tmp_path / "overrides.yaml"
    with pytest.raises(
        LicenseflowError, match="unknown product code 'ADOBE-PHOTOSHOPP'.*ADOBE-PHOTOSHOP"
    ):
        confirm_override("Foo", "ADOBE-PHOTOSHOPP", path=path, catalog=catalog)
    assert not path.exists()


def test_a_broken_overrides_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("overrides:\n  - title: foo\n")
    with pytest.raises(InputRejected, match="overrides.yaml.*title and product_code"):
        load_overrides(path)


def test_ignored_titles_have_no_product(catalog):
    got = recognize(
        frame([("Autodesk AutoCAD 2024 Language Pack - English", "Autodesk", "1")]), catalog
    )
    assert got["product_code"].isna().all() and got["match_kind"].tolist() == ["ignored"]


def test_suggest_finds_the_product_for_a_near_miss(catalog):
    titles = ["Adobe Acrobt Pro 2020", "Tableu Destkop", "zzzz qqqq", "Contoso Payroll Client"]
    found = suggest(titles, catalog)
    best = found.drop_duplicates("normalized_title").set_index("normalized_title")
    assert best.loc["adobe acrobt pro", "product_code"] == "ADOBE-ACROBAT-PRO"
    assert best.loc["tableu destkop", "product_code"] == "TABLEAU-DESKTOP"
    assert "zzzz qqqq" not in best.index  # below the cutoff: no suggestion at all
    assert "contoso payroll client" not in best.index  # one shared word ("client") is not enough
    assert found.groupby("normalized_title").size().max() <= 3
    assert list(found.columns) == ["normalized_title", "product_code", "product_name", "score"]
    acrobat = found[found["normalized_title"] == "adobe acrobt pro"]
    assert acrobat["score"].is_monotonic_decreasing


# --- the catalog file -------------------------------------------------------------------------


def test_the_catalog_covers_the_fixed_codes_and_150_products(catalog):
    by_code = catalog.by_code()
    assert len(by_code) >= 150
    assert {code: by_code[code].metric for code in FIXED if code in by_code} == FIXED
    assert by_code["UTORRENT"].classification == "denied"
    assert by_code["CCLEANER-FREE"].classification == "denied"
    for code in ("GOOGLE-CHROME", "MOZILLA-FIREFOX", "7ZIP", "VLC", "NOTEPADPP"):
        assert by_code[code].classification == "freeware"
    counts = pd.Series([p.classification for p in catalog.products]).value_counts()
    assert counts["commercial"] >= 100 and counts["freeware"] >= 40 and counts["denied"] >= 10


def test_aliases_map_the_usage_feeds_to_the_fixed_codes(catalog):
    graph = alias_map(catalog, "graph_skus")
    assert {s: graph[s] for s in ("SPE_E3", "SPE_E5", "VISIOCLIENT", "PROJECTPROFESSIONAL")} == {
        "SPE_E3": "MS-M365-E3",
        "SPE_E5": "MS-M365-E5",
        "VISIOCLIENT": "MS-VISIO-PLAN2",
        "PROJECTPROFESSIONAL": "MS-PROJECT-PLAN3",
    }
    flexlm = alias_map(catalog, "flexlm_features")
    assert flexlm["MATLAB"] == "MATHWORKS-MATLAB" and flexlm["mlm:matlab"] == "MATHWORKS-MATLAB"
    assert flexlm["solidworks"] == "DS-SOLIDWORKS" and flexlm["SW_D:solidworks"] == "DS-SOLIDWORKS"
    entra = alias_map(catalog, "entra_apps")
    okta = alias_map(catalog, "okta_apps")
    for name, code in [
        ("Zoom", "ZOOM-WORKPLACE"),
        ("slack", "SLACK-PRO"),
        ("Jira Software", "ATLASSIAN-JIRA"),
        ("Atlassian Cloud", "ATLASSIAN-JIRA"),
        ("Salesforce", "SALESFORCE-SALES-CLOUD"),
    ]:
        assert entra[name] == code and okta[name] == code
    assert entra.get("OFFICE 365 EXCHANGE ONLINE") == "MS-M365-E3"
    assert entra.get("1FEC8E78-BCE4-4AAF-AB1B-5451CC387264") == "MS-M365-E3"  # Teams appId
    assert entra.get("Unknown App") is None
    # a whole column maps at once, since the keys are stored casefolded
    column = pd.Series([" SLACK", "zoom", "nope"]).str.strip().str.casefold().map(okta)
    assert column.tolist()[:2] == ["SLACK-PRO", "ZOOM-WORKPLACE"] and pd.isna(column[2])
    with pytest.raises(ValueError, match="unknown alias kind"):
        alias_map(catalog, "teams_apps")


GOOD_ENTRY = """\
version: 1
products:
  - code: ACME-CAD
    name: Acme CAD
    vendor: Acme
    metric: per_user
    classification: commercial
    match:
      - name: 'acme cad'
"""


def test_a_valid_small_catalog_loads():
    catalog = parse_catalog(GOOD_ENTRY, "small.yaml")
    assert [p.code for p in catalog.products] == ["ACME-CAD"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("      - name: 'acme cad'", "      - name: 'acme (cad'"),
            r"small.yaml, row 3, column 'match\[0\].name' \(value 'acme \(cad'\): "
            r"product ACME-CAD \(entry 1\): not a valid regular expression",
        ),
        (
            ("      - name: 'acme cad'", "      - name: 'Acme CAD'"),
            r"column 'match\[0\].name'.*product ACME-CAD.*upper-case",
        ),
        (
            ("    metric: per_user", "    metric: per_seat"),
            r"row 3, column 'metric' \(value 'per_seat'\): product ACME-CAD.*per_user",
        ),
        (
            ("    metric: per_user\n", ""),
            r"row 3, column 'metric': product ACME-CAD \(entry 1\): Field required",
        ),
        (
            ("      - name: 'acme cad'", "      - name: 'acme cad'\n        versions: '~16'"),
            r"column 'match\[0\].versions'.*'~16' is not like '>=16'",
        ),
        (
            ("classification: commercial", "classification: freeware"),
            r"product ACME-CAD.*a freeware product uses metric per_device \(got per_user\)",
        ),
        (
            ("  - code: ACME-CAD", "  - code: acme cad"),
            r"column 'code' \(value 'acme cad'\): product acme cad \(entry 1\)",
        ),
    ],
)
def test_a_malformed_catalog_entry_is_named_in_the_error(change, expected):
    text = GOOD_ENTRY.replace(*change)
    assert text != GOOD_ENTRY
    with pytest.raises(InputRejected, match=expected):
        parse_catalog(text, "small.yaml")


def test_an_alias_claimed_by_two_products_is_refused():
    text = GOOD_ENTRY.replace("    match:", "    okta_apps: [Acme]\n    match:")
    text += (
        text.split("products:\n", 1)[1]
        .replace("ACME-CAD", "ACME-VIEW")
        .replace("acme cad", "acme view")
    )
    with pytest.raises(InputRejected, match=r"row 11, column 'okta_apps'.*ACME-VIEW.*ACME-CAD"):
        parse_catalog(text, "small.yaml")


def test_duplicate_codes_and_bad_yaml_are_refused():
    duplicate = GOOD_ENTRY + GOOD_ENTRY.split("products:\n", 1)[1]
    with pytest.raises(InputRejected, match=r"column 'code'.*duplicate code"):
        parse_catalog(duplicate, "small.yaml")
    with pytest.raises(InputRejected, match=r"small.yaml, row 3.*not valid YAML"):
        parse_catalog("products:\n  - code: [unclosed\n", "small.yaml")
    with pytest.raises(InputRejected, match="expected a mapping with a 'products:' list"):
        parse_catalog("- just a list\n", "small.yaml")


def test_load_catalog_names_the_file_it_could_not_read(tmp_path):
    with pytest.raises(InputRejected, match="missing.yaml.*cannot read the catalog"):
        load_catalog(tmp_path / "missing.yaml")


# --- the catalog in the store (SQLite and PostgreSQL) -----------------------------------------


def test_sync_catalog_to_store_is_idempotent_and_audited(engine, catalog):
    with unit_of_work(engine) as session:
        created = sync_catalog_to_store(session, catalog)
    with unit_of_work(engine) as session:
        again = sync_catalog_to_store(session, catalog)
        products = session.execute(select(func.count()).select_from(Product)).scalar_one()
        vendors = session.execute(select(func.count()).select_from(Vendor)).scalar_one()
        entries = session.execute(
            select(AuditLog.action, AuditLog.entity, func.count())
            .where(AuditLog.actor == "catalog")
            .group_by(AuditLog.action, AuditLog.entity)
        ).all()
        matlab = session.execute(
            select(Product).where(Product.code == "MATHWORKS-MATLAB")
        ).scalar_one()
        assert audit.verify(session).ok
    n_vendors = len({p.vendor for p in catalog.products})
    assert (created, again) == (len(catalog.products), 0)
    assert (products, vendors) == (len(catalog.products), n_vendors)
    assert sorted(entries) == [
        ("create", "product", len(catalog.products)),
        ("create", "vendor", n_vendors),
    ]
    assert (matlab.metric, matlab.classification, matlab.name) == (
        "concurrent",
        "commercial",
        "MATLAB",
    )


def test_sync_updates_names_but_leaves_a_contract_set_metric(engine):
    first = parse_catalog(GOOD_ENTRY, "small.yaml")
    with unit_of_work(engine) as session:
        sync_catalog_to_store(session, first)
        session.execute(
            Product.__table__.update().where(Product.code == "ACME-CAD").values(metric="concurrent")
        )
    renamed = parse_catalog(GOOD_ENTRY.replace("name: Acme CAD", "name: Acme CAD 2"), "small.yaml")
    with unit_of_work(engine) as session:
        assert sync_catalog_to_store(session, renamed) == 1
        row = session.execute(select(Product).where(Product.code == "ACME-CAD")).scalar_one()
        last = session.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(1)).scalar_one()
    assert (row.name, row.metric) == ("Acme CAD 2", "concurrent")
    assert (last.action, last.entity_id, last.before, last.after) == (
        "update",
        "ACME-CAD",
        {"name": "Acme CAD"},
        {"name": "Acme CAD 2"},
    )


def _add_installs(engine, rows):
    """rows: (hostname, raw_title, publisher, product_code or None)."""
    now = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
    with unit_of_work(engine) as session:
        ids = dict(session.execute(select(Product.code, Product.id)).tuples().all())
        hosts = sorted({r[0] for r in rows})
        session.execute(insert(Device), [{"hostname": h} for h in hosts])
        devices = dict(session.execute(select(Device.hostname, Device.id)).tuples().all())
        session.execute(
            insert(Installation),
            [
                {
                    "install_key": hashlib.sha1(f"{h}|{t}|{p}".encode()).hexdigest(),
                    "device_id": devices[h],
                    "raw_title": t,
                    "publisher": p,
                    "normalized_title": normalize_title(t),
                    "product_id": ids.get(code),
                    "source": "canonical",
                    "row_hash": "x",
                    "first_seen": now,
                    "last_seen": now,
                }
                for h, t, p, code in rows
            ],
        )


UNMATCHED_ROWS = [
    ("ws-1", "Contoso Payroll Client 4.2", "Contoso Ltd", None),
    ("ws-2", "Contoso Payroll Client 4.3", "Contoso Ltd", None),
    ("ws-2", "Tableu Destkop 2023.1", "Tableau Software", None),
    ("ws-3", "Contoso Payroll Client 4.2", "Other Vendor", None),
    ("ws-1", "Autodesk Material Library 2024", "Autodesk", None),  # catalog ignore list
    ("ws-1", "Google Chrome", "Google LLC", "GOOGLE-CHROME"),
]


def test_unmatched_titles_and_confirming_one_in_the_store(engine, catalog, tmp_path):
    with unit_of_work(engine) as session:
        sync_catalog_to_store(session, catalog)
    _add_installs(engine, UNMATCHED_ROWS)
    with unit_of_work(engine) as session:
        found = unmatched_titles(session, catalog=catalog, overrides={})
    assert found[["normalized_title", "devices", "installs"]].values.tolist() == [
        ["contoso payroll client", 3, 3],
        ["tableu destkop", 1, 1],
    ]
    assert found.set_index("normalized_title").loc["tableu destkop", "suggested_code"] == (
        "TABLEAU-DESKTOP"
    )
    with unit_of_work(engine) as session:
        changed = apply_override_to_store(
            session, "Contoso Payroll Client", "SAS-BASE", publisher="Contoso Ltd.", actor="ana"
        )
        again = apply_override_to_store(
            session, "Contoso Payroll Client", "SAS-BASE", publisher="Contoso Ltd.", actor="ana"
        )
        sas = session.execute(select(Product.id).where(Product.code == "SAS-BASE")).scalar_one()
        pointed = session.execute(
            select(Installation.publisher, Installation.product_id)
            .where(Installation.normalized_title == "contoso payroll client")
            .order_by(Installation.id)
        ).all()
        entry = session.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(1)).scalar_one()
        assert audit.verify(session).ok
    assert (changed, again) == (2, 0)
    assert pointed == [("Contoso Ltd", sas), ("Contoso Ltd", sas), ("Other Vendor", None)]
    assert (entry.actor, entry.action, entry.entity_id) == (
        "ana",
        "recognition_override",
        "contoso payroll client",
    )
    with unit_of_work(engine) as session:
        ignored = {("tableu destkop", None): IGNORE}
        left = unmatched_titles(session, catalog=catalog, overrides=ignored)
    assert left[["normalized_title", "devices"]].values.tolist() == [["contoso payroll client", 1]]


def test_confirming_a_product_missing_from_the_store_says_what_to_do(engine):
    with unit_of_work(engine) as session, pytest.raises(LicenseflowError, match="slm catalog sync"):
        apply_override_to_store(session, "Foo", "GOOGLE-CHROME")


# --- the command line (a real SQLite store) ---------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # Rich wraps tables to the terminal's width
    app = typer.Typer()
    catalog_commands.register(app, typer.Typer())
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def test_cli_check_prints_counts_by_classification(cli, catalog):
    result = cli("catalog", "check")
    assert result.exit_code == 0, result.output
    counts = pd.Series([p.classification for p in catalog.products]).value_counts()
    for name in ("commercial", "freeware", "denied"):
        assert f"{name}" in result.output and str(counts[name]) in result.output
    assert f"{len(catalog.products)} products" in result.output


def test_cli_check_fails_on_a_broken_catalog(cli, tmp_path):
    broken = tmp_path / "catalog.yaml"
    broken.write_text(GOOD_ENTRY.replace("'acme cad'", "'acme (cad'"))
    result = cli("catalog", "check", "--file", str(broken))
    assert result.exit_code == 1
    assert "ACME-CAD" in result.output and "not a valid regular expression" in result.output


def test_cli_unmatched_then_confirm_then_unmatched(cli, sqlite_engine, runtime_dir):
    assert cli("catalog", "sync").exit_code == 0
    _add_installs(sqlite_engine, UNMATCHED_ROWS)

    listed = cli("catalog", "unmatched", "--limit", "5")
    assert listed.exit_code == 0, listed.output
    assert "contoso payroll client" in listed.output and "TABLEAU-DESKTOP" in listed.output
    assert "autodesk material library" not in listed.output

    refused = cli("catalog", "confirm", "Tableu Destkop", "TABLEAU-DESKTP")
    assert refused.exit_code == 1 and "unknown product code" in refused.output
    assert not (runtime_dir / "catalog_overrides.yaml").exists()

    done = cli("catalog", "confirm", "Tableu Destkop 2023.1", "tableau-desktop", "--actor", "ana")
    assert done.exit_code == 0, done.output
    assert "'tableu destkop' -> TABLEAU-DESKTOP; 1 installation row(s) updated" in done.output
    assert load_overrides() == {("tableu destkop", None): "TABLEAU-DESKTOP"}

    ignored = cli("catalog", "confirm", "contoso payroll client", "IGNORE")
    assert ignored.exit_code == 0, ignored.output
    assert "no unmatched titles" in cli("catalog", "unmatched").output
    with unit_of_work(sqlite_engine) as session:
        tableau = session.execute(
            select(Product.code)
            .join(Installation, Installation.product_id == Product.id)
            .where(Installation.normalized_title == "tableu destkop")
        ).scalar_one()
    assert tableau == "TABLEAU-DESKTOP"
