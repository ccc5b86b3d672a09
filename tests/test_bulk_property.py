"""Property: for any assignment state and any valid batch, apply then rollback gives back the
identical state (every open seat, with its assigned_at). SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bulk_world import DEVICES, PEOPLE, approved_batch, build_world, seat_state

from licenseflow.db import unit_of_work
from tasks import bulk_apply
from tasks.assignments import AssignmentService, SeatChange

CODES = {"MS-VISIO-PLAN2": "user", "MS-M365-E3": "user", "WINRAR": "device"}
CODES["MATHWORKS-MATLAB"] = "any"  # concurrent: people or devices
KEYS = [
    (code, kind, holder)
    for code, takes in CODES.items()
    for kind, holders in (("user", PEOPLE), ("device", DEVICES))
    if takes in (kind, "any")
    for holder in holders
]
DATES = [
    dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
    dt.datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=dt.UTC),
]
OVERRIDE = "property test: capacity is not the point here"

initial_states = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(DATES), max_size=20)


@st.composite
def state_and_batch(draw):
    initial = draw(initial_states)
    touched = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=12, unique=True))
    rows = []
    for key in touched:
        # a seat that is open may be revoked (or assigned again: no change); a free one assigned
        action = draw(st.sampled_from(["assign", "revoke"])) if key in initial else "assign"
        rows.append((action, key, draw(st.booleans())))
    return initial, rows, draw(st.integers(0, 3)), draw(st.integers(1, 5))


def set_state(engine, ids, initial) -> None:
    """Bring the store's open seats to `initial` through the assignment service."""
    wanted = {(ids[code], kind, ids[holder]): at for (code, kind, holder), at in initial.items()}
    with unit_of_work(engine) as session:
        service = AssignmentService(session, "setup")
        frame = service.open_assignments()
        have = {
            (int(p), "user", int(a)) if pd.notna(a) else (int(p), "device", int(d))
            for p, a, d in frame[["product_id", "person_id", "device_id"]].itertuples(index=False)
        }
        changes = [_seat("revoke", key) for key in sorted(have - wanted.keys())]
        changes += [_seat("assign", key, wanted[key]) for key in sorted(wanted.keys() - have)]
        service.apply(changes, override_reason=OVERRIDE)


def _seat(action, key, at=None) -> SeatChange:
    product_id, kind, holder = key
    return SeatChange(
        action,
        product_id,
        holder if kind == "user" else None,
        holder if kind == "device" else None,
        reason="setup",
        assigned_at=at,
    )


def test_apply_then_rollback_is_the_identity(engine, tmp_path):
    ids = build_world(engine)
    counter = itertools.count()

    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(state_and_batch())
    def check(case):
        initial, rows, pilot_size, chunk_size = case
        set_state(engine, ids, initial)
        before = seat_state(engine)
        lines = ["action,product_code,user,device,pilot,note"]
        for action, (code, kind, holder), pilot in rows:
            user, device = (f"{holder}@example.com", "") if kind == "user" else ("", holder)
            lines.append(f"{action},{code},{user},{device},{'yes' if pilot else ''},")
        path = tmp_path / f"batch-{next(counter)}.csv"
        path.write_text("\n".join(lines) + "\n")

        batch_id = approved_batch(engine, path, pilot_size=pilot_size, override_reason=OVERRIDE)
        assert bulk_apply.apply_batch(engine, batch_id, chunk_size=chunk_size) == "rolled_out"
        bulk_apply.roll_back(engine, batch_id, "carol")
        assert seat_state(engine) == before

    check()
