"""Step 3: what the company owns: the licensed products (fixed codes of the project) and
their contracts.

PLAN says, per product, how many people hold it (share of the company), how full its seats
are (utilization above 1 = a shortfall), which departments use it, and its contracts'
terms. The demo's story is in here:
- renewals: Zoom ends in 25 days, Acrobat in 55, Slack in 85 (auto-renew, 60 days' notice:
  the trap), Tableau in 200, Microsoft 365 E3 in 400;
- a site license (Jira), concurrent MATLAB and SOLIDWORKS, per-core SQL Server;
- AutoCAD in shortfall (more holders than seats), Visio with a big surplus;
- Project Plan 3 bought twice with overlapping terms (a possible duplicate purchase);
- Tableau's owner has left the company, Revit has no owner;
- WinRAR per device with fewer seats than installs, VMware Workstation with no contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmarks.synth_common import Company, iso_day, write_csv
from benchmarks.synth_people import COST_CENTERS

CONTRACT_COLUMNS = [
    "contract_id",
    "product_code",
    "product_name",
    "vendor",
    "metric",
    "seats",
    "unit_cost",
    "currency",
    "start_date",
    "end_date",
    "auto_renew",
    "notice_days",
    "cost_center",
    "owner_email",
]
ENG = {"Engineering": 1.0, "IT": 0.4, "Data & Analytics": 0.5}
EVERYONE: dict[str, float] = {}  # every department alike


@dataclass(frozen=True)
class Term:
    """One contract: ends `ends_in` days after the data's date, `years` long (or from
    `starts_ago` days before it), with `share` of the product's seats."""

    ends_in: int
    unit_cost: float
    years: int = 1
    starts_ago: int | None = None
    share: float = 1.0
    auto_renew: bool = False
    notice_days: int = 30
    owner: str = "head"  # head (of the owner department) | terminated | none


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    vendor: str
    metric: str
    share: float  # holders (per_user), pool (concurrent), devices (per_device) per person
    utilization: float  # holders / seats; above 1 is a shortfall
    departments: dict[str, float] = field(default_factory=dict)  # weights; empty = all alike
    owner_department: str = "IT"
    terms: tuple[Term, ...] = ()
    graph_sku: str | None = None  # licensed through Microsoft Graph instead of the CSV


PLAN = [
    Product("MS-M365-E3", "Microsoft 365 E3", "Microsoft", "per_user", 0.90, 0.95, EVERYONE,
            terms=(Term(400, 432.00, years=3, notice_days=90),), graph_sku="SPE_E3"),
    Product("MS-M365-E5", "Microsoft 365 E5", "Microsoft", "per_user", 0.08, 0.90,
            {"Executive": 1, "IT": 1, "Legal": 0.5, "Finance": 0.3},
            terms=(Term(400, 684.00, years=3, notice_days=90),), graph_sku="SPE_E5"),
    Product("MS-VISIO-PLAN2", "Visio Plan 2", "Microsoft", "per_user", 0.035, 0.15,
            {"IT": 1, "Engineering": 0.5, "Operations": 0.5},
            terms=(Term(290, 180.00),), graph_sku="VISIOCLIENT"),
    Product("MS-PROJECT-PLAN3", "Project Plan 3", "Microsoft", "per_user", 0.05, 0.85,
            {"Operations": 1, "IT": 1, "Engineering": 0.3},
            terms=(Term(330, 360.00, years=2, share=2 / 3),
                   Term(150, 372.00, starts_ago=200, share=1 / 3)),
            graph_sku="PROJECTPROFESSIONAL"),
    Product("MS-VISUAL-STUDIO-PRO", "Visual Studio Professional", "Microsoft", "per_user",
            0.05, 0.85, {"Engineering": 1, "IT": 0.5}, "Engineering", (Term(240, 499.00),)),
    Product("MS-SQL-SERVER-STD", "SQL Server Standard", "Microsoft", "per_core", 0.008, 0.75,
            {"IT": 1}, terms=(Term(700, 1859.00, years=3, notice_days=90),)),
    Product("ADOBE-ACROBAT-PRO", "Adobe Acrobat Pro", "Adobe", "per_user", 0.26, 0.80,
            {"Finance": 1, "Legal": 1, "Human Resources": 1, "Sales": 0.6, "Operations": 0.4,
             "Marketing": 0.5, "Executive": 1},
            terms=(Term(55, 239.88),)),
    Product("ADOBE-CC-ALL-APPS", "Adobe Creative Cloud All Apps", "Adobe", "per_user", 0.05,
            0.90, {"Marketing": 1, "Design": 1}, "Marketing", (Term(180, 1079.88),)),
    Product("ADOBE-PHOTOSHOP", "Adobe Photoshop", "Adobe", "per_user", 0.03, 0.85,
            {"Marketing": 1, "Design": 0.5}, "Marketing", (Term(180, 263.88),)),
    Product("AUTODESK-AUTOCAD", "Autodesk AutoCAD", "Autodesk", "per_user", 0.048, 1.2,
            {"Design": 1, "Engineering": 0.15}, "Design", (Term(140, 2030.00),)),
    Product("AUTODESK-REVIT", "Autodesk Revit", "Autodesk", "per_user", 0.016, 0.90,
            {"Design": 1}, "Design", (Term(260, 2910.00, owner="none"),)),
    Product("JETBRAINS-INTELLIJ-ULTIMATE", "JetBrains IntelliJ IDEA Ultimate", "JetBrains",
            "per_user", 0.08, 0.90, {"Engineering": 1}, "Engineering", (Term(310, 599.00),)),
    Product("JETBRAINS-PYCHARM-PRO", "JetBrains PyCharm Professional", "JetBrains", "per_user",
            0.08, 0.66, {"Engineering": 0.6, "Data & Analytics": 1}, "Engineering",
            (Term(310, 249.00),)),
    Product("TABLEAU-DESKTOP", "Tableau Desktop", "Salesforce", "per_user", 0.04, 0.90,
            {"Data & Analytics": 1, "Finance": 0.3, "Sales": 0.1}, "Data & Analytics",
            (Term(200, 900.00, owner="terminated"),)),
    Product("MATHWORKS-MATLAB", "MATLAB", "MathWorks", "concurrent", 0.06, 3.0,
            {"Engineering": 1, "Data & Analytics": 1, "Design": 0.5}, "Engineering",
            (Term(230, 2350.00),)),
    Product("DS-SOLIDWORKS", "SOLIDWORKS", "Dassault Systemes", "concurrent", 0.04, 4.0,
            {"Design": 1, "Engineering": 0.3}, "Design", (Term(160, 4195.00),)),
    Product("ZOOM-WORKPLACE", "Zoom Workplace", "Zoom Video Communications", "per_user", 0.70,
            0.97, {**EVERYONE}, terms=(Term(25, 149.90),)),
    Product("SLACK-PRO", "Slack Pro", "Salesforce", "per_user", 0.84, 0.95, EVERYONE,
            terms=(Term(85, 87.00, auto_renew=True, notice_days=60),)),
    Product("ATLASSIAN-JIRA", "Jira Software Cloud", "Atlassian", "site", 0.60, 1.0,
            {"Engineering": 1, "IT": 1, "Data & Analytics": 1, "Design": 0.6, "Operations": 0.4,
             "Customer Success": 0.5, "Marketing": 0.3},
            "Engineering", (Term(300, 54000.00, auto_renew=True),)),
    Product("SALESFORCE-SALES-CLOUD", "Salesforce Sales Cloud", "Salesforce", "per_user", 0.12,
            0.90, {"Sales": 1, "Customer Success": 0.3, "Marketing": 0.1}, "Sales",
            (Term(120, 1980.00),)),
    Product("WINRAR", "WinRAR", "win.rar", "per_device", 0.02, 1.0, EVERYONE,
            terms=(Term(500, 29.00, years=2, notice_days=0),)),
]  # fmt: skip
BY_CODE = {p.code: p for p in PLAN}
# products whose seats are handed out person by person (assignments, Graph licences)
PER_USER = [p for p in PLAN if p.metric == "per_user"]


def holders_target(product: Product, company: Company) -> int:
    """How many people (devices for per_device) hold the product (pool for concurrent)."""
    base = company.devices if product.metric == "per_device" else company.people
    return max(2, round(product.share * base))


def seats(product: Product, company: Company) -> int | None:
    """Seats owned in total (None for a site license); cores for per_core."""
    if product.metric == "site":
        return None
    if product.metric == "per_core":
        return 16 * max(2, round(company.people / 250))
    wanted = holders_target(product, company) / product.utilization
    return max(1, math.floor(wanted) if product.utilization > 1 else math.ceil(wanted))


def department_heads(people: pd.DataFrame) -> dict[str, int]:
    """Department -> index of its head (the CEO for Executive and for missing departments)."""
    heads = people[people["is_manager"] & (people["manager"] == 0)]
    found = dict(zip(heads["department"].astype(str), heads.index, strict=True))
    found["Executive"] = 0
    return found


def make_contracts(company: Company, people: pd.DataFrame) -> pd.DataFrame:
    """One row per contract, in the contracts feed's columns (schemas/contracts.py)."""
    heads = department_heads(people)
    terminated = people.index[people["status"] == "terminated"]
    rows = []
    number = 100
    for product in PLAN:
        total = seats(product, company)
        for term in product.terms:
            number += 1
            end = company.today + term.ends_in
            if term.starts_ago is None:
                start = end - (365 * term.years - 1)
            else:
                start = company.today - term.starts_ago
            share = None if total is None else max(1, round(total * term.share))
            owner_department = product.owner_department
            if term.owner == "head":
                owner = people.at[heads.get(owner_department, 0), "email"]
            elif term.owner == "terminated" and len(terminated):
                # someone who has left, from the product's department if possible
                same = terminated[people.loc[terminated, "department"] == owner_department]
                owner = people.at[(same if len(same) else terminated)[0], "email"]
            else:
                owner = None
            rows.append(
                {
                    "contract_id": f"CT-{iso_day(start)[:4]}-{number:04d}",
                    "product_code": product.code,
                    "product_name": product.name,
                    "vendor": product.vendor,
                    "metric": product.metric,
                    "seats": None if share is None else str(share),
                    "unit_cost": f"{term.unit_cost:.2f}",
                    "currency": "USD",
                    "start_date": iso_day(start),
                    "end_date": iso_day(end),
                    "auto_renew": "true" if term.auto_renew else "false",
                    "notice_days": str(term.notice_days),
                    "cost_center": COST_CENTERS[owner_department],
                    "owner_email": owner,
                }
            )
    return pd.DataFrame(rows, columns=CONTRACT_COLUMNS)


def seats_in_force(contracts: pd.DataFrame) -> dict[str, int | None]:
    """Product code -> seats of its contracts together (None for a site license)."""
    totals: dict[str, int | None] = {}
    for code, group in contracts.groupby("product_code", sort=False):
        values = group["seats"]
        totals[code] = None if values.isna().any() else int(values.astype(int).sum())
    return totals


def write_contracts(contracts: pd.DataFrame, out: Path) -> Path:
    path = out / "contracts" / "contracts.csv"
    write_csv(path, {c: contracts[c].to_numpy(dtype=object) for c in CONTRACT_COLUMNS})
    return path
