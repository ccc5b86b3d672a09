"""Spreadsheet-formula injection: the one neutralising function every export goes through.

A text cell that starts with =, +, -, @, a tab or a carriage return is read as a formula by
Excel, LibreOffice and Google Sheets (`=HYPERLINK("http://x")`, `@SUM(...)`,
`=cmd|' /C calc'!A0`). Every text value written to the HTML report, the Excel workbook and
the CSV files is passed through `neutralise`: such a value gets a leading apostrophe, so it
is shown as the text it is and never evaluated. Numbers, dates and booleans are typed cells
and are left alone (a negative number is a number, not a formula).
"""

from __future__ import annotations

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralise(value):
    """`value` made safe to put in a spreadsheet cell: a string starting with a formula
    trigger gets a leading apostrophe; anything else is returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return QUOTE + value
    return value


def is_text_column(series: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)


def neutralise_series(series: pd.Series) -> pd.Series:
    """`neutralise` applied to every cell of a text column (vectorised for string columns;
    an object column's non-string cells are left alone)."""
    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(
        series.dtype
    ):
        trigger = series.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
        return series.where(~trigger, QUOTE + series) if trigger.any() else series
    return series.map(neutralise, na_action="ignore")


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every text cell and every column name neutralised: what the
    HTML page, the workbook and the CSV files are written from."""
    safe = frame.copy()
    for i, column in enumerate(frame.columns):
        if is_text_column(frame[column]):
            safe.isetitem(i, neutralise_series(frame[column]))
    safe.columns = [neutralise(str(c)) for c in safe.columns]
    return safe
