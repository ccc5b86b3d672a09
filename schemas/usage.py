"""Usage feeds: the canonical usage frame every adapter produces, and the canonical CSV.

Every usage adapter (Entra ID sign-ins, Okta System Log, FlexLM debug logs, osquery apps,
the canonical CSV) turns its file into one frame of the columns below, one row per
activity (a successful sign-in, a FlexLM checkout session, a last-opened time):

    source            which adapter read it (SOURCES)
    line              where in the file: CSV data row, JSON record (1-based) or log line
    user              who: an email (Entra UPN, Okta alternateId, user_email) or a FlexLM
                      user name; empty for device-only activity
    hostname          the device, when the source names one (FlexLM host, osquery)
    app               the application as the source names it (Entra/Okta app name, FlexLM
                      feature, osquery app name); empty when product_code is given
    app_id            the source's other name of the app, tried first when mapping: the Entra
                      application id (a GUID), the Okta app label, FlexLM 'DAEMON:feature'
    product_code      a catalog product code, when the source gives it (canonical CSV)
    activity_at       when the activity started, UTC
    duration_minutes  how long (FlexLM sessions, canonical CSV); 0 when unknown
    sessions          1 per sign-in or session; 0 for a marker that only says "last used at"
                      (osquery last_opened_time, a FlexLM session continued from an
                      earlier log), so re-reading a marker never inflates session counts

The canonical CSV (documented for users; SCCM, Intune, VDI or any other tool's usage maps to
it): user_email, product_code or app_name (one of the two per row), activity_at (ISO 8601;
no zone = UTC), duration_minutes (optional, >= 0).
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

SOURCES = ("entra_json", "entra_csv", "okta", "flexlm", "osquery", "canonical")
EVENT_COLUMNS = [
    "source",
    "line",
    "user",
    "hostname",
    "app",
    "app_id",
    "product_code",
    "activity_at",
    "duration_minutes",
    "sessions",
]

# canonical CSV columns
USER_EMAIL = "user_email"
PRODUCT_CODE = "product_code"
APP_NAME = "app_name"
ACTIVITY_AT = "activity_at"
DURATION_MINUTES = "duration_minutes"
CANONICAL_REQUIRED = (USER_EMAIL, ACTIVITY_AT)
CANONICAL_OPTIONAL = (PRODUCT_CODE, APP_NAME, DURATION_MINUTES)

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def parse_utc(values: pd.Series) -> pd.Series:
    """ISO 8601 strings to UTC timestamps (microseconds); no zone means UTC; bad = NaT."""
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    return parsed.dt.as_unit("us")


class UsageEvents(pa.DataFrameModel):
    """The canonical usage frame (see the module docstring)."""

    source: Series[str] = pa.Field(isin=list(SOURCES))
    line: Series[int] = pa.Field(ge=0)
    user: Series[str] = pa.Field(nullable=True)
    hostname: Series[str] = pa.Field(nullable=True)
    app: Series[str] = pa.Field(nullable=True)
    app_id: Series[str] = pa.Field(nullable=True)
    product_code: Series[str] = pa.Field(nullable=True)
    activity_at: Series[pd.DatetimeTZDtype] = pa.Field(dtype_kwargs={"unit": "us", "tz": "UTC"})
    duration_minutes: Series[float] = pa.Field(ge=0)
    sessions: Series[int] = pa.Field(ge=0)

    @pa.dataframe_check(name="names a user or a device")
    def who(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["user"].notna() | frame["hostname"].notna()

    @pa.dataframe_check(name="names an application or a product code")
    def what(cls, frame: pd.DataFrame) -> Series[bool]:
        return frame["app"].notna() | frame["app_id"].notna() | frame["product_code"].notna()

    class Config:
        strict = True


class CanonicalUsageCsv(pa.DataFrameModel):
    """The canonical usage CSV as read (all strings), checked before conversion."""

    user_email: Series[str] = pa.Field(str_matches=EMAIL_PATTERN)
    product_code: Series[str] = pa.Field(nullable=True)
    app_name: Series[str] = pa.Field(nullable=True)
    activity_at: Series[str]
    duration_minutes: Series[float] = pa.Field(nullable=True, ge=0, coerce=True)

    @pa.check("activity_at", name="must be an ISO 8601 date and time (2026-03-02T14:05:00Z)")
    def activity_at_is_iso(cls, values: Series[str]) -> Series[bool]:
        return parse_utc(values).notna()

    # "a product_code or an app_name on every row" is checked by the adapter, so the error
    # names the row once (a pandera frame-wide check would name every column of it)
