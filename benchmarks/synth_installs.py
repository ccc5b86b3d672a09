"""Step 5: what is installed where (synth_install_files.py writes it in each tool's format).

`Variants` flattens the software table (synth_titles.py) to one row per (software, OS,
title, version); `make_installs` returns one row per install: device, variant, install_day,
opened (unix seconds of the last launch, macOS apps only; -1 never). Everything is drawn per
software entry over all devices at once (no loop per device or per row):
- licensed software on the devices of the people holding a seat (or in the product's pool),
  the first device more likely than a second one; WinRAR on the devices holding its seats;
- base software by OS and department; unlicensed copies by the `unlicensed` chance;
- the long tail (scale runs): a Poisson number of tail products per Windows device, popular
  ones more often.
When there are more rows than `installs_per_device` asks for, base software is thinned
(licensed rows are always kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.synth_assignments import ACTIVE, NEVER, Holdings
from benchmarks.synth_common import DAY, Company, stream
from benchmarks.synth_devices import OS_KINDS
from benchmarks.synth_people import DEPARTMENT_NAMES
from benchmarks.synth_titles import SOFTWARE, Software, tail_titles

TAIL_SHARE = 0.3  # of installs_per_device, when there is a long tail
SECOND_DEVICE = 0.3  # chance licensed software is on a holder's other devices too


@dataclass
class Variants:
    """The software table flattened: one row per way a title shows up on one OS."""

    software: list[Software]
    table: pd.DataFrame  # entry, os (code), name, version, publisher, bundle, weight, title_id

    @classmethod
    def build(cls, tail: int = 0) -> Variants:
        software = SOFTWARE + tail_titles(tail)
        rows = [
            (e, OS_KINDS.index(t.os), t.name, t.version, t.publisher, t.bundle, t.weight)
            for e, item in enumerate(software)
            for t in item.titles
        ]
        columns = ["entry", "os", "name", "version", "publisher", "bundle", "weight"]
        table = pd.DataFrame(rows, columns=columns)
        # the install key: one title and publisher once per device
        table["title_id"] = pd.factorize(table["name"] + "\x00" + table["publisher"].fillna(""))[0]
        return cls(software, table)

    def choose(self, rng: np.random.Generator, entry: int, os: np.ndarray) -> np.ndarray:
        """A variant of one entry for each device OS code in `os` (-1 where it has none)."""
        out = np.full(len(os), -1, dtype="int64")
        mine = self.table.index[self.table["entry"] == entry].to_numpy()
        for k in np.unique(os):
            options = mine[self.table["os"].to_numpy()[mine] == k]
            if len(options) == 0:
                continue
            here = os == k
            cum = np.cumsum(self.table["weight"].to_numpy()[options])
            draw = rng.random(int(here.sum())) * cum[-1]
            out[here] = options[np.searchsorted(cum, draw, side="right")]
        return out


def _devices_of(start: np.ndarray, count: np.ndarray, persons: np.ndarray):
    """Every device of the given people (devices are sorted by owner; start and count say
    where each person's devices are), whether it is the person's first device, and how many
    devices each person has."""
    counts = count[persons]
    first = np.repeat(start[persons], counts)
    index = first + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return index, index == first, counts


def make_installs(
    company: Company,
    people: pd.DataFrame,
    devices: pd.DataFrame,
    holdings: Holdings,
    variants: Variants,
) -> pd.DataFrame:
    """One row per install: device, variant, install_day, opened, licensed (see above)."""
    rng = stream(company, "installs")
    n = len(devices)
    os = devices["os_kind"].cat.codes.to_numpy().astype("int64")
    department = people["department"].cat.codes.to_numpy()[devices["owner"].to_numpy()]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    owner = devices["owner"].to_numpy()
    start = np.searchsorted(owner, np.arange(len(people)), side="left")
    count = np.searchsorted(owner, np.arange(len(people)), side="right") - start

    def add(entry: int, chosen: np.ndarray, licensed: bool, act=None):
        variant = variants.choose(rng, entry, os[chosen])
        keep = variant >= 0
        act = np.full(len(chosen), ACTIVE) if act is None else act
        parts.append((chosen[keep], variant[keep], np.full(keep.sum(), licensed), act[keep]))

    by_product = dict(iter(holdings.seats.groupby("code", sort=False)))
    for entry, item in enumerate(variants.software):
        if item.key.startswith("tail-"):
            break
        if item.product:
            seat_rows = by_product.get(item.product, holdings.seats.iloc[:0])
            if item.product in holdings.pools:
                persons = holdings.pools[item.product]
                acts = np.full(len(persons), ACTIVE)
            else:
                persons = seat_rows.loc[seat_rows["person"] >= 0, "person"].to_numpy()
                acts = seat_rows.loc[seat_rows["person"] >= 0, "activity"].to_numpy()
            index, first, counts = _devices_of(start, count, persons)
            acts = np.repeat(acts, counts)
            chance = np.where(first, item.on_holders, item.on_holders * SECOND_DEVICE)
            hit = rng.random(len(index)) < chance
            device_seats = seat_rows.loc[seat_rows["device"] >= 0, "device"].to_numpy()
            hit_seats = device_seats[rng.random(len(device_seats)) < item.on_holders]
            chosen = np.r_[index[hit], hit_seats]
            add(entry, chosen, True, np.r_[acts[hit], np.full(len(hit_seats), ACTIVE)])
            if item.unlicensed:
                others = np.ones(n, dtype=bool)
                others[index] = False
                weight = _department_weight(item, department)
                hit = others & (rng.random(n) < item.unlicensed * weight)
                add(entry, np.flatnonzero(hit), False)
        else:
            chance = np.array([item.base.get(k, 0.0) for k in OS_KINDS])[os]
            chance = chance * _department_weight(item, department)
            add(entry, np.flatnonzero(rng.random(n) < chance), False)

    device = np.concatenate([p[0] for p in parts])
    variant = np.concatenate([p[1] for p in parts])
    licensed = np.concatenate([p[2] for p in parts])
    act = np.concatenate([p[3] for p in parts])

    # thin base software down to the wanted size (licensed rows stay)
    has_tail = len(variants.software) > len(SOFTWARE)
    tail_mean = TAIL_SHARE * company.installs_per_device if has_tail else 0.0
    wanted = (company.installs_per_device - tail_mean) * n
    base = ~licensed
    spare = wanted - licensed.sum()
    if base.sum() > spare > 0:
        keep = licensed | (rng.random(len(device)) < spare / base.sum())
        device, variant, licensed, act = device[keep], variant[keep], licensed[keep], act[keep]

    if tail_mean > 0:
        t_device, t_variant = _tail(rng, variants, os, tail_mean)
        device = np.r_[device, t_device]
        variant = np.r_[variant, t_variant]
        licensed = np.r_[licensed, np.zeros(len(t_device), dtype=bool)]
        act = np.r_[act, np.full(len(t_device), ACTIVE)]

    # one row per device and title/publisher (the install key), in device order
    table = variants.table
    key = device * (int(table["title_id"].max()) + 1) + table["title_id"].to_numpy()[variant]
    order = np.argsort(key, kind="stable")
    unique = np.r_[True, key[order][1:] != key[order][:-1]]
    order = order[unique]
    device, variant, licensed, act = device[order], variant[order], licensed[order], act[order]

    m = len(device)
    install_day = company.today - 1 - np.floor(1000 * rng.random(m) ** 1.5).astype("int64")
    recently = company.today * DAY - rng.integers(3600, 14 * DAY, m)
    long_ago = company.today * DAY - rng.integers(100 * DAY, 300 * DAY, m)
    opened = np.where(act == ACTIVE, recently, np.where(act == NEVER, -1, long_ago))
    opened = np.where(table["os"].to_numpy()[variant] == OS_KINDS.index("mac"), opened, -1)
    opened = np.where(opened > 0, np.maximum(opened, install_day * DAY + 3600), opened)
    return pd.DataFrame(
        {
            "device": device,
            "variant": variant,
            "install_day": install_day,
            "opened": opened,
            "licensed": licensed,
        }
    )


def _department_weight(item: Software, department: np.ndarray) -> np.ndarray:
    """The entry's weight for each device's department (by department code)."""
    if not item.departments:
        return np.ones(len(department))
    return np.array([item.departments.get(name, 0.0) for name in DEPARTMENT_NAMES])[department]


def _tail(rng, variants: Variants, os: np.ndarray, mean: float):
    """Tail products per Windows device: Poisson(mean) of them, Zipf-like popularity."""
    table = variants.table
    tail_entries = [e for e, s in enumerate(variants.software) if s.key.startswith("tail-")]
    first_entry = tail_entries[0]
    windows = np.flatnonzero(os == OS_KINDS.index("windows"))
    counts = rng.poisson(mean * len(os) / max(len(windows), 1), len(windows))
    popularity = 1.0 / (np.arange(len(tail_entries)) + 10.0)
    products = rng.choice(len(tail_entries), size=counts.sum(), p=popularity / popularity.sum())
    device = np.repeat(windows, counts)
    first_variant = table.index[table["entry"] == first_entry][0]
    variant = first_variant + 3 * products + rng.integers(0, 3, len(products))
    return device, variant
