"""Stage 6, the weekly reconciliation: the license position of every commercial product, by
metric, as of any date; what it costs per cost center; how it drifted since the last run.

The rules (plain functions over the frames of `Facts`, no IO; the README's analyst guide says
the same in words for analysts):

- entitled: the seats of the product's contracts in force on the date (start_date <= date
  <= end_date), summed; a site license or a contract without a seat count is unlimited
  (entitled NA); per_core contracts count cores.
- consumed, by metric:
  per_user (and site, for information): distinct people holding a seat or using the product
  in the window (their own usage, or usage on a device whose primary user they are);
  per_device: distinct devices with the product installed or holding a seat;
  concurrent: the highest daily concurrent peak in the window;
  per_core: the cores of the devices it is installed on (a device without a core count
  counts `default_cores` and is a data-quality gap: cores_unknown);
  a seat given to the other kind of holder than the metric names (an import) counts one.
- the window: the date and the `window_days` (90) days before it.
- assigned: distinct holders of open seats; installed: distinct devices it is installed on;
  active: distinct people (device metrics: devices) who used it in the window.
- shortfall = consumed - entitled when positive (under-licensed: true-up cost = shortfall x
  unit cost); surplus = entitled - consumed when positive; unlimited: neither.
- reclaimable (per_user and per_device products): open seats held by a person terminated on
  the date, or not used by their holder in the product's inactivity period (the product's
  own, else window_days) when the product is metered at all and the seat is older than
  grace_days - the reclamation rule of tasks/reclamation.py; waste = reclaimable x unit cost.
- unit cost (per seat per year): the seat-weighted average of the contracts in force, in the
  currency holding the most seats; with none in force, the unit cost of the product's most
  recent contract (so a shortfall still has a price); annual_cost = what the contracts in
  force cost a year (site licenses: their price).
- chargeback: every consumed seat belongs to its holder's cost center or department (device
  seats and cores to the device's primary user's), at the unit cost; a concurrent product's
  peak is shared equally among the people who used it in the window; a site license's annual
  cost is shared equally among its consumers; what has no known holder is "(unattributed)".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

PERSON_METRICS = ("per_user", "site", "concurrent")
DEVICE_METRICS = ("per_device", "per_core")
RECLAIMABLE_METRICS = ("per_user", "per_device")
UNATTRIBUTED = "(unattributed)"
GROUPINGS = {"cost_center": "cost_center", "department": "department"}

POSITION_COLUMNS = [
    "product_id",
    "product_code",
    "product_name",
    "vendor",
    "metric",
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
    "annual_cost",
    "contracts_in_force",
    "cores_unknown",
]
COUNT_COLUMNS = [
    "consumed",
    "assigned",
    "installed",
    "active",
    "shortfall",
    "surplus",
    "reclaimable",
    "contracts_in_force",
    "cores_unknown",
]
CHARGEBACK_COLUMNS = [
    "group",
    "product_code",
    "product_name",
    "metric",
    "consumed",
    "unit_cost",
    "currency",
    "cost",
]


@dataclass(frozen=True)
class Rules:
    window_days: int = 90  # "active", per_user usage and the concurrent peak period
    grace_days: int = 30  # seats younger than this are never reclaimable for inactivity
    default_cores: int = 4  # cores of a device whose core count is unknown


@dataclass
class Facts:
    """What the store says, as plain frames (tasks.reconciliation_store.read_facts fills it).

    products: product_id, product_code, product_name, vendor, metric, inactivity_days
        (commercial products only)
    contracts: product_id, seats (NA = unlimited), unit_cost, currency, start_date, end_date
    seats: product_id, person_id, device_id, assigned_at - the seats open at the end of day
    installed: product_id, device_id - installations present at the end of day
    usage: product_id, person_id, device_id, last_day - last use on or before `day` per
        person (device_id NA) or device (person_id NA), at least over the longest window
    metered: product ids with any usage on or before `day`
    peaks: product_id, day, peak - daily concurrent peaks, at least over the window
    people: person_id, status (as of `day`), cost_center, department
    devices: device_id, cores, person_id (the primary user; NA when unknown)
    """

    day: dt.date
    products: pd.DataFrame
    contracts: pd.DataFrame
    seats: pd.DataFrame
    installed: pd.DataFrame
    usage: pd.DataFrame
    metered: set[int] = field(default_factory=set)
    peaks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PEAK_COLUMNS))
    people: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PEOPLE_COLUMNS))
    devices: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DEVICE_COLUMNS))


PEAK_COLUMNS = ["product_id", "day", "peak"]
PEOPLE_COLUMNS = ["person_id", "status", "cost_center", "department"]
DEVICE_COLUMNS = ["device_id", "cores", "person_id"]


# --- entitlement and unit cost -------------------------------------------------------------


def entitlement(contracts: pd.DataFrame, metrics: pd.Series, day: dt.date) -> pd.DataFrame:
    """Per product (index product_id): entitled (Int64, NA = unlimited), unit_cost,
    currency, annual_cost, contracts_in_force. `metrics`: product_id -> metric."""
    columns = ["entitled", "unit_cost", "currency", "annual_cost", "contracts_in_force"]
    if contracts.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="product_id"))
    frame = contracts.copy()
    frame["seats"] = pd.to_numeric(frame["seats"]).astype("Float64")
    frame["unit_cost"] = frame["unit_cost"].astype("float64")
    start = pd.to_datetime(frame["start_date"]).dt.date
    end = pd.to_datetime(frame["end_date"]).dt.date
    frame["in_force"] = (start <= day) & (end >= day)
    frame["unlimited"] = frame["seats"].isna() | (
        frame["product_id"].map(metrics).fillna("") == "site"
    )

    live = frame[frame["in_force"]]
    grouped = live.groupby("product_id")
    result = pd.DataFrame(index=pd.Index(sorted(frame["product_id"].unique()), name="product_id"))
    result["contracts_in_force"] = grouped.size().reindex(result.index).fillna(0).astype(int)
    unlimited = grouped["unlimited"].any().reindex(result.index).fillna(False).astype(bool)
    seats = live[~live["unlimited"]].groupby("product_id")["seats"].sum()
    entitled = seats.reindex(result.index).fillna(0).round().astype("Int64")
    entitled[result["contracts_in_force"] == 0] = 0
    entitled[unlimited] = pd.NA
    result["entitled"] = entitled

    # the unit cost: seat-weighted in the currency holding the most seats
    priced = live[~live["unlimited"] & (live["seats"] > 0)].copy()
    priced["weight"] = priced["seats"].astype("float64")
    priced["value"] = priced["weight"] * priced["unit_cost"]
    by_currency = priced.groupby(["product_id", "currency"])[["weight", "value"]].sum()
    by_currency = by_currency.reset_index().sort_values(
        ["product_id", "weight", "currency"], ascending=[True, False, True]
    )
    main = by_currency.drop_duplicates("product_id").set_index("product_id")
    unit_cost = (main["value"] / main["weight"]).reindex(result.index)
    currency = main["currency"].reindex(result.index)

    # nothing priced in force: the most recent contract's price (ended last, else next)
    missing = unit_cost.isna() & ~unlimited
    if missing.any():
        past = frame[~frame["unlimited"] & (start <= day)].assign(_end=end)
        latest = past.sort_values(["product_id", "_end"]).drop_duplicates("product_id", keep="last")
        future = frame[~frame["unlimited"] & (start > day)].assign(_start=start)
        nxt = future.sort_values(["product_id", "_start"]).drop_duplicates("product_id")
        fallback = pd.concat([nxt, latest]).drop_duplicates("product_id", keep="last")
        fallback = fallback.set_index("product_id")
        unit_cost = unit_cost.fillna(fallback["unit_cost"].reindex(result.index).where(missing))
        currency = currency.fillna(fallback["currency"].reindex(result.index).where(missing))
    site_currency = live[live["unlimited"]].groupby("product_id")["currency"].first()
    result["unit_cost"] = unit_cost.round(2)
    result["currency"] = currency.fillna(site_currency.reindex(result.index))

    seat_cost = (live["seats"].astype("float64").fillna(0) * live["unit_cost"]).where(
        ~live["unlimited"], live["unit_cost"]
    )
    result["annual_cost"] = (
        seat_cost.groupby(live["product_id"]).sum().reindex(result.index).fillna(0.0).round(2)
    )
    return result[columns]


# --- who consumes what ---------------------------------------------------------------------


def window_start(day: dt.date, days: int) -> dt.date:
    """The first day of the window: `days` days before `day` (a use on that day still counts,
    as the reclamation rule counts a last activity exactly 90 days old as recent)."""
    return day - dt.timedelta(days=days)


def person_use(usage: pd.DataFrame, devices: pd.DataFrame) -> pd.DataFrame:
    """Last use per (product, person): their own usage, and usage on devices whose primary
    user they are. Columns product_id, person_id, last_day."""
    own = usage.loc[usage["person_id"].notna(), ["product_id", "person_id", "last_day"]]
    on_device = usage.loc[usage["person_id"].isna(), ["product_id", "device_id", "last_day"]]
    primary = devices[["device_id", "person_id"]].dropna()
    via = on_device.merge(primary, on="device_id")[["product_id", "person_id", "last_day"]]
    both = pd.concat([own, via], ignore_index=True)
    if both.empty:
        return pd.DataFrame(columns=["product_id", "person_id", "last_day"])
    both["person_id"] = both["person_id"].astype("int64")
    both["last_day"] = pd.to_datetime(both["last_day"])
    return both.groupby(["product_id", "person_id"], as_index=False)["last_day"].max()


def device_use(usage: pd.DataFrame) -> pd.DataFrame:
    """Last use per (product, device). Columns product_id, device_id, last_day."""
    rows = usage.loc[usage["person_id"].isna(), ["product_id", "device_id", "last_day"]].copy()
    rows["device_id"] = rows["device_id"].astype("int64")
    rows["last_day"] = pd.to_datetime(rows["last_day"])
    return rows.groupby(["product_id", "device_id"], as_index=False)["last_day"].max()


def _in_window(used: pd.DataFrame, day: dt.date, days: int) -> pd.DataFrame:
    since = pd.Timestamp(window_start(day, days))
    return used[(used["last_day"] >= since) & (used["last_day"] <= pd.Timestamp(day))]


def consumers(
    facts: Facts, rules: Rules = Rules(), people_last: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every consumer of every product: product_id, person_id, device_id (one of them, or
    neither for a concurrent peak nobody is known to have used), units (seats or cores it
    consumes; a share of the peak for concurrent products). `people_last`: person_use() of
    the facts, when the caller has it already."""
    metric = facts.products.set_index("product_id")["metric"]
    seats = facts.seats.assign(metric=facts.seats["product_id"].map(metric))
    if people_last is None:
        people_last = person_use(facts.usage, facts.devices)
    people_used = _in_window(people_last, facts.day, rules.window_days)
    people_used = people_used.assign(metric=people_used["product_id"].map(metric))
    # installations consume only for device metrics (per_device, per_core)
    by_device = metric[metric.isin(DEVICE_METRICS)].index
    installed = facts.installed[facts.installed["product_id"].isin(by_device)]
    installed = installed.assign(metric=installed["product_id"].map(metric))
    frames = []

    def holders(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
        key = f"{kind}_id"
        rows = frame.loc[frame[key].notna(), ["product_id", key]].drop_duplicates()
        return rows.assign(**{key: rows[key].astype("int64"), "units": 1.0})

    # per_user and site: people with a seat or usage; device-held seats count one each
    person_kind = seats["metric"].isin(("per_user", "site"))
    frames.append(
        pd.concat(
            [
                holders(seats[person_kind], "person"),
                holders(people_used[people_used["metric"].isin(("per_user", "site"))], "person"),
            ]
        ).drop_duplicates(["product_id", "person_id"])
    )
    frames.append(holders(seats[person_kind], "device"))

    # per_device: devices with it installed or a seat; person-held seats count one each
    device_kind = seats["metric"] == "per_device"
    frames.append(
        pd.concat(
            [
                holders(seats[device_kind], "device"),
                holders(installed[installed["metric"] == "per_device"], "device"),
            ]
        ).drop_duplicates(["product_id", "device_id"])
    )
    frames.append(holders(seats[device_kind], "person"))

    # per_core: the cores of the devices it is installed on
    cored = holders(installed[installed["metric"] == "per_core"], "device")
    cores = facts.devices.set_index("device_id")["cores"]
    cored["units"] = (
        cored["device_id"].map(cores).astype("Float64").fillna(rules.default_cores).astype(float)
    )
    frames.append(cored)

    # concurrent: the window's peak, shared among the people who used it
    frames.append(_concurrent_shares(facts, metric, people_used, rules))

    frames = [f for f in frames if not f.empty]
    if not frames:  # nothing assigned, installed or used yet (a new store)
        return pd.DataFrame(
            {
                "product_id": pd.Series(dtype="int64"),
                "person_id": pd.Series(dtype="Int64"),
                "device_id": pd.Series(dtype="Int64"),
                "units": pd.Series(dtype="float64"),
            }
        )
    found = pd.concat(frames, ignore_index=True)
    for column in ("person_id", "device_id"):
        found[column] = (
            found[column].astype("Int64") if column in found else pd.array([pd.NA] * len(found))
        )
    return found[["product_id", "person_id", "device_id", "units"]].reset_index(drop=True)


def window_peaks(peaks: pd.DataFrame, day: dt.date, days: int) -> pd.Series:
    """Highest daily concurrent peak per product in the window (index product_id)."""
    when = pd.to_datetime(peaks["day"])
    inside = peaks[(when >= pd.Timestamp(window_start(day, days))) & (when <= pd.Timestamp(day))]
    return inside.groupby("product_id")["peak"].max().astype("int64")


def _concurrent_shares(facts, metric, people_used, rules) -> pd.DataFrame:
    peak = window_peaks(facts.peaks, facts.day, rules.window_days)
    peak = peak[(peak > 0) & (peak.index.map(metric) == "concurrent")]
    if peak.empty:
        return pd.DataFrame(columns=["product_id", "person_id", "units"])
    users = people_used[people_used["product_id"].isin(peak.index)][["product_id", "person_id"]]
    counts = users.groupby("product_id").size()
    users = users.assign(units=users["product_id"].map(peak / counts))
    nobody = peak[~peak.index.isin(counts.index)]
    unknown = pd.DataFrame(
        {"product_id": nobody.index, "person_id": pd.NA, "units": nobody.astype(float).values}
    )
    return pd.concat([users, unknown], ignore_index=True)


def reclaimable_seats(
    facts: Facts,
    rules: Rules = Rules(),
    people_last: pd.DataFrame | None = None,
    devices_last: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Open seats of per_user/per_device products that can come back, one row per (product,
    holder): product_id, person_id, device_id, reason ("terminated" | "inactive"),
    last_day (the holder's last use, NaT = never in the period read)."""
    columns = ["product_id", "person_id", "device_id", "reason", "last_day"]
    products = facts.products.set_index("product_id")
    seats = facts.seats[facts.seats["product_id"].map(products["metric"]).isin(RECLAIMABLE_METRICS)]
    if seats.empty:
        return pd.DataFrame(columns=columns)
    seats = (
        seats.sort_values("assigned_at")
        .drop_duplicates(["product_id", "person_id", "device_id"], keep="first")
        .copy()
    )
    status = facts.people.set_index("person_id")["status"]
    seats["status"] = seats["person_id"].map(status)

    if people_last is None:
        people_last = person_use(facts.usage, facts.devices)
    if devices_last is None:
        devices_last = device_use(facts.usage)
    by_person = people_last.rename(columns={"last_day": "person_last"})
    by_device = devices_last.rename(columns={"last_day": "device_last"})
    seats = seats.merge(by_person, on=["product_id", "person_id"], how="left")
    seats = seats.merge(by_device, on=["product_id", "device_id"], how="left")
    seats["last_day"] = seats["person_last"].where(seats["person_id"].notna(), seats["device_last"])

    days = seats["product_id"].map(products["inactivity_days"]).astype("Float64")
    days = days.fillna(rules.window_days).astype("int64")
    since = pd.Timestamp(facts.day) - pd.to_timedelta(days, unit="D")
    inactive = seats["last_day"].isna() | (seats["last_day"] < since)
    assigned = pd.to_datetime(seats["assigned_at"], utc=True).dt.tz_localize(None).dt.normalize()
    old_enough = assigned <= pd.Timestamp(facts.day - dt.timedelta(days=rules.grace_days))
    metered = seats["product_id"].isin(list(facts.metered))
    terminated = (seats["status"] == "terminated").fillna(False).astype(bool)

    seats["reason"] = np.where(terminated, "terminated", "inactive")
    found = seats[terminated | (inactive & old_enough & metered)]
    return found[columns].reset_index(drop=True)


# --- the position -------------------------------------------------------------------------


def license_position(
    facts: Facts, rules: Rules = Rules(), found: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per commercial product with a contract in force or anything consumed,
    assigned, installed or used: the POSITION_COLUMNS (see the module docstring).
    `found`: consumers(facts, rules), when the caller has it already."""
    products = facts.products.set_index("product_id")
    metric = products["metric"]
    people_last = person_use(facts.usage, facts.devices)
    devices_last = device_use(facts.usage)
    if found is None:
        found = consumers(facts, rules, people_last)
    index = products.index
    frame = products[["product_code", "product_name", "vendor", "metric"]].copy()

    ent = entitlement(facts.contracts, metric, facts.day).reindex(index)
    frame = frame.join(ent)
    frame["contracts_in_force"] = frame["contracts_in_force"].fillna(0).astype(int)
    unlimited = (frame["metric"] == "site") | (
        (frame["contracts_in_force"] > 0) & frame["entitled"].isna()
    )
    frame["entitled"] = frame["entitled"].astype("Int64").fillna(0).astype("Int64")
    frame.loc[unlimited, "entitled"] = pd.NA

    units = found.groupby("product_id")["units"].sum().reindex(index).fillna(0.0)
    frame["consumed"] = np.rint(units.to_numpy()).astype("int64")
    peak = window_peaks(facts.peaks, facts.day, rules.window_days).reindex(index)
    concurrent = frame["metric"] == "concurrent"
    frame.loc[concurrent, "consumed"] = peak[concurrent].fillna(0).astype("int64")

    seat_holders = facts.seats.drop_duplicates(["product_id", "person_id", "device_id"])
    frame["assigned"] = _count(seat_holders, index)
    frame["installed"] = _count(facts.installed.drop_duplicates(), index)
    used_people = _in_window(people_last, facts.day, rules.window_days)
    used_devices = _in_window(devices_last, facts.day, rules.window_days)
    active_people, active_devices = _count(used_people, index), _count(used_devices, index)
    frame["active"] = active_people.where(~frame["metric"].isin(DEVICE_METRICS), active_devices)
    frame["reclaimable"] = _count(reclaimable_seats(facts, rules, people_last, devices_last), index)

    cored = facts.installed[facts.installed["product_id"].map(metric) == "per_core"]
    no_cores = facts.devices.loc[facts.devices["cores"].isna(), "device_id"]
    frame["cores_unknown"] = _count(cored[cored["device_id"].isin(no_cores)], index)

    entitled = frame["entitled"].astype("Float64")
    gap = frame["consumed"] - entitled
    frame["shortfall"] = gap.clip(lower=0).fillna(0).astype("int64")
    frame["surplus"] = (-gap).clip(lower=0).fillna(0).astype("int64")
    frame["true_up_cost"] = (frame["shortfall"] * frame["unit_cost"]).round(2)
    frame["waste"] = (frame["reclaimable"] * frame["unit_cost"]).round(2)
    frame.loc[unlimited, ["true_up_cost", "waste"]] = 0.0
    frame["annual_cost"] = frame["annual_cost"].fillna(0.0)

    relevant = (frame["contracts_in_force"] > 0) | (
        frame[["consumed", "assigned", "installed", "active", "reclaimable"]].sum(axis=1) > 0
    )
    frame = frame[relevant].reset_index()
    for column in COUNT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    frame["unit_cost"] = frame["unit_cost"].astype("float64")
    frame["currency"] = frame["currency"].astype(object).where(frame["currency"].notna(), None)
    frame = frame.sort_values(["vendor", "product_name", "product_code"], na_position="last")
    return frame[POSITION_COLUMNS].reset_index(drop=True)


def _count(pairs: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Rows per product_id, aligned on `index` (0 where none)."""
    return pairs.groupby("product_id").size().reindex(index).fillna(0).astype("int64")


def chargeback_frame(
    facts: Facts,
    position: pd.DataFrame,
    by: str = "cost_center",
    rules: Rules = Rules(),
    found: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The position's consumption per cost center or department and product: the
    CHARGEBACK_COLUMNS, most expensive first within each group. `found`: consumers(facts,
    rules), when the caller has it already."""
    if by not in GROUPINGS:
        raise ValueError(f"chargeback by cost_center or department, not {by!r}")
    if found is None:
        found = consumers(facts, rules)
    found = found[found["product_id"].isin(position["product_id"])]
    people = facts.people.set_index("person_id")[GROUPINGS[by]]
    primary = facts.devices.set_index("device_id")["person_id"]
    holder = found["person_id"].astype("Int64").fillna(found["device_id"].map(primary))
    found = found.assign(group=holder.map(people).astype(object))
    found["group"] = found["group"].where(found["group"].notna(), UNATTRIBUTED)

    prices = position.set_index("product_id")
    grouped = found.groupby(["product_id", "group"], as_index=False)["units"].sum()
    grouped = grouped.join(
        prices[["product_code", "product_name", "metric", "unit_cost", "currency", "annual_cost"]],
        on="product_id",
    )
    site = grouped["metric"] == "site"
    totals = grouped.groupby("product_id")["units"].transform("sum")
    grouped["cost"] = (grouped["units"] * grouped["unit_cost"]).where(
        ~site, grouped["annual_cost"] * grouped["units"] / totals
    )
    grouped.loc[site, "unit_cost"] = grouped.loc[site, "annual_cost"] / totals[site]
    grouped["consumed"] = grouped["units"].round(2)
    grouped["cost"] = grouped["cost"].astype("float64").round(2)
    grouped["unit_cost"] = grouped["unit_cost"].astype("float64").round(2)
    grouped = grouped.sort_values(["group", "cost", "product_code"], ascending=[True, False, True])
    return grouped[CHARGEBACK_COLUMNS].reset_index(drop=True)


# --- drift ----------------------------------------------------------------------------------

DRIFT_COLUMNS = ["product_code", "change", "before", "after", "delta"]


@dataclass(frozen=True)
class DriftThresholds:
    min_change: int = 5  # seats (installs) a change must reach ...
    min_share: float = 0.10  # ... and this share of the earlier value


def drift(
    previous: pd.DataFrame, current: pd.DataFrame, thresholds: DriftThresholds = DriftThresholds()
) -> pd.DataFrame:
    """What changed since the previous snapshot beyond the thresholds, one row per product
    and change: new_shortfall (none before, any now: always reported), shortfall_grown,
    surplus_grown, installs_jumped (each when the increase is at least min_change and at
    least min_share of the earlier value). A product new since the previous snapshot starts
    from zero. Both frames: product_code, shortfall, surplus, installed."""
    if previous is None or previous.empty or current.empty:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    keys = ["shortfall", "surplus", "installed"]
    before = previous.set_index("product_code")[keys]
    after = current.set_index("product_code")[keys]
    before = before.reindex(after.index).fillna(0).astype("int64")
    rows = []

    def grown(column: str) -> pd.Series:
        delta = after[column] - before[column]
        return (delta >= thresholds.min_change) & (delta >= thresholds.min_share * before[column])

    new_short = (before["shortfall"] == 0) & (after["shortfall"] > 0)
    for change, column, mask in (
        ("new_shortfall", "shortfall", new_short),
        ("shortfall_grown", "shortfall", grown("shortfall") & ~new_short),
        ("surplus_grown", "surplus", grown("surplus")),
        ("installs_jumped", "installed", grown("installed")),
    ):
        for code in after.index[mask]:
            old, new = int(before.at[code, column]), int(after.at[code, column])
            rows.append((code, change, old, new, new - old))
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS).sort_values(
        ["change", "delta"], ascending=[True, False], ignore_index=True
    )


# --- the public API (reads the store) -------------------------------------------------------


def rules_from_settings() -> Rules:
    from licenseflow.settings import get_settings

    settings = get_settings()
    return Rules(
        window_days=settings.inactivity_days,
        grace_days=settings.grace_days,
        default_cores=settings.default_cores_per_device,
    )


def position_as_of(session: Session, day: dt.date, rules: Rules | None = None) -> pd.DataFrame:
    """The license position on `day` (today or any past date, rebuilt from history): one row
    per product, POSITION_COLUMNS."""
    from tasks.reconciliation_store import read_facts

    rules = rules or rules_from_settings()
    return license_position(read_facts(session, day, rules), rules)


def chargeback(
    session: Session, day: dt.date, by: str = "cost_center", rules: Rules | None = None
) -> pd.DataFrame:
    """The position on `day` charged back per cost center or department (CHARGEBACK_COLUMNS)."""
    from tasks.reconciliation_store import read_facts

    if by not in GROUPINGS:
        raise ValueError(f"chargeback by cost_center or department, not {by!r}")
    rules = rules or rules_from_settings()
    facts = read_facts(session, day, rules)
    return chargeback_frame(facts, license_position(facts, rules), by, rules)
