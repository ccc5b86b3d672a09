"""The existing-assignments feed: who holds a seat of which product today.

Canonical CSV, one row per seat (any tool's export mapped to it):

    product_code,user,device,assigned_at
    MS-M365-E3,ana.ruiz@example.com,,2024-05-17
    MS-VISIO-PLAN2,E002,,2025-01-09T08:30:00Z
    WINRAR,,pc-0042,

- product_code: a product in the store (any letter case);
- user: the person's email (any case) or employee id; device: a device hostname (any case);
  exactly one of the two per row;
- assigned_at: when the seat was given, YYYY-MM-DD or an ISO date-time (UTC unless it says
  otherwise); empty = the time of the import. Kept as given: it is history.

Microsoft Graph exports are read too (tasks/assignment_feeds.py): subscribedSkus JSON
(skuId, skuPartNumber, prepaidUnits.enabled, consumedUnits) and users JSON
(userPrincipalName, mail, assignedLicenses[].skuId), SKUs mapped to products by the catalog's
graph_skus aliases.

The model checks what one cell can tell; "exactly one of user or device" (two columns) and
whether people, devices and products exist (the store) are checked in
tasks/assignment_feeds.py.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

PRODUCT_CODE = "product_code"
USER = "user"
DEVICE = "device"
ASSIGNED_AT = "assigned_at"

REQUIRED = [PRODUCT_CODE]
OPTIONAL = [USER, DEVICE, ASSIGNED_AT]
COLUMNS = REQUIRED + OPTIONAL

CODE_FORM = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
ONE_HOLDER = "exactly one of user or device"


def parse_moment(values: pd.Series) -> pd.Series:
    """ISO dates or date-times as UTC timestamps; NaT where a value does not parse."""
    return pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")


class AssignmentRow(pa.DataFrameModel):
    """One seat as the canonical CSV gives it."""

    product_code: Series[str] = pa.Field(
        nullable=False, str_matches=CODE_FORM, str_length={"max_value": 100}
    )
    user: Series[str] = pa.Field(nullable=True, str_length={"max_value": 320})
    device: Series[str] = pa.Field(nullable=True, str_length={"max_value": 255})
    assigned_at: Series[str] = pa.Field(nullable=True)

    @pa.check(ASSIGNED_AT, name="an ISO date (YYYY-MM-DD) or date-time")
    def _moment(cls, values: Series[str]) -> Series[bool]:
        return values.isna() | parse_moment(values).notna()

    class Config:
        strict = False  # the reader's _row column and any extra export columns pass through
