"""The HR roster feed: canonical CSV, one row per person (the shape of a Workday or BambooHR
employee export).

    employee_id,email,full_name,department,cost_center,manager_email,status,hire_date,termination_date
    E001,ana.ruiz@example.com,Ana Ruiz,Finance,CC-100,,active,2019-03-04,
    E002,ben.okafor@example.com,Ben Okafor,Finance,CC-100,ana.ruiz@example.com,leave,2021-06-01,

- status: active | leave | terminated (any letter case);
- dates: YYYY-MM-DD; termination_date may lie in the future (nothing happens until it is
  reached) and may not lie before hire_date;
- emails compare case-insensitively and are stored lower-cased;
- manager_email names a person in the same roster (or already in the store).

The model checks what one cell can tell; what needs several rows (duplicate ids, colliding
emails, unknown managers) or several columns (termination before hire) is checked in
tasks/people.py.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from schemas.store import PERSON_STATUSES

EMPLOYEE_ID = "employee_id"
EMAIL = "email"
FULL_NAME = "full_name"
DEPARTMENT = "department"
COST_CENTER = "cost_center"
MANAGER_EMAIL = "manager_email"
STATUS = "status"
HIRE_DATE = "hire_date"
TERMINATION_DATE = "termination_date"

REQUIRED = [EMPLOYEE_ID, EMAIL, FULL_NAME, STATUS]
OPTIONAL = [DEPARTMENT, COST_CENTER, MANAGER_EMAIL, HIRE_DATE, TERMINATION_DATE]
COLUMNS = REQUIRED[:3] + OPTIONAL[:3] + [STATUS] + OPTIONAL[3:]
DATES = [HIRE_DATE, TERMINATION_DATE]
# the store's column widths (schemas/store.py Person)
MAX_LENGTH = {EMPLOYEE_ID: 50, EMAIL: 320, FULL_NAME: 200, DEPARTMENT: 100, COST_CENTER: 50}
MAX_LENGTH[MANAGER_EMAIL] = 320

EMAIL_FORM = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class RosterRow(pa.DataFrameModel):
    """One person as HR exports them (status already lower-cased by the reader)."""

    employee_id: Series[str] = pa.Field(nullable=False)
    email: Series[str] = pa.Field(nullable=False, str_matches=EMAIL_FORM)
    full_name: Series[str] = pa.Field(nullable=False)
    department: Series[str] = pa.Field(nullable=True)
    cost_center: Series[str] = pa.Field(nullable=True)
    manager_email: Series[str] = pa.Field(nullable=True, str_matches=EMAIL_FORM)
    status: Series[str] = pa.Field(nullable=False, isin=list(PERSON_STATUSES))
    hire_date: Series[str] = pa.Field(nullable=True)
    termination_date: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = False  # the reader's _row column and any extra export columns pass through
