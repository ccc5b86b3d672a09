"""Step 2: the devices, each with a primary user and the discovery tool that reports it.

`devices` frame columns: hostname (WS-0001 Windows, MAC-0001 macOS, LNX-0001 Linux), os_kind
(windows | mac | deb | rpm), os_name, os_version, serial, host_uuid, intune_id, owner (person
index), source (osquery | intune | sccm | canonical), seen_at (unix seconds of the last
inventory).

Every person gets one device (while devices last); the remaining devices go to people who
have two (engineers, designers and IT more often). Sources split ~40% osquery, 30% Intune,
20% SCCM (Windows only), 10% canonical CSV.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.synth_common import (
    DAY,
    Company,
    categories,
    fixed_strings,
    frame,
    guids,
    numbered,
    stream,
    width,
)
from benchmarks.synth_people import DEPARTMENT_NAMES

OS_KINDS = ("windows", "mac", "deb", "rpm")
PREFIXES = ("WS-", "MAC-", "LNX-")
# windows, mac, linux shares by department (linux split 70% deb, 30% rpm)
OS_MIX = {
    "Engineering": (0.55, 0.30, 0.15),
    "Data & Analytics": (0.60, 0.25, 0.15),
    "IT": (0.60, 0.10, 0.30),
    "Design": (0.60, 0.40, 0.00),
    "Marketing": (0.50, 0.50, 0.00),
}
DEFAULT_MIX = (0.85, 0.15, 0.00)
SECOND_DEVICE_WEIGHT = {"Engineering": 3.0, "Design": 2.0, "IT": 3.0, "Data & Analytics": 2.0}
# (os name, os version) choices per kind
OS_RELEASES = {
    "windows": [
        ("Windows 11 Enterprise", "10.0.22631.4460"),
        ("Windows 10 Enterprise", "10.0.19045.5131"),
    ],
    "mac": [("macOS Sonoma", "14.7.1"), ("macOS Sequoia", "15.1.1")],
    "deb": [("Ubuntu 22.04.5 LTS", "22.04"), ("Ubuntu 24.04.1 LTS", "24.04")],
    "rpm": [("Red Hat Enterprise Linux 9.4 (Plow)", "9.4")],
}
# share of each kind's devices per source: osquery, intune, sccm, canonical
SOURCE_MIX = {
    "windows": (0.33, 0.30, 0.27, 0.10),
    "mac": (0.45, 0.45, 0.00, 0.10),
    "deb": (0.90, 0.00, 0.00, 0.10),
    "rpm": (0.90, 0.00, 0.00, 0.10),
}
SOURCES = ("osquery", "intune", "sccm", "canonical")
ALNUM = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", dtype=np.uint8)


def make_devices(company: Company, people: pd.DataFrame) -> pd.DataFrame:
    """The devices of the company (see the module docstring)."""
    rng = stream(company, "devices")
    n = company.devices
    n_people = len(people)
    first = min(n, n_people)
    owner = np.empty(n, dtype="int64")
    owner[:first] = rng.permutation(n_people)[:first]
    if n > first:
        weight = people["department"].map(SECOND_DEVICE_WEIGHT).astype("float64").fillna(1.0)
        weight = weight.to_numpy()
        owner[first:] = rng.choice(n_people, size=n - first, p=weight / weight.sum())
    owner = np.sort(owner, kind="stable")  # a person's devices get neighbouring numbers

    # operating system by the owner's department: 0 windows, 1 mac, 2 deb, 3 rpm
    department = people["department"].cat.codes.to_numpy()[owner]
    mixes = np.array([OS_MIX.get(name, DEFAULT_MIX) for name in DEPARTMENT_NAMES])
    win, mac, linux = (mixes[department, i] for i in range(3))
    u = rng.random(n)
    kind = np.select([u < win, u < win + mac, u < win + mac + 0.7 * linux], [0, 1, 2], 3)

    hostname = np.empty(n, dtype=object)
    digits = width(n)
    family = np.minimum(kind, 2)  # WS-, MAC-, LNX-
    numbers = np.zeros(n, dtype="int64")
    for f in range(3):
        here = family == f
        numbers[here] = np.arange(1, int(here.sum()) + 1)
    prefixes = [numbered(prefix, numbers[family == f], digits) for f, prefix in enumerate(PREFIXES)]
    order = np.argsort(np.argsort(family, kind="stable"), kind="stable")
    hostname = pa.concat_arrays(prefixes).take(pa.array(order))

    # release and discovery source per kind
    release = np.zeros(n, dtype="int64")
    source = np.zeros(n, dtype="int64")
    pick_release, pick_source = rng.random(n), rng.random(n)
    releases = []
    for k, name in enumerate(OS_KINDS):
        here = kind == k
        offset = len(releases)
        releases += OS_RELEASES[name]
        count = len(OS_RELEASES[name])
        release[here] = offset + np.minimum((pick_release[here] * count).astype(int), count - 1)
        mix = np.cumsum(SOURCE_MIX[name])
        source[here] = np.searchsorted(mix, pick_source[here] * mix[-1], side="right")

    # most devices checked in this morning, a few days ago for some
    late = np.where(rng.random(n) < 0.03, rng.integers(1, 6, n), 0)
    seen_at = (company.today - late) * DAY + 6 * 3600 + rng.integers(0, 3 * 3600, n)

    return frame(
        {
            "hostname": hostname,
            "os_kind": categories(kind, OS_KINDS),
            "os_name": categories(release, [r[0] for r in releases]),
            "os_version": categories(release, [r[1] for r in releases]),
            "serial": _serials(rng, kind),
            "host_uuid": guids(rng, n, upper=True),
            "intune_id": guids(rng, n),
            "owner": owner,
            "source": categories(source, SOURCES),
            "seen_at": seen_at,
        }
    )


def _serials(rng: np.random.Generator, kind: np.ndarray) -> pa.Array:
    """Hardware serials: Apple-like C02 + 9 characters, PC-like 8 characters."""
    n = len(kind)
    chars = ALNUM[rng.integers(0, len(ALNUM), size=(n, 12))]
    chars[:, :3] = np.where(
        (kind == 1)[:, None], np.frombuffer(b"C02", dtype=np.uint8), chars[:, :3]
    )
    mac = fixed_strings(chars)
    short = fixed_strings(chars[:, :8])
    return pc.if_else(pa.array(kind == 1), mac, short)
