"""Usage adapters on real-shaped samples (tests/data/usage), and the FlexLM arithmetic on a log
whose answers were worked out by hand."""

import datetime as dt

import pandas as pd
import pytest

from licenseflow.errors import InputRejected
from schemas.usage import EVENT_COLUMNS
from tasks.usage_adapters import (
    concurrent_peaks,
    daily_denials,
    detect_format,
    events_from_osquery_apps,
    flexlm_sessions,
    parse_flexlm,
    read_usage_file,
)

USAGE = "usage"


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def rows(events: pd.DataFrame, *columns: str) -> list[tuple]:
    """The columns as tuples, missing values as None."""
    picked = events[list(columns)].astype(object)
    return list(picked.where(picked.notna(), None).itertuples(index=False, name=None))


@pytest.fixture
def usage_data(request):
    from conftest import TESTS_DATA

    return TESTS_DATA / USAGE


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("entra_signins.json", "entra_json"),
        ("entra_signins.csv", "entra_csv"),
        ("okta_system_log.json", "okta"),
        ("canonical_usage.csv", "canonical"),
        ("flexlm/licsrv01_2026-03-02.log", "flexlm"),
    ],
)
def test_formats_are_recognised_from_the_file(usage_data, name, fmt):
    assert detect_format(usage_data / name) == fmt


def test_graph_signins_count_only_successes(usage_data):
    read = read_usage_file(usage_data / "entra_signins.json")
    assert list(read.events.columns) == EVENT_COLUMNS
    assert read.records == 7
    assert read.skipped == {"failed sign-ins": 1}  # record 4, errorCode 50126
    assert rows(read.events, "line", "user", "app") == [
        (1, "alice@example.com", "Zoom"),
        (2, "bob@example.com", "Slack"),
        (3, "Alice@Example.com", "Zoom"),
        (5, "mallory@contractor.example", "Zoom"),
        (6, "alice@example.com", "Graph Explorer"),
        (7, "bob@example.com", "Salesforce"),
    ]
    first = read.events.iloc[0]
    assert first["activity_at"] == at("2026-03-02 08:15:03.123456")  # 7 digits cut to 6
    assert first["app_id"] == "1e9c2a43-8f5b-4b8e-9d6f-0b1a2c3d4e5f"
    assert (read.events["sessions"] == 1).all() and (read.events["duration_minutes"] == 0).all()


def test_portal_csv_counts_only_success_rows(usage_data):
    read = read_usage_file(usage_data / "entra_signins.csv")
    assert read.records == 5
    assert read.skipped == {"failed sign-ins": 2}  # a Failure and an Interrupted row
    assert rows(read.events, "line", "user", "app", "activity_at") == [
        (1, "alice@example.com", "Zoom", at("2026-03-02 08:15:03")),
        (2, "bob@example.com", "Slack", at("2026-03-02 09:00:00")),
        (5, "carol@example.com", "Salesforce", at("2026-03-03 06:00:00")),
    ]


def test_okta_keeps_successful_sso_into_an_app_instance(usage_data):
    read = read_usage_file(usage_data / "okta_system_log.json")
    assert read.records == 6
    assert read.skipped == {"other event types": 1, "unsuccessful sign-ons": 1}
    assert rows(read.events, "line", "user", "app", "app_id") == [
        (2, "alice@example.com", "Slack", "Slack - Example"),
        (3, "erin@example.com", "Jira Software", "Atlassian Jira"),
        (5, "erin@example.com", "Miro", "Miro"),
        (6, "alice@example.com", "Slack", "Slack - Example"),
    ]
    assert read.events["activity_at"].iloc[3] == at("2026-03-02 23:59:59.999")


def test_canonical_csv_takes_code_or_app_name_and_any_iso_zone(usage_data):
    read = read_usage_file(usage_data / "canonical_usage.csv")
    assert rows(read.events, "user", "product_code", "app", "activity_at", "duration_minutes") == [
        ("alice@example.com", "ADOBE-ACROBAT-PRO", None, at("2026-03-02 10:00"), 35.0),
        ("bob@example.com", None, "Tableau Desktop", at("2026-03-02 10:00"), 0.0),  # +01:00
        ("Carol@Example.com", "ADOBE-ACROBAT-PRO", None, at("2026-03-03 09:30"), 12.5),
        ("alice@example.com", "ADOBE-ACROBAT-PRO", None, at("2026-03-02 15:00"), 10.0),
    ]


def test_canonical_csv_bad_rows_are_named(tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(
        "user_email,product_code,app_name,activity_at,duration_minutes\n"
        "alice@example.com,SLACK-PRO,,2026-03-02T10:00:00Z,5\n"
        "not-an-email,SLACK-PRO,,2026-03-02T10:00:00Z,5\n"
        "bob@example.com,,,2026-03-02T10:00:00Z,5\n"
        "bob@example.com,SLACK-PRO,,yesterday,5\n"
        "bob@example.com,SLACK-PRO,,2026-03-02T10:00:00Z,-3\n"
    )
    read = read_usage_file(path)
    found = {(e.row, e.column) for e in read.errors}
    assert found == {
        (2, "user_email"),
        (3, "product_code"),  # neither product_code nor app_name
        (4, "activity_at"),
        (5, "duration_minutes"),
    }
    assert "ISO 8601" in next(e.reason for e in read.errors if e.row == 4)
    assert list(read.events["line"]) == [1]


def test_json_records_missing_fields_are_named_by_record_number(tmp_path):
    path = tmp_path / "signins.json"
    path.write_text(
        '{"value": ['
        '{"createdDateTime": "2026-03-02T08:00:00Z", "userPrincipalName": "a@example.com",'
        ' "appDisplayName": "Zoom", "appId": "x", "status": {"errorCode": 0}},'
        '{"createdDateTime": "2026-03-02T08:00:00Z", "appDisplayName": "Zoom",'
        ' "status": {"errorCode": 0}},'
        '{"createdDateTime": "soon", "userPrincipalName": "b@example.com",'
        ' "appDisplayName": "Zoom", "status": {"errorCode": "0"}}'
        "]}"
    )
    read = read_usage_file(path, "entra_json")
    assert {(e.row, e.column) for e in read.errors} == {
        (2, "userPrincipalName"),
        (3, "createdDateTime"),
    }
    assert list(read.events["user"]) == ["a@example.com"]


def test_broken_json_is_refused_with_its_line(tmp_path):
    path = tmp_path / "okta.json"
    path.write_text('[\n{"eventType": "user.authentication.sso",\n "published": }\n]')
    with pytest.raises(InputRejected) as refused:
        read_usage_file(path, "okta")
    assert refused.value.errors[0].row == 3
    assert "not valid JSON" in refused.value.errors[0].reason


# --- FlexLM ------------------------------------------------------------------------------------

# Worked out by hand from tests/data/usage/flexlm/licsrv01_2026-03-02.log (UTC). The log
# starts at its first TIMESTAMP, 3/2 08:59:58, and ends at its last line, 3/3 08:00:00.
#
# MATLAB (1 licence each):
#   carol@ws-03  IN at 09:01:10 (line 27) without an OUT: out since the log began
#                -> 08:59:58 .. 09:01:10 (1.2 min, sessions 0)
#   alice@ws-01  OUT 09:05 (28), OUT 09:15 (30), IN 09:30 (32), IN 3/3 02:00 (46): first in,
#                first out -> 09:05..09:30 (25 min) and 09:15..3/3 02:00 (1005 min)
#   bob@ws-02    OUT 09:10 (29), IN 10:00 (INACTIVE, 35) -> 50 min; OUT 3/3 07:00 (51),
#                never in -> open to the log's end, 60 min
#   carol@ws-03  OUT 3/3 02:00 (45), IN 05:00 (50) -> 180 min
#   level: 1 (carol) 0 | 1 2 3 (09:15) 2 1 .. carried into 3/3: 1, 2 (02:00 carol before
#   alice's IN on the next line) 1 0 1  => peak 3/2 = 3, 3/3 = 2
#   DENIED: 09:20 (3/2), 3:00 (3/3)
# solidworks:
#   erin@cad-01  OUT 09:45 (2 licences, 33), IN 10:10 (37) -> 25 min; OUT 23:30 (42),
#                IN 3/3 04:00 (49) -> 270 min
#   frank@cad-02 OUT 09:50 (34), IN 0:30 (43): 0:30 after 23:30 is the next day -> 880 min
#   level: 2 3 (09:50) 1 2 (23:30) | 3/3 starts at 2, 1, 0  => peak 3/2 = 3, 3/3 = 2
#   DENIED: 10:12 (3/2)
# Unreadable: line 36 ("10:05 (MLM) ..." has no seconds), line 48 (no quotes around the
# feature). UNSUPPORTED, banner and TIMESTAMP lines are not events.


@pytest.fixture
def hand_log(usage_data):
    return usage_data / "flexlm" / "licsrv01_2026-03-02.log"


def test_flexlm_sessions_by_hand(hand_log):
    read = read_usage_file(hand_log)
    sessions = read.sessions.sort_values(["feature", "start", "start_line"])
    got = [
        (f, u, h, str(s), str(e), n, minutes)
        for f, u, h, s, e, n, minutes in zip(
            sessions["feature"],
            sessions["user"],
            sessions["host"],
            sessions["start"].dt.strftime("%d %H:%M:%S"),
            sessions["end"].dt.strftime("%d %H:%M:%S"),
            sessions["licenses"],
            (sessions["end"] - sessions["start"]).dt.total_seconds() / 60,
            strict=True,
        )
    ]
    assert got == [
        ("MATLAB", "carol", "ws-03", "02 08:59:58", "02 09:01:10", 1, 1.2),
        ("MATLAB", "alice", "ws-01", "02 09:05:00", "02 09:30:00", 1, 25.0),
        ("MATLAB", "bob", "ws-02", "02 09:10:00", "02 10:00:00", 1, 50.0),
        ("MATLAB", "alice", "ws-01", "02 09:15:00", "03 02:00:00", 1, 1005.0),
        ("MATLAB", "carol", "ws-03", "03 02:00:00", "03 05:00:00", 1, 180.0),
        ("MATLAB", "bob", "ws-02", "03 07:00:00", "03 08:00:00", 1, 60.0),
        ("solidworks", "erin", "cad-01", "02 09:45:00", "02 10:10:00", 2, 25.0),
        ("solidworks", "frank", "cad-02", "02 09:50:00", "03 00:30:00", 1, 880.0),
        ("solidworks", "erin", "cad-01", "02 23:30:00", "03 04:00:00", 1, 270.0),
    ]
    # the continued session is a marker, not a new session
    assert read.events["sessions"].sum() == 8
    assert read.skipped == {
        "IN lines without an OUT in this log": 1,
        "checkouts still open at the end of the log": 1,
        "IN (INACTIVE): returned after an idle timeout": 1,
        "DENIED": 3,
    }


def test_flexlm_peaks_and_denials_by_hand(hand_log):
    read = read_usage_file(hand_log)
    peaks = concurrent_peaks(read.sessions, "feature")
    assert rows(peaks, "feature", "day", "peak") == [
        ("MATLAB", dt.date(2026, 3, 2), 3),
        ("MATLAB", dt.date(2026, 3, 3), 2),
        ("solidworks", dt.date(2026, 3, 2), 3),
        ("solidworks", dt.date(2026, 3, 3), 2),
    ]
    denials = daily_denials(read.denials, "feature")
    assert rows(denials, "feature", "day", "denials") == [
        ("MATLAB", dt.date(2026, 3, 2), 1),
        ("MATLAB", dt.date(2026, 3, 3), 1),
        ("solidworks", dt.date(2026, 3, 2), 1),
    ]
    assert list(read.denials["user"]) == ["dave", "gina", "dave"]


def test_flexlm_unreadable_lines_are_reported_with_their_numbers(hand_log):
    read = read_usage_file(hand_log)
    assert read.records == 52
    assert [(e.row, e.reason) for e in read.errors] == [
        (36, "not a FlexLM log line: no 'H:MM:SS (daemon)' prefix"),
        (48, 'does not have the form OUT|IN|DENIED: "feature" user@host'),
    ]
    assert read.errors[1].value == " 3:30:00 (MLM) OUT: MATLAB dave@ws-04"


def test_flexlm_event_before_any_timestamp_is_an_error(usage_data):
    with pytest.raises(InputRejected) as refused:
        read_usage_file(usage_data / "flexlm" / "no_timestamp.log")
    error = refused.value.errors[0]
    assert error.row == 2
    assert "before any TIMESTAMP" in error.reason


def test_flexlm_bad_timestamp_and_time_are_errors_not_dates():
    log = parse_flexlm(
        " 9:00:00 (lmgrd) TIMESTAMP 3/2/2026\n"
        ' 9:10:00 (MLM) OUT: "MATLAB" a@h\n'
        '25:00:00 (MLM) IN: "MATLAB" a@h\n'
        " 9:30:00 (lmgrd) TIMESTAMP 13/2/2026\n"
        ' 9:40:00 (MLM) IN: "MATLAB" a@h\n',
        "x.log",
    )
    assert [(e.row, e.reason) for e in log.errors] == [
        (3, "time of day out of range"),
        (4, "TIMESTAMP without a valid date m/d/yyyy"),
    ]
    sessions = flexlm_sessions(log)
    assert list(sessions["end"]) == [at("2026-03-02 09:40")]  # the bad IN was not used


def test_flexlm_times_are_read_in_the_servers_zone():
    log = parse_flexlm(
        '23:00:00 (lmgrd) TIMESTAMP 3/2/2026\n23:30:00 (MLM) OUT: "MATLAB" a@h\n',
        "x.log",
        tz="Europe/Zurich",
    )
    assert list(log.events["at"]) == [at("2026-03-02 22:30")]


def test_osquery_last_opened_is_a_device_marker():
    apps = pd.DataFrame(
        {
            "hostname": ["MAC-01", "MAC-01", "MAC-02"],
            "name": ["Tableau Desktop.app", "Safari.app", "Slack.app"],
            "last_opened_at": [pd.Timestamp("2026-03-01 09:00", tz="UTC"), pd.NaT, None],
        }
    )
    events = events_from_osquery_apps(apps)
    assert rows(events, "hostname", "app", "sessions", "source") == [
        ("mac-01", "Tableau Desktop.app", 0, "osquery")
    ]
    assert events["user"].isna().all()


def test_osquery_results_log_apps_rows_are_last_use_markers(usage_data):
    path = usage_data / "osquery_apps.log"
    assert detect_format(path) == "osquery"
    read = read_usage_file(path)
    # Slack was never opened (-1.0); the Windows programs row has no last_opened_time
    assert rows(read.events, "line", "hostname", "app", "activity_at", "sessions") == [
        (1, "mac-01", "Tableau Desktop 2025.3.app", at("2026-03-01 09:00"), 0),
        (1, "mac-01", "zoom.us.app", at("2026-02-27 16:30"), 0),
    ]


def test_osquery_apps_are_recognised_by_the_given_recognizer(usage_data):
    def recognize(apps: pd.DataFrame) -> pd.Series:
        return apps["raw_title"].str.startswith("Tableau").map({True: "TABLEAU-DESKTOP"})

    read = read_usage_file(usage_data / "osquery_apps.log", recognize=recognize)
    assert rows(read.events, "app", "product_code") == [
        ("Tableau Desktop 2025.3.app", "TABLEAU-DESKTOP"),
        ("zoom.us.app", None),
    ]
