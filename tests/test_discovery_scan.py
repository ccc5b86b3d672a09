"""The discovery scan's delta: new, changed and removed installations, set-based, on SQLite
and PostgreSQL."""

import datetime as dt
import hashlib

import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import func, select

from licenseflow.db import unit_of_work
from schemas.store import Device, Installation, Product
from tasks import discovery

DAY1 = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
DAY2 = DAY1 + dt.timedelta(days=1)


def installs(rows, change="present"):
    """rows: (hostname, title, publisher, version)."""
    frame = pd.DataFrame(rows, columns=["hostname", "raw_title", "publisher", "version"])
    frame["device_serial"] = None
    frame["os"] = "Windows 11"
    frame["primary_user_email"] = frame["hostname"].str.replace("ws-", "") + "@example.com"
    frame["install_date"] = pd.NaT
    frame["last_seen"] = pd.NaT
    frame["source"] = "canonical"
    frame["change"] = change
    frame["_row"] = range(1, len(frame) + 1)
    return frame


def recognised(frame, codes):
    """What recognition would say: the title lower-cased, and the product code given."""
    return pd.DataFrame(
        {"normalized_title": frame["raw_title"].str.lower(), "product_code": codes},
        index=frame.index,
    )


def apply(engine, frame, codes, now, snapshot=True):
    with unit_of_work(engine) as session:
        ids = discovery.product_ids(session)
        staged = discovery.prepare(frame, recognised(frame, codes), ids, snapshot)
        return discovery.apply_staged(session, staged, now)


def open_installs(engine):
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(Device.hostname, Installation.raw_title, Installation.version)
            .join(Device, Device.id == Installation.device_id)
            .where(Installation.removed_at.is_(None))
            .order_by(Device.hostname, Installation.raw_title)
        ).all()
    return [tuple(r) for r in rows]


@pytest.fixture
def acrobat(engine):
    with unit_of_work(engine) as session:
        session.add(Product(code="ADOBE-ACROBAT-PRO", name="Acrobat Pro", metric="per_user"))
    return engine


def test_first_scan_inserts_everything(acrobat):
    engine = acrobat
    frame = installs(
        [
            ("ws-1", "Adobe Acrobat", "Adobe", "23.1"),
            ("ws-1", "7-Zip", "Igor Pavlov", "22.01"),
            ("ws-2", "Adobe Acrobat", "Adobe", "23.1"),
        ]
    )
    delta = apply(engine, frame, ["ADOBE-ACROBAT-PRO", None, "ADOBE-ACROBAT-PRO"], DAY1)
    assert (delta.new, delta.changed, delta.removed, delta.devices_new) == (3, 0, 0, 2)
    with unit_of_work(engine) as session:
        recognised_rows = session.scalar(
            select(func.count()).where(Installation.product_id.is_not(None))
        )
        assert recognised_rows == 2
        assert session.scalar(
            select(Device.primary_user_email).where(Device.hostname == "ws-2")
        ) == ("2@example.com")


def test_second_scan_touches_only_what_changed(acrobat):
    engine = acrobat
    day1 = installs(
        [
            ("ws-1", "Adobe Acrobat", "Adobe", "23.1"),
            ("ws-1", "7-Zip", "Igor Pavlov", "22.01"),
            ("ws-1", "WinRAR", "win.rar GmbH", "6.2"),
            ("ws-2", "Adobe Acrobat", "Adobe", "23.1"),
        ]
    )
    apply(engine, day1, ["ADOBE-ACROBAT-PRO", None, None, "ADOBE-ACROBAT-PRO"], DAY1)
    # ws-1 again: Acrobat upgraded, 7-Zip unchanged, WinRAR gone, VLC new; ws-2 not scanned
    day2 = installs(
        [
            ("ws-1", "Adobe Acrobat", "Adobe", "24.0"),
            ("ws-1", "7-Zip", "Igor Pavlov", "22.01"),
            ("ws-1", "VLC media player", "VideoLAN", "3.0"),
        ]
    )
    delta = apply(engine, day2, ["ADOBE-ACROBAT-PRO", None, None], DAY2)
    assert (delta.new, delta.changed, delta.removed, delta.devices_new) == (1, 1, 1, 0)
    assert open_installs(engine) == [
        ("ws-1", "7-Zip", "22.01"),
        ("ws-1", "Adobe Acrobat", "24.0"),
        ("ws-1", "VLC media player", "3.0"),
        ("ws-2", "Adobe Acrobat", "23.1"),
    ]
    with unit_of_work(engine) as session:
        removed = session.execute(
            select(Installation.raw_title, Installation.removed_at).where(
                Installation.removed_at.is_not(None)
            )
        ).one()
        assert removed.raw_title == "WinRAR"
        last_seen = session.scalar(select(Device.last_seen).where(Device.hostname == "ws-1"))
        assert last_seen.replace(tzinfo=dt.UTC) == DAY2

    # the same inventory again changes nothing
    again = apply(engine, day2, ["ADOBE-ACROBAT-PRO", None, None], DAY2 + dt.timedelta(days=1))
    assert (again.new, again.changed, again.removed) == (0, 0, 0)


@pytest.mark.parametrize("other_devices", [1, 8])
def test_a_file_of_some_devices_diffs_only_theirs(acrobat, other_devices):
    """The store's rows are read whole (the file covers a quarter of the devices or more)
    or only for the file's devices: the same delta either way."""
    engine = acrobat
    others = [(f"ws-{n}", "7-Zip", "Igor Pavlov", "22.01") for n in range(2, 2 + other_devices)]
    mine = [("ws-1", "7-Zip", "Igor Pavlov", "22.01"), ("ws-1", "WinRAR", "win.rar GmbH", "6.2")]
    apply(engine, installs(mine + others), [None] * (2 + other_devices), DAY1)
    day2 = installs([("ws-1", "7-Zip", "Igor Pavlov", "23.01"), ("ws-1", "VLC", "VideoLAN", "3")])
    delta = apply(engine, day2, [None, None], DAY2)
    assert (delta.new, delta.changed, delta.removed, delta.devices_seen) == (1, 1, 1, 1)
    assert open_installs(engine) == [
        ("ws-1", "7-Zip", "23.01"),
        ("ws-1", "VLC", "3"),
        *((host, "7-Zip", "22.01") for host, *_ in sorted(others)),
    ]


@pytest.mark.parametrize("one_time_per_device", [True, False])
def test_a_devices_facts_are_its_latest_known_ones(one_time_per_device):
    """Per device: the latest seen_at, and each fact's last value in seen_at order (unknown
    times first, missing values skipped). With one time per device the file order is that
    order and nothing is sorted; with several it is sorted: the same rule either way."""
    t1, t2 = DAY1, DAY2
    seen = [t2, t2, None, None, t1, t1] if one_time_per_device else [t2, t1, None, t1, t1, None]
    rows = pd.DataFrame(
        {
            "hostname": ["ws-1", "ws-1", "ws-2", "ws-2", "ws-3", "ws-3"],
            "serial": ["S-new", None, "S2", None, "S3", "S3b"],
            "os": ["Win 11", "Win 10", None, "Linux", None, None],
            "primary_user_email": ["a@x.com", None, None, None, "c@x.com", None],
            "seen_at": pd.Series(seen, dtype="datetime64[us, UTC]"),
        }
    )
    facts = discovery._device_facts(rows).set_index("hostname").sort_index()
    facts = facts.astype(object).where(facts.notna(), None)
    if one_time_per_device:  # the file's order: the last value given wins
        assert facts.to_dict("index") == {
            "ws-1": {"serial": "S-new", "os": "Win 10", "primary_user_email": "a@x.com",
                     "seen_at": pd.Timestamp(t2)},
            "ws-2": {"serial": "S2", "os": "Linux", "primary_user_email": None, "seen_at": None},
            "ws-3": {"serial": "S3b", "os": None, "primary_user_email": "c@x.com",
                     "seen_at": pd.Timestamp(t1)},
        }  # fmt: skip
    else:  # the later sighting wins whatever the file's order
        assert facts.to_dict("index") == {
            "ws-1": {"serial": "S-new", "os": "Win 11", "primary_user_email": "a@x.com",
                     "seen_at": pd.Timestamp(t2)},
            "ws-2": {"serial": "S2", "os": "Linux", "primary_user_email": None,
                     "seen_at": pd.Timestamp(t1)},
            "ws-3": {"serial": "S3", "os": None, "primary_user_email": "c@x.com",
                     "seen_at": pd.Timestamp(t1)},
        }  # fmt: skip


# the scan's own keys and hashes are decimal 64-bit hashes (compared as integers); keys
# written any other way are compared as text
AS_WRITTEN = {
    "text": str,
    "decimal hashes": lambda v: str(int.from_bytes(hashlib.sha1(v.encode()).digest()[:8], "big")),
}


@pytest.mark.parametrize("spelling", AS_WRITTEN)
def test_diff_stages_only_rows_that_change_the_store(spelling):
    """The daily diff's rule, without a store: ~96% of a daily inventory is left alone."""
    k = AS_WRITTEN[spelling]
    file = pd.DataFrame(
        {
            "install_key": [k(v) for v in ["same", "upgraded", "new", "uninstalled"]]
            + [k("gone-before"), k("back")],
            "row_hash": [k("h"), k("h2"), k("h"), k("h"), k("h"), k("h")],
            "change": ["present", "present", "present", "removed", "removed", "present"],
        }
    )
    stored = pa.table(
        {
            "id": [1, 2, 4, 5, 6, 7, 8, 9],
            "install_key": [k(v) for v in ["same", "upgraded", "uninstalled", "gone-before"]]
            + [k(v) for v in ["back", "absent", "absent-incomplete", "absent-closed"]],
            "row_hash": [k("h")] * 8,
            "open": pa.array([1, 1, 1, 0, 0, 1, 1, 0], pa.int8()),
            "complete": pa.array([1, 1, 1, 1, 1, 1, 0, 1], pa.int8()),
        },
        schema=discovery.STORED_SCHEMA,
    )
    write, absent = discovery.diff_installs(file, stored, snapshot=True)
    assert write.tolist() == [False, True, True, True, False, True]
    assert absent.tolist() == [7]
    assert discovery.diff_installs(file, stored, snapshot=False)[1].tolist() == []


def test_reinstall_after_removal_reopens_the_row(acrobat):
    engine = acrobat
    row = [("ws-1", "WinRAR", "win.rar GmbH", "6.2")]
    apply(engine, installs(row), [None], DAY1)
    apply(engine, installs([("ws-1", "7-Zip", "Igor Pavlov", "22.01")]), [None], DAY2)
    delta = apply(engine, installs(row), [None], DAY2 + dt.timedelta(days=1))
    assert (delta.new, delta.changed, delta.removed) == (0, 1, 1)
    assert open_installs(engine) == [("ws-1", "WinRAR", "6.2")]


def test_differential_file_removes_only_what_it_names(acrobat):
    engine = acrobat
    apply(
        engine,
        installs([("ws-1", "WinRAR", "win.rar GmbH", "6.2"), ("ws-1", "7-Zip", "Igor", "22")]),
        [None, None],
        DAY1,
    )
    removed = installs([("ws-1", "WinRAR", "win.rar GmbH", "6.2")], change="removed")
    delta = apply(engine, removed, [None], DAY2, snapshot=False)
    assert (delta.new, delta.changed, delta.removed) == (0, 0, 1)
    assert open_installs(engine) == [("ws-1", "7-Zip", "22")]


def test_compliance_flags_rule():
    installed = pd.DataFrame(
        [
            # product_id, code, name, vendor, metric, class, devices, users, contracts, seats,
            # unlimited, unit_cost
            (
                1,
                "VMW",
                "VMware Workstation",
                "VMware",
                "per_device",
                "commercial",
                4,
                4,
                0,
                None,
                0,
                0,
            ),
            (2, "RAR", "WinRAR", "win.rar", "per_device", "commercial", 12, 11, 1, 10, 0, 29),
            (3, "UT", "uTorrent", "BitTorrent", "per_device", "denied", 2, 2, 0, None, 0, 0),
            (4, "ACRO", "Acrobat Pro", "Adobe", "per_user", "commercial", 50, 48, 1, 10, 0, 200),
            (5, "SITE", "Site tool", "X", "per_device", "commercial", 900, 800, 1, None, 1, 0),
        ],
        columns=[
            "product_id",
            "product_code",
            "product_name",
            "vendor",
            "metric",
            "classification",
            "installed_devices",
            "installed_users",
            "contracts",
            "seats",
            "unlimited",
            "unit_cost",
        ],
    )
    flags = discovery.compliance_flags(installed)
    assert {r.product_code: (r.kind, r.excess) for r in flags.itertuples()} == {
        "VMW": ("unlicensed_install", 4),
        "RAR": ("unlicensed_install", 2),
        "UT": ("unauthorised_software", 2),
    }


def test_a_device_with_a_rejected_row_loses_nothing(acrobat):
    """Its inventory in the file is incomplete: absent titles may be the rejected ones."""
    engine = acrobat
    both = [("ws-1", "WinRAR", "win.rar GmbH", "6.2"), ("ws-1", "7-Zip", "Igor", "22")]
    apply(engine, installs(both), [None, None], DAY1)
    frame = installs([("ws-1", "7-Zip", "Igor", "22")])
    with unit_of_work(engine) as session:
        staged = discovery.prepare(
            frame, recognised(frame, [None]), {}, True, incomplete_hosts=frozenset({"ws-1"})
        )
        delta = discovery.apply_staged(session, staged, DAY2)
    assert delta.removed == 0
    assert open_installs(engine) == [("ws-1", "7-Zip", "22"), ("ws-1", "WinRAR", "6.2")]
