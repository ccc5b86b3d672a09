"""What discovery alone can say about each product: entitled seats against what is installed.

The weekly reconciliation refines this into the full license position by metric.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

INSTALLED_POSITION_SQL = text(
    """
    WITH installed AS (
        SELECT i.product_id, COUNT(DISTINCT i.device_id) AS installed_devices,
               COUNT(DISTINCT d.primary_user_email) AS installed_users
        FROM installation i JOIN device d ON d.id = i.device_id
        WHERE i.product_id IS NOT NULL AND i.first_seen <= :moment
          AND (i.removed_at IS NULL OR i.removed_at > :moment)
        GROUP BY i.product_id
    ), entitled AS (
        SELECT product_id, SUM(seats) AS seats,
               SUM(CASE WHEN seats IS NULL THEN 1 ELSE 0 END) AS site_contracts
        FROM contract WHERE start_date <= :day AND end_date >= :day
        GROUP BY product_id
    )
    SELECT p.code AS product_code, p.name AS product_name, v.name AS vendor, p.metric,
           p.classification, e.seats AS entitled_seats, COALESCE(e.site_contracts, 0) > 0 AS site,
           COALESCE(ins.installed_devices, 0) AS installed_devices,
           COALESCE(ins.installed_users, 0) AS installed_users
    FROM product p
    LEFT JOIN vendor v ON v.id = p.vendor_id
    LEFT JOIN installed ins ON ins.product_id = p.id
    LEFT JOIN entitled e ON e.product_id = p.id
    WHERE ins.product_id IS NOT NULL OR e.product_id IS NOT NULL
    ORDER BY v.name, p.name
    """
)


def installed_position(session: Session, day: dt.date) -> pd.DataFrame:
    """Per product with a contract or an install on `day`: entitled seats (None = site
    license, unlimited), devices it is installed on, and their distinct primary users."""
    moment = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
    rows = session.execute(INSTALLED_POSITION_SQL, {"day": day, "moment": moment}).mappings()
    frame = pd.DataFrame(rows.all())
    if frame.empty:
        return frame
    frame["site"] = frame["site"].astype(bool)
    frame["entitled_seats"] = frame["entitled_seats"].astype("Int64")
    return frame
