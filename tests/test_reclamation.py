"""Reclamation with a controlled clock, on SQLite and PostgreSQL: the rule (inactivity, grace
period, per-product override, what is never a candidate), the states (candidate, notified,
kept with a reason, reclaimed through the assignment service, cancelled on new activity or a
seat closed elsewhere), auto-reclaim, and the usage-share alert."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import select, update

from licenseflow.db import unit_of_work
from schemas.store import Alert, Assignment, AuditLog, Contract, Device, Person, Product
from tasks import audit, metering, reclamation
from tasks.assignments import AssignmentService, SeatChange
from tasks.reclamation import ReclaimStateError, Rule

NOW = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
RULE = Rule(inactivity_days=90, grace_days=30)


def day(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


# --- the rule, pure -------------------------------------------------------------------------


def seat(**values) -> dict:
    base = {
        "assignment_id": 1,
        "product_id": 1,
        "assigned_at": day("2025-06-01"),
        "last_activity": pd.NaT,
        "status": "active",
        "inactivity_days": None,
        "metric": "per_user",
        "metered": True,
        "blocked": False,
    }
    return base | values


def candidates(*seats: dict) -> list[int]:
    frame = pd.DataFrame([s | {"assignment_id": i} for i, s in enumerate(seats, start=1)])
    return list(reclamation.find_candidates(frame, NOW, RULE)["assignment_id"])


def test_rule_inactivity_and_grace_period():
    assert candidates(
        seat(last_activity=NOW - dt.timedelta(days=91)),  # 1: inactive
        seat(last_activity=NOW - dt.timedelta(days=90)),  # 2: exactly 90 days: not yet
        seat(last_activity=NOW - dt.timedelta(days=3)),  # 3: active
        seat(assigned_at=NOW - dt.timedelta(days=30)),  # 4: never used, grace just over
        seat(assigned_at=NOW - dt.timedelta(days=29)),  # 5: never used, within grace
        seat(
            assigned_at=NOW - dt.timedelta(days=10),  # 6: long unused but a new seat
            last_activity=NOW - dt.timedelta(days=400),
        ),
    ) == [1, 4]


def test_rule_what_is_never_a_candidate():
    old = NOW - dt.timedelta(days=200)
    assert candidates(
        seat(last_activity=old, inactivity_days=365),  # 1: the product allows a year
        seat(last_activity=old, inactivity_days=180),  # 2: ... or half a year: over it
        seat(last_activity=old, status="terminated"),  # 3: offboarding's job
        seat(last_activity=old, status="leave"),  # 4: on leave: still judged
        seat(last_activity=old, metric="concurrent"),  # 5: floating licences
        seat(last_activity=old, metered=False),  # 6: no usage feed reports on it
        seat(last_activity=old, blocked=True),  # 7: already a candidate / kept
        seat(last_activity=old, status=None, metric="per_device"),  # 8: a device's seat
    ) == [2, 4, 8]


def test_transitions():
    reclamation.check_transition(1, "candidate", "notified")
    reclamation.check_transition(1, "notified", "kept")
    for current, wanted in [
        ("kept", "reclaimed"),
        ("reclaimed", "kept"),
        ("notified", "candidate"),
    ]:
        with pytest.raises(ReclaimStateError):
            reclamation.check_transition(1, current, wanted)
    assert reclamation.monthly_cost(Decimal("90")) == Decimal("7.50")
    assert reclamation.monthly_cost(Decimal("100")) == Decimal("8.33")


# --- the store ------------------------------------------------------------------------------


@pytest.fixture
def office(engine):
    """Seats with a known history. Returns {name: id} for products, people and assignments."""
    ids = {}
    with unit_of_work(engine) as session:
        for code, metric, override in [
            ("SLACK-PRO", "per_user", None),
            ("TABLEAU", "per_user", 180),
            ("ZOOM", "per_user", None),  # nobody reports Zoom usage
            ("VMWARE-WS", "per_device", None),
        ]:
            product = Product(code=code, name=code, metric=metric, inactivity_days=override)
            session.add(product)
            session.flush()
            ids[code] = product.id
        session.add(
            Contract(
                contract_number="SL-1",
                product_id=ids["SLACK-PRO"],
                seats=10,
                unit_cost=Decimal("90.00"),
                currency="EUR",
                start_date=dt.date(2025, 1, 1),
                end_date=dt.date(2026, 12, 31),
            )
        )
        for name in ("alice", "bob", "carol", "dave", "erin", "frank", "gina"):
            person = Person(employee_id=name, email=f"{name}@example.com", full_name=name)
            session.add(person)
            session.flush()
            ids[name] = person.id
        device = Device(hostname="mac-01", primary_user_email="frank@example.com")
        session.add(device)
        session.flush()
        ids["mac-01"] = device.id

        old, recent, fresh = day("2025-06-01"), day("2026-01-01"), day("2026-02-15")
        seats = [
            ("alice", "SLACK-PRO", old),  # last use 2025-10-01: candidate
            ("bob", "SLACK-PRO", old),  # used 2026-02-20: active
            ("carol", "SLACK-PRO", recent),  # never used, 60 days old: candidate
            ("erin", "SLACK-PRO", fresh),  # never used, 15 days old: grace
            ("dave", "SLACK-PRO", old),  # terminated below: offboarding's
            ("frank", "ZOOM", old),  # not metered
            ("gina", "TABLEAU", old),  # last use 2025-10-15: within the product's 180
            ("frank", "TABLEAU", old),  # used on his primary device 2026-02-01: active
            ("mac-01", "VMWARE-WS", old),  # device used 2025-11-01: candidate
        ]
        changes = [
            SeatChange(
                "assign",
                ids[code],
                person_id=None if who == "mac-01" else ids[who],
                device_id=ids[who] if who == "mac-01" else None,
                assigned_at=when,
            )
            for who, code, when in seats
        ]
        AssignmentService(session, "setup", now=NOW).apply(changes, override_reason="test")
        session.execute(update(Person).where(Person.id == ids["dave"]).values(status="terminated"))
        for who, code, when in [
            ("alice", "SLACK-PRO", "2025-10-01T10:00"),
            ("bob", "SLACK-PRO", "2026-02-20T10:00"),
            ("gina", "TABLEAU", "2025-10-15T10:00"),
            ("mac-01", "TABLEAU", "2026-02-01T10:00"),
            ("mac-01", "VMWARE-WS", "2025-11-01T10:00"),
        ]:
            use(session, ids, who, code, when)
        rows = session.execute(
            select(Assignment.id, Assignment.product_id, Assignment.person_id, Assignment.device_id)
        ).all()
    people = {ids[n]: n for n in ("alice", "bob", "carol", "dave", "erin", "frank", "gina")}
    codes = {ids[c]: c for c in ("SLACK-PRO", "TABLEAU", "ZOOM", "VMWARE-WS")}
    for assignment_id, product_id, person_id, device_id in rows:
        holder = "mac-01" if device_id is not None else people[person_id]
        ids[(holder, codes[product_id])] = assignment_id
    return ids


def use(session, ids, who, code, when):
    """One day of usage, written the way metering writes it."""
    moment = pd.Timestamp(when, tz="UTC")
    device = who == "mac-01"
    daily = pd.DataFrame(
        {
            "day": [moment.date()],
            "product_id": [ids[code]],
            "person_id": [-1 if device else ids[who]],
            "device_id": [ids[who] if device else -1],
            "sessions": [1],
            "minutes": [5.0],
            "last_activity": [moment],
        }
    )
    metering.upsert_usage_daily(session, daily)


def detect(engine, now=NOW):
    with unit_of_work(engine) as session:
        return reclamation.detect(session, now, RULE)


def state_of(engine) -> dict:
    with unit_of_work(engine) as session:
        frame = reclamation.candidates_frame(session)
    return {
        (p if isinstance(p, str) else d, code.split("-")[0].lower()): state
        for p, d, code, state in zip(
            frame["person"].str.split("@").str[0],
            frame["device"],
            frame["code"],
            frame["state"],
            strict=True,
        )
    }


def test_detection_finds_exactly_the_inactive_seats(office, engine):
    found = detect(engine)
    assert sorted(found.new["holder"]) == ["alice@example.com", "carol@example.com", "mac-01"]
    costs = dict(zip(found.new["holder"], found.new["monthly_cost"], strict=True))
    assert costs["alice@example.com"] == Decimal("7.50")  # 90.00 a year / 12
    assert costs["mac-01"] is None  # no contract in force
    lasts = dict(zip(found.new["holder"], found.new["last_activity"], strict=True))
    assert lasts["alice@example.com"] == pd.Timestamp("2025-10-01 10:00", tz="UTC")
    assert pd.isna(lasts["carol@example.com"])
    assert reclamation.total_monthly_cost(found.new) == {"EUR": Decimal("15.00")}
    # the same day again: nothing new (an open candidate blocks its seat)
    assert detect(engine).new.empty
    with unit_of_work(engine) as session:
        assert audit.verify(session).ok
        detected = session.execute(
            select(AuditLog.entity_id).where(AuditLog.action == "reclaim.detected")
        ).scalars()
        assert len(list(detected)) == 3


def test_notify_writes_one_alert_per_candidate_to_the_holder(office, engine):
    detect(engine)
    with unit_of_work(engine) as session:
        notified = reclamation.notify(session, NOW)
        assert len(notified) == 3
        assert reclamation.notify(session, NOW).empty  # nothing left to notify
        alerts = session.execute(
            select(Alert.owner_email, Alert.subject).where(Alert.kind == reclamation.ALERT_KIND)
        ).all()
    owners = sorted(a.owner_email for a in alerts)
    assert owners == ["alice@example.com", "carol@example.com", "frank@example.com"]
    assert any("7.50 EUR/month" in a.subject for a in alerts)
    assert set(state_of(engine).values()) == {"notified"}


def test_new_activity_cancels_the_candidate(office, engine):
    detect(engine)
    with unit_of_work(engine) as session:
        use(session, office, "alice", "SLACK-PRO", "2026-03-03T08:00")
    later = detect(engine, NOW + dt.timedelta(days=2))
    assert list(later.cancelled["reason"]) == ["activity reappeared on 2026-03-03"]
    assert later.new.empty  # alice is active now; the others are still open candidates
    assert state_of(engine)[("alice", "slack")] == "cancelled"


def test_a_seat_closed_elsewhere_cancels_its_candidate(office, engine):
    detect(engine)
    with unit_of_work(engine) as session:
        AssignmentService(session, "bulk", now=NOW).revoke(
            "SLACK-PRO", person="carol@example.com", reason="moved team"
        )
    later = detect(engine, NOW + dt.timedelta(days=1))
    assert list(later.cancelled["reason"]) == ["the seat was closed elsewhere"]


def test_keep_needs_a_reason_and_holds_for_one_inactivity_period(office, engine):
    found = detect(engine)
    carol = int(found.new.loc[found.new["holder"] == "carol@example.com", "id"].iloc[0])
    with unit_of_work(engine) as session:
        with pytest.raises(ReclaimStateError, match="needs a reason"):
            reclamation.keep(session, carol, "  ", "ops", NOW)
        reclamation.keep(session, carol, "parental leave until May", "ops", NOW)
    with unit_of_work(engine) as session, pytest.raises(ReclaimStateError, match="is kept"):
        reclamation.keep(session, carol, "again", "ops", NOW)
    with unit_of_work(engine) as session:
        kept = reclamation.candidates_frame(session, ids=[carol]).iloc[0]
    assert (kept.state, kept.reason) == ("kept", "parental leave until May")
    # time passes: other seats fall idle, but carol's is not judged for 90 days after the answer
    later = detect(engine, NOW + dt.timedelta(days=89))
    assert sorted(later.new["holder"]) == [
        "bob@example.com",
        "erin@example.com",
        "gina@example.com",
    ]
    again = detect(engine, NOW + dt.timedelta(days=91))
    assert list(again.new["holder"]) == ["carol@example.com"]


def test_apply_revokes_through_the_assignment_service(office, engine):
    found = detect(engine)
    alice = int(found.new.loc[found.new["holder"] == "alice@example.com", "id"].iloc[0])
    when = NOW + dt.timedelta(days=1)
    with unit_of_work(engine) as session:
        done = reclamation.apply(session, "ops", ids=[alice], now=when, rule=RULE)
    assert list(done.reclaimed["id"]) == [alice]
    with unit_of_work(engine) as session:
        seat = session.get(Assignment, office[("alice", "SLACK-PRO")])
        assert seat.revoked_by == "ops"
        assert seat.revoke_reason == f"reclaim {alice}: no use since 2025-10-01"
        assert session.get(reclamation.ReclaimCandidate, alice).state == "reclaimed"
        actions = session.execute(select(AuditLog.action).order_by(AuditLog.id)).scalars()
        assert "reclaim.reclaimed" in list(actions)
        assert audit.verify(session).ok
    with unit_of_work(engine) as session, pytest.raises(ReclaimStateError, match="reclaimed"):
        reclamation.apply(session, "ops", ids=[alice], now=when, rule=RULE)


def test_apply_cancels_instead_when_the_seat_was_used_since(office, engine):
    found = detect(engine)
    alice = int(found.new.loc[found.new["holder"] == "alice@example.com", "id"].iloc[0])
    with unit_of_work(engine) as session:
        use(session, office, "alice", "SLACK-PRO", "2026-03-02T09:00")
    with unit_of_work(engine) as session:
        done = reclamation.apply(session, "ops", ids=[alice], now=NOW, rule=RULE)
        assert done.reclaimed.empty
        assert session.get(Assignment, office[("alice", "SLACK-PRO")]).revoked_at is None
    assert state_of(engine)[("alice", "slack")] == "cancelled"


def test_auto_reclaim_after_n_days_without_an_answer(office, engine):
    detect(engine)
    with unit_of_work(engine) as session:
        reclamation.notify(session, NOW)
        assert reclamation.auto_reclaim(session, NOW, None) is None  # off by default
        early = reclamation.auto_reclaim(session, NOW + dt.timedelta(days=6), 7, RULE)
        assert early.reclaimed.empty
    with unit_of_work(engine) as session:
        done = reclamation.auto_reclaim(session, NOW + dt.timedelta(days=7), 7, RULE)
    assert len(done.reclaimed) == 3
    assert set(state_of(engine).values()) == {"reclaimed"}
    with unit_of_work(engine) as session:
        revoked = session.execute(
            select(Assignment.revoked_by).where(Assignment.revoked_at.is_not(None))
        ).scalars()
        assert list(revoked) == ["auto-reclaim"] * 3


def test_usage_share_alert_counts_assigned_seats_used_lately(office, engine):
    with unit_of_work(engine) as session:
        session.execute(
            update(Product).where(Product.id == office["SLACK-PRO"]).values(usage_threshold=0.5)
        )
    with unit_of_work(engine) as session:
        shares = metering.usage_shares(session, NOW.date())
        written = metering.usage_alerts(session, [], NOW.date(), NOW)
    # five Slack seats (dave's too, until offboarding runs); only bob used it since 2026-02-01
    assert shares[["code", "assigned", "active"]].values.tolist() == [["SLACK-PRO", 5, 1]]
    assert [a["dedupe_key"] for a in written] == ["usage_below_threshold:SLACK-PRO:2026-03"]


def test_cli_list_keep_apply(office, engine):
    from typer.testing import CliRunner

    from licenseflow.cli import app

    found = detect(engine)
    ids = dict(zip(found.new["holder"], found.new["id"], strict=True))
    runner = CliRunner()
    listed = runner.invoke(app, ["reclaim", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(c["id"] for c in json.loads(listed.output)) == sorted(ids.values())

    kept = runner.invoke(app, ["reclaim", "keep", str(ids["carol@example.com"]), "--reason", "CFO"])
    assert kept.exit_code == 0, kept.output
    refused = runner.invoke(app, ["reclaim", "apply"])
    assert refused.exit_code == 1 and "--all" in refused.output
    applied = runner.invoke(app, ["reclaim", "apply", "--all", "--actor", "ops"])
    assert applied.exit_code == 0, applied.output
    assert "reclaimed 2 seat(s)" in applied.output
    assert state_of(engine) == {
        ("alice", "slack"): "reclaimed",
        ("carol", "slack"): "kept",
        ("mac-01", "vmware"): "reclaimed",
    }
    again = runner.invoke(app, ["reclaim", "keep", str(ids["alice@example.com"]), "--reason", "x"])
    assert again.exit_code == 1 and "is reclaimed" in again.output
