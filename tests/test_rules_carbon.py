"""活性炭需更换 against a real InfluxDB: adsorption hours since the last replacement, from a counter or from the
fan's run state; replacements recorded by the real `gkjk carbon replaced` command close the alarm."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest_twisted

from gkjk.config import RulesConfig
from gkjk.influxd import InfluxServer
from gkjk.registry import load_registry
from gkjk_process import write_config
from ingest_twisted.influx import InfluxClient
from rules_plugins.builtin.carbon import replacement_line
from rules_plugins.engine import Engine
from rules_plugins.plugins import Plugins
from rules_support import alarms, at, brief, steady, write

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_FILE = ROOT / "tests" / "data" / "packs" / "carbon.yaml"
REGISTRY = load_registry(REGISTRY_FILE)
ENT, MN = "91320682MA1PK0010G", "010000A8900016F0000PK010"
ENTERPRISE = REGISTRY.enterprises[ENT]


def rtd(fac: str, factor: str, values: list[tuple[int, float]]) -> bytes:
    tags = f"rtd,county=如皋市,ent={ENT},fac={fac},mn={MN}"
    return "\n".join(f"{tags} {factor}-Rtd={value} {at(minute)}" for minute, value in values).encode()


def replaced_cli(influx: InfluxServer, db: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`gkjk carbon replaced` as a process against the test database."""
    config = write_config(tmp_path / "gkjk.toml", {
        "influx": {"url": influx.url, "database": db}, "registry": {"path": str(REGISTRY_FILE)}})
    return subprocess.run(
        [sys.executable, "-m", "gkjk.cli", "carbon", "replaced", "--config", str(config), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest_twisted.async_yield_fixture
async def evaluate(influx_db: tuple[InfluxServer, str]) -> AsyncIterator[Callable]:
    """evaluate(minute): one evaluation of a single engine (kept across calls, as a running `gkjk rules`)."""
    client = InfluxClient(influx_db[0].url, influx_db[1])
    engine = Engine(client, lambda: REGISTRY, Plugins(["offline"], load_entry_points=False), RulesConfig())

    async def run(minute: int) -> None:
        await engine.evaluate(at(minute))

    yield run
    await client.close()


@pytest_twisted.ensureDeferred
async def test_a_recorded_replacement_closes_the_alarm_of_a_counter_that_keeps_counting(
        influx, db, evaluate, tmp_path):
    # The logger's counter passes 500 h at minute 10 and is not reset when the carbon is replaced at minute 30
    # (10:30 local time); then it counts on, and reaches 500.1 h past that replacement at minute 90.
    write(influx, db, rtd("T1", "g10401", steady(0, 104, 499.5, m10_29=500.4, m30_89=500.5, m90_104=1000.6)))
    done = replaced_cli(influx, db, tmp_path, "--enterprise", ENT.lower(), "--facility", "T1",
                        "--at", "2026-11-23 10:30", "--note", "更换活性炭 1.2 吨")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "如皋市活性炭测试鞋业有限公司 一级活性炭箱 活性炭更换于 2026-11-23 10:30:00"
    stored = influx.query('SELECT * FROM "carbon"', db=db, epoch="s")["results"][0]["series"][0]
    assert [dict(zip(stored["columns"], row)) for row in stored["values"]] == [
        {"time": at(30), "county": "如皋市", "ent": ENT, "fac": "T1", "note": "更换活性炭 1.2 吨", "replaced": 1}]

    await evaluate(45)
    rows = alarms(influx, db, "carbon")
    assert brief(rows) == [(15, "open", "T1", 10, 5), (35, "closed", "T1", 10, 20)]
    assert rows[1]["message"] == ("如皋市活性炭测试鞋业有限公司：治污设施 一级活性炭箱 活性炭累计吸附运行 500.4 小时，"
                                  "超过设计更换周期 500 小时，需更换，已恢复")
    # An hour later the replacement lies before the minutes read: the baseline (500.5 h) comes from InfluxDB.
    await evaluate(105)
    rows = alarms(influx, db, "carbon")
    assert brief(rows)[2:] == [(95, "open", "T1", 90, 5)]
    assert "累计吸附运行 500.1 小时" in rows[2]["message"]


@pytest_twisted.ensureDeferred
async def test_without_a_counter_the_fan_running_hours_since_the_replacement_count(influx, db, evaluate):
    # T2 (design 0.5 h) has no counter: the fan T3 serving the same line runs from minute -40 on. Replacements at
    # minutes -30 and 20. The first evaluation stores the fan's run state; the second counts the 5 running minutes
    # from -30 to its first minute read (-25) from that store, and 25 more up to minute -1: over 30 from minute 0.
    write(influx, db, rtd("T3", "g10201", steady(-40, 44, 20)),
          replacement_line(ENTERPRISE, "T2", at(-30)), replacement_line(ENTERPRISE, "T2", at(20) + 25))
    await evaluate(-5)
    assert alarms(influx, db, "carbon") == []
    await evaluate(45)
    rows = alarms(influx, db, "carbon")
    assert brief(rows) == [(5, "open", "T2", 0, 5), (25, "closed", "T2", 0, 20)]
    assert rows[0]["message"] == ("如皋市活性炭测试鞋业有限公司：治污设施 二级活性炭箱 活性炭累计吸附运行 0.5 小时，"
                                  "超过设计更换周期 0.5 小时，需更换")


@pytest_twisted.ensureDeferred
async def test_without_a_counter_or_a_replacement_nothing_is_judged(influx, db, evaluate):
    write(influx, db, rtd("T3", "g10201", steady(-40, 44, 20)))
    await evaluate(45)
    assert alarms(influx, db, "carbon") == []


@pytest_twisted.ensureDeferred
async def test_a_fan_that_stood_still_adds_no_hours(influx, db, evaluate):
    # Replaced at -30; the fan stands from -20 to 30 (2 A, below its 4 A on_threshold): 5 + 5 + 14 minutes < 30.
    fan = dict(steady(-40, 44, 20)) | dict.fromkeys(range(-20, 31), 2)
    write(influx, db, rtd("T3", "g10201", sorted(fan.items())), replacement_line(ENTERPRISE, "T2", at(-30)))
    await evaluate(-5)
    await evaluate(45)
    assert alarms(influx, db, "carbon") == []


def test_the_command_names_a_wrong_facility_and_stores_nothing(influx, db, tmp_path):
    done = replaced_cli(influx, db, tmp_path, "--enterprise", ENT, "--facility", "T3")
    assert done.returncode == 1
    assert "--facility: 'T3' is not an activated_carbon facility of 如皋市活性炭测试鞋业有限公司 (those are: T1, T2)" \
        in done.stderr
    done = replaced_cli(influx, db, tmp_path, "--enterprise", ENT, "--facility", "T1", "--at", "yesterday")
    assert done.returncode == 1 and "--at: expected a time" in done.stderr
    assert "series" not in influx.query('SELECT * FROM "carbon"', db=db)["results"][0]
