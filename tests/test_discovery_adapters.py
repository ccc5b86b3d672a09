"""Discovery adapters: every source format read into the canonical installations frame.

Expected values below were read off the sample files under tests/data/discovery by hand."""

import datetime as dt
import json

import pandas as pd
import pytest
from conftest import TESTS_DATA

from licenseflow.errors import InputRejected
from schemas.installations import COLUMNS, Installations
from tasks.discovery_adapters import FORMATS, detect_format, parse_dates, read_installs

DATA = TESTS_DATA / "discovery"
UTC = dt.UTC


def row(frame: pd.DataFrame, hostname: str, title: str) -> dict:
    found = frame[(frame["hostname"] == hostname) & (frame["raw_title"] == title)]
    assert len(found) == 1, f"{hostname} / {title}: {len(found)} rows"
    return {k: (None if _missing(v) else v) for k, v in found.iloc[0].to_dict().items()}


def _missing(value) -> bool:
    return not isinstance(value, str) and pd.isna(value)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write_lines(tmp_path, name: str, lines: list) -> str:
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def osquery_line(host: str, query: str, action: str, rows, unix_time=1708243200, counter=1):
    """A result line; rows is a list (a snapshot) or one row's columns (an event)."""
    line = {"name": query, "hostIdentifier": host, "unixTime": unix_time, "counter": counter}
    line["calendarTime"] = "Sun Feb 18 08:00:00 2024 UTC"
    line["action"] = action
    line["snapshot" if isinstance(rows, list) else "columns"] = rows
    return line


# --- detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("osquery_snapshot.log", "osquery"),
        ("osquery_differential.log", "osquery"),
        ("intune_appinvrawdata.csv", "intune"),
        ("sccm_installed_software.csv", "sccm"),
        ("sccm_v_gs_installed_software.csv", "sccm"),
        ("canonical_installs.csv", "canonical"),
        ("bad_missing_column.csv", "canonical"),
        ("bad_date.csv", "canonical"),
        ("bad_duplicate_key.csv", "canonical"),
        ("bad_malformed.log", "osquery"),
        ("bad_wrong_type.log", "osquery"),
    ],
)
def test_format_is_detected_from_the_file(name, fmt):
    assert detect_format(DATA / name) == fmt
    assert fmt in FORMATS


def test_an_unknown_header_is_refused_naming_what_was_found(tmp_path):
    path = tmp_path / "lansweeper.csv"
    path.write_text("AssetName,Software,SoftwareVersion\nWS-1,Zoom,6.0\n")
    with pytest.raises(InputRejected) as refused:
        detect_format(path)
    assert "lansweeper.csv" in str(refused.value)
    assert "the header has: AssetName, Software, SoftwareVersion" in refused.value.errors[0].reason


def test_json_lines_without_host_identifier_are_not_osquery(tmp_path):
    path = write_lines(tmp_path, "events.json", [{"user": "a", "app": "Zoom"}])
    with pytest.raises(InputRejected) as refused:
        detect_format(path)
    assert "without hostIdentifier (the first object has: user, app)" in str(refused.value)


def test_a_declared_format_skips_detection_and_an_unknown_one_is_refused():
    assert read_installs(DATA / "canonical_installs.csv", fmt="canonical").fmt == "canonical"
    with pytest.raises(InputRejected, match="unknown format 'lansweeper'"):
        read_installs(DATA / "canonical_installs.csv", fmt="lansweeper")


# --- osquery ----------------------------------------------------------------------------


def test_osquery_snapshot_log():
    read = read_installs(DATA / "osquery_snapshot.log")
    frame = read.frame
    assert (read.fmt, read.snapshot, read.errors) == ("osquery", True, [])
    # 2 + 3 + 2 + 2 + 3 result rows; the mounts line is another query, skipped
    assert read.rows_read == 12
    assert read.ignored == {"pack_it-compliance_mounts": 1}
    # line 6 is a later snapshot of WS-0142 programs: it replaces line 1 (2 rows)
    assert read.superseded == 2
    assert len(frame) == 10
    assert list(frame.columns) == list(COLUMNS)
    Installations.validate(frame)

    chrome = row(frame, "ws-0142", "Google Chrome")
    assert chrome["publisher"] == "Google LLC"
    assert chrome["version"] == "121.0.6167.185"
    assert chrome["install_date"] == dt.date(2024, 2, 14)
    assert chrome["last_seen"] == ts("2024-02-17 08:00:00")
    assert chrome["device_serial"] == "5CG1234XYZ"
    assert chrome["os"] == "Microsoft Windows 11 Enterprise 10.0.22631"
    assert (chrome["source"], chrome["change"], chrome["_row"]) == ("osquery", "present", 6)
    assert row(frame, "ws-0142", "Microsoft Visio - en-us")["version"] == "16.0.17328.20162"
    assert "7-Zip 23.01 (x64)" not in set(frame["raw_title"])  # only in the older snapshot

    excel = row(frame, "mbp-anna", "Microsoft Excel.app")
    assert excel["version"] == "16.81"
    assert excel["publisher"] is None
    assert excel["last_opened_at"] == ts("2024-02-01 15:06:40.5")
    assert row(frame, "mbp-anna", "Slack.app")["last_opened_at"] is None  # -1.0: never
    zoom = row(frame, "mbp-anna", "zoom.us.app")
    assert zoom["version"] == "5.17.5 (29101)"  # no short version: bundle_version
    assert zoom["last_opened_at"] == ts("2024-02-03 22:40:00")

    curl = row(frame, "build-srv-01", "curl")
    assert curl["publisher"] == "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>"
    assert curl["version"] == "7.81.0-1ubuntu1.15"
    assert curl["install_date"] is None
    assert curl["os"] == "Ubuntu 22.04.3 LTS (Jammy Jellyfish)"

    code = row(frame, "db-srv-02.corp.example.com", "code")
    assert code["publisher"] == "Microsoft Corporation"
    assert code["version"] == "1.86.2-1707854558.el8"
    assert code["install_date"] == dt.date(2024, 2, 15)  # install_time 1708000000
    assert row(frame, "db-srv-02.corp.example.com", "openssl")["install_date"] == dt.date(
        2023, 11, 14
    )


def test_osquery_differential_log_folds_events_per_key():
    read = read_installs(DATA / "osquery_differential.log")
    frame = read.frame
    assert (read.snapshot, read.errors, read.rows_read) == (False, [], 9)
    # chrome removed+added, zoom added+removed in one batch, curl batch, tableau added then
    # removed a day later: 4 earlier events folded into their key's last one
    assert read.superseded == 4
    assert len(frame) == 5
    assert list(frame["_row"]) == [2, 4, 5, 7, 8]

    chrome = row(frame, "ws-0142", "Google Chrome")  # an upgrade: removed 121, added 122
    assert (chrome["change"], chrome["version"]) == ("added", "122.0.6261.58")
    assert chrome["install_date"] == dt.date(2024, 2, 18)
    zoom = row(frame, "mbp-anna", "zoom.us.app")  # "added" logged before "removed": same batch
    assert (zoom["change"], zoom["version"], zoom["_row"]) == ("added", "5.17.10", 5)
    assert zoom["last_opened_at"] == ts("2024-02-18 08:30:00")
    curl = row(frame, "build-srv-01", "curl")  # a diffResults batch line
    assert (curl["change"], curl["version"]) == ("added", "7.81.0-1ubuntu1.15")
    tableau = row(frame, "ws-0200", "Tableau Desktop 2023.3")
    assert (tableau["change"], tableau["_row"]) == ("removed", 8)
    assert tableau["last_seen"] == ts("2024-02-19 08:00:00")
    assert row(frame, "ws-0200", "CCleaner")["change"] == "removed"


def test_osquery_same_key_twice_in_one_batch_is_a_duplicate(tmp_path):
    added = [
        osquery_line(
            "WS-1", "programs", "added", {"name": "Zoom", "publisher": "Zoom", "version": v}
        )
        for v in ("5.17", "6.0")
    ]
    read = read_installs(write_lines(tmp_path, "diff.log", added))
    assert len(read.frame) == 1 and read.frame.loc[0, "version"] == "5.17"
    [error] = read.errors
    assert (error.row, error.column, error.value) == (2, "columns.name", "Zoom")
    assert error.reason == "duplicate key: the same hostname, title and publisher as row 1"
    assert read.rejected_hostnames == {"ws-1"}


def test_osquery_numbers_blank_lines_and_snapshot_events(tmp_path):
    app = {"name": "Zoom.app", "bundle_short_version": "6.0.2", "last_opened_time": 1708245000.0}
    rpm = {"name": "code", "version": "1.86.2", "release": "1.el8", "vendor": "Microsoft",
           "install_time": 1708000000}  # fmt: skip
    first = osquery_line("mac-1", "apps", "snapshot", [app]) | {"numerics": True}
    event = osquery_line("rhel-1", "installed_rpms", "snapshot", rpm)  # one row per line
    path = write_lines(tmp_path, "numbers.log", [first, "", "   ", event])
    read = read_installs(path)
    assert read.errors == []
    assert list(read.frame["_row"]) == [1, 4]
    assert row(read.frame, "mac-1", "Zoom.app")["last_opened_at"] == ts("2024-02-18 08:30:00")
    code = row(read.frame, "rhel-1", "code")
    assert (code["version"], code["install_date"]) == ("1.86.2-1.el8", dt.date(2024, 2, 15))
    assert read.snapshot is True


# --- Intune, SCCM, canonical ------------------------------------------------------------


def test_intune_appinvrawdata_with_bom():
    read = read_installs(DATA / "intune_appinvrawdata.csv")
    frame = read.frame
    assert (read.fmt, read.rows_read, len(frame), read.errors) == ("intune", 5, 5, [])
    assert read.snapshot is True
    visio = row(frame, "ws-0142", "Microsoft Visio - en-us")
    assert visio["publisher"] == "Microsoft Corporation"
    assert visio["version"] == "16.0.17231.20236"
    assert visio["primary_user_email"] == "john.doe@contoso.com"
    assert visio["os"] == "Windows 11 Enterprise 10.0.22631.3155"
    assert (visio["install_date"], visio["last_seen"], visio["_row"]) == (None, None, 1)
    zoom = row(frame, "ws-0200", "Zoom Workplace (64-bit)")
    assert (zoom["publisher"], zoom["version"]) == (
        "Zoom Video Communications, Inc.",
        "6.0.2 (37593)",
    )
    assert row(frame, "mbp-anna", "Slack")["os"] == "macOS 14.3.1"  # no OSDescription: Platform


def test_sccm_sms_installed_software():
    read = read_installs(DATA / "sccm_installed_software.csv")
    frame = read.frame
    assert (read.fmt, len(frame), read.errors) == ("sccm", 4, [])
    visio = row(frame, "ws-0142", "Microsoft Visio - en-us")
    assert visio["install_date"] == dt.date(2024, 1, 10)  # 1/10/2024 12:00:00 AM
    assert row(frame, "ws-0142", "7-Zip 23.01 (x64)")["install_date"] is None
    vmware = row(frame, "ws-0200", "VMware Workstation")  # no ARPDisplayName: ProductName
    assert (vmware["publisher"], vmware["version"]) == ("VMware, Inc.", "17.5.0")
    assert vmware["install_date"] == dt.date(2023, 11, 3)
    winrar = row(frame, "ws-0200", "WinRAR 6.24 (64-bit)")  # WMI datetime
    assert winrar["install_date"] == dt.date(2023, 11, 20)


def test_sccm_v_gs_installed_software():
    read = read_installs(DATA / "sccm_v_gs_installed_software.csv")
    frame = read.frame
    assert (read.fmt, len(frame), read.errors) == ("sccm", 3, [])
    tableau = row(frame, "fin-lt-0042", "Tableau Desktop 2023.3")
    assert (tableau["publisher"], tableau["version"]) == ("Tableau Software", "23.3.1512.0")
    assert tableau["install_date"] == dt.date(2023, 12, 15)
    assert row(frame, "eng-ws-0007", "Autodesk AutoCAD 2024 - English")["_row"] == 3


def test_sccm_view_without_a_device_name_is_refused(tmp_path):
    path = tmp_path / "v_gs.csv"
    path.write_text(
        "ResourceID,ARPDisplayName0,ProductName0,ProductVersion0,Publisher0\n"
        "16777220,WinRAR,WinRAR,6.24,win.rar GmbH\n"
    )
    with pytest.raises(InputRejected) as refused:
        read_installs(path)
    [error] = refused.value.errors
    assert (error.row, error.column) == (0, "Netbios_Name0")
    assert "join v_R_System" in error.reason


def test_canonical_csv():
    read = read_installs(DATA / "canonical_installs.csv")
    frame = read.frame
    assert (read.fmt, read.rows_read, len(frame), read.errors) == ("canonical", 5, 5, [])
    pycharm = row(frame, "lab-pc-07", "JetBrains PyCharm 2023.3.3")  # " LAB-PC-07 "
    assert pycharm["device_serial"] == "PF3K9XYZ"
    assert pycharm["primary_user_email"] == "kim.ng@contoso.com"
    assert pycharm["install_date"] == dt.date(2024, 2, 2)
    assert pycharm["last_seen"] == ts("2024-02-19 07:30:00")
    assert row(frame, "lab-pc-07", "Notepad++ (64-bit x64)")["install_date"] == dt.date(2024, 1, 5)
    photoshop = row(frame, "lab-mac-03", "Adobe Photoshop 2024")
    assert photoshop["install_date"] == dt.date(2024, 1, 22)  # 1/22/2024
    assert photoshop["last_seen"] == ts("2024-02-19 06:45:10")  # no zone: UTC
    vlc = row(frame, "lab-mac-03", "VLC media player")
    assert (vlc["install_date"], vlc["last_seen"]) == (None, None)
    kiosk = row(frame, "kiosk-01", "uTorrent")
    assert (kiosk["device_serial"], kiosk["os"], kiosk["primary_user_email"]) == (None, None, None)
    assert kiosk["last_seen"] == ts("2024-02-18 00:00:00")


def test_dates_in_every_accepted_form():
    values = pd.Series(["2024-01-05", "20240105", "1/5/2024", "", None, "2024-02-30", "5.1.2024"])
    dates, bad = parse_dates(values, time_suffix=False)
    day = dt.date(2024, 1, 5)
    assert [None if pd.isna(d) else d for d in dates] == [day, day, day, None, None, None, None]
    assert list(bad) == [False, False, False, False, False, True, True]


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "row_number", "column", "reason"),
    [
        ("bad_missing_column.csv", 0, "software_name", "required column missing"),
        ("bad_encoding.csv", 2, None, "not UTF-8 text (byte 0xe9 on line 3)"),
        ("bad_empty.csv", None, None, "the file is empty"),
    ],
)
def test_bad_files_are_refused_naming_the_place(name, row_number, column, reason):
    with pytest.raises(InputRejected) as refused:
        read_installs(DATA / name)
    [error] = refused.value.errors
    assert (error.file, error.row, error.column) == (str(DATA / name), row_number, column)
    assert reason in error.reason


def test_a_file_with_a_byte_order_mark_is_read_and_a_bad_byte_named_where_it_is(tmp_path):
    header = b"\xef\xbb\xbfhostname,software_name,publisher,version\n"
    good = tmp_path / "bom.csv"
    good.write_bytes(header + b"ws-1, Zoom ,Zoom,5\n")
    assert read_installs(good, "canonical").frame[["hostname", "raw_title"]].values.tolist() == [
        ["ws-1", "Zoom"]
    ]
    bad = tmp_path / "bom_latin1.csv"
    bad.write_bytes(header + b"ws-1,Zoom,Zoom,5\nws-2,Caf\xe9,Cafe,1\n")
    with pytest.raises(InputRejected) as refused:
        read_installs(bad, "canonical")
    [error] = refused.value.errors
    assert error.row == 2
    assert "byte 0xe9 on line 3" in error.reason  # the byte itself, not 3 bytes on


def test_bad_dates_are_row_errors():
    read = read_installs(DATA / "bad_date.csv")
    found = [(e.row, e.column, e.value, e.reason.split(":")[0]) for e in read.errors]
    assert found == [
        (2, "install_date", "2024-02-30", "not a date"),
        (3, "install_date", "22/01/2024", "not a date"),
        (4, "last_seen", "last week", "not a timestamp"),
    ]
    assert list(read.frame["_row"]) == [1]
    assert read.rows_read == 4
    assert read.rejected_hostnames == {"lab-pc-07", "lab-mac-03"}


def test_a_duplicate_key_is_an_error_on_the_later_row():
    read = read_installs(DATA / "bad_duplicate_key.csv")
    [error] = read.errors
    assert (error.row, error.column, error.value) == (3, "software_name", "Microsoft Visio - en-us")
    assert error.reason == "duplicate key: the same hostname, title and publisher as row 1"
    assert list(read.frame["_row"]) == [1, 2, 4]
    assert row(read.frame, "ws-0142", "Microsoft Visio - en-us")["version"] == "16.0.17231.20236"


def test_a_malformed_json_line_is_reported_and_the_others_read():
    read = read_installs(DATA / "bad_malformed.log")
    [error] = read.errors
    assert (error.row, error.column) == (2, None)
    assert error.value.startswith('{"snapshot":[{"name":"Tableau Desktop 2023.3"')
    assert error.reason.startswith("malformed JSON: ")
    assert list(read.frame["hostname"]) == ["ws-0142", "ws-0311"]
    assert list(read.frame["_row"]) == [1, 3]
    assert read.rows_read == 3
    assert read.rejected_hostnames == {"ws-0200"}  # its snapshot is not complete here


def test_wrong_types_in_an_osquery_log():
    read = read_installs(DATA / "bad_wrong_type.log")
    found = [(e.row, e.column, e.value, e.reason) for e in read.errors]
    seconds = "wrong type: expected a number of seconds since 1970"
    assert found == [
        (1, "snapshot[1].last_opened_time", "yesterday", seconds),
        (2, "snapshot", '"Google Chrome 121.0.6167.185"', "wrong type: expected a list of rows"),
        (3, "unixTime", "Feb 16", seconds),
    ]
    assert list(read.frame["raw_title"]) == ["Microsoft Excel.app"]
    assert read.rejected_hostnames == {"mbp-anna", "ws-0142", "db-srv-02"}


def test_a_value_too_long_for_the_store_names_the_source_field(tmp_path):
    line = osquery_line("WS-1", "programs", "snapshot", [{"name": "x" * 501, "publisher": "P"}])
    read = read_installs(write_lines(tmp_path, "long.log", [line]))
    [error] = read.errors
    assert (error.row, error.column) == (1, "snapshot[0].name")
    assert "500" in error.reason


def test_a_first_line_longer_than_the_detection_read_is_still_osquery(tmp_path):
    rows = [{"name": f"Package {i}", "version": "1.0", "publisher": "Vendor"} for i in range(2000)]
    line = {"snapshot": rows, "action": "snapshot", "name": "programs", "hostIdentifier": "WS-1"}
    path = write_lines(tmp_path, "big.log", [line | {"unixTime": 1708243200}])
    assert path.stat().st_size > 64 * 1024  # hostIdentifier comes after the snapshot
    assert detect_format(path) == "osquery"
    assert len(read_installs(path).frame) == 2000
