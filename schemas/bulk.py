"""The bulk assignment file: canonical CSV, one seat change per row.

    action,product_code,user,device,pilot,note
    assign,MS-VISIO-PLAN2,ana.ruiz@example.com,,yes,design team pilot
    assign,MS-VISIO-PLAN2,E0042,,,
    revoke,WINRAR,,pc-0042,,machine retired

- action: assign | revoke (any letter case);
- product_code: a product of the store (any letter case);
- user: an email (any case) or an employee id; device: a hostname (any case); exactly one
  of the two per row (a file may leave out the column it does not use);
- pilot: yes/no (also y/n, true/false, 1/0, x); marks the rows applied first, in the pilot
  stage. When no row is marked, the first `pilot_size` rows are the pilot;
- note: free text kept with the change (at most 500 characters).

UTF-8 with or without BOM; the delimiter may be , ; tab or |.

The model checks what one cell can tell; what needs several rows (duplicates, contradictions,
capacity) or the store (unknown codes, people, devices, what is assigned) is checked in
tasks/bulk_validate.py.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

ACTION = "action"
PRODUCT_CODE = "product_code"
USER = "user"
DEVICE = "device"
PILOT = "pilot"
NOTE = "note"

REQUIRED = [ACTION, PRODUCT_CODE]
OPTIONAL = [USER, DEVICE, PILOT, NOTE]
COLUMNS = REQUIRED + OPTIONAL
ACTIONS = ("assign", "revoke")
PILOT_YES = ("yes", "y", "true", "1", "x")
PILOT_NO = ("no", "n", "false", "0")
NOTE_MAX = 500

# the error report's columns (CSV and table artifact)
REPORT_COLUMNS = ["row", "column", "value", "reason"]


class BulkRow(pa.DataFrameModel):
    """One requested change as the operator typed it (action and pilot lower-cased)."""

    action: Series[str] = pa.Field(nullable=False, isin=list(ACTIONS))
    product_code: Series[str] = pa.Field(nullable=False)
    user: Series[str] = pa.Field(nullable=True)
    device: Series[str] = pa.Field(nullable=True)
    pilot: Series[str] = pa.Field(nullable=True, isin=list(PILOT_YES + PILOT_NO))
    note: Series[str] = pa.Field(nullable=True, str_length={"max_value": NOTE_MAX})

    class Config:
        strict = False  # the reader's _row column passes through
