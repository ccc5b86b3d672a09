"""Step 7: FlexNet/FlexLM debug logs of the concurrent products (MATLAB on daemon MLM,
SOLIDWORKS on SW_D), one log per license server, covering the `days` before the data's date.

Each person of the product's pool checks the feature out on most working days (one or two
sessions, ~2.5 hours each) from their first device; the FlexLM user name is the local part
of their email. The server hands out at most the contract's seats: a checkout beyond them
is DENIED ("Licensed number of users already reached"), so busy days show denials. Some
sessions take two licenses, some end by idle timeout (IN ... (INACTIVE)). A TIMESTAMP line
opens the log and every new day.

The checkouts are drawn vectorised; only the license server's queue (a few thousand
sessions even at the reference scale) is replayed in order.
"""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.synth_assignments import Holdings
from benchmarks.synth_common import DAY, EPOCH, Company, stream
from benchmarks.synth_contracts import seats_in_force


@dataclass(frozen=True)
class Server:
    code: str
    daemon: str
    feature: str
    file: str
    host: str
    port: int


SERVERS = [
    Server("MATHWORKS-MATLAB", "MLM", "MATLAB", "lmgrd_matlab.log", "licsrv01", 41223),
    Server("DS-SOLIDWORKS", "SW_D", "solidworks", "lmgrd_solidworks.log", "licsrv02", 41224),
]
DENIED = "(Licensed number of users already reached. (-4,342))"
USE_CHANCE = 0.45  # a pool member works with the product on a working day
WEEKEND_CHANCE = 0.05


def _clock(seconds: int) -> str:
    seconds %= DAY
    return f"{seconds // 3600:2d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _date(day: int) -> str:
    d = EPOCH + dt.timedelta(days=int(day))
    return f"{d.month}/{d.day}/{d.year}"


def _workstations(devices: pd.DataFrame, pool: np.ndarray, windows_only: bool):
    """The pool members who have a device, and the device each works on (their first
    Windows device when the product needs Windows, else their first device)."""
    mine = devices[devices["owner"].isin(pool)]
    if windows_only:
        mine = mine[mine["os_kind"] == "windows"]
    first = mine.index.to_series().groupby(mine["owner"].to_numpy()).first()
    return first.index.to_numpy(), first.to_numpy()


def checkouts(
    company: Company,
    people: pd.DataFrame,
    devices: pd.DataFrame,
    pool: np.ndarray,
    rng,
    windows_only: bool = False,
) -> pd.DataFrame:
    """Checkout requests: user, host, start, end (unix seconds), licenses, inactive."""
    pool, first_device = _workstations(devices, pool, windows_only)
    days = np.arange(company.today - company.days, company.today)
    weekend = (days + 3) % 7 >= 5
    member, day = np.repeat(np.arange(len(pool)), len(days)), np.tile(days, len(pool))
    chance = np.where(np.tile(weekend, len(pool)), WEEKEND_CHANCE, USE_CHANCE)
    leaves = people["inactive_from"].to_numpy()[pool][member]
    used = (rng.random(len(member)) < chance) & (day < leaves)
    member, day = member[used], day[used]

    start = day * DAY + np.clip(rng.normal(10.5 * 3600, 2 * 3600, len(day)), 7 * 3600, 17 * 3600)
    length = np.clip(rng.lognormal(np.log(120 * 60), 0.6, len(day)), 600, 10 * 3600)
    # a second session the same afternoon for some
    again = rng.random(len(day)) < 0.2
    start2 = start + length + rng.integers(600, 7200, len(day))
    length2 = np.clip(rng.lognormal(np.log(90 * 60), 0.5, len(day)), 600, 6 * 3600)
    member = np.r_[member, member[again]]
    start = np.r_[start, start2[again]].astype("int64")
    end = start + np.r_[length, length2[again]].astype("int64")
    person = pool[member]
    local = people["email"].str.split("@").str[0].to_numpy(dtype=object)
    hostnames = devices["hostname"].to_numpy(dtype=object)
    requests = pd.DataFrame(
        {
            "user": local[person],
            "host": hostnames[first_device[member]],
            "start": start,
            "end": end,
            "licenses": np.where(rng.random(len(start)) < 0.03, 2, 1),
            "inactive": rng.random(len(start)) < 0.05,
        }
    )
    return requests.sort_values(["start", "user"], kind="stable", ignore_index=True)


def serve(requests: pd.DataFrame, seats: int, log_end: int) -> list[tuple[int, int, str, int]]:
    """Replay the requests through a server with `seats` licenses: (time, order, kind, request
    index) for every OUT, IN and DENIED line, IN only for sessions ended before log_end."""
    lines = []
    running: list[tuple[int, int]] = []  # (end, request)
    in_use = 0
    licenses = requests["licenses"].to_numpy()
    for i, (start, end) in enumerate(zip(requests["start"], requests["end"], strict=True)):
        while running and running[0][0] <= start:
            finished, j = heapq.heappop(running)
            in_use -= licenses[j]
            lines.append((finished, 1, "IN", j))
        if in_use + licenses[i] > seats:
            lines.append((start, 2, "DENIED", i))
            continue
        in_use += licenses[i]
        heapq.heappush(running, (int(end), i))
        lines.append((start, 2, "OUT", i))
    lines += [(end, 1, "IN", j) for end, j in running if end < log_end]
    return sorted(lines)


def write_flexlm(
    company: Company,
    people: pd.DataFrame,
    devices: pd.DataFrame,
    holdings: Holdings,
    contracts: pd.DataFrame,
    out: Path,
) -> dict[Path, dict[str, int]]:
    """One debug log per server; returns per file the number of OUT, IN and DENIED lines."""
    rng = stream(company, "flexlm")
    owned = seats_in_force(contracts)
    written = {}
    first_day = company.today - company.days
    for server in SERVERS:
        pool = holdings.pools.get(server.code, np.zeros(0, dtype="int64"))
        windows_only = server.code == "DS-SOLIDWORKS"
        requests = checkouts(company, people, devices, np.sort(pool), rng, windows_only)
        events = serve(requests, owned[server.code] or 0, company.today * DAY)
        lines = _startup(server, first_day)
        day = first_day
        counts = {"OUT": 0, "IN": 0, "DENIED": 0}
        user, host = requests["user"].tolist(), requests["host"].tolist()
        licenses, inactive = requests["licenses"].tolist(), requests["inactive"].tolist()
        for at, _, kind, i in events:
            while at >= (day + 1) * DAY:
                day += 1
                lines.append(f"{_clock(0)} ({server.daemon}) TIMESTAMP {_date(day)}")
            tail = ""
            if kind == "DENIED":
                tail = f"  {DENIED}"
            elif licenses[i] > 1:
                tail = f"  ({licenses[i]} licenses)"
            elif kind == "IN" and inactive[i]:
                tail = "  (INACTIVE)"
            text = f'{kind}: "{server.feature}" {user[i]}@{host[i]}{tail}'
            lines.append(f"{_clock(at)} ({server.daemon}) {text}")
            counts[kind] += 1
        path = out / "usage" / "flexlm" / server.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written[path] = counts
    return written


def _startup(server: Server, day: int) -> list[str]:
    d = EPOCH + dt.timedelta(days=int(day))
    t = _clock(1)
    lmgrd = [
        "-----------------------------------------------",
        "  Please Note:",
        "",
        "  This log is intended for debug purposes only.",
        "  In order to capture accurate license",
        "  usage data into an organized repository,",
        "  please enable report logging.",
        "-----------------------------------------------",
        "",
        f"Server's System Date and Time: {d:%a %b %d %Y} 00:00:01 UTC",
        "SLOG: Summary LOG statistics is enabled.",
        f"FlexNet Licensing (v11.19.1.0 build 285418 x64_lsb) started on {server.host} "
        f"(IBM PC) ({_date(day)})",
        "Copyright (c) 1988-2023 Flexera. All Rights Reserved.",
        "World Wide Web:  http://www.flexera.com",
        "License file(s): /opt/flexlm/licenses/license.dat",
        "lmgrd tcp-port 27000",
        "Starting vendor daemons ...",
        f"Started {server.daemon} (internet tcp_port {server.port} pid 2201)",
        f"TIMESTAMP {_date(day)}",
    ]
    lines = [f"{t} (lmgrd) {text}".rstrip() for text in lmgrd]
    lines += [
        f"{t} ({server.daemon}) FlexNet Licensing version v11.19.1.0 build 285418 x64_lsb",
        f"{t} ({server.daemon}) Server started on {server.host} for:\t{server.feature}",
        f"{t} ({server.daemon}) EXTERNAL FILTERS are OFF",
        f"{t} (lmgrd) {server.daemon} using TCP-port {server.port}",
    ]
    return lines
