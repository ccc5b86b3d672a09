"""Step 6: usage over the `days` before the data's date (synth_usage_files.py writes it).

Who uses what:
- every seat holder of a product (the seat's activity: ACTIVE uses it all along, STALE
  stopped more than 90 days ago, NEVER never did: the reclaim candidates), through the
  channel the product is metered by: Entra ID sign-ins, Okta SSO or the canonical CSV;
- the pool of a site license (Jira, through Okta);
- everyone a little: apps no catalog alias names (Azure Portal, the HR portal, SAP Concur),
  and a guest account that is not in the roster;
and nobody after leaving (termination or start of leave).

Events are drawn per (person, app) pair with a Poisson count over the pair's active working
days (weekends count 15%), then placed by inverting the cumulative day weights: no loop per
event. `usage_rate` is the mean events per person and working day, plus one event per person
and product in the last 60 days of its use (so a low rate never hides an active user).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.synth_assignments import NEVER, STALE, Holdings
from benchmarks.synth_common import DAY, Company, stream

WEEKEND = 0.15
GUEST = "guest.consultant@fabrikam.com"


@dataclass(frozen=True)
class App:
    key: str
    channel: str  # entra | okta | canonical
    name: str | None  # what the source calls it (canonical: app_name, or None)
    app_id: str | None  # Entra application id, Okta app label
    code: str | None  # whose holders (or pool) use it; None: everyone a little
    weight: float  # relative daily rate
    product_code: str | None = None  # canonical rows that name the product by code


E3 = "MS-M365-E3"
APPS = [
    App("exchange", "entra", "Office 365 Exchange Online",
        "00000002-0000-0ff1-ce00-000000000000", E3, 1.0),
    App("teams", "entra", "Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264", E3, 1.0),
    App("officehome", "entra", "OfficeHome", "4765445b-32c6-49b0-83e6-1d93765276ca", E3, 0.4),
    App("sharepoint", "entra", "Office 365 SharePoint Online",
        "00000003-0000-0ff1-ce00-000000000000", E3, 0.4),
    App("visual-studio", "entra", "Visual Studio", "872cd9fa-d31f-45e0-9eab-6e460a02d1f1",
        "MS-VISUAL-STUDIO-PRO", 0.6),
    App("creative-cloud", "entra", "Adobe Creative Cloud", "a2f4c5d6-3b1e-4c8f-9d0a-6e7f8a9b0c1d",
        "ADOBE-CC-ALL-APPS", 0.6),
    App("zoom", "entra", "Zoom", "1e9c2a43-8f5b-4b8e-9d6f-0b1a2c3d4e5f", "ZOOM-WORKPLACE", 0.5),
    App("slack", "entra", "Slack", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "SLACK-PRO", 1.0),
    App("azure-portal", "entra", "Azure Portal", "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", None,
        0.08),
    App("hr-portal", "entra", "Contoso HR Portal", "5d6e7f80-91a2-4b3c-8d4e-5f60718293a4", None,
        0.05),
    App("salesforce", "okta", "Salesforce", "salesforce", "SALESFORCE-SALES-CLOUD", 1.0),
    App("jira", "okta", "Jira Software", "jira", "ATLASSIAN-JIRA", 0.8),
    App("acrobat", "okta", "Adobe Acrobat", "adobe_acrobat", "ADOBE-ACROBAT-PRO", 0.4),
    App("concur", "okta", "SAP Concur", "concur", None, 0.04),
    App("e5", "canonical", None, None, "MS-M365-E5", 1.5, "MS-M365-E5"),
    App("visio", "canonical", None, None, "MS-VISIO-PLAN2", 0.4, "MS-VISIO-PLAN2"),
    App("project", "canonical", None, None, "MS-PROJECT-PLAN3", 0.4, "MS-PROJECT-PLAN3"),
    App("autocad", "canonical", None, None, "AUTODESK-AUTOCAD", 0.6, "AUTODESK-AUTOCAD"),
    App("intellij", "canonical", None, None, "JETBRAINS-INTELLIJ-ULTIMATE", 0.8,
        "JETBRAINS-INTELLIJ-ULTIMATE"),
    App("photoshop", "canonical", "Adobe Photoshop", None, "ADOBE-PHOTOSHOP", 0.5),
    App("revit", "canonical", "Autodesk Revit", None, "AUTODESK-REVIT", 0.6),
    App("pycharm", "canonical", "JetBrains PyCharm Professional", None, "JETBRAINS-PYCHARM-PRO",
        0.8),
    App("tableau", "canonical", "Tableau Desktop", None, "TABLEAU-DESKTOP", 0.5),
]  # fmt: skip
NOISE_DEPARTMENTS = {"azure-portal": {"IT": 1.0, "Engineering": 0.5}}
NOISE_SHARE = {"azure-portal": 0.3, "hr-portal": 0.5, "concur": 0.4}


def day_weights(company: Company) -> np.ndarray:
    """Weight of each day of the window (index 0 = `days` before the date)."""
    first = company.today - company.days
    weekday = (np.arange(first, company.today) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Mon
    return np.where(weekday >= 5, WEEKEND, 1.0)


def make_usage(company: Company, people: pd.DataFrame, holdings: Holdings) -> pd.DataFrame:
    """One row per usage event: person (index; len(people) = the guest), app (index into
    APPS), at (unix seconds), failed (a failed sign-in), minutes (canonical rows)."""
    rng = stream(company, "usage")
    n = len(people)
    first_day = company.today - company.days
    leaves = people["inactive_from"].to_numpy()
    persons, apps, starts, ends = [], [], [], []

    def pairs(who: np.ndarray, app: int, activity: np.ndarray | None, since: np.ndarray | None):
        end = np.minimum(leaves[who], company.today)
        start = np.full(len(who), first_day) if since is None else np.maximum(since, first_day)
        if activity is not None:
            # stale seats: last used between 91 and 120 days ago; never-used seats: nothing
            stale_end = company.today - 91 - rng.integers(0, 30, len(who))
            end = np.where(activity == STALE, np.minimum(end, stale_end), end)
            end = np.where(activity == NEVER, start, end)
        persons.append(who)
        apps.append(np.full(len(who), app))
        starts.append(start)
        ends.append(np.maximum(end, start))

    seats = dict(iter(holdings.seats.groupby("code", sort=False)))
    for a, app in enumerate(APPS):
        if app.code in holdings.pools:
            who = holdings.pools[app.code]
            activity = rng.choice(3, size=len(who), p=(0.9, 0.05, 0.05))
            pairs(who, a, activity, None)
        elif app.code in seats:
            held = seats[app.code]
            held = held[held["person"] >= 0]
            since = held["assigned_at"].to_numpy() // DAY
            pairs(held["person"].to_numpy(), a, held["activity"].to_numpy(), since)
        elif app.code is None:
            weight = people["department"].map(NOISE_DEPARTMENTS.get(app.key, {})).astype("float64")
            weight = weight.fillna(0.2 if app.key in NOISE_DEPARTMENTS else 1.0).to_numpy()
            k = round(NOISE_SHARE[app.key] * n)
            who = np.sort(rng.choice(n, size=k, replace=False, p=weight / weight.sum()))
            pairs(who, a, None, None)
    person = np.concatenate(persons)
    app = np.concatenate(apps)
    start = np.concatenate(starts) - first_day
    end = np.concatenate(ends) - first_day

    # daily rate per pair so that an active person makes ~usage_rate events a working day
    weight = np.array([x.weight for x in APPS])[app]
    active_people = max(1, int((leaves > first_day).sum()))
    rate = weight * company.usage_rate * active_people / weight.sum()
    cum = np.r_[0.0, np.cumsum(day_weights(company))]
    counts = rng.poisson(rate * (cum[end] - cum[start]))
    # whoever uses a product leaves a trace in the last 60 days of their use of its first app,
    # so that a low rate never makes an active user look inactive
    primary = np.array([i == min(j for j, y in enumerate(APPS) if y.code == x.code)
                        for i, x in enumerate(APPS)])[app]  # fmt: skip
    traced = primary & (end > start)
    trace_person, trace_app = person[traced], app[traced]
    trace_low = cum[np.maximum(start, end - 60)[traced]]
    trace_high = cum[end[traced]]

    # the guest: a few sign-ins to Zoom and Slack nobody can match to a person
    guest_apps = [i for i, x in enumerate(APPS) if x.key in ("zoom", "slack")]
    guest = max(1, company.days // 20)
    person = np.r_[np.repeat(person, counts), trace_person, np.full(guest, n)]
    app = np.r_[np.repeat(app, counts), trace_app, rng.choice(guest_apps, guest)]
    low = np.r_[np.repeat(cum[start], counts), trace_low, np.full(guest, cum[0])]
    high = np.r_[np.repeat(cum[end], counts), trace_high, np.full(guest, cum[-1])]
    where = low + rng.random(len(person)) * (high - low)
    day = first_day + np.minimum(np.searchsorted(cum, where, side="right") - 1, company.days - 1)
    clock = np.clip(rng.normal(12.5 * 3600, 3 * 3600, len(person)), 6 * 3600, 21 * 3600)
    at = day * DAY + clock.astype("int64")
    order = np.argsort(at, kind="stable")
    m = len(person)
    return pd.DataFrame(
        {
            "person": person[order],
            "app": app[order],
            "at": at[order],
            "failed": rng.random(m) < 0.05,
            "minutes": np.clip(rng.lognormal(3.5, 0.9, m), 1, 480).astype("int64"),
        }
    )
