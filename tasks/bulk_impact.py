"""The impact preview of a bulk batch: seats in use before and after per product, the yearly
cost change, and how many people and devices are affected. Plain functions; the figures are
stored on the batch (bulk_batch.impact), shown as an artifact and in the CLI, and attached to
the approval request."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd

from tasks.assignments import SEAT_LIMITED, Capacity, counts_toward
from tasks.bulk_validate import ADDS, NO_CHANGE, REMOVES


def compute_impact(
    rows: pd.DataFrame,
    capacity: dict[int, Capacity],
    costs: dict[int, tuple[Decimal, str]],
) -> dict:
    """rows: resolved rows with product_id, code, metric, person_id, device_id and effect
    (adds | removes | no_change). Seats count as the assignment service counts them (per_user:
    people, per_device: devices). Cost change = change in seats in use x the yearly unit cost,
    for products priced per seat (per_user, per_device); others are not priced per seat."""
    kind = pd.Series("device", index=rows.index).where(rows["person_id"].isna(), "person")
    counted = pd.Series(
        [counts_toward(m, k) for m, k in zip(rows["metric"], kind, strict=True)],
        index=rows.index,
        dtype=bool,
    )
    effect = rows["effect"]
    changed = effect.isin([ADDS, REMOVES])
    products = []
    totals: dict[str, Decimal] = {}
    for product_id, group in rows.groupby("product_id", sort=False):
        pid = int(product_id)
        idx = group.index
        cap = capacity[pid]
        gained = int((effect[idx].eq(ADDS) & counted[idx]).sum())
        lost = int((effect[idx].eq(REMOVES) & counted[idx]).sum())
        after = cap.used + gained - lost
        unit_cost, currency = costs.get(pid, (Decimal(0), ""))
        priced = cap.metric in SEAT_LIMITED
        cost_change = (Decimal(after - cap.used) * unit_cost) if priced else Decimal(0)
        if priced and currency:
            totals[currency] = totals.get(currency, Decimal(0)) + cost_change
        products.append(
            {
                "code": group["code"].iat[0],
                "metric": cap.metric,
                "owned": cap.owned,
                "before": cap.used,
                "after": after,
                "change": after - cap.used,
                "unit_cost": str(unit_cost) if priced else None,
                "currency": currency or None,
                "cost_change": str(cost_change.quantize(Decimal("0.01"))) if priced else None,
                "over_by": max(after - cap.owned, 0) if cap.owned is not None else 0,
            }
        )
    products.sort(key=lambda p: p["code"])
    return {
        "rows": len(rows),
        "adds": int(effect.eq(ADDS).sum()),
        "removes": int(effect.eq(REMOVES).sum()),
        "no_change": int(effect.eq(NO_CHANGE).sum()),
        "people_affected": int(rows.loc[changed, "person_id"].dropna().nunique()),
        "devices_affected": int(rows.loc[changed, "device_id"].dropna().nunique()),
        "cost_change": {c: str(v.quantize(Decimal("0.01"))) for c, v in sorted(totals.items())},
        "products": products,
    }


def money(amount: str | None, currency: str | None) -> str:
    if amount is None:
        return "-"
    value = Decimal(amount)
    sign = "+" if value > 0 else ""
    return f"{sign}{value:,.2f} {currency or ''}".strip()


def impact_table(impact: dict) -> list[dict]:
    """One row per product, for a table artifact or the CLI."""
    return [
        {
            "product": p["code"],
            "metric": p["metric"],
            "owned": "unlimited" if p["owned"] is None else p["owned"],
            "in use before": p["before"],
            "in use after": p["after"],
            "change": f"{p['change']:+d}",
            "over by": p["over_by"] or "",
            "yearly cost change": money(p["cost_change"], p["currency"]),
        }
        for p in impact["products"]
    ]


def impact_markdown(batch_id: str, impact: dict, *, override_reason: str | None = None) -> str:
    """The preview in words: what an approver reads before deciding."""
    costs = ", ".join(money(v, c) for c, v in impact["cost_change"].items()) or "none"
    lines = [
        f"## Bulk batch {batch_id}: impact preview",
        "",
        f"- rows: {impact['rows']} ({impact['adds']} seats added, {impact['removes']} revoked, "
        f"{impact['no_change']} already in place)",
        f"- people affected: {impact['people_affected']}; devices affected: "
        f"{impact['devices_affected']}",
        f"- yearly cost change of seats in use: {costs}",
    ]
    over = [p for p in impact["products"] if p["over_by"]]
    if over:
        names = ", ".join(f"{p['code']} (+{p['over_by']})" for p in over)
        lines.append(f"- **over capacity with override**: {names}; reason: {override_reason!r}")
    lines += [
        "",
        "| product | metric | owned | before | after | change | yearly cost change |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in impact["products"]:
        owned = "unlimited" if p["owned"] is None else p["owned"]
        lines.append(
            f"| {p['code']} | {p['metric']} | {owned} | {p['before']} | {p['after']} | "
            f"{p['change']:+d} | {money(p['cost_change'], p['currency'])} |"
        )
    return "\n".join(lines)
