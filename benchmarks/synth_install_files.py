"""Step 5b: the installs written as each discovery tool exports them (every device is in
exactly one tool's file, as its `source` says):

- installs/osquery/inventory.log: osquery results log, one snapshot line per host of the
  scheduled query pack_inventory_<table> (programs on Windows, apps on macOS, deb_packages /
  rpm_packages on Linux), decorated with host_uuid, hostname, hardware_serial, os_name,
  os_version;
- installs/intune/AppInvRawData.csv: Intune "Discovered apps" export, UTF-8 with BOM;
- installs/sccm/installed_software.csv: SMS_InstalledSoftware with the computer name;
- installs/canonical/installs.csv: the canonical installs CSV (schemas/installations.py).

Text is assembled column-wise with Arrow (per-title pieces built once, then taken per row).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.synth_common import (
    days_text,
    join,
    json_text,
    pick,
    times_text,
    write_csv,
    write_text,
)
from benchmarks.synth_installs import Variants

INTUNE_COLUMNS = [
    "ApplicationKey",
    "ApplicationName",
    "ApplicationPublisher",
    "ApplicationShortVersion",
    "ApplicationVersion",
    "DeviceId",
    "DeviceName",
    "OSDescription",
    "OSVersion",
    "Platform",
    "UserId",
    "EmailAddress",
    "UserName",
]
SCCM_COLUMNS = [
    "ComputerName",
    "ARPDisplayName",
    "ProductName",
    "ProductVersion",
    "Publisher",
    "InstallDate",
]
CANONICAL_COLUMNS = [
    "hostname",
    "device_serial",
    "os",
    "primary_user_email",
    "software_name",
    "publisher",
    "version",
    "install_date",
    "last_seen",
]
TABLES = ("programs", "apps", "deb_packages", "rpm_packages")  # by OS code
PLATFORMS = ("Windows", "MacOS", "Linux", "Linux")


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _variant_text(variants: Variants) -> dict[str, pa.Array]:
    """Per-variant text: plain fields and the static parts of each osquery item."""
    t = variants.table
    prefix, suffix, key, short, product_name = [], [], [], [], []
    for i, (os, name, version, publisher, bundle) in enumerate(
        zip(t["os"], t["name"], t["version"], t["publisher"], t["bundle"], strict=True)
    ):
        publisher = publisher if isinstance(publisher, str) else None
        if os == 0:  # programs: install_date follows
            head = {"name": name, "version": version, "publisher": publisher}
            prefix.append(_dumps(head)[:-1] + ',"install_date":"')
            suffix.append('"}')
        elif os == 1:  # apps: last_opened_time follows
            head = {
                "name": f"{name}.app",
                "path": f"/Applications/{name}.app",
                "bundle_identifier": bundle,
                "bundle_short_version": version,
            }
            prefix.append(_dumps(head)[:-1] + ',"last_opened_time":"')
            suffix.append('"}')
        elif os == 2:
            head = {"name": name, "version": version, "maintainer": publisher, "arch": "amd64"}
            prefix.append(_dumps(head))
            suffix.append("")
        else:
            number, _, release = version.rpartition("-")
            head = {"name": name, "version": number, "release": release, "vendor": publisher}
            prefix.append(_dumps(head | {"arch": "x86_64"}))
            suffix.append("")
        digest = hashlib.sha1(f"{name}\x00{version}\x00{publisher}".encode()).hexdigest()
        key.append("0000" + digest)
        short.append(".".join(version.split(".")[:2]))
        product_name.append(None if int(digest[:2], 16) < 40 else name)  # SCCM leaves some empty
        del i
    return {
        "prefix": pa.array(prefix),
        "suffix": pa.array(suffix),
        "key": pa.array(key),
        "short": pa.array(short),
        "product_name": pa.array(product_name, type=pa.string()),
        "name": pa.array(t["name"], from_pandas=True, type=pa.string()),
        "version": pa.array(t["version"], from_pandas=True, type=pa.string()),
        "publisher": pa.array(t["publisher"], from_pandas=True, type=pa.string()),
    }


def write_installs(
    installs: pd.DataFrame,
    devices: pd.DataFrame,
    people: pd.DataFrame,
    variants: Variants,
    out: Path,
) -> dict[Path, int]:
    """Write the four discovery files; returns install rows per file."""
    texts = _variant_text(variants)
    source = devices["source"].to_numpy(dtype=object)[installs["device"].to_numpy()]
    written = {}
    for name, writer in (
        ("osquery", _osquery),
        ("intune", _intune),
        ("sccm", _sccm),
        ("canonical", _canonical),
    ):
        rows = installs[source == name].reset_index(drop=True)
        path, count = writer(rows, devices, people, texts, out)
        written[path] = count
    return written


def _osquery(rows, devices, people, texts, out):
    path = out / "installs" / "osquery" / "inventory.log"
    d = rows["device"].to_numpy()
    v = pa.array(rows["variant"].to_numpy())
    os = devices["os_kind"].cat.codes.to_numpy()[d]
    dynamic = pc.if_else(
        pa.array(os == 0),
        days_text(rows["install_day"].to_numpy(), "%Y%m%d"),
        pc.if_else(pa.array(os == 1), pa.array(rows["opened"].to_numpy()).cast(pa.string()), ""),
    )
    items = join(texts["prefix"].take(v), dynamic, texts["suffix"].take(v))

    # one head per host: who, when, and the opening of its snapshot list
    hosts = np.unique(d)
    host = devices.iloc[hosts]
    seen = host["seen_at"].to_numpy()
    query = np.array(TABLES, dtype=object)[host["os_kind"].cat.codes.to_numpy()]
    heads = join(
        '{"name":"pack_inventory_',
        pa.array(query),
        '","hostIdentifier":"',
        host["hostname"],
        '","calendarTime":"',
        times_text(seen, "%a %b %d %H:%M:%S %Y UTC"),
        '","unixTime":',
        pa.array(seen).cast(pa.string()),
        ',"epoch":0,"counter":0,"numerics":false,"decorations":{"host_uuid":"',
        host["host_uuid"],
        '","hostname":"',
        pc.utf8_lower(pa.array(host["hostname"])),
        '","hardware_serial":"',
        host["serial"],
        '","os_name":',
        json_text(host["os_name"]),
        ',"os_version":',
        json_text(host["os_version"]),
        '},"action":"snapshot","snapshot":[',
    )
    first = np.r_[True, d[1:] != d[:-1]]
    last = np.r_[d[1:] != d[:-1], True]
    # the head where a host's list opens (taken only there: a head is ~450 bytes)
    opening = heads.take(pa.array(np.searchsorted(hosts, d), mask=~first))
    pieces = join(
        pc.fill_null(opening, ","),
        items,
        pc.if_else(pa.array(last), "]}\n", ""),
    )
    write_text(path, pieces)
    return path, len(rows)


def _owner(devices, people, d, column):
    return pick(people[column], devices["owner"].to_numpy()[d])


def _intune(rows, devices, people, texts, out):
    path = out / "installs" / "intune" / "AppInvRawData.csv"
    d = rows["device"].to_numpy()
    v = pa.array(rows["variant"].to_numpy())
    os = devices["os_kind"].cat.codes.to_numpy()[d]
    columns = {
        "ApplicationKey": texts["key"].take(v),
        "ApplicationName": texts["name"].take(v),
        "ApplicationPublisher": texts["publisher"].take(v),
        "ApplicationShortVersion": texts["short"].take(v),
        "ApplicationVersion": texts["version"].take(v),
        "DeviceId": pick(devices["intune_id"], d),
        "DeviceName": pick(devices["hostname"], d),
        "OSDescription": pick(devices["os_name"], d),
        "OSVersion": pick(devices["os_version"], d),
        "Platform": pick(PLATFORMS, os),
        "UserId": _owner(devices, people, d, "object_id"),
        "EmailAddress": _owner(devices, people, d, "email"),
        "UserName": _owner(devices, people, d, "full_name"),
    }
    return path, write_csv(path, columns, bom=True)


def _sccm(rows, devices, people, texts, out):
    path = out / "installs" / "sccm" / "installed_software.csv"
    d = rows["device"].to_numpy()
    v = pa.array(rows["variant"].to_numpy())
    columns = {
        "ComputerName": pick(devices["hostname"], d),
        "ARPDisplayName": texts["name"].take(v),
        "ProductName": texts["product_name"].take(v),
        "ProductVersion": texts["version"].take(v),
        "Publisher": texts["publisher"].take(v),
        "InstallDate": days_text(rows["install_day"].to_numpy(), "%Y%m%d"),
    }
    return path, write_csv(path, columns)


def _canonical(rows, devices, people, texts, out):
    path = out / "installs" / "canonical" / "installs.csv"
    d = rows["device"].to_numpy()
    v = pa.array(rows["variant"].to_numpy())
    columns = {
        "hostname": pick(devices["hostname"], d),
        "device_serial": pick(devices["serial"], d),
        "os": join(pick(devices["os_name"], d)),
        "primary_user_email": _owner(devices, people, d, "email"),
        "software_name": texts["name"].take(v),
        "publisher": texts["publisher"].take(v),
        "version": texts["version"].take(v),
        "install_date": days_text(rows["install_day"].to_numpy()),
        "last_seen": times_text(devices["seen_at"].to_numpy()[d]),
    }
    return path, write_csv(path, columns)
