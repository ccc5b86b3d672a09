"""The contracts feed (lifecycle stage 1, inventory): one row per contract, as CSV or YAML.

    contract_id,product_code,product_name,vendor,metric,seats,unit_cost,currency,start_date,end_date,auto_renew,notice_days,cost_center,owner_email

(tests/data/contracts/contracts.csv is a full example; contracts.yaml the same as YAML.)
YAML carries the same fields as a list of mappings under a `contracts:` key; an
entry's number is its position in the list.

- contract_id: the contract number, once per file;
- product_code: upper-case letters, digits and dashes (MS-M365-E3); the contract's metric is
  authoritative for the product, so one product has one metric in a file;
- metric: per_user | per_device | concurrent | per_core | site (any letter case);
- seats: a whole number above 0; empty for a site license (unlimited seats, stored NULL),
  and only for a site license;
- unit_cost: per seat per year (a site license: the yearly price), 0 or more, at most 2 decimals;
- currency: ISO 4217 letters (EUR, USD; any letter case);
- start_date, end_date: YYYY-MM-DD, both days inside the term; the end may not precede the start;
- auto_renew: true/false, yes/no or 1/0 (any letter case);
- notice_days: 0 or more (empty = 0), not longer than the term (the notice deadline
  end_date - notice_days may not fall before the start);
- cost_center, owner_email: optional; an unowned contract is accepted (the ownership check
  flags it); emails are stored lower-cased.

The model checks what one cell (or one column) can tell; rule_errors() below checks what needs
several columns or rows. Two contracts of one product with overlapping terms are not an error:
tasks/contracts.py flags them as a possible duplicate purchase.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from licenseflow.errors import RowError
from schemas.store import METRICS

CONTRACT_ID = "contract_id"
PRODUCT_CODE = "product_code"
PRODUCT_NAME = "product_name"
VENDOR = "vendor"
METRIC = "metric"
SEATS = "seats"
UNIT_COST = "unit_cost"
CURRENCY = "currency"
START_DATE = "start_date"
END_DATE = "end_date"
AUTO_RENEW = "auto_renew"
NOTICE_DAYS = "notice_days"
COST_CENTER = "cost_center"
OWNER_EMAIL = "owner_email"

REQUIRED = [
    CONTRACT_ID,
    PRODUCT_CODE,
    PRODUCT_NAME,
    VENDOR,
    METRIC,
    SEATS,
    UNIT_COST,
    CURRENCY,
    START_DATE,
    END_DATE,
    AUTO_RENEW,
]
OPTIONAL = [NOTICE_DAYS, COST_CENTER, OWNER_EMAIL]
COLUMNS = REQUIRED + OPTIONAL
DATES = [START_DATE, END_DATE]

SITE = "site"
AUTO_RENEW_VALUES = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
DATE_FORMAT = "%Y-%m-%d"
PRODUCT_CODE_FORM = r"^[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?$"
CURRENCY_FORM = r"^[A-Z]{3}$"
EMAIL_FORM = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
MAX_INT = 2_147_483_647  # the store's integer columns (PostgreSQL int4)
MAX_COST = 10**12  # Numeric(14, 2)
# the store's column widths (schemas/store.py Vendor, Product, Contract)
MAX_LENGTH = {
    CONTRACT_ID: 100,
    PRODUCT_CODE: 100,
    PRODUCT_NAME: 300,
    VENDOR: 200,
    COST_CENTER: 50,
    OWNER_EMAIL: 320,
}

# Reasons a person can act on. No underscores: tasks.feeds.describe_check turns them to spaces.
DUPLICATE_CONTRACT = "the same contract appears on an earlier row: each contract once per file"
NOT_A_DATE = "is not a valid date written YYYY-MM-DD (e.g. 2025-07-01)"
NOT_A_CODE = "must be upper-case letters, digits and dashes (e.g. MS-M365-E3)"
NOT_A_CURRENCY = "must be an ISO 4217 currency code of 3 letters (e.g. EUR, USD)"
NOT_AN_EMAIL = "is not an email address"
NOT_CENTS = "must have at most 2 decimals"


def _length(column: str) -> dict:
    return {"max_value": MAX_LENGTH[column]}


class ContractRow(pa.DataFrameModel):
    """One contract as the file gives it, after the reader's normalisation (letter case of
    metric, currency, auto_renew and owner_email; empty cells are missing values)."""

    contract_id: Series[str] = pa.Field(nullable=False, str_length=_length(CONTRACT_ID))
    product_code: Series[str] = pa.Field(nullable=False, str_length=_length(PRODUCT_CODE))
    product_name: Series[str] = pa.Field(nullable=False, str_length=_length(PRODUCT_NAME))
    vendor: Series[str] = pa.Field(nullable=False, str_length=_length(VENDOR))
    metric: Series[str] = pa.Field(nullable=False, isin=list(METRICS))
    seats: Series[pd.Int64Dtype] = pa.Field(nullable=True, coerce=True, gt=0, le=MAX_INT)
    unit_cost: Series[float] = pa.Field(nullable=False, coerce=True, ge=0, lt=MAX_COST)
    currency: Series[str] = pa.Field(nullable=False)
    start_date: Series[str] = pa.Field(nullable=False)
    end_date: Series[str] = pa.Field(nullable=False)
    auto_renew: Series[str] = pa.Field(nullable=False, isin=list(AUTO_RENEW_VALUES))
    notice_days: Series[pd.Int64Dtype] = pa.Field(nullable=True, coerce=True, ge=0, le=MAX_INT)
    cost_center: Series[str] = pa.Field(nullable=True, str_length=_length(COST_CENTER))
    owner_email: Series[str] = pa.Field(nullable=True, str_length=_length(OWNER_EMAIL))

    @pa.check(CONTRACT_ID, error=DUPLICATE_CONTRACT)
    def once_per_file(cls, ids: Series[str]) -> Series[bool]:
        return ~ids.duplicated(keep="first")  # the first occurrence stands, later ones fail

    @pa.check(PRODUCT_CODE, error=NOT_A_CODE)
    def code_form(cls, codes: Series[str]) -> Series[bool]:
        return codes.str.fullmatch(PRODUCT_CODE_FORM).fillna(False).astype(bool)

    @pa.check(CURRENCY, error=NOT_A_CURRENCY)
    def currency_form(cls, codes: Series[str]) -> Series[bool]:
        return codes.str.fullmatch(CURRENCY_FORM).fillna(False).astype(bool)

    @pa.check(START_DATE, END_DATE, error=NOT_A_DATE)
    def iso_date(cls, days: Series[str]) -> Series[bool]:
        return parse_dates(days).notna() | days.isna()

    @pa.check(UNIT_COST, error=NOT_CENTS)
    def cents(cls, cost: Series[float]) -> Series[bool]:
        cents = cost.to_numpy(dtype="float64") * 100
        return pd.Series(np.isclose(cents, np.round(cents), rtol=0, atol=1e-6), index=cost.index)

    @pa.check(OWNER_EMAIL, error=NOT_AN_EMAIL)
    def email_form(cls, emails: Series[str]) -> Series[bool]:
        return emails.str.fullmatch(EMAIL_FORM).fillna(True).astype(bool)

    class Config:
        strict = False  # the reader's _row column and any extra export columns pass through


def parse_dates(days: pd.Series) -> pd.Series:
    """YYYY-MM-DD text to datetime64; anything else (2025-02-30, 01/07/2025) to NaT."""
    return pd.to_datetime(days, format=DATE_FORMAT, errors="coerce")


def rule_errors(frame: pd.DataFrame, file: str, row: str = "_row") -> list[RowError]:
    """What one cell cannot tell: seats against the metric, the term, notice against the term,
    one metric per product. `frame` is typed (dates as datetime64, seats and notice_days as
    integers, see tasks.contracts.typed); `row` names its row-number column."""
    errors: list[RowError] = []

    def add(mask: pd.Series, column: str, value, reason) -> None:
        for index in frame.index[mask.fillna(False).astype(bool)]:
            r = frame.loc[index]
            errors.append(RowError(file, int(r[row]), column, value(r), reason(r)))

    site = frame[METRIC] == SITE
    add(
        frame[SEATS].isna() & ~site,
        SEATS,
        lambda r: None,
        lambda r: (
            f"a value is required for a {r[METRIC]} contract "
            "(only a site license leaves seats empty)"
        ),
    )
    add(
        frame[SEATS].notna() & site,
        SEATS,
        lambda r: int(r[SEATS]),
        lambda r: "a site license has unlimited seats: leave seats empty, or use another metric",
    )
    term_days = (frame[END_DATE] - frame[START_DATE]).dt.days
    add(
        term_days < 0,
        END_DATE,
        lambda r: f"{r[END_DATE]:%Y-%m-%d}",
        lambda r: f"the contract ends before it starts (start_date {r[START_DATE]:%Y-%m-%d})",
    )
    add(
        (term_days >= 0) & (frame[NOTICE_DAYS] > term_days),
        NOTICE_DAYS,
        lambda r: int(r[NOTICE_DAYS]),
        lambda r: (
            f"the notice period is longer than the term "
            f"({(r[END_DATE] - r[START_DATE]).days} days from {r[START_DATE]:%Y-%m-%d} to "
            f"{r[END_DATE]:%Y-%m-%d}): the notice deadline would fall before the contract starts"
        ),
    )
    # the contract's metric is authoritative for its product: one product, one metric
    first = frame.drop_duplicates(PRODUCT_CODE).set_index(PRODUCT_CODE)
    add(
        frame[METRIC] != frame[PRODUCT_CODE].map(first[METRIC]),
        METRIC,
        lambda r: r[METRIC],
        lambda r: (
            f"product {r[PRODUCT_CODE]} has metric {first.at[r[PRODUCT_CODE], METRIC]} "
            f"on row {first.at[r[PRODUCT_CODE], row]}: a product has one metric"
        ),
    )
    return sorted(errors, key=lambda e: (e.row, e.column or ""))
