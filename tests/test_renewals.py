"""Renewal governance with a controlled clock: the rules (deadline, windows, right-sizing,
trend) by hand, then the store on SQLite and PostgreSQL: each window once, catch-up after
missed runs, the notice-period deadline, an extension restarting the windows, expired and
invalid contracts flagged, decisions, and the .ics calendar parsed back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import icalendar
import pandas as pd
import pytest
from sqlalchemy import insert, select, update

from licenseflow.db import unit_of_work
from licenseflow.errors import LicenseflowError
from schemas.store import (
    Alert,
    ConcurrentPeak,
    Contract,
    Device,
    Installation,
    Person,
    Product,
    ReclaimCandidate,
    UsageDaily,
)
from tasks import audit, calendar_export, renewals
from tasks.assignments import AssignmentService
from tasks.renewals import DueWindow, right_size, usage_trend

D = dt.date
WINDOWS = (90, 60, 30)


# --- the rules, pure ------------------------------------------------------------------------


def test_deadline_is_the_notice_deadline_when_the_contract_renews_itself():
    end = D(2026, 8, 31)
    assert renewals.notice_deadline(end, auto_renew=True, notice_days=60) == D(2026, 7, 2)
    assert renewals.notice_deadline(end, auto_renew=False, notice_days=60) == end
    assert renewals.notice_deadline(end, auto_renew=True, notice_days=0) == end


def test_windows_due_on_a_day():
    deadline = D(2026, 6, 30)  # 90 days before: 2026-04-01; 60: 05-01; 30: 05-31

    def due(day):
        return renewals.due_windows(deadline, day, WINDOWS)

    assert due(D(2026, 3, 31)) == []
    assert due(D(2026, 4, 1)) == [DueWindow(90, D(2026, 4, 1), False)]
    assert due(D(2026, 4, 30)) == [DueWindow(90, D(2026, 4, 1), False)]
    assert due(D(2026, 5, 1)) == [
        DueWindow(90, D(2026, 4, 1), True),  # overtaken by the 60: late if not yet sent
        DueWindow(60, D(2026, 5, 1), False),
    ]
    assert [w.window for w in due(deadline)] == [90, 60, 30]
    assert due(D(2026, 7, 1)) == []  # past the deadline: no reminders
    assert renewals.current_window(45, WINDOWS) == 60
    assert renewals.current_window(91, WINDOWS) is None


def test_dates_that_make_no_sense_are_named():
    assert "ends (2026-04-01) before it starts (2026-05-01)" in renewals.term_problem(
        D(2026, 5, 1), D(2026, 4, 1), 0
    )
    assert "notice period (120 days) is longer than its term (59 days" in (
        renewals.term_problem(D(2026, 1, 1), D(2026, 3, 1), 120)
    )
    assert renewals.term_problem(D(2026, 1, 1), D(2026, 3, 1), 59) is None


def test_buffer_rounds_up_in_exact_arithmetic():
    assert renewals.with_buffer(10, 0.10) == 11  # 10 x 1.1 in floats is 11.000000000000002
    assert renewals.with_buffer(6, 0.10) == 7  # 6.6
    assert renewals.with_buffer(20, 0.25) == 25
    assert renewals.with_buffer(0, 0.10) == 0


def series(values: dict[D, int], first: D, last: D) -> pd.Series:
    days = pd.date_range(first, last, freq="D").date
    return pd.Series(values, dtype=int).reindex(days, fill_value=0)


TODAY = D(2026, 5, 5)  # trailing 90 days: 2026-02-05 .. 2026-05-05


def test_trend_compares_the_last_30_days_with_the_30_before():
    # last 30 days 04-06..05-05, the 30 before 03-07..04-05
    previous = {D(2026, 3, 7) + dt.timedelta(days=i): 2 for i in range(30)}  # avg 2.0
    rising = previous | {D(2026, 4, 6) + dt.timedelta(days=i): 3 for i in range(30)}  # 3.0
    falling = previous | {D(2026, 4, 6) + dt.timedelta(days=i): 1 for i in range(30)}
    flat = previous | {D(2026, 4, 6): 3} | {D(2026, 4, 7) + dt.timedelta(i): 2 for i in range(29)}
    first = D(2026, 2, 5)
    up = usage_trend(series(rising, first, TODAY), TODAY)
    assert (up.direction, up.change_pct, up.last_avg, up.previous_avg) == ("rising", 50.0, 3, 2)
    assert str(up) == "rising +50.0% (avg 3.0/day last 30 days vs 2.0)"
    assert usage_trend(series(falling, first, TODAY), TODAY).change_pct == -50.0
    assert usage_trend(series(flat, first, TODAY), TODAY).direction == "flat"  # +1.7%
    new = usage_trend(series({D(2026, 5, 1): 3}, first, TODAY), TODAY)
    assert (new.direction, new.change_pct) == ("rising", None)
    assert usage_trend(None, TODAY).direction == "n/a"


def size(**values):
    base = {
        "metric": "per_user",
        "seats": 50,
        "unit_cost": Decimal("120.00"),
        "daily": series({D(2026, 4, 20): 30, D(2026, 4, 21): 25}, D(2026, 2, 5), TODAY),
        "held": 40,
        "reclaimable": 15,
        "other_seats": 0,
        "buffer": 0.10,
        "today": TODAY,
    }
    return right_size(**(base | values))


def test_right_size_figures_by_hand():
    # peak 30 + 10% = 33; held 40 - 15 reclaimable = 25 < 33; 50 - 33 = 17 x 120.00
    rec = size()
    assert (rec.peak, rec.with_buffer, rec.needed, rec.recommended) == (30, 33, 33, 33)
    assert (rec.seats_change, rec.saving, rec.extra_cost) == (-17, Decimal("2040.00"), 0)
    # 38 people hold a seat that is not reclaimable: never below them
    kept = size(reclaimable=2)
    assert (kept.recommended, kept.saving) == (38, Decimal("1440.00"))
    assert kept.note == "kept at the seats held (none reclaimable)"
    # 10 seats of another contract continue past this one's end: 33 - 10
    assert size(other_seats=10).recommended == 23
    assert size(other_seats=10).saving == Decimal("3240.00")  # 27 x 120
    # consumption above the seats owned: renew more
    more = size(daily=series({D(2026, 4, 1): 60}, D(2026, 2, 5), TODAY), reclaimable=0)
    assert (more.recommended, more.seats_change, more.extra_cost) == (66, 16, Decimal("1920.00"))


def test_right_size_per_metric():
    old_peak = {D(2026, 2, 4): 12}  # 91 days back: outside the trailing 90 days
    peaks = series(old_peak | {D(2026, 4, 15): 7, D(2026, 4, 16): 5}, D(2026, 2, 1), TODAY)
    floating = size(metric="concurrent", seats=10, unit_cost=Decimal("4000"), daily=peaks)
    # 7 x 1.1 = 7.7 -> 8; seats held do not count for floating licences
    assert (floating.peak, floating.recommended, floating.saving) == (7, 8, Decimal("8000.00"))
    assert size(metric="concurrent", daily=None).recommended is None
    # per_user without any usage data: sized on the seats held (20 -> 22)
    unmetered = size(daily=None, held=20, reclaimable=0)
    assert (unmetered.basis, unmetered.recommended) == ("seats held (no usage data)", 22)
    assert size(daily=None, held=0).recommended is None  # nothing to go on: no advice
    site = size(metric="site", seats=None)
    assert (site.recommended, site.note) == (None, "site license: unlimited seats")
    assert size(metric="per_core").recommended is None


def test_installed_devices_per_day_merges_a_device_s_installs():
    ts = pd.Timestamp
    installs = pd.DataFrame(
        [
            (1, 1, ts("2026-01-01T08:00Z"), ts("2026-01-05T09:00Z")),
            (1, 1, ts("2026-01-03T08:00Z"), pd.NaT),  # same device, overlapping: once
            (1, 2, ts("2026-01-04T23:00Z"), ts("2026-01-06T01:00Z")),
            (1, 3, ts("2025-06-01T00:00Z"), ts("2025-12-01T00:00Z")),  # gone before
        ],
        columns=["product_id", "device_id", "first_seen", "removed_at"],
    )
    got = renewals.installed_per_day(installs, D(2026, 1, 2), D(2026, 1, 7))
    assert dict(zip(got["day"], got["consumed"], strict=True)) == {
        D(2026, 1, 2): 1,
        D(2026, 1, 3): 1,
        D(2026, 1, 4): 2,
        D(2026, 1, 5): 2,
        D(2026, 1, 6): 1,  # device 2 found removed on the 6th
        D(2026, 1, 7): 1,
    }


# --- the store ------------------------------------------------------------------------------

CONTRACTS = [
    # number, product, metric, seats, unit cost, currency, start, end, auto, notice, owner
    ("SL-1", "SLACK-PRO", "per_user", 20, "96.00", "EUR",
     D(2025, 7, 1), D(2026, 6, 30), False, 0, "ana@example.com"),
    ("VM-1", "VMWARE-WORKSTATION-PRO", "per_device", 10, "200.00", "EUR",
     D(2025, 7, 1), D(2026, 6, 30), False, 0, "ana@example.com"),
    ("SW-1", "DS-SOLIDWORKS", "concurrent", 10, "4000.00", "USD",
     D(2025, 9, 1), D(2026, 8, 31), True, 60, "bo@example.com"),
    ("SW-2", "DS-SOLIDWORKS", "concurrent", 2, "4000.00", "USD",
     D(2026, 3, 1), D(2027, 2, 28), False, 0, "bo@example.com"),
    ("AC-0", "ADOBE-ACROBAT-PRO", "per_user", 5, "240.00", "EUR",
     D(2025, 2, 1), D(2026, 1, 31), False, 0, "cy@example.com"),
    ("TB-1", "TABLEAU-DESKTOP", "per_user", 5, "840.00", "EUR",
     D(2025, 3, 1), D(2026, 2, 28), False, 0, None),
    ("TB-2", "TABLEAU-DESKTOP", "per_user", 5, "840.00", "EUR",
     D(2026, 3, 1), D(2027, 2, 28), False, 0, None),
]  # fmt: skip
SL, SW = D(2026, 6, 30), D(2026, 7, 2)  # SL-1's deadline; SW-1's notice deadline


def at(day: D, hour: int = 6) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


@pytest.fixture
def world(engine):
    """Contracts above; Slack seats, usage and reclaim state; VMware installs; SolidWorks
    concurrent peaks. Figures are worked out in test_recommendations_in_the_store."""
    ids = {}
    with unit_of_work(engine) as session:
        for number, code, metric, seats, cost, cur, start, end, auto, notice, owner in CONTRACTS:
            if code not in ids:
                product = Product(code=code, name=code.title(), metric=metric)
                session.add(product)
                session.flush()
                ids[code] = product.id
            session.add(
                Contract(
                    contract_number=number,
                    product_id=ids[code],
                    seats=seats,
                    unit_cost=Decimal(cost),
                    currency=cur,
                    start_date=start,
                    end_date=end,
                    auto_renew=auto,
                    notice_days=notice,
                    owner_email=owner,
                )
            )
        people = []
        for i in range(1, 13):
            person = Person(employee_id=f"E{i:02}", email=f"p{i}@example.com", full_name=f"P{i}")
            session.add(person)
            session.flush()
            people.append(person.id)
        ids["people"] = people
        session.flush()

        # ten Slack seats (p1..p10); p9 leaves later; p10's seat is a reclaim candidate,
        # p8's was one but was kept
        service = AssignmentService(session, "test", now=at(D(2026, 1, 5)))
        outcomes = [service.assign("SLACK-PRO", person=f"p{i}@example.com") for i in range(1, 11)]
        seat_of = {i: o.assignment_id for i, o in enumerate(outcomes, start=1)}
        session.execute(update(Person).where(Person.id == people[8]).values(status="terminated"))
        for holder, state in ((10, "notified"), (8, "kept")):
            session.execute(
                insert(ReclaimCandidate).values(
                    assignment_id=seat_of[holder],
                    product_id=ids["SLACK-PRO"],
                    state=state,
                    detected_at=at(D(2026, 4, 1)),
                )
            )

        # Slack usage: 3 people a day 03-10..03-19 (before: avg 1.0/day), 3 a day
        # 04-06..04-18 and 6 on 04-20 (last 30 days: 45 person-days, 1.5/day); 12 on
        # 2026-01-20, outside the trailing 90 days
        usage = [(D(2026, 1, 20), p) for p in range(12)]
        usage += [(D(2026, 3, 10) + dt.timedelta(d), p) for d in range(10) for p in range(3)]
        usage += [(D(2026, 4, 6) + dt.timedelta(d), p) for d in range(13) for p in range(3)]
        usage += [(D(2026, 4, 20), p) for p in range(6)]
        session.execute(
            insert(UsageDaily),
            [
                {
                    "day": day,
                    "product_id": ids["SLACK-PRO"],
                    "person_id": people[p],
                    "sessions": 1,
                    "minutes": 30.0,
                    "last_activity": at(day, 10),
                }
                for day, p in usage
            ],
        )

        # VMware: installed on 4 devices at once from 04-05 to 04-09, 3 after
        spans = [
            ("2025-01-01", None),
            ("2026-03-01", None),
            ("2025-06-01", "2026-01-01"),  # gone before the trailing 90 days
            ("2026-04-01", "2026-04-10"),
            ("2026-04-05", None),
        ]
        for n, (first, removed) in enumerate(spans, start=1):
            device = Device(hostname=f"ws-{n}")
            session.add(device)
            session.flush()
            session.add(
                Installation(
                    install_key=f"k{n}",
                    device_id=device.id,
                    raw_title="VMware Workstation 17 Pro",
                    product_id=ids["VMWARE-WORKSTATION-PRO"],
                    source="test",
                    row_hash="h",
                    first_seen=at(D.fromisoformat(first), 3),
                    last_seen=at(D.fromisoformat(first), 3),
                    removed_at=None if removed is None else at(D.fromisoformat(removed), 3),
                )
            )

        # SolidWorks: peak 7 on 04-15, 5 on 04-16, 9 on 2026-01-10 (outside)
        session.execute(
            insert(ConcurrentPeak),
            [
                {"day": day, "product_id": ids["DS-SOLIDWORKS"], "peak": peak, "denials": 0}
                for day, peak in ((D(2026, 1, 10), 9), (D(2026, 4, 15), 7), (D(2026, 4, 16), 5))
            ],
        )
    return ids


def review(engine, day: D):
    with unit_of_work(engine) as session:
        return renewals.review(session, day, now=at(day))


def window_alerts(engine, contract: str | None = None) -> list[tuple]:
    """(contract, deadline, window, late, created day, resolved) of the reminders."""
    with unit_of_work(engine) as session:
        alerts = session.scalars(
            select(Alert).where(Alert.kind == renewals.WINDOW).order_by(Alert.id)
        ).all()
        return [
            (
                a.payload["contract_number"],
                a.deadline,
                a.payload["window"],
                a.payload["late"],
                a.created_at.date(),
                a.resolved_at is not None,
            )
            for a in alerts
            if contract is None or a.payload["contract_number"] == contract
        ]


def run_daily(engine, first: D, last: D) -> None:
    day = first
    while day <= last:
        review(engine, day)
        day += dt.timedelta(days=1)


def test_each_window_fires_once_running_every_day(world, engine):
    # daily runs around each window's opening (in between nothing changes but the date)
    for first, last in (
        (D(2026, 3, 30), D(2026, 4, 4)),
        (D(2026, 4, 29), D(2026, 5, 4)),
        (D(2026, 5, 30), D(2026, 6, 3)),
        (D(2026, 6, 29), D(2026, 6, 30)),
    ):
        run_daily(engine, first, last)

    assert window_alerts(engine, "SL-1") == [
        ("SL-1", SL, 90, False, D(2026, 4, 1), False),
        ("SL-1", SL, 60, False, D(2026, 5, 1), False),
        ("SL-1", SL, 30, False, D(2026, 5, 31), False),
    ]
    # the notice deadline counts: 90 days before 07-02, not before the end (08-31)
    assert [(w, created) for _, _, w, _, created, _ in window_alerts(engine, "SW-1")] == [
        (90, D(2026, 4, 3)),
        (60, D(2026, 5, 3)),
        (30, D(2026, 6, 2)),
    ]

    run_daily(engine, D(2026, 7, 1), D(2026, 7, 4))
    with unit_of_work(engine) as session:
        flags = session.execute(
            select(Alert.kind, Alert.dedupe_key, Alert.created_at)
            .where(Alert.kind != renewals.WINDOW)
            .order_by(Alert.id)
        ).all()
        assert [(k, key, c.date()) for k, key, c in flags] == [
            (renewals.EXPIRED, "contract_expired:AC-0:2026-01-31", D(2026, 3, 30)),
            (renewals.EXPIRED, "contract_expired:SL-1:2026-06-30", D(2026, 7, 1)),
            (renewals.EXPIRED, "contract_expired:VM-1:2026-06-30", D(2026, 7, 1)),
            (renewals.NOTICE_MISSED, "notice_deadline_missed:SW-1:2026-07-02", D(2026, 7, 3)),
        ]  # TB-1 ended but TB-2 renews it: not flagged
        assert audit.verify(session).ok
    # past its end, SL-1's reminders are closed: the expired flag took over
    assert [resolved for *_, resolved in window_alerts(engine, "SL-1")] == [True] * 3


def test_a_run_after_missed_runs_fires_each_missed_window_once(world, engine):
    first = review(engine, D(2026, 5, 5))  # nobody ran since April: 90 and 60 both open
    assert window_alerts(engine) == [
        ("SL-1", SL, 90, True, D(2026, 5, 5), False),
        ("SL-1", SL, 60, False, D(2026, 5, 5), False),
        ("SW-1", SW, 90, True, D(2026, 5, 5), False),
        ("SW-1", SW, 60, False, D(2026, 5, 5), False),
        ("VM-1", SL, 90, True, D(2026, 5, 5), False),
        ("VM-1", SL, 60, False, D(2026, 5, 5), False),
    ]
    late = first.created.loc[first.created["dedupe_key"] == "renewal:SL-1:2026-06-30:90"]
    assert "(late: this reminder was due 2026-04-01)" in late["subject"].iloc[0]
    assert review(engine, D(2026, 5, 6)).created.empty  # the next day: nothing again

    review(engine, D(2026, 5, 28))
    after_a_week = review(engine, D(2026, 6, 4))  # 05-29 .. 06-03 missed: the 30s opened
    assert sorted(after_a_week.created["dedupe_key"]) == [
        "renewal:SL-1:2026-06-30:30",
        "renewal:SW-1:2026-07-02:30",
        "renewal:VM-1:2026-06-30:30",
    ]
    assert review(engine, D(2026, 6, 5)).created.empty


def test_the_notice_period_sets_the_deadline_and_the_alert_says_so(world, engine):
    review(engine, D(2026, 4, 3))
    with unit_of_work(engine) as session:
        alert = session.scalars(
            select(Alert).where(Alert.dedupe_key == "renewal:SW-1:2026-07-02:90")
        ).one()
    assert alert.deadline == SW
    assert alert.owner_email == "bo@example.com"
    assert alert.subject.startswith(
        "Renewal, 90-day reminder: DS-SOLIDWORKS contract SW-1 notice deadline 2026-07-02 "
        "(it renews itself on 2026-08-31 unless cancelled with 60 days' notice); "
        "90 day(s) left"
    )
    assert alert.payload["deadline_kind"] == "notice deadline"
    assert alert.payload["end_date"] == "2026-08-31"


def test_an_extended_contract_starts_its_windows_over(world, engine):
    review(engine, D(2026, 4, 1))
    assert window_alerts(engine, "SL-1") == [("SL-1", SL, 90, False, D(2026, 4, 1), False)]

    with unit_of_work(engine) as session:  # renewal signed: the term runs a year longer
        session.execute(
            update(Contract)
            .where(Contract.contract_number == "SL-1")
            .values(end_date=D(2027, 6, 30))
        )
    moved = review(engine, D(2026, 4, 2))
    assert moved.resolved == 1 and moved.created.empty
    assert window_alerts(engine, "SL-1") == [("SL-1", SL, 90, False, D(2026, 4, 1), True)]

    review(engine, D(2027, 4, 1))
    assert window_alerts(engine, "SL-1")[1:] == [
        ("SL-1", D(2027, 6, 30), 90, False, D(2027, 4, 1), False)
    ]


def test_recommendations_in_the_store(world, engine):
    found = review(engine, D(2026, 5, 5))
    recs = found.in_window.set_index("contract_number")["recommendation"]
    assert sorted(recs.index) == ["SL-1", "SW-1", "VM-1"]

    slack = recs["SL-1"]
    # peak 6 people (04-20) -> 6.6 -> 7; 10 hold a seat, 2 reclaimable (p9 terminated, p10
    # notified; p8's was kept) -> never below 8; 20 - 8 = 12 seats x 96.00
    assert (slack.peak, slack.with_buffer, slack.held, slack.reclaimable) == (6, 7, 10, 2)
    assert (slack.recommended, slack.saving) == (8, Decimal("1152.00"))
    # last 30 days 45 person-days (1.5/day) against 30 (1.0/day)
    assert (slack.trend.direction, slack.trend.change_pct) == ("rising", 50.0)

    vmware = recs["VM-1"]  # 4 devices at once -> 4.4 -> 5; 10 - 5 = 5 x 200.00
    assert (vmware.peak, vmware.recommended, vmware.saving) == (4, 5, Decimal("1000.00"))

    solidworks = recs["SW-1"]  # peak 7 -> 8 needed; SW-2's 2 seats continue: 6
    assert (solidworks.peak, solidworks.other_seats, solidworks.recommended) == (7, 2, 6)
    assert solidworks.saving == Decimal("16000.00")  # 4 x 4000.00

    money = found.money_at_stake()
    assert money.astype(str).values.tolist() == [
        ["60", "EUR", "2", "3920.00", "2152.00"],  # 20 x 96 + 10 x 200; 1152 + 1000
        ["60", "USD", "1", "40000.00", "16000.00"],
    ]
    with unit_of_work(engine) as session:
        alert = session.scalars(
            select(Alert).where(Alert.dedupe_key == "renewal:SL-1:2026-06-30:60")
        ).one()
    assert alert.payload["recommendation"]["recommended"] == 8
    assert alert.payload["recommendation"]["saving"] == "1152.00"
    assert "Recommended: 8 of 20 seats, saving 1152.00 EUR/year" in alert.subject

    with unit_of_work(engine) as session:  # the CLI's view: deadlines within 60 days
        soon = renewals.upcoming(session, D(2026, 5, 5), 57)
    assert list(soon["contract_number"]) == ["SL-1", "VM-1"]  # SW-1 is 58 days away


def test_invalid_contracts_are_flagged_not_a_crash(world, engine):
    with unit_of_work(engine) as session:
        product = session.scalar(select(Product.id).where(Product.code == "SLACK-PRO"))
        for number, start, end, notice in (
            ("BAD-1", D(2026, 5, 1), D(2026, 4, 1), 0),
            ("BAD-2", D(2026, 1, 1), D(2026, 3, 1), 120),
        ):
            session.add(
                Contract(
                    contract_number=number,
                    product_id=product,
                    seats=1,
                    unit_cost=Decimal("1.00"),
                    currency="EUR",
                    start_date=start,
                    end_date=end,
                    auto_renew=True,
                    notice_days=notice,
                )
            )
    found = review(engine, D(2026, 3, 15))
    invalid = found.created[found.created["kind"] == renewals.INVALID]
    assert sorted(invalid["subject"]) == [
        "Contract data to fix: SLACK-PRO contract BAD-1: it ends (2026-04-01) before it starts "
        "(2026-05-01); no renewal reminders until the contract is corrected",
        "Contract data to fix: SLACK-PRO contract BAD-2: its notice period (120 days) is longer "
        "than its term (59 days from 2026-01-01 to 2026-03-01): the notice deadline would fall "
        "before it starts; no renewal reminders until the contract is corrected",
    ]
    assert review(engine, D(2026, 3, 16)).created.empty  # flagged once
    assert not any(c.startswith("BAD") for c, *_ in window_alerts(engine))

    with unit_of_work(engine) as session:  # fixed: the flag is resolved
        session.execute(
            update(Contract)
            .where(Contract.contract_number == "BAD-1")
            .values(end_date=D(2027, 4, 30))
        )
    assert review(engine, D(2026, 3, 17)).resolved == 1


def test_a_decision_closes_the_alerts_and_stops_reminders(world, engine):
    review(engine, D(2026, 5, 5))
    with unit_of_work(engine) as session:
        done = renewals.record_decision(
            session, "SL-1", "lapse", "moving to Teams", actor="ana@example.com", now=at(TODAY)
        )
    assert (done["deadline"], done["resolved"]) == (SL, 2)
    assert [resolved for *_, resolved in window_alerts(engine, "SL-1")] == [True, True]

    with unit_of_work(engine) as session, pytest.raises(renewals.DecisionExists):
        renewals.record_decision(session, "SL-1", "renew", "changed my mind", actor="x")
    for number, decision, reason, message in (
        ("NOPE", "renew", "r", "no contract numbered 'NOPE'"),
        ("SL-1", "maybe", "r", "decision must be one of renew, cancel, lapse"),
        ("SL-1", "renew", " ", "a decision needs a reason"),
    ):
        with unit_of_work(engine) as session, pytest.raises(LicenseflowError, match=message):
            renewals.record_decision(session, number, decision, reason, actor="x")

    review(engine, D(2026, 6, 1))  # the 30-day window opens for VM-1, not for SL-1
    assert len(window_alerts(engine, "SL-1")) == 2
    expired = review(engine, D(2026, 7, 2))  # SL-1 ended without renewal: decided, no flag
    assert "contract_expired:VM-1:2026-06-30" in set(expired.created["dedupe_key"])
    assert "contract_expired:SL-1:2026-06-30" not in set(expired.created["dedupe_key"])
    with unit_of_work(engine) as session:
        assert audit.verify(session).ok


def test_the_calendar_holds_every_upcoming_deadline(world, engine, tmp_path):
    with unit_of_work(engine) as session:
        deadlines = renewals.upcoming_deadlines(session, D(2026, 5, 5))
    path = calendar_export.write_ics(deadlines, tmp_path / "renewals.ics", at(D(2026, 5, 5)))

    calendar = icalendar.Calendar.from_ical(path.read_bytes())
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    assert sorted(events) == [
        "renewal-SL-1-2026-06-30@licenseflow",
        "renewal-SW-1-2026-07-02@licenseflow",
        "renewal-SW-2-2027-02-28@licenseflow",
        "renewal-TB-2-2027-02-28@licenseflow",
        "renewal-VM-1-2026-06-30@licenseflow",
    ]  # AC-0 and TB-1 are over
    trap = events["renewal-SW-1-2026-07-02@licenseflow"]
    assert trap.decoded("dtstart") == SW
    assert trap.decoded("dtend") == D(2026, 7, 3)
    assert str(trap["summary"]) == (
        "Notice deadline: Ds-Solidworks contract SW-1 (auto-renews 2026-08-31 unless cancelled)"
    )
    assert "act by 2026-07-02" in str(trap["description"])
    assert str(events["renewal-SL-1-2026-06-30@licenseflow"]["summary"]) == (
        "Renewal deadline: Slack-Pro contract SL-1 ends 2026-06-30"
    )
    alarm = trap.walk("VALARM")[0]
    assert alarm.decoded("trigger") == -dt.timedelta(days=7)
    # written again the next day: the same UIDs (calendars update instead of doubling)
    again = calendar_export.write_ics(deadlines, path, at(D(2026, 5, 6)))
    assert {
        str(e["uid"]) for e in icalendar.Calendar.from_ical(again.read_bytes()).walk("VEVENT")
    } == set(events)


def test_an_empty_store_is_nothing_to_do(engine, tmp_path):
    found = review(engine, TODAY)
    assert (found.in_window.empty, found.flags.empty, found.created.empty) == (True,) * 3
    assert found.money_at_stake().empty
    with unit_of_work(engine) as session:
        assert renewals.upcoming(session, TODAY).empty
        deadlines = renewals.upcoming_deadlines(session, TODAY)
    path = calendar_export.write_ics(deadlines, tmp_path / "r.ics", at(TODAY))
    assert icalendar.Calendar.from_ical(path.read_bytes()).walk("VEVENT") == []
