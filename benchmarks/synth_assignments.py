"""Step 4: who holds which seat (assignments feed, Microsoft Graph licences) and who uses
the concurrent and site-licensed products; plus the operators' bulk onboarding file.

`Holdings` is what later steps (installs, usage) build on:
- seats: one row per held seat: code, person (index, -1 for a device seat), device (index,
  -1 for a person's seat), assigned_at (unix seconds), activity (ACTIVE: uses it, STALE:
  stopped using it over 90 days ago, NEVER: never used it);
- pools: code -> person indices using a concurrent or site-licensed product (no seat); for
  the per-core product, the people whose first device runs a server of it.

Holders are drawn by department weights (anyone else with a small weight), among everyone:
people on leave and some who have left still hold seats (reclaim candidates). Every product
stays within its seats except the deliberate shortfall (AutoCAD in PLAN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.synth_common import (
    DAY,
    Company,
    join,
    json_text,
    pick,
    sample_weighted,
    stream,
    times_text,
    write_csv,
    write_text,
)
from benchmarks.synth_contracts import BY_CODE, PLAN, holders_target, seats, seats_in_force

# Microsoft's product ids of the subscriptions the demo licenses through Graph
SKU_IDS = {
    "SPE_E3": "05e9a617-0261-4cee-bb44-138d3ef5d965",
    "SPE_E5": "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
    "VISIOCLIENT": "c5928f49-12ba-48f7-ada3-0d743a3601d5",
    "PROJECTPROFESSIONAL": "53818b1b-4a27-454b-8896-0dba576410e6",
}
TENANT_ID = "8f1d2c3b-4a5e-4f60-9b7a-1c2d3e4f5a6b"
STATUS_WEIGHT = {"active": 1.0, "leave": 1.0, "terminated": 0.7}
OTHERS = 0.03  # weight of people outside a product's departments
BULK_CODES = (("ADOBE-ACROBAT-PRO", 24), ("JETBRAINS-PYCHARM-PRO", 16))
BULK_PILOT = 8
ACTIVE, STALE, NEVER = 0, 1, 2
ACTIVITY_SHARES = (0.82, 0.10, 0.08)


@dataclass
class Holdings:
    seats: pd.DataFrame  # code, person, device, assigned_at
    pools: dict[str, np.ndarray]

    def holders(self, code: str) -> np.ndarray:
        """Person indices holding a seat of the product."""
        rows = self.seats[self.seats["code"] == code]
        return rows.loc[rows["person"] >= 0, "person"].to_numpy()


def _weights(people: pd.DataFrame, departments: dict[str, float]) -> np.ndarray:
    if departments:
        by_department = people["department"].map(departments).astype("float64").fillna(OTHERS)
    else:
        by_department = pd.Series(1.0, index=people.index)
    status = people["status"].map(STATUS_WEIGHT).astype("float64")
    return (by_department * status).to_numpy()


def make_holdings(company: Company, people: pd.DataFrame, devices: pd.DataFrame) -> Holdings:
    """Draw the seat holders and the users of concurrent and site products."""
    rng = stream(company, "assignments")
    parts, pools = [], {}
    taken_e5 = np.zeros(len(people), dtype=bool)
    # E5 before E3, so that nobody gets both
    ordered = sorted(PLAN, key=lambda p: p.code != "MS-M365-E5")
    for product in ordered:
        k = holders_target(product, company)
        if product.metric == "per_device":
            windows = (devices["os_kind"] == "windows").to_numpy().astype("float64")
            chosen = sample_weighted(rng, windows, seats(product, company))
            owners = devices["owner"].to_numpy()[chosen]
            parts.append(_seats(rng, company, people, product.code, owners, chosen))
            continue
        weights = _weights(people, product.departments)
        if product.code == "MS-M365-E3":
            weights = np.where(taken_e5, 0.0, weights)  # E3 or E5, never both
        chosen = sample_weighted(rng, weights, k)
        if product.metric in ("concurrent", "site", "per_core"):
            pools[product.code] = chosen
            continue
        if product.code == "MS-M365-E5":
            taken_e5[chosen] = True
        parts.append(_seats(rng, company, people, product.code, chosen, None))
    return Holdings(pd.concat(parts, ignore_index=True), pools)


def _seats(rng, company, people, code, persons, devices) -> pd.DataFrame:
    """Seat rows with an assignment time after hiring and before leaving (or today)."""
    hire = people["hire_day"].to_numpy()[persons]
    ended = people["termination_day"].to_numpy()[persons]
    last = np.where((ended >= 0) & (ended <= company.today), ended, company.today) - 1
    first = np.minimum(np.maximum(hire + 1, company.today - 1000), last)
    day = first + np.floor(rng.random(len(persons)) * (last - first + 1)).astype("int64")
    at = day * DAY + rng.integers(8 * 3600, 18 * 3600, len(persons))
    activity = rng.choice(3, size=len(persons), p=ACTIVITY_SHARES)
    return pd.DataFrame(
        {
            "code": code,
            "person": -1 if devices is not None else persons,
            "device": devices if devices is not None else -1,
            "assigned_at": at,
            "activity": activity,
        }
    )


def write_assignments(
    holdings: Holdings,
    people: pd.DataFrame,
    devices: pd.DataFrame,
    contracts: pd.DataFrame,
    out: Path,
) -> dict[Path, int]:
    """assignments/assignments.csv (seats not licensed through Graph) and the Graph exports
    (subscribed SKUs, users); returns rows (seats, SKUs, users) per file."""
    graph_codes = [p.code for p in PLAN if p.graph_sku]
    csv_seats = holdings.seats[~holdings.seats["code"].isin(graph_codes)]
    path = out / "assignments" / "assignments.csv"
    person, device = csv_seats["person"].to_numpy(), csv_seats["device"].to_numpy()
    rows = write_csv(
        path,
        {
            "product_code": csv_seats["code"].to_numpy(dtype=object),
            "user": pick(people["email"], np.maximum(person, 0), person < 0),
            "device": pick(devices["hostname"], np.maximum(device, 0), device < 0),
            "assigned_at": times_text(csv_seats["assigned_at"].to_numpy()),
        },
    )
    return {path: rows} | _write_graph(holdings, people, seats_in_force(contracts), out)


def _write_graph(holdings, people: pd.DataFrame, owned: dict, out: Path) -> dict[Path, int]:
    folder = out / "assignments"
    graph = [p for p in PLAN if p.graph_sku]
    records = []
    for product in graph:
        sku_id = SKU_IDS[product.graph_sku]
        consumed = len(holdings.holders(product.code))
        records.append(
            f'{{"capabilityStatus":"Enabled","consumedUnits":{consumed},'
            f'"id":"{TENANT_ID}_{sku_id}","skuId":"{sku_id}",'
            f'"skuPartNumber":"{product.graph_sku}","appliesTo":"User",'
            f'"prepaidUnits":{{"enabled":{owned[product.code]},"suspended":0,"warning":0,"lockedOut":0}}}}'
        )
    skus = folder / "graph_subscribedSkus.json"
    write_text(
        skus,
        pa.array([r + ("," if i < len(records) - 1 else "") + "\n" for i, r in enumerate(records)]),
        head='{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",'
        '"value":[\n',
        tail="]}\n",
    )

    # one user object per person; licences as a JSON list built column-wise
    n = len(people)
    licences = pa.array([""] * n)
    for product in graph:
        held = np.zeros(n, dtype=bool)
        held[holdings.holders(product.code)] = True
        piece = f',{{"skuId":"{SKU_IDS[product.graph_sku]}","disabledPlans":[]}}'
        licences = join(licences, pc.if_else(pa.array(held), piece, ""))
    licences = pc.utf8_ltrim(licences, ",")
    enabled = pc.if_else(pa.array((people["status"] != "terminated").to_numpy()), "true", "false")
    email = json_text(people["email"])
    users = join(
        '{"id":"',
        people["object_id"],
        '","displayName":',
        json_text(people["full_name"]),
        ',"userPrincipalName":',
        email,
        ',"mail":',
        email,
        ',"employeeId":"',
        people["employee_id"],
        '","accountEnabled":',
        enabled,
        ',"assignedLicenses":[',
        licences,
        "]},\n",
    )
    service = (
        '{"id":"00000000-0000-4000-8000-0000000000a1","displayName":"Scanner Service",'
        '"userPrincipalName":"svc-scanner@example.com","mail":null,"accountEnabled":true,'
        '"assignedLicenses":[]},\n'
        '{"id":"00000000-0000-4000-8000-0000000000a2","displayName":"Room Atlas 4.01",'
        '"userPrincipalName":"room-atlas-401@example.com","mail":"room-atlas-401@example.com",'
        '"accountEnabled":true,"assignedLicenses":[]}\n'
    )
    users_path = folder / "graph_users.json"
    write_text(
        users_path,
        users,
        head='{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users'
        '(id,displayName,userPrincipalName,mail,accountEnabled,assignedLicenses)","value":[\n',
        tail=service + "]}\n",
    )
    return {skus: len(records), users_path: len(people) + 2}


def make_bulk_wave(
    company: Company, people: pd.DataFrame, holdings: Holdings, contracts: pd.DataFrame
) -> pd.DataFrame:
    """~40 assign rows for Acrobat and PyCharm, each to an active person (not leaving) who
    does not hold that product yet, within its free seats; BULK_PILOT rows are the pilot."""
    rng = stream(company, "bulk")
    owned = seats_in_force(contracts)
    leaving = set(people.attrs.get("leaving_soon", []))
    rows = []
    for code, wanted in BULK_CODES:
        holders = set(holdings.holders(code).tolist())
        free = owned[code] - len(holders)
        weights = _weights(people, BY_CODE[code].departments)
        ok = (people["status"] == "active").to_numpy() & (people["termination_day"] < 0).to_numpy()
        ok[list(holders | leaving)] = False
        chosen = sample_weighted(rng, np.where(ok, weights, 0.0), min(wanted, max(free, 0)))
        for person in rng.permutation(chosen):
            rows.append(
                (code, people.at[int(person), "email"], people.at[int(person), "department"])
            )
    order = rng.permutation(len(rows))
    wave = pd.DataFrame(
        {
            "action": "assign",
            "product_code": [rows[i][0] for i in order],
            "user": [rows[i][1] for i in order],
            "device": None,
            "pilot": ["true" if k < BULK_PILOT else "false" for k in range(len(order))],
            "note": [f"Q4 onboarding wave: {rows[i][2]}" for i in order],
        }
    )
    return wave


def write_bulk_wave(wave: pd.DataFrame, out: Path) -> Path:
    path = out / "bulk" / "onboarding_wave.csv"
    write_csv(path, {c: wave[c].to_numpy(dtype=object) for c in wave.columns})
    return path
