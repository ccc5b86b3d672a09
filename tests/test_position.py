"""The license position rules, pure (no store, no Prefect): a small company with every metric
whose position was computed by hand, plus the edges of each rule.

The company on 2026-06-30 (window: 2026-04-01..06-30; grace: seats given by 2026-05-31):
people A..H (C terminated), devices X (primary user F), Y (A), Z (nobody), W (B), V (G),
servers S1 (8 cores, nobody), S2 (cores unknown, A).

| product | metric | entitled | consumed | short | surplus | reclaim | unit | true-up | waste |
| SLACK-PRO | per_user | 10+5 | A B C D seats, A E F used: 6 | 0 | 9 | B C: 2 | 110 | 0 | 220 |
| ADOBE-ACROBAT-PRO | per_user | 2 | A B G seats: 3 | 1 | 0 | 0 (not metered) | 240 | 240 | 0 |
| WINRAR | per_device | 3 | X Y Z W installed, V seat: 5 | 2 | 0 | 0 | 30 | 60 | 0 |
| MATHWORKS-MATLAB | concurrent | 10 | peak 12 (14 was before) | 2 | 0 | 0 | 2350 | 4700 | 0 |
| MS-SQL-SERVER-STD | per_core | 16 | S1 8 + S2 4 (default) = 12 | 0 | 4 | 0 | 1859 | 0 | 0 |
| ATLASSIAN-JIRA | site | unlimited | A B E used: 3 | 0 | 0 | 0 | - | 0 | 0 |
| AUTODESK-AUTOCAD | per_user | 0 (ended 03-31) | G seat: 1 | 1 | 0 | 0 | 2030 (last) | 2030 | 0 |
Slack unit cost: (10 x 100 + 5 x 130) / 15 = 110.00.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tasks.reconciliation import (
    POSITION_COLUMNS,
    DriftThresholds,
    Facts,
    Rules,
    chargeback_frame,
    drift,
    entitlement,
    license_position,
    reclaimable_seats,
)

DAY = dt.date(2026, 6, 30)
RULES = Rules(window_days=90, grace_days=30, default_cores=4)
D = dt.date
A, B, C, D_, E, F, G, H = range(1, 9)
X, Y, Z, W, V, S1, S2 = range(11, 18)
SLACK, ACROBAT, WINRAR, MATLAB, SQL, JIRA, AUTOCAD, CHROME = range(101, 109)

PRODUCTS = [
    (SLACK, "SLACK-PRO", "Slack Pro", "Salesforce", "per_user", None),
    (ACROBAT, "ADOBE-ACROBAT-PRO", "Adobe Acrobat Pro", "Adobe", "per_user", None),
    (WINRAR, "WINRAR", "WinRAR", "win.rar", "per_device", None),
    (MATLAB, "MATHWORKS-MATLAB", "MATLAB", "MathWorks", "concurrent", None),
    (SQL, "MS-SQL-SERVER-STD", "SQL Server Standard", "Microsoft", "per_core", None),
    (JIRA, "ATLASSIAN-JIRA", "Jira Software Cloud", "Atlassian", "site", None),
    (AUTOCAD, "AUTODESK-AUTOCAD", "Autodesk AutoCAD", "Autodesk", "per_user", None),
]


def frame(rows, columns) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def company() -> Facts:
    """The company as the store reads it on 2026-06-30 (tasks.reconciliation_store)."""
    products = frame(
        PRODUCTS,
        ["product_id", "product_code", "product_name", "vendor", "metric", "inactivity_days"],
    )
    contracts = frame(
        [
            (SLACK, 10, 100.0, "EUR", D(2026, 1, 1), D(2026, 12, 31)),
            (SLACK, 5, 130.0, "EUR", D(2026, 4, 1), D(2027, 3, 31)),
            (ACROBAT, 2, 240.0, "USD", D(2026, 1, 1), D(2026, 12, 31)),
            (WINRAR, 3, 30.0, "USD", D(2026, 1, 1), D(2026, 12, 31)),
            (MATLAB, 10, 2350.0, "USD", D(2026, 1, 1), D(2026, 12, 31)),
            (SQL, 16, 1859.0, "USD", D(2026, 1, 1), D(2026, 12, 31)),
            (JIRA, None, 54000.0, "USD", D(2026, 1, 1), D(2026, 12, 31)),
            (AUTOCAD, 5, 2030.0, "USD", D(2025, 4, 1), D(2026, 3, 31)),
        ],
        ["product_id", "seats", "unit_cost", "currency", "start_date", "end_date"],
    )
    contracts["seats"] = contracts["seats"].astype("Int64")
    seats = frame(
        [
            (SLACK, A, None, ts("2026-01-02")),
            (SLACK, B, None, ts("2026-01-10")),
            (SLACK, C, None, ts("2026-01-02")),
            (SLACK, D_, None, ts("2026-06-20")),
            (ACROBAT, A, None, ts("2026-01-15")),
            (ACROBAT, B, None, ts("2026-01-15")),
            (ACROBAT, G, None, ts("2026-01-15")),
            (WINRAR, None, V, ts("2026-02-01")),
            (AUTOCAD, G, None, ts("2026-04-20")),
        ],
        ["product_id", "person_id", "device_id", "assigned_at"],
    )
    installed = frame(
        [(SLACK, X), (WINRAR, X), (WINRAR, Y), (WINRAR, Z), (WINRAR, W), (SQL, S1), (SQL, S2)],
        ["product_id", "device_id"],
    )
    usage = frame(
        [
            (SLACK, A, None, D(2026, 6, 25)),
            (SLACK, E, None, D(2026, 6, 1)),
            (SLACK, None, X, D(2026, 6, 28)),  # device X: its primary user F used it
            (MATLAB, A, None, D(2026, 6, 10)),
            (MATLAB, B, None, D(2026, 5, 20)),
            (JIRA, A, None, D(2026, 6, 29)),
            (JIRA, B, None, D(2026, 6, 29)),
            (JIRA, E, None, D(2026, 4, 1)),  # the window's first day still counts
        ],
        ["product_id", "person_id", "device_id", "last_day"],
    )
    for column in ("person_id", "device_id"):
        usage[column] = usage[column].astype("Int64")
        seats[column] = seats[column].astype("Int64")
    peaks = frame(
        [
            (MATLAB, D(2026, 3, 1), 14),  # before the window
            (MATLAB, D(2026, 5, 10), 8),
            (MATLAB, D(2026, 6, 15), 12),
        ],
        ["product_id", "day", "peak"],
    )
    people = frame(
        [
            (A, "active", "CC1", "Eng"),
            (B, "active", "CC1", "Eng"),
            (C, "terminated", "CC2", "Sales"),
            (D_, "active", "CC2", "Sales"),
            (E, "active", "CC3", "Ops"),
            (F, "leave", "CC3", "Ops"),
            (G, "active", "CC1", "Design"),
            (H, "active", "CC2", "Sales"),
        ],
        ["person_id", "status", "cost_center", "department"],
    )
    devices = frame(
        [(X, 4, F), (Y, 4, A), (Z, 4, None), (W, 4, B), (V, 4, G), (S1, 8, None), (S2, None, A)],
        ["device_id", "cores", "person_id"],
    )
    devices["cores"] = devices["cores"].astype("Int64")
    devices["person_id"] = devices["person_id"].astype("Int64")
    return Facts(
        day=DAY,
        products=products,
        contracts=contracts,
        seats=seats,
        installed=installed,
        usage=usage,
        metered={SLACK, MATLAB, JIRA},
        peaks=peaks,
        people=people,
        devices=devices,
    )


# product: entitled, consumed, assigned, installed, active, shortfall, surplus, reclaimable,
#          unit_cost, currency, true_up_cost, waste
EXPECTED = {
    "SLACK-PRO": (15, 6, 4, 1, 3, 0, 9, 2, 110.0, "EUR", 0.0, 220.0),
    "ADOBE-ACROBAT-PRO": (2, 3, 3, 0, 0, 1, 0, 0, 240.0, "USD", 240.0, 0.0),
    "WINRAR": (3, 5, 1, 4, 0, 2, 0, 0, 30.0, "USD", 60.0, 0.0),
    "MATHWORKS-MATLAB": (10, 12, 0, 0, 2, 2, 0, 0, 2350.0, "USD", 4700.0, 0.0),
    "MS-SQL-SERVER-STD": (16, 12, 0, 2, 0, 0, 4, 0, 1859.0, "USD", 0.0, 0.0),
    "ATLASSIAN-JIRA": (None, 3, 0, 0, 3, 0, 0, 0, None, "USD", 0.0, 0.0),
    "AUTODESK-AUTOCAD": (0, 1, 1, 0, 0, 1, 0, 0, 2030.0, "USD", 2030.0, 0.0),
}
FIELDS = [
    "entitled",
    "consumed",
    "assigned",
    "installed",
    "active",
    "shortfall",
    "surplus",
    "reclaimable",
    "unit_cost",
    "currency",
    "true_up_cost",
    "waste",
]


def as_expected(position: pd.DataFrame) -> dict[str, tuple]:
    """The position's rows as plain tuples (NA -> None) to compare with hand-made values."""
    rows = {}
    for record in position.to_dict("records"):
        rows[record["product_code"]] = tuple(
            None if record[f] is None or pd.isna(record[f]) else record[f] for f in FIELDS
        )
    return rows


def test_every_metric_against_the_hand_computed_position():
    position = license_position(company(), RULES)
    assert list(position.columns) == POSITION_COLUMNS
    assert as_expected(position) == EXPECTED
    by_code = position.set_index("product_code")
    assert by_code.at["MS-SQL-SERVER-STD", "cores_unknown"] == 1  # S2 counted as 4 cores
    assert by_code.at["ATLASSIAN-JIRA", "annual_cost"] == 54000.0
    assert by_code.at["SLACK-PRO", "annual_cost"] == 10 * 100 + 5 * 130
    assert by_code.at["AUTODESK-AUTOCAD", "contracts_in_force"] == 0
    assert by_code.at["SLACK-PRO", "contracts_in_force"] == 2


def test_products_with_nothing_are_left_out_and_only_commercial_ones_are_read():
    facts = company()
    facts.products = pd.concat(
        [
            facts.products,
            frame(
                [(200, "TABLEAU-DESKTOP", "Tableau Desktop", "Salesforce", "per_user", None)],
                facts.products.columns,
            ),
        ]
    )
    # an install of a product not in `products` (freeware: the store reads commercial only)
    facts.installed = pd.concat(
        [facts.installed, frame([(CHROME, X)], ["product_id", "device_id"])]
    )
    codes = set(license_position(facts, RULES)["product_code"])
    assert codes == set(EXPECTED)


def test_reclaimable_seats_name_their_reason():
    found = reclaimable_seats(company(), RULES)
    assert sorted(zip(found["person_id"], found["reason"], strict=True)) == [
        (B, "inactive"),  # given 2026-01-10, never used
        (C, "terminated"),
    ]


def test_reclaim_edges_grace_window_product_override_and_unmetered():
    facts = company()
    # D's seat was given 2026-05-31: exactly the grace period -> reclaimable once unused
    facts.seats.loc[facts.seats["person_id"] == D_, "assigned_at"] = ts("2026-05-31")
    # A's last use 2026-03-31 is one day before the window: inactive
    facts.usage.loc[
        (facts.usage["person_id"] == A) & (facts.usage["product_id"] == SLACK), "last_day"
    ] = D(2026, 3, 31)
    found = reclaimable_seats(facts, RULES)
    assert sorted(found.loc[found["product_id"] == SLACK, "person_id"]) == [A, B, C, D_]

    # the product's own inactivity period (120 days) keeps A's seat (used 91 days ago)
    facts.products.loc[facts.products["product_id"] == SLACK, "inactivity_days"] = 120
    found = reclaimable_seats(facts, RULES)
    assert sorted(found.loc[found["product_id"] == SLACK, "person_id"]) == [B, C, D_]

    # not metered at all: only the terminated holder's seat
    facts.metered = set()
    found = reclaimable_seats(facts, RULES)
    assert list(found["person_id"]) == [C]


def test_entitlement_weighted_unit_cost_currencies_and_fallbacks():
    contracts = frame(
        [
            (1, 10, 100.0, "EUR", D(2026, 1, 1), D(2026, 12, 31)),
            (1, 30, 80.0, "EUR", D(2026, 1, 1), D(2026, 12, 31)),
            (1, 5, 999.0, "USD", D(2026, 1, 1), D(2026, 12, 31)),  # minority currency
            (1, 50, 1.0, "EUR", D(2027, 1, 1), D(2027, 12, 31)),  # not yet in force
            (2, 4, 50.0, "USD", D(2025, 1, 1), D(2025, 12, 31)),  # ended
            (2, 4, 70.0, "USD", D(2024, 1, 1), D(2024, 12, 31)),  # ended earlier
            (3, 7, 20.0, "GBP", D(2026, 9, 1), D(2027, 8, 31)),  # only a future one
            (4, None, 9000.0, "USD", D(2026, 1, 1), D(2026, 12, 31)),  # site
        ],
        ["product_id", "seats", "unit_cost", "currency", "start_date", "end_date"],
    )
    contracts["seats"] = contracts["seats"].astype("Int64")
    metrics = pd.Series({1: "per_user", 2: "per_user", 3: "per_user", 4: "site"})
    result = entitlement(contracts, metrics, DAY)
    # EUR holds 40 seats, USD 5: (10 x 100 + 30 x 80) / 40 = 85.00 EUR; entitled 45
    assert result.loc[1, ["entitled", "unit_cost", "currency"]].tolist() == [45, 85.0, "EUR"]
    assert result.loc[1, "annual_cost"] == 10 * 100 + 30 * 80 + 5 * 999
    assert result.loc[2, ["entitled", "unit_cost", "currency"]].tolist() == [0, 50.0, "USD"]
    assert result.loc[3, ["entitled", "unit_cost", "currency"]].tolist() == [0, 20.0, "GBP"]
    assert pd.isna(result.loc[4, "entitled"]) and pd.isna(result.loc[4, "unit_cost"])
    assert result.loc[4, "annual_cost"] == 9000.0


def test_a_seat_held_by_the_other_kind_of_holder_counts_one():
    facts = company()
    extra = frame(
        [(WINRAR, H, None, ts("2026-01-01")), (ACROBAT, None, Z, ts("2026-01-01"))],
        ["product_id", "person_id", "device_id", "assigned_at"],
    )
    extra[["person_id", "device_id"]] = extra[["person_id", "device_id"]].astype("Int64")
    facts.seats = pd.concat([facts.seats, extra], ignore_index=True)
    by_code = license_position(facts, RULES).set_index("product_code")
    assert by_code.at["WINRAR", "consumed"] == 6
    assert by_code.at["ADOBE-ACROBAT-PRO", "consumed"] == 4


# --- chargeback -----------------------------------------------------------------------------


def test_chargeback_by_cost_center_computed_by_hand():
    facts = company()
    position = license_position(facts, RULES)
    charged = chargeback_frame(facts, position, "cost_center", RULES)
    got = {
        (r["group"], r["product_code"]): (r["consumed"], r["cost"])
        for r in charged.to_dict("records")
    }
    assert got == {
        ("CC1", "SLACK-PRO"): (2, 220.0),  # A, B
        ("CC2", "SLACK-PRO"): (2, 220.0),  # C, D
        ("CC3", "SLACK-PRO"): (2, 220.0),  # E, F (through device X)
        ("CC1", "ADOBE-ACROBAT-PRO"): (3, 720.0),  # A, B, G
        ("CC1", "WINRAR"): (3, 90.0),  # Y (A), W (B), V (G)
        ("CC3", "WINRAR"): (1, 30.0),  # X (F)
        ("(unattributed)", "WINRAR"): (1, 30.0),  # Z has no primary user
        ("CC1", "MATHWORKS-MATLAB"): (12, 28200.0),  # peak 12 shared by A and B
        ("CC1", "MS-SQL-SERVER-STD"): (4, 7436.0),  # S2 (A), 4 cores by default
        ("(unattributed)", "MS-SQL-SERVER-STD"): (8, 14872.0),  # S1
        ("CC1", "ATLASSIAN-JIRA"): (2, 36000.0),  # 2 of 3 users of a 54,000 site license
        ("CC3", "ATLASSIAN-JIRA"): (1, 18000.0),
        ("CC1", "AUTODESK-AUTOCAD"): (1, 2030.0),  # G
    }
    by_department = chargeback_frame(facts, position, "department", RULES)
    eng = by_department[by_department["group"] == "Eng"].set_index("product_code")
    assert eng.at["SLACK-PRO", "consumed"] == 2 and eng.at["MATHWORKS-MATLAB", "cost"] == 28200.0
    with pytest.raises(ValueError, match="cost_center or department"):
        chargeback_frame(facts, position, "manager", RULES)


def test_concurrent_peak_nobody_is_known_to_have_used_is_unattributed():
    facts = company()
    facts.usage = facts.usage[facts.usage["product_id"] != MATLAB]
    position = license_position(facts, RULES)
    charged = chargeback_frame(facts, position, "cost_center", RULES)
    matlab = charged[charged["product_code"] == "MATHWORKS-MATLAB"]
    assert matlab[["group", "consumed", "cost"]].values.tolist() == [
        ["(unattributed)", 12.0, 28200.0]
    ]


# --- drift ----------------------------------------------------------------------------------


def snap(rows) -> pd.DataFrame:
    return frame(rows, ["product_code", "shortfall", "surplus", "installed"])


def test_drift_reports_only_what_moved_beyond_the_thresholds():
    previous = snap(
        [
            ("A", 0, 10, 100),  # -> new shortfall of 1: always reported
            ("B", 10, 0, 100),  # shortfall +5 (50%): grown
            ("C", 100, 0, 100),  # shortfall +9 (9% < 10%): not reported
            ("D", 0, 20, 100),  # surplus +4 (< 5 seats): not reported
            ("E", 0, 20, 100),  # surplus +6 (30%): grown
            ("F", 0, 0, 40),  # installs +20 (50%): jumped
            ("G", 0, 0, 400),  # installs +20 (5%): not reported
        ]
    )
    current = snap(
        [
            ("A", 1, 0, 100),
            ("B", 15, 0, 100),
            ("C", 109, 0, 100),
            ("D", 0, 24, 100),
            ("E", 0, 26, 100),
            ("F", 0, 0, 60),
            ("G", 0, 0, 420),
            ("NEW", 7, 0, 7),  # not in the previous snapshot: from zero
        ]
    )
    found = drift(previous, current, DriftThresholds(min_change=5, min_share=0.10))
    assert found.values.tolist() == [
        ["F", "installs_jumped", 40, 60, 20],
        ["NEW", "installs_jumped", 0, 7, 7],
        ["NEW", "new_shortfall", 0, 7, 7],
        ["A", "new_shortfall", 0, 1, 1],
        ["B", "shortfall_grown", 10, 15, 5],
        ["E", "surplus_grown", 20, 26, 6],
    ]


def test_no_previous_snapshot_means_no_drift():
    assert drift(snap([]), snap([("A", 3, 0, 1)])).empty
