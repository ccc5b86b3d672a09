"""Step 1: the people (HR roster) of the synthetic company.

One frame, `people`, indexed 0..n-1 in hiring order (person 0 is the CEO), with columns:
employee_id, email, first, last, full_name, department, cost_center, manager (index, -1 for
the CEO), is_manager, status (active | leave | terminated), hire_day, termination_day (days
since 1970, -1 when none), inactive_from (the day usage stops: termination or start of
leave; a large number otherwise) and object_id (the person's Entra ID / Graph user id).

Managers are the first hires of each department (the head, who reports to the CEO) and team
leads (one per ~8 people, reporting to the head); everyone else reports to a team lead of
their department. Managers stay active. ~2% are on leave, ~3% terminated, and two active
people leave a few days after the data's date (their termination_date is set already).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks.synth_common import (
    DOMAIN,
    Company,
    categories,
    days_text,
    frame,
    guids,
    join,
    numbered,
    pick,
    stream,
    write_csv,
)

ROSTER_COLUMNS = [
    "employee_id",
    "email",
    "full_name",
    "department",
    "cost_center",
    "manager_email",
    "status",
    "hire_date",
    "termination_date",
]
NEVER = 10**7  # inactive_from of someone who keeps working

# department, cost center, share of the company
DEPARTMENTS = [
    ("Executive", "CC-1000", 0.01),
    ("Finance", "CC-1100", 0.07),
    ("Human Resources", "CC-1200", 0.04),
    ("Legal", "CC-1300", 0.02),
    ("Sales", "CC-2000", 0.17),
    ("Marketing", "CC-2100", 0.08),
    ("Customer Success", "CC-2200", 0.10),
    ("Engineering", "CC-3000", 0.22),
    ("Data & Analytics", "CC-3100", 0.06),
    ("Design", "CC-3200", 0.07),
    ("IT", "CC-4000", 0.05),
    ("Operations", "CC-5000", 0.11),
]
DEPARTMENT_NAMES = [d[0] for d in DEPARTMENTS]
COST_CENTERS = {d[0]: d[1] for d in DEPARTMENTS}

FIRST_NAMES = (  # noqa: SIM905
    "Ana Ben Carla David Elena Farid Grace Hiro Ines Jonas Kemal Lena Marco Nadia Omar Priya "
    "Quentin Rosa Samir Tara Umar Vera Wei Xenia Yusuf Zoe Aaron Beatriz Chen Dmitri Emma "
    "Felix Gabriela Hannah Ivan Julia Kofi Laura Mateo Nora Oscar Paula Rahul Sofia Tomas "
    "Ursula Victor Wanda Yara Zain Alice Bruno Chloe Diego Eva Finn Giulia Hugo Isabel Jakob "
    "Kaito Lucia Max Naomi Olga Pedro Rania Simon Tess Uwe Valentina William Amara Boris "
    "Camille Dario Elif Fatima Georg Helena Igor Jana Kiran Leo Mina Nils Aisha Luis Mei "
    "Sean"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Ruiz Okafor Schmidt Tanaka Rossi Novak Haddad Larsen Fischer Moreau Silva Kowalski Chen "
    "Nguyen Patel Smith Jones Garcia Muller Weber Meyer Wagner Becker Hoffmann Keller Bauer "
    "Dubois Laurent Bernard Petit Martin Lopez Gonzalez Fernandez Romano Ricci Conti Greco "
    "Jansen Visser Bakker Berg Nilsson Johansson Hansen Andersen Virtanen Korhonen Horvat "
    "Popov Ivanova Sokolov Yilmaz Kaya Demir Sahin Ali Khan Hussain Ahmed Kumar Singh Sharma "
    "Gupta Wang Li Zhang Liu Kim Park Lee Sato Suzuki Takahashi Ito Watanabe Mensah Boateng "
    "Adeyemi Abebe Mwangi Otieno Santos Oliveira Costa Pereira Almeida Carvalho Murphy Kelly "
    "Walsh O'Brien O'Connor Byrne Ryan Smith-Jones Lindqvist Brennan Novotny Dvorak Svoboda"
).split()


STATUSES = ("active", "leave", "terminated")
ACTIVE, LEAVE, TERMINATED = range(3)


def _email_part(names: list[str]) -> list[str]:
    return [n.lower().replace("'", "") for n in names]


def make_people(company: Company) -> pd.DataFrame:
    """The people of the company (see the module docstring)."""
    rng = stream(company, "people")
    n = company.people
    today = company.today

    # hire days, most people hired in the last few years; person 0 (the CEO) first
    hire = np.sort(today - 10 - np.floor(5400 * rng.random(n) ** 1.6).astype("int64"))
    shares = np.array([d[2] for d in DEPARTMENTS])
    department = rng.choice(len(DEPARTMENTS), size=n, p=shares / shares.sum())
    department[0] = 0  # the CEO is in Executive

    # names; a repeated first.last gets a number (ana.ruiz2@...)
    first_idx = rng.integers(0, len(FIRST_NAMES), n)
    last_idx = rng.integers(0, len(LAST_NAMES), n)
    key = first_idx * len(LAST_NAMES) + last_idx
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    rank = np.empty(n, dtype="int64")
    rank[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    suffixes = pa.array([""] + [str(i + 1) for i in range(1, int(rank.max(initial=0)) + 1)])
    first = pick(FIRST_NAMES, first_idx)
    last = pick(LAST_NAMES, last_idx)
    email = join(
        pick(_email_part(FIRST_NAMES), first_idx),
        ".",
        pick(_email_part(LAST_NAMES), last_idx),
        suffixes.take(pa.array(rank)),
        "@" + DOMAIN,
    )

    manager, is_manager = _hierarchy(department)

    # statuses: managers stay active; the rest draws leave / terminated / leaving soon
    status = np.full(n, ACTIVE, dtype="int64")
    termination = np.full(n, -1, dtype="int64")
    inactive_from = np.full(n, NEVER, dtype="int64")
    candidates = rng.permutation(np.flatnonzero(~is_manager))
    n_terminated = min(len(candidates), max(1, round(0.03 * n)))
    n_leave = min(len(candidates) - n_terminated, max(1, round(0.02 * n)))
    n_leaving = min(len(candidates) - n_terminated - n_leave, 2)
    terminated = candidates[:n_terminated]
    leave = candidates[n_terminated : n_terminated + n_leave]
    leaving = candidates[n_terminated + n_leave : n_terminated + n_leave + n_leaving]

    status[terminated] = TERMINATED
    # recent terminations more likely than old ones; a few inside the last month
    gone = today - 1 - np.floor(364 * rng.random(len(terminated)) ** 2).astype("int64")
    hire[terminated] = np.minimum(hire[terminated], gone - 30)
    termination[terminated] = gone
    inactive_from[terminated] = gone
    status[leave] = LEAVE
    inactive_from[leave] = today - rng.integers(10, 90, len(leave))
    hire[leave] = np.minimum(hire[leave], inactive_from[leave] - 60)
    termination[leaving] = today + np.array([3, 6])[: len(leaving)]

    people = frame(
        {
            "employee_id": numbered("E", np.arange(1, n + 1), max(5, len(str(n)))),
            "email": email,
            "first": first,
            "last": last,
            "full_name": join(first, " ", last),
            "department": categories(department, DEPARTMENT_NAMES),
            "cost_center": categories(department, [d[1] for d in DEPARTMENTS]),
            "manager": manager,
            "is_manager": is_manager,
            "status": categories(status, STATUSES),
            "hire_day": hire,
            "termination_day": termination,
            "inactive_from": inactive_from,
            "object_id": guids(rng, n),
        }
    )
    people.attrs["leaving_soon"] = leaving.tolist()
    return people


def _hierarchy(department: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Manager index per person (-1 for the CEO) and who is a manager."""
    n = len(department)
    manager = np.zeros(n, dtype="int64")
    is_manager = np.zeros(n, dtype=bool)
    manager[0] = -1
    is_manager[0] = True
    for d in range(len(DEPARTMENTS)):
        members = np.flatnonzero(department == d)
        members = members[members != 0]
        if len(members) == 0:
            continue
        head, rest = members[0], members[1:]
        is_manager[head] = True
        manager[head] = 0
        n_leads = int(np.ceil(len(rest) / 8)) if len(rest) > 3 else 0
        leads, staff = rest[:n_leads], rest[n_leads:]
        is_manager[leads] = True
        manager[leads] = head
        manager[staff] = leads[np.arange(len(staff)) % n_leads] if n_leads else head
    return manager, is_manager


def write_roster(people: pd.DataFrame, out: Path) -> Path:
    """hr/roster.csv in the canonical roster shape (schemas/roster.py)."""
    path = out / "hr" / "roster.csv"
    manager = people["manager"].to_numpy()
    termination = people["termination_day"].to_numpy()
    write_csv(
        path,
        {
            "employee_id": people["employee_id"],
            "email": people["email"],
            "full_name": people["full_name"],
            "department": people["department"],
            "cost_center": people["cost_center"],
            "manager_email": pick(people["email"], np.maximum(manager, 0), manager < 0),
            "status": people["status"],
            "hire_date": days_text(people["hire_day"].to_numpy()),
            "termination_date": pick(
                days_text(np.maximum(termination, 0)), np.arange(len(people)), termination < 0
            ),
        },
    )
    return path
