"""The assignment service on SQLite and PostgreSQL: capacity by metric, refusals, overrides,
idempotency, history, set-based speed, and the last-seat race between two real processes."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select

from licenseflow.db import get_engine, unit_of_work
from licenseflow.errors import AssignmentRefused, CapacityExceeded
from schemas.store import Assignment, AuditLog, Contract, Device, Person, Product
from tasks import audit
from tasks.assignments import AssignmentService, SeatChange, owned_seats

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TODAY = NOW.date()


def add_product(session, code, metric, *contracts):
    """A product with contracts given as (seats, start, end)."""
    product = Product(code=code, name=code.title(), metric=metric)
    session.add(product)
    session.flush()
    for n, (seats, start, end) in enumerate(contracts):
        session.add(
            Contract(
                contract_number=f"{code}-{n}",
                product_id=product.id,
                seats=seats,
                unit_cost=Decimal("10"),
                currency="EUR",
                start_date=start,
                end_date=end,
            )
        )
    session.flush()
    return product.id


def in_force(seats):
    return (seats, TODAY - dt.timedelta(days=100), TODAY + dt.timedelta(days=265))


def add_person(session, name, status="active", termination_date=None):
    person = Person(
        employee_id=f"E-{name}",
        email=f"{name}@example.com",
        full_name=name.title(),
        status=status,
        termination_date=termination_date,
    )
    session.add(person)
    session.flush()
    return person.id


def add_device(session, hostname):
    device = Device(hostname=hostname)
    session.add(device)
    session.flush()
    return device.id


def service(session, actor="tester", **kwargs):
    return AssignmentService(session, actor, now=NOW, **kwargs)


def attempt(engine, call):
    """Call the service in its own unit of work (a refusal rolls it back)."""
    with unit_of_work(engine) as session:
        return call(service(session))


def count(engine, model, *where):
    with unit_of_work(engine) as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar()


def audit_entries(engine, action=None):
    with unit_of_work(engine) as session:
        query = select(AuditLog).order_by(AuditLog.id)
        if action:
            query = query.where(AuditLog.action == action)
        return session.execute(query).scalars().all()


@pytest.fixture
def world(engine):
    """E3 per_user with 3 seats in force (plus an expired 10 and a future 10 that do not
    count), WINRAR per_device with 2, a site product, a concurrent one; five people (one
    terminated) and three devices."""
    with unit_of_work(engine) as session:
        ids = {
            "e3": add_product(
                session,
                "MS-M365-E3",
                "per_user",
                in_force(3),
                (10, TODAY - dt.timedelta(days=500), TODAY - dt.timedelta(days=1)),
                (10, TODAY + dt.timedelta(days=1), TODAY + dt.timedelta(days=400)),
            ),
            "winrar": add_product(session, "WINRAR", "per_device", in_force(2)),
            "site": add_product(session, "SITE-TOOL", "site", in_force(None)),
            "matlab": add_product(session, "MATHWORKS-MATLAB", "concurrent", in_force(1)),
        }
        for name in ("ann", "bob", "cat", "dan"):
            ids[name] = add_person(session, name)
        ids["eve"] = add_person(session, "eve", "terminated", dt.date(2026, 2, 1))
        for host in ("pc-1", "pc-2", "pc-3"):
            ids[host] = add_device(session, host)
    return ids


# --- capacity by metric -------------------------------------------------------------------


def test_owned_seats_rule():
    assert owned_seats("per_user", [3, 2]) == 5
    assert owned_seats("per_user", []) == 0
    assert owned_seats("per_user", [3, None]) is None  # a site contract: unlimited
    assert owned_seats("concurrent", [5]) is None
    assert owned_seats("per_core", [16]) is None


def test_per_user_counts_distinct_people(engine, world):
    with unit_of_work(engine) as session:
        svc = service(session)
        svc.assign("MS-M365-E3", person="ann@example.com")
        svc.assign("ms-m365-e3", person="E-bob")  # code any case, employee id
        svc.assign("MS-M365-E3", person="ANN@example.com")  # the same person again
    with unit_of_work(engine) as session:
        # a duplicate open row of ann from an older system must not count twice
        session.execute(
            insert(Assignment),
            [{"product_id": world["e3"], "person_id": world["ann"], "assigned_at": NOW,
              "assigned_by": "legacy"}],
        )  # fmt: skip
    with unit_of_work(engine) as session:
        cap = service(session).capacity([world["e3"]])[world["e3"]]
    # owned: only the contract in force (3); used: ann and bob = 2 people, 3 open rows
    assert (cap.metric, cap.owned, cap.used, cap.free) == ("per_user", 3, 2, 1)
    assert count(engine, Assignment, Assignment.revoked_at.is_(None)) == 3


def test_per_device_counts_distinct_devices(engine, world):
    with unit_of_work(engine) as session:
        svc = service(session)
        assert svc.assign("WINRAR", device="PC-1").status == "assigned"  # hostname any case
        assert svc.assign("WINRAR", device="pc-2").status == "assigned"
        assert svc.assign("WINRAR", device="pc-1").status == "unchanged"
        cap = svc.capacity([world["winrar"]])[world["winrar"]]
        assert (cap.owned, cap.used, cap.free) == (2, 2, 0)
    with pytest.raises(CapacityExceeded, match=r"WINRAR \(per_device\): 2 seats owned, 2 in use"):
        attempt(engine, lambda svc: svc.assign("WINRAR", device="pc-3"))
    with pytest.raises(AssignmentRefused, match="licensed per device"):
        attempt(engine, lambda svc: svc.assign("WINRAR", person="cat@example.com"))


def test_site_is_unlimited(engine, world):
    with unit_of_work(engine) as session:
        svc = service(session)
        for name in ("ann", "bob", "cat", "dan"):
            assert svc.assign("SITE-TOOL", person=f"{name}@example.com").status == "assigned"
        svc.assign("SITE-TOOL", device="pc-1")
        cap = svc.capacity([world["site"]])[world["site"]]
    # 4 people + 1 device hold it; nothing owned limits it
    assert (cap.owned, cap.used, cap.free) == (None, 5, None)


def test_concurrent_is_not_limited_at_assignment(engine, world):
    with unit_of_work(engine) as session:
        svc = service(session)
        outcomes = [
            svc.assign("MATHWORKS-MATLAB", person=f"{n}@example.com") for n in ("ann", "bob")
        ]
        cap = svc.capacity([world["matlab"]])[world["matlab"]]
    # one floating seat owned, two people may hold it: the limit applies at checkout (FlexLM)
    assert [o.status for o in outcomes] == ["assigned", "assigned"]
    assert (cap.owned, cap.used) == (None, 2)


# --- refusals and the override -------------------------------------------------------------


def test_over_capacity_refused_then_overridden_and_logged(engine, world):
    with unit_of_work(engine) as session:
        svc = service(session)
        for name in ("ann", "bob", "cat"):
            svc.assign("MS-M365-E3", person=f"{name}@example.com")
    entries_before = len(audit_entries(engine))

    with pytest.raises(CapacityExceeded) as refused:
        attempt(engine, lambda svc: svc.assign("MS-M365-E3", person="dan@example.com"))
    assert "MS-M365-E3 (per_user): 3 seats owned, 3 in use, 4 after this change (1 over)" in str(
        refused.value
    )
    assert refused.value.overruns[0].after == 4
    assert count(engine, Assignment, Assignment.person_id == world["dan"]) == 0
    assert len(audit_entries(engine)) == entries_before

    with unit_of_work(engine) as session:
        outcome = service(session, actor="ops@example.com").assign(
            "MS-M365-E3", person="dan@example.com", override_reason="CFO approved, PO 4711"
        )
    assert outcome.status == "assigned"
    with unit_of_work(engine) as session:
        row = session.get(Assignment, outcome.assignment_id)
        assert row.override_reason == "CFO approved, PO 4711"
    entry = audit_entries(engine, "assign")[-1]
    assert entry.entity_id == str(outcome.assignment_id)
    assert entry.actor == "ops@example.com"
    assert entry.after["override_reason"] == "CFO approved, PO 4711"
    assert entry.after["person"] == "dan@example.com"
    override = audit_entries(engine, "capacity_override")[-1]
    assert override.after == {
        "product": "MS-M365-E3",
        "owned": 3,
        "in_use": 4,
        "over_by": 1,
        "override_reason": "CFO approved, PO 4711",
    }
    with unit_of_work(engine) as session:
        assert audit.verify(session).ok


def test_capacity_is_checked_after_the_whole_list(engine, world):
    """Full product: revoking one and assigning another in one list fits."""
    with unit_of_work(engine) as session:
        for name in ("ann", "bob", "cat"):
            service(session).assign("MS-M365-E3", person=f"{name}@example.com")
    swap = [
        SeatChange("assign", world["e3"], person_id=world["dan"]),
        SeatChange("revoke", world["e3"], person_id=world["ann"], reason="left the team"),
    ]
    with unit_of_work(engine) as session:
        outcomes = service(session).apply(swap)
        assert [o.status for o in outcomes] == ["assigned", "revoked"]
        assert service(session).capacity([world["e3"]])[world["e3"]].used == 3


def test_terminated_person_and_unknown_device_are_refused(engine, world):
    with pytest.raises(AssignmentRefused, match="eve@example.com is terminated since 2026-02-01"):
        attempt(engine, lambda svc: svc.assign("MS-M365-E3", person="eve@example.com"))
    with pytest.raises(AssignmentRefused, match="unknown device 'ghost-01'"):
        attempt(engine, lambda svc: svc.assign("WINRAR", device="ghost-01"))
    with pytest.raises(AssignmentRefused, match="no person with email or employee id 'nobody'"):
        attempt(engine, lambda svc: svc.assign("MS-M365-E3", person="nobody"))

    # in a list, every offending change is named and nothing at all is written
    changes = [
        SeatChange("assign", world["e3"], person_id=world["ann"]),
        SeatChange("assign", world["e3"], person_id=world["eve"]),
        SeatChange("assign", world["winrar"], device_id=9999),
    ]
    with pytest.raises(AssignmentRefused) as refused:
        attempt(engine, lambda svc: svc.apply(changes))
    assert [p.index for p in refused.value.problems] == [1, 2]
    assert "change 2 (assign MS-M365-E3 to eve@example.com)" in str(refused.value)
    assert "change 3 (assign WINRAR to device id 9999): unknown device id 9999" in str(
        refused.value
    )
    assert count(engine, Assignment) == 0
    assert audit_entries(engine) == []


def test_imports_may_record_a_terminated_persons_seat_with_a_reason(engine, world):
    change = SeatChange("assign", world["e3"], person_id=world["eve"])
    with pytest.raises(AssignmentRefused, match="needs an override reason"):
        attempt(engine, lambda svc: svc.apply([change], allow_terminated=True))
    with unit_of_work(engine) as session:
        [outcome] = service(session).apply(
            [change], override_reason="imported from seats.csv", allow_terminated=True
        )
        row = session.get(Assignment, outcome.assignment_id)
        assert (outcome.status, row.override_reason) == ("assigned", "imported from seats.csv")
    entry = audit_entries(engine, "assign")[-1]
    assert entry.after["person_status"] == "terminated"
    assert entry.after["override_reason"] == "imported from seats.csv"


def test_terminated_person_can_still_lose_seats(engine, world):
    with unit_of_work(engine) as session:
        session.add(
            Assignment(product_id=world["e3"], person_id=world["eve"], assigned_at=NOW,
                       assigned_by="legacy")
        )  # fmt: skip
    with unit_of_work(engine) as session:
        outcomes = service(session).revoke_all_for_person(world["eve"], "terminated 2026-02-01")
    assert [(o.status, o.change.product_id) for o in outcomes] == [("revoked", world["e3"])]


# --- idempotency and history --------------------------------------------------------------


def test_assign_twice_and_revoke_unassigned_change_nothing(engine, world):
    with unit_of_work(engine) as session:
        first = service(session).assign("MS-M365-E3", person="ann@example.com")
    with unit_of_work(engine) as session:
        again = service(session).assign("MS-M365-E3", person="ann@example.com")
        never = service(session).revoke("MS-M365-E3", person="bob@example.com", reason="tidy")
    assert first.status == "assigned"
    assert (again.status, again.assignment_id, again.message) == (
        "unchanged",
        None,
        "already assigned since 2026-03-02",
    )
    assert (never.status, never.message) == ("unchanged", "was not assigned")
    assert count(engine, Assignment) == 1
    assert [e.action for e in audit_entries(engine)] == ["assign"]


def test_revoke_closes_and_reassign_opens_a_new_row(engine, world):
    t1, t2, t3 = NOW, NOW + dt.timedelta(days=10), NOW + dt.timedelta(days=20)
    with unit_of_work(engine) as session:
        first = AssignmentService(session, "a", now=t1).assign("MS-M365-E3", person="E-ann")
    with unit_of_work(engine) as session:
        gone = AssignmentService(session, "b", now=t2).revoke(
            "MS-M365-E3", person="E-ann", reason="inactive 90 days"
        )
    with unit_of_work(engine) as session:
        back = AssignmentService(session, "c", now=t3).assign("MS-M365-E3", person="E-ann")
    assert gone.assignment_id == first.assignment_id
    assert back.assignment_id != first.assignment_id
    with unit_of_work(engine) as session:
        rows = session.execute(select(Assignment).order_by(Assignment.id)).scalars().all()
        assert [(r.id, r.revoke_reason, r.revoked_by) for r in rows] == [
            (first.assignment_id, "inactive 90 days", "b"),
            (back.assignment_id, None, None),
        ]
        svc = AssignmentService(session, "reader", now=t3)
        # the state at any past date, rebuilt from the history
        held = {
            when: list(svc.open_assignments([world["e3"]], as_of=when)["assignment_id"])
            for when in (t1 - dt.timedelta(seconds=1), t1, t2 + dt.timedelta(days=1), t3)
        }
    assert held == {
        t1 - dt.timedelta(seconds=1): [],
        t1: [first.assignment_id],
        t2 + dt.timedelta(days=1): [],
        t3: [back.assignment_id],
    }
    assert [e.action for e in audit_entries(engine)] == ["assign", "revoke", "assign"]


def test_one_list_with_repeats_and_an_assign_then_revoke(engine, world):
    e3, ann, bob = world["e3"], world["ann"], world["bob"]
    changes = [
        SeatChange("assign", e3, person_id=ann),
        SeatChange("assign", e3, person_id=ann),
        SeatChange("assign", e3, person_id=bob),
        SeatChange("revoke", e3, person_id=bob, reason="mistake"),
        SeatChange("revoke", e3, person_id=bob, reason="mistake"),
    ]
    with unit_of_work(engine) as session:
        outcomes = service(session).apply(changes)
        frame = service(session).open_assignments()
    assert [(o.status, o.message) for o in outcomes] == [
        ("assigned", "assigned"),
        ("unchanged", "already assigned earlier in this list"),
        ("assigned", "assigned"),
        ("revoked", "revoked (assigned earlier in this list)"),
        ("unchanged", "was not assigned"),
    ]
    assert outcomes[3].assignment_id == outcomes[2].assignment_id
    assert list(frame["person_id"]) == [ann]
    assert count(engine, Assignment) == 2  # bob's row exists, closed
    assert [e.action for e in audit_entries(engine)] == ["assign", "assign", "revoke"]


def test_assigned_at_is_kept_and_open_assignments_frame(engine, world):
    original = dt.datetime(2024, 5, 17, 8, 30, tzinfo=dt.UTC)
    with unit_of_work(engine) as session:
        service(session).apply(
            [SeatChange("assign", world["winrar"], device_id=world["pc-1"], assigned_at=original)]
        )
        frame = service(session).open_assignments([world["winrar"]])
    assert list(frame.columns) == [
        "assignment_id",
        "product_id",
        "person_id",
        "device_id",
        "assigned_at",
        "assigned_by",
    ]
    assert frame.loc[0, "assigned_at"] == original
    assert frame.loc[0, "device_id"] == world["pc-1"]
    assert frame["person_id"].isna().all()


def test_open_seats_reads_only_the_keys_asked_for(engine, world):
    """open_seats(keys) is open_assignments narrowed to exactly those seats (a person's other
    products and closed rows stay out)."""
    e3, site, winrar = world["e3"], world["site"], world["winrar"]
    with unit_of_work(engine) as session:
        svc = service(session)
        svc.apply(
            [
                SeatChange("assign", e3, person_id=world["ann"]),
                SeatChange("assign", e3, person_id=world["bob"]),
                SeatChange("assign", site, person_id=world["ann"]),
                SeatChange("assign", winrar, device_id=world["pc-1"]),
                SeatChange("assign", winrar, device_id=world["pc-2"]),
                SeatChange("assign", site, person_id=world["cat"]),
            ]
        )
        svc.apply([SeatChange("revoke", site, person_id=world["cat"])])
        whole = svc.open_assignments()
        asked = {
            (e3, "person", world["ann"]),
            (winrar, "device", world["pc-2"]),
            (site, "person", world["cat"]),  # closed: not open
            (site, "person", world["dan"]),  # never assigned
        }
        seats = svc.open_seats(asked)
        nothing = svc.open_seats(set())
    expected = whole[
        ((whole["product_id"] == e3) & (whole["person_id"] == world["ann"]))
        | ((whole["product_id"] == winrar) & (whole["device_id"] == world["pc-2"]))
    ].reset_index(drop=True)
    assert len(expected) == 2
    assert seats.equals(expected)
    assert nothing.empty and list(nothing.columns) == list(whole.columns)


def test_revoke_all_for_person(engine, world):
    with unit_of_work(engine) as session:
        svc = service(session)
        svc.assign("MS-M365-E3", person="bob@example.com")
        svc.assign("SITE-TOOL", person="bob@example.com")
        svc.assign("SITE-TOOL", person="ann@example.com")
    with unit_of_work(engine) as session:
        outcomes = service(session, actor="hr-sync").revoke_all_for_person(
            world["bob"], "terminated"
        )
        again = service(session).revoke_all_for_person(world["bob"], "terminated")
    assert sorted(o.change.product_id for o in outcomes) == sorted([world["e3"], world["site"]])
    assert {o.status for o in outcomes} == {"revoked"}
    assert again == []
    assert count(engine, Assignment, Assignment.revoked_at.is_(None)) == 1  # ann's


# --- set-based speed ----------------------------------------------------------------------

BULK = 10_000


def test_apply_ten_thousand_changes(engine, world, record_property):
    with unit_of_work(engine) as session:
        product = add_product(session, "ADOBE-ACROBAT-PRO", "per_user", in_force(BULK))
        session.execute(
            insert(Person),
            [
                {"employee_id": f"B{i:05d}", "email": f"b{i:05d}@example.com",
                 "full_name": f"B {i}", "status": "active"}
                for i in range(BULK)
            ],
        )  # fmt: skip
        ids = session.execute(
            select(Person.id).where(Person.employee_id.like("B%")).order_by(Person.id)
        ).scalars()
        changes = [SeatChange("assign", product, person_id=i, reason="bulk") for i in ids]
    entries_before = len(audit_entries(engine))

    audit.current_flow_run_id()  # imports Prefect once (seconds, cold); not apply()'s cost
    started, cpu_started = time.perf_counter(), time.process_time()
    with unit_of_work(engine) as session:
        outcomes = AssignmentService(session, "bulk", batch_id="B-1", now=NOW).apply(changes)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    record_property("apply_10k_seconds", round(elapsed, 3))
    print(
        f"\napply() of {BULK} changes on {engine.dialect.name}: {elapsed:.2f} s ({cpu:.2f} s CPU)"
    )

    assert len(outcomes) == BULK and {o.status for o in outcomes} == {"assigned"}
    assert count(engine, Assignment, Assignment.product_id == product) == BULK
    entries = audit_entries(engine)
    assert len(entries) - entries_before == BULK
    assert {e.batch_id for e in entries[entries_before:]} == {"B-1"}
    with unit_of_work(engine) as session:
        assert audit.verify(session).ok
        assert service(session).capacity([product])[product].free == 0
    if engine.dialect.name == "sqlite":
        # SQLite works in this process, so its CPU time is the cost whatever else the machine
        # is doing (target well under 2 s; ~1.1-1.5 s measured on a busy 2-core VM). The bound
        # catches a per-row path (one round trip per change is 10x slower), not noise.
        assert cpu < 3.0

    # the same list again is all "unchanged" and writes nothing
    with unit_of_work(engine) as session:
        again = AssignmentService(session, "bulk", now=NOW).apply(changes)
    assert {o.status for o in again} == {"unchanged"}
    assert len(audit_entries(engine)) - entries_before == BULK


# --- the last seat, two real processes ----------------------------------------------------


def _take_last_seat(url, who, barrier, results):
    """Child process: wait for the other, then try to take the last E3 seat; the winner holds
    its transaction open a moment so the loser's attempt really overlaps it."""
    from licenseflow.db import get_engine, unit_of_work
    from licenseflow.errors import CapacityExceeded
    from tasks.assignments import AssignmentService

    engine = get_engine(url)
    barrier.wait(timeout=60)
    try:
        with unit_of_work(engine) as session:
            outcome = AssignmentService(session, who, now=NOW).assign("MS-M365-E3", person=who)
            time.sleep(0.5)
        results.put((who, outcome.status))
    except CapacityExceeded:
        results.put((who, "CapacityExceeded"))
    except Exception as exc:  # pragma: no cover - shown in the assertion
        results.put((who, f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_two_processes_race_for_the_last_seat(engine, world, store_url):
    # 3 seats owned, 2 taken: one left
    with unit_of_work(engine) as session:
        for name in ("ann", "bob"):
            service(session).assign("MS-M365-E3", person=f"{name}@example.com")
    engine.dispose()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    racers = [
        context.Process(target=_take_last_seat, args=(store_url, who, barrier, results))
        for who in ("cat@example.com", "dan@example.com")
    ]
    for racer in racers:
        racer.start()
    try:
        outcome = dict(results.get(timeout=90) for _ in racers)
    finally:
        for racer in racers:
            racer.join(timeout=30)
            if racer.is_alive():  # pragma: no cover
                racer.kill()
    assert sorted(outcome.values()) == ["CapacityExceeded", "assigned"], outcome
    engine = get_engine(store_url)
    with unit_of_work(engine) as session:
        cap = service(session).capacity([world["e3"]])[world["e3"]]
        assert (cap.owned, cap.used) == (3, 3)
        assert audit.verify(session).ok
