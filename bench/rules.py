"""One rule evaluation cycle over many enterprises, data in a real InfluxDB (target: at most 10 s).

Each enterprise has one data logger and 4 metered facilities: a spray booth with a spray tower (fan and pump),
an oven with a fan; one in ten has its booth's tower fan off for 20 minutes, one in ten its pump off. The
database holds `--minutes` of one-a-minute real-time data. Measured, each with every built-in rule:

1. cold: a fresh engine on this data (alarms opened, the whole window of `state` written once);
2. steady: the next minute's cycle after one more minute of data (only new or changed `state` minutes written).

    python bench/rules.py [--enterprises 5000] [--minutes 90]

Prints the figures and writes them to docs/benchmarks.md (section "Rule evaluation").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from twisted.internet import defer  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from gkjk import uscc  # noqa: E402
from gkjk.config import RulesConfig  # noqa: E402
from gkjk.influxd import InfluxServer  # noqa: E402
from gkjk.registry import load_registry  # noqa: E402
from ingest_twisted.influx import InfluxClient  # noqa: E402
from report import write_section  # noqa: E402
from rules_plugins.engine import Engine, Report  # noqa: E402
from rules_plugins.plugins import Plugins  # noqa: E402

DATABASE = "bench"
T0 = 1_795_392_000  # 2026-11-23 00:00 UTC, on a minute
FACILITIES = """\
facilities:
  production:
    - {id: P1, name: 喷漆房, kind: spray_booth}
    - {id: P2, name: 烘箱, kind: oven}
  treatment:
    - {id: T1, name: 喷淋塔, kind: spray_tower, serves: [P1]}
    - {id: T2, name: 废气风机, kind: fan, serves: [P2]}
"""
POINTS = (("i33200", "P1", "current, rated: 100"), ("i33201", "P2", "current, rated: 50"),
          ("g10201", "T1", "fan_current, rated: 40, normal: 30"), ("g10101", "T1", "spray"),
          ("g10202", "T2", "fan_current, rated: 20, normal: 15"))


def enterprise_id(e: int) -> str:
    body = f"91320682MA{e:07d}"
    return body + uscc.check_digit(body)


def mn(e: int) -> str:
    return f"BR{e:022d}"


def write_registry(directory: Path, enterprises: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for e in range(enterprises):
        lines = [f"id: {enterprise_id(e)}", f"name: 如皋市规则压测企业{e}有限公司", "county: 如皋市", "town: 如城街道",
                 "industry: 工业涂装", "location: {lat: 32.38, lon: 120.56}", FACILITIES.rstrip(), "devices:",
                 f"  - mn: {mn(e)}", '    pw: "123456"', "    protocol: hj212-2017", "    points:"]
        lines += [f"      - {{factor: {code}, facility: {fac}, quantity: {rest}}}" for code, fac, rest in POINTS]
        (directory / f"rules-{e:05d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def rtd_lines(enterprises: int, minutes: range) -> list[bytes]:
    """One point per device and minute with all 5 factors (as the ingest server stores a 2011 packet)."""
    lines = []
    for e in range(enterprises):
        tags = f"rtd,county=如皋市,ent={enterprise_id(e)},fac=P1,mn={mn(e)}"
        for m in minutes:
            fan = 0.0 if e % 10 == 3 and 20 <= m % 60 < 40 else 28.0
            pump = 0 if e % 10 == 7 and 10 <= m % 60 < 30 else 1
            lines.append(f"{tags} i33200-Rtd=60,i33201-Rtd=30,g10201-Rtd={fan},g10101-Rtd={pump},"
                         f"g10202-Rtd=14 {T0 + 60 * m}".encode())
    return lines


def load(influx: InfluxServer, lines: list[bytes], batch: int = 20000) -> None:
    for i in range(0, len(lines), batch):
        influx.write(b"\n".join(lines[i:i + batch]), DATABASE, precision="s")


def describe(label: str, seconds: float, report: Report) -> str:
    return (f"| {label} | {seconds:.2f} | {report.opened} | {report.closed} | {report.retracted} | "
            f"{report.states:,} |")


async def measure(influx: InfluxServer, registry_dir: Path, enterprises: int, minutes: int) -> list[str]:
    started = time.monotonic()
    registry = load_registry(registry_dir)
    print(f"registry: {len(registry.enterprises)} enterprises in {time.monotonic() - started:.1f} s", flush=True)
    client = InfluxClient(influx.url, DATABASE, timeout=300.0)
    engine = Engine(client, lambda: registry, Plugins(load_entry_points=False), RulesConfig())
    rows = []
    try:
        for label, now in (("cold", T0 + 60 * minutes), ("steady", T0 + 60 * (minutes + 1))):
            if label == "steady":
                load(influx, rtd_lines(enterprises, range(minutes, minutes + 1)))
            started = time.monotonic()
            report = await engine.evaluate(now + 5)
            rows.append(describe(label, time.monotonic() - started, report))
            print(rows[-1], flush=True)
    finally:
        await client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=5000)
    parser.add_argument("--minutes", type=int, default=90)
    parser.add_argument("--no-report", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gkjk-bench-") as tmp, InfluxServer(Path(tmp) / "influx") as influx:
        write_registry(Path(tmp) / "registry", args.enterprises)
        influx.query(f'CREATE DATABASE "{DATABASE}"')
        started = time.monotonic()
        load(influx, rtd_lines(args.enterprises, range(args.minutes)))
        print(f"data: {args.enterprises * args.minutes:,} rtd points in {time.monotonic() - started:.1f} s",
              flush=True)
        rows = run(measure(influx, Path(tmp) / "registry", args.enterprises, args.minutes))
    body = "\n".join([
        f"{args.enterprises:,} enterprises x 4 metered facilities (one data logger each, 5 factors), "
        f"{args.minutes} minutes of one-a-minute `rtd` data in InfluxDB; every built-in rule, "
        "`lookback_minutes` 60, `context_minutes` 10. Time of one `Engine.evaluate` (read, judge, write). "
        "Run: `python bench/rules.py`.", "",
        "| cycle | seconds | opened | closed | retracted | state lines |", "|---|---|---|---|---|---|", *rows, "",
        "cold: a fresh engine (alarms of the window opened, every minute of `state` written once); steady: the "
        "next minute with one more minute of data, as every cycle after the first. Target: at most 10 s.",
    ])
    if not args.no_report:
        write_section("Rule evaluation", body)


def run(coroutine: Coroutine[Any, Any, list[str]]) -> list[str]:
    """Run one coroutine on the reactor and return its result (task.react would exit the process)."""
    from twisted.internet import reactor

    outcome: list[Any] = []
    d = defer.ensureDeferred(coroutine)
    d.addBoth(lambda result: (outcome.append(result), reactor.stop()))
    reactor.run()
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


if __name__ == "__main__":
    main()
