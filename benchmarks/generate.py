"""The synthetic-enterprise generator: the demo company (data/demo) and the benchmarks'
reference enterprise, in the export formats the feeds read.

    python -m benchmarks.generate --demo
    python -m benchmarks.generate --people 100000 --devices 200000 --out benchmarks/out/ref \\
        --days 1 [--seed 7] [--date 2026-11-24]

--demo regenerates data/demo byte for byte (500 people, 600 devices, 120 days of usage up to
2026-11-23). Otherwise the defaults are the reference enterprise's shape: ~10 installed
titles per device with a long tail of 3,000 products, ~6 usage events per person and working
day (--usage-rate 3 plus one recent trace per person and product in use: ~600k events a
working day for 100k people); the default date is a Tuesday, so `--days 1` covers a working
Monday. A sources.yaml
pointing at the generated folders is written into OUT (not for --demo: data/sources.yaml
points at data/demo).

Steps (one module each): synth_people (HR roster), synth_devices, synth_contracts,
synth_assignments (seats, Graph licences, bulk wave), synth_installs + synth_install_files
(osquery, Intune, SCCM, canonical), synth_usage + synth_usage_files (Entra ID, Okta,
canonical), synth_flexlm (FlexLM debug logs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks.synth_assignments import (
    make_bulk_wave,
    make_holdings,
    write_assignments,
    write_bulk_wave,
)
from benchmarks.synth_common import Company
from benchmarks.synth_contracts import make_contracts, write_contracts
from benchmarks.synth_devices import make_devices
from benchmarks.synth_flexlm import write_flexlm
from benchmarks.synth_install_files import write_installs
from benchmarks.synth_installs import Variants, make_installs
from benchmarks.synth_people import make_people, write_roster
from benchmarks.synth_usage import make_usage
from benchmarks.synth_usage_files import write_usage

ROOT = Path(__file__).resolve().parents[1]
DEMO_OUT = ROOT / "data" / "demo"
DEMO = Company(
    people=500,
    devices=600,
    date=dt.date(2026, 11, 23),
    days=120,
    seed=7,
    usage_rate=0.12,
    installs_per_device=20.0,
    tail_products=0,
)
REFERENCE = Company(
    people=100_000,
    devices=200_000,
    date=dt.date(2026, 11, 24),
    days=1,
    seed=7,
    usage_rate=3.0,
    installs_per_device=10.0,
    tail_products=3000,
)
FOLDERS = ("hr", "contracts", "installs", "assignments", "usage", "bulk")
SOURCES_YAML = """\
# Drop folders of the generated company (tasks/sources.py); folders are relative to this file.
feeds:
  hr: [{folder: hr}]
  contracts: [{folder: contracts}]
  installs:
    - {folder: installs/osquery, format: osquery}
    - {folder: installs/intune, format: intune}
    - {folder: installs/sccm, format: sccm}
    - {folder: installs/canonical, format: canonical}
  assignments: [{folder: assignments}]
  usage:
    - {folder: usage, pattern: "*.*"}
    - {folder: usage/flexlm, format: flexlm}
"""


@dataclass
class Generated:
    """What one run wrote: rows (or events, lines) per file and seconds per step."""

    out: Path
    rows: dict[Path, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    installs: int = 0

    def timed(self, step: str, work: Callable):
        started = time.perf_counter()
        result = work()
        self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - started
        return result


def generate(out: Path, company: Company, *, sources_file: bool = True) -> Generated:
    """Generate the company into `out` (its feed folders are replaced)."""
    out = Path(out)
    for folder in FOLDERS:
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)
    out.mkdir(parents=True, exist_ok=True)
    run = Generated(out)
    people = run.timed("people", lambda: make_people(company))
    devices = run.timed("devices", lambda: make_devices(company, people))
    contracts = run.timed("contracts", lambda: make_contracts(company, people))
    holdings = run.timed("assignments", lambda: make_holdings(company, people, devices))
    wave = run.timed("assignments", lambda: make_bulk_wave(company, people, holdings, contracts))

    def count(path: Path, rows: int) -> None:
        run.rows[path] = rows

    count(run.timed("write hr", lambda: write_roster(people, out)), len(people))
    count(run.timed("write contracts", lambda: write_contracts(contracts, out)), len(contracts))
    run.rows |= run.timed(
        "write assignments", lambda: write_assignments(holdings, people, devices, contracts, out)
    )
    count(run.timed("write assignments", lambda: write_bulk_wave(wave, out)), len(wave))

    variants = run.timed("installs", lambda: Variants.build(company.tail_products))
    installs = run.timed(
        "installs", lambda: make_installs(company, people, devices, holdings, variants)
    )
    run.installs = len(installs)
    run.rows |= run.timed(
        "write installs", lambda: write_installs(installs, devices, people, variants, out)
    )

    usage = run.timed("usage", lambda: make_usage(company, people, holdings))
    run.rows |= run.timed("write usage", lambda: write_usage(company, usage, people, out))
    flexlm = run.timed(
        "flexlm", lambda: write_flexlm(company, people, devices, holdings, contracts, out)
    )
    run.rows |= {path: sum(counts.values()) for path, counts in flexlm.items()}
    if sources_file:
        (out / "sources.yaml").write_text(SOURCES_YAML, encoding="utf-8")
    return run


def generate_demo(out: Path = DEMO_OUT) -> Generated:
    """data/demo, exactly as committed."""
    return generate(out, DEMO, sources_file=False)


def _report(run: Generated) -> str:
    lines = [f"wrote {run.out}"]
    total = 0
    for path in sorted(run.out.rglob("*")):
        if path.is_file():
            size = path.stat().st_size
            total += size
            rows = run.rows.get(path)
            shown = "" if not rows else f"{rows:>12,} rows"
            lines.append(f"  {path.relative_to(run.out)!s:<48} {size / 1e6:>9.1f} MB {shown}")
    lines.append(f"  {'total':<48} {total / 1e6:>9.1f} MB")
    lines.append("seconds per step:")
    for step, seconds in run.seconds.items():
        lines.append(f"  {step:<20} {seconds:>7.2f}")
    rate = run.seconds.get("installs", 0) + run.seconds.get("write installs", 0)
    lines.append(
        f"installation rows: {run.installs:,} generated in {run.seconds.get('installs', 0):.1f} s,"
        f" written in {run.seconds.get('write installs', 0):.1f} s ({rate:.1f} s together)"
    )
    lines.append(f"total {sum(run.seconds.values()):.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--demo", action="store_true", help="regenerate data/demo exactly")
    parser.add_argument("--people", type=int, default=REFERENCE.people)
    parser.add_argument("--devices", type=int, default=REFERENCE.devices)
    parser.add_argument("--out", type=Path, help="output folder (required without --demo)")
    parser.add_argument("--seed", type=int, default=REFERENCE.seed)
    parser.add_argument(
        "--date", type=dt.date.fromisoformat, default=REFERENCE.date, help="the data's today"
    )
    parser.add_argument("--days", type=int, default=REFERENCE.days, help="days of usage")
    parser.add_argument(
        "--usage-rate", type=float, default=REFERENCE.usage_rate,
        help="usage events per person and working day (on top of one trace per product used)",
    )  # fmt: skip
    parser.add_argument("--installs-per-device", type=float, default=REFERENCE.installs_per_device)
    parser.add_argument(
        "--tail-products", type=int, default=REFERENCE.tail_products,
        help="synthetic long-tail products",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.demo:
        print(_report(generate_demo(args.out or DEMO_OUT)))
        return
    if args.out is None:
        parser.error("--out is required (or use --demo)")
    company = replace(
        REFERENCE,
        people=args.people,
        devices=args.devices,
        seed=args.seed,
        date=args.date,
        days=args.days,
        usage_rate=args.usage_rate,
        installs_per_device=args.installs_per_device,
        tail_products=args.tail_products,
    )
    print(_report(generate(args.out, company)))


if __name__ == "__main__":
    main()
