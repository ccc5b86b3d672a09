"""The report's pure rules: quarters and report periods, formula neutralising, vendor risk."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tasks.export_safety import neutralise, neutralise_frame
from tasks.report_data import Quarter, ReportError, report_period, vendor_risk, weekly_trend

D = dt.date


def test_a_quarter_is_read_and_bounded():
    q = Quarter.parse("2026Q3")
    assert (q.start, q.end) == (D(2026, 7, 1), D(2026, 9, 30))
    assert Quarter.parse(" 2026-q4 ").end == D(2026, 12, 31)
    assert str(Quarter.parse("2027Q1").previous()) == "2026Q4"
    assert str(Quarter.parse("2026Q4").next()) == "2027Q1"
    assert Quarter.containing(D(2026, 2, 28)) == Quarter(2026, 1)
    for bad in ("2026Q5", "Q3 2026", "2026", ""):
        with pytest.raises(ReportError, match="2026Q3"):
            Quarter.parse(bad)


def test_the_default_period_is_the_quarter_that_ended_last():
    period = report_period(today=D(2026, 10, 1))  # the schedule's 06:00 on October 1st
    assert (str(period.quarter), period.as_of, period.to_date) == ("2026Q3", D(2026, 9, 30), False)
    assert str(report_period(today=D(2026, 1, 1)).quarter) == "2025Q4"


def test_a_running_quarter_is_reported_to_date():
    period = report_period("2026Q4", today=D(2026, 11, 27))
    assert (period.as_of, period.to_date) == (D(2026, 11, 27), True)
    assert "quarter to date" in period.title
    explicit = report_period("2026Q4", "2026-11-23", today=D(2027, 5, 1))
    assert (explicit.as_of, explicit.to_date) == (D(2026, 11, 23), True)
    assert explicit.renewals_until == D(2027, 3, 31)
    assert report_period(as_of=D(2026, 11, 23)).quarter == Quarter(2026, 4)
    assert report_period("2026Q3", today=D(2027, 1, 1)).as_of == D(2026, 9, 30)


def test_impossible_periods_are_refused():
    with pytest.raises(ReportError, match="has not started"):
        report_period("2027Q1", today=D(2026, 11, 27))
    with pytest.raises(ReportError, match="not in quarter 2026Q3"):
        report_period("2026Q3", "2026-10-01")
    with pytest.raises(ReportError, match="YYYY-MM-DD"):
        report_period("2026Q3", "30/09/2026")


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("http://x")', "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\r=1+1", "=", "@"],
)
def test_formula_triggers_get_an_apostrophe(text):
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize(
    "value", ["Adobe", "a=b", " =1", "'=already", "", -5, 3.5, None, D(2026, 1, 1), True]
)
def test_everything_else_is_left_alone(value):
    assert neutralise(value) == value


def test_a_frame_is_neutralised_in_its_text_cells_and_names_only():
    frame = pd.DataFrame(
        {"name": ["=1+1", "ok", None], "=evil": [1, -2, 3], "cost": [-1.5, 2.0, None]}
    )
    frame["arrow"] = pd.array(["@x", "y", None], dtype="string")
    safe = neutralise_frame(frame)
    assert list(safe.columns) == ["name", "'=evil", "cost", "arrow"]
    assert safe["name"].tolist()[:2] == ["'=1+1", "ok"] and pd.isna(safe["name"].iloc[2])
    assert safe["'=evil"].tolist() == [1, -2, 3]
    assert safe["cost"].iloc[0] == -1.5
    assert safe["arrow"].tolist()[:2] == ["'@x", "y"]
    assert frame["name"].iloc[0] == "=1+1"  # the input is not changed


def _position(rows):
    columns = ["product_code", "vendor", "currency", "annual_cost", "shortfall", "true_up_cost"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.assign(reclaimable=0, waste=0.0)


def test_vendor_risk_levels_and_currencies_are_kept_apart():
    position = _position(
        [
            ("A1", "Alpha", "USD", 1000.0, 2, 200.0),
            ("A2", "Alpha", "EUR", 500.0, 0, 0.0),
            ("B1", "Beta", "USD", 300.0, 0, 0.0),
            ("C1", "Gamma", "USD", 100.0, 0, 0.0),
        ]
    )
    flags = pd.DataFrame(
        {"vendor": ["Beta", "Delta"], "kind": ["unauthorised_software"] * 2, "excess": [3, 1]}
    )
    gaps = pd.DataFrame({"vendor": ["Gamma"], "contract_number": ["G-1"]})
    risk = vendor_risk(position, flags, gaps)
    rows = risk[["vendor", "risk", "currency", "annual_spend", "true_up_cost"]].values.tolist()
    assert rows == [
        ["Alpha", "high", "USD", 1000.0, 200.0],
        ["Alpha", "high", "EUR", 500.0, 0.0],
        ["Beta", "medium", "USD", 300.0, 0.0],
        ["Delta", "medium", "", 0.0, 0.0],
        ["Gamma", "medium", "USD", 100.0, 0.0],
    ]
    by_vendor = risk.groupby("vendor")[["unauthorised_installs", "ownership_gaps"]].sum()
    assert by_vendor.loc["Beta", "unauthorised_installs"] == 3
    assert by_vendor.loc["Gamma", "ownership_gaps"] == 1


def test_weekly_trend_averages_seats_in_use_per_day_over_52_weeks():
    day = D(2026, 9, 30)
    daily = pd.DataFrame(
        {
            "day": pd.to_datetime(["2026-09-30", "2026-09-29", "2026-09-24", "2025-01-01"]),
            "seats": [7, 7, 14, 99],
        }
    )
    trend = weekly_trend(daily, day)
    assert len(trend) == 52 and trend["week_start"].iloc[-1] == D(2026, 9, 24)
    assert trend["seats_in_use"].iloc[-1] == 4.0  # (7 + 7 + 14) / 7
    assert trend["seats_in_use"].iloc[:-1].sum() == 0  # 2025-01-01 is before the 52 weeks
