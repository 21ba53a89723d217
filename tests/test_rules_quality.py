"""Data-quality rules against a real InfluxDB, data stored through the ingest path (HJ 212 segments -> PointBuilder
-> line protocol): 数据异常 (stuck low, sudden jump), 终端断电, 数据恒值 and 传输率不达标 (over 24 hours and days,
from the hourly statistics of rules_plugins.history), with exact open/close times, late data, restarts and
negatives. Minutes count from T0 (2026-11-23 10:00 in Shanghai).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted

from gkjk.registry import Registry, load_registry
from ingest_twisted.hj212.packet import parse_segment
from ingest_twisted.points import PointBuilder
from rules_support import alarms, at, brief, make_engine, write

SITE = """\
id: 91320682MA1WX0R00P
name: 如皋市数据质量测试有限公司
county: 如皋市
town: 搬经镇
industry: 通用
location: {lat: 32.39, lon: 120.56}
facilities:
  production:
    - {id: P1, name: 中频炉, kind: furnace}
  treatment:
    - {id: T1, name: 除尘风机, kind: fan, serves: [P1]}
    - {id: T2, name: 蓄热式焚烧炉, kind: rto, serves: [P1]}
devices:
  - mn: 010000A8900016F0001Q0001
    pw: "100000"
    protocol: hj212-2017
    points:
      - {factor: i33200, facility: P1, quantity: current, rated: 400}
      - {factor: g10101, facility: T1, quantity: switch}
      - {factor: d10101, facility: T1, quantity: fan_current, phase: a, rated: 60}
      - {factor: d10201, facility: T1, quantity: fan_current, phase: b, rated: 60}
      - {factor: a01012, facility: T2, quantity: temperature}
  - mn: 010000A8900016F0001Q0002
    pw: "100000"
    protocol: hj212-2017
    rtd_interval: 300
    points:
      - {factor: a00000, facility: T2, quantity: flow}
"""
NAME = "如皋市数据质量测试有限公司"
MN_A, MN_B = "010000A8900016F0001Q0001", "010000A8900016F0001Q0002"
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    path: Path = tmp_path_factory.mktemp("quality") / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    return load_registry(path)


def upload(registry: Registry, mn: str, cn: str, minute: float, cp: str) -> bytes:
    """What the ingest server stores for one packet of `mn` whose DataTime is `minute` (from T0)."""
    local = datetime.fromtimestamp(at(minute), ZONE).strftime("%Y%m%d%H%M%S")
    packet = parse_segment(f"QN={local}000;ST=32;CN={cn};PW=100000;MN={mn};Flag=4;CP=&&DataTime={local};{cp}&&")
    return b"\n".join(PointBuilder("Asia/Shanghai").convert(packet, registry, 0).lines)


def records(registry: Registry, mn: str, minutes: Iterable[float], **factors: Mapping[float, float] | float) -> bytes:
    """Real-time (2011) records of `mn`, one per minute given; a factor is a constant or a minute -> value map."""
    parts = []
    for minute in minutes:
        values = {f: v if isinstance(v, (int, float)) else v.get(minute) for f, v in factors.items()}
        cp = ";".join(f"{f}-Rtd={v:g},{f}-Flag=N" for f, v in values.items() if v is not None)
        parts.append(upload(registry, mn, "2011", minute, cp))
    return b"\n".join(parts)


def event(registry: Registry, mn: str, minute: float, name: str) -> bytes:
    """A field-unit information upload (3020) with the logger's power event."""
    return upload(registry, mn, "3020", minute, f"Event={name}")


def store(influx, db, *bodies: bytes) -> None:
    influx.write(b"\n".join(bodies), db)


def spans(**ranges: tuple[int, int, float]) -> dict[float, float]:
    """Minute -> value from spans `name=(first, last, value)`, later spans overriding earlier ones."""
    values: dict[float, float] = {}
    for first, last, value in ranges.values():
        values.update(dict.fromkeys(range(first, last + 1), value))
    return values


# --- stuck low -------------------------------------------------------------------------------------------------------

FAN_ON = {"g10101": 1, "d10101": 40}


@pytest_twisted.ensureDeferred
async def test_stuck_low_phase_while_the_other_phase_and_the_switch_say_running(influx, db, make_engine, registry):
    # Phase b reads 0.3 A (at most 2 % of its 60 A) from minute 10 to 49 while the switch and phase a say on.
    store(influx, db, records(registry, MN_A, range(0, 60), **FAN_ON,
                              d10201=spans(all=(0, 59, 40), low=(10, 49, 0.3))))
    await make_engine(registry=registry).evaluate(at(60))
    rows = alarms(influx, db, "stuck_low")
    assert brief(rows) == [(40, "open", "T1", 10, 30), (55, "closed", "T1", 10, 40)]
    assert rows[0]["message"] == (f"{NAME}：治污设施 除尘风机 B相风机电流（d10201） 在设施运行时读数为 0.3，"
                                  "接近零（不高于 1.2），数据异常，已持续 30 分钟")
    assert rows[0]["severity"] == "medium"


@pytest_twisted.ensureDeferred
async def test_stuck_low_judged_again_when_late_data_arrives(influx, db, make_engine, registry):
    phase_b = spans(all=(0, 59, 40), low=(10, 49, 0.3))
    store(influx, db, records(registry, MN_A, range(0, 30), **FAN_ON, d10201=phase_b))
    engine = make_engine(registry=registry)
    await engine.evaluate(at(45))  # minutes 30-44 not here yet: 20 stuck minutes, not enough
    assert alarms(influx, db, "stuck_low") == []
    store(influx, db, records(registry, MN_A, range(30, 60), **FAN_ON, d10201=phase_b))  # the logger replays
    await engine.evaluate(at(60))
    assert brief(alarms(influx, db, "stuck_low")) == [(40, "open", "T1", 10, 30), (55, "closed", "T1", 10, 40)]


@pytest.mark.parametrize("factors", [
    {"g10101": 0, "d10101": 0, "d10201": 0},  # the fan is off: every point says so
    {"g10101": 1, "d10101": 40, "d10201": 38.5},  # running, both phases carry current
    {"d10201": 0},  # a lone current at zero is an off fan, nothing says otherwise
])
@pytest_twisted.ensureDeferred
async def test_stuck_low_negatives(influx, db, make_engine, registry, factors):
    store(influx, db, records(registry, MN_A, range(0, 60), i33200=0, **factors))
    await make_engine(registry=registry).evaluate(at(60))
    assert alarms(influx, db, "stuck_low") == []


# --- sudden jump -----------------------------------------------------------------------------------------------------

FURNACE = spans(off=(0, 4, 0), on=(5, 59, 200), spike=(20, 20, 560))
RTO = spans(hot=(0, 29, 800), cooled=(30, 59, 550))


@pytest_twisted.ensureDeferred
async def test_jump_a_spike_and_a_step_while_running(influx, db, make_engine, registry):
    # The furnace starts at 5 (0 -> 200 A: a start, not a jump), spikes to 560 A at 20 (a 360 A step both ways,
    # over 0.8 x 400 A); the RTO's temperature falls 250 ℃ within the minute 30 (over 200 ℃).
    store(influx, db, records(registry, MN_A, range(0, 60), i33200=FURNACE, a01012=RTO))
    await make_engine(registry=registry).evaluate(at(60))
    rows = alarms(influx, db, "jump")
    assert brief(rows) == [(21, "open", "P1", 20, 1), (27, "closed", "P1", 20, 2),
                           (31, "open", "T2", 30, 1), (36, "closed", "T2", 30, 1)]
    assert rows[0]["message"] == (f"{NAME}：生产设施 中频炉 电流（i33200） 读数在一分钟内由 200 突变为 560"
                                  "（变化超过 320），数据异常")
    assert rows[2]["message"].startswith(f"{NAME}：治污设施 蓄热式焚烧炉 温度（a01012） 读数在一分钟内由 800 突变为 550")


@pytest_twisted.ensureDeferred
async def test_jump_judged_again_when_late_data_arrives(influx, db, make_engine, registry):
    store(influx, db, records(registry, MN_A, range(0, 20), i33200=FURNACE))
    engine = make_engine(registry=registry)
    await engine.evaluate(at(20))
    store(influx, db, records(registry, MN_A, range(20, 60), i33200=FURNACE))
    await engine.evaluate(at(60))
    assert brief(alarms(influx, db, "jump")) == [(21, "open", "P1", 20, 1), (27, "closed", "P1", 20, 2)]


@pytest_twisted.ensureDeferred
async def test_jump_negatives_start_stop_and_load_changes(influx, db, make_engine, registry):
    # Starts at 10 (0 -> 380 A), changes load by 250 A at 20 (under 320), stops at 40 (130 -> 0 A); the RTO
    # heats up 150 ℃ in a minute (under 200).
    furnace = spans(off=(0, 9, 0), full=(10, 19, 380), part=(20, 39, 130), stopped=(40, 59, 0))
    rto = spans(cold=(0, 29, 650), hot=(30, 59, 800))
    store(influx, db, records(registry, MN_A, range(0, 60), i33200=furnace, a01012=rto))
    await make_engine(registry=registry).evaluate(at(60))
    assert alarms(influx, db, "jump") == []


# --- power loss ------------------------------------------------------------------------------------------------------

def outage(registry: Registry, restored: bool = True) -> bytes:
    """Records every minute but 20-40; PowerLoss at 20:30, PowerRestored at 40:10 (if `restored`)."""
    parts = [records(registry, MN_A, [*range(0, 20), *range(41, 95)], i33200=200),
             event(registry, MN_A, 20.5, "PowerLoss")]
    return b"\n".join(parts + ([event(registry, MN_A, 40 + 1 / 6, "PowerRestored")] if restored else []))


@pytest_twisted.ensureDeferred
async def test_power_loss_from_the_event_until_power_is_back(influx, db, make_engine, registry):
    store(influx, db, outage(registry))
    await make_engine(registry=registry).evaluate(at(60))
    rows = alarms(influx, db, "power_loss")
    assert brief(rows) == [(20, "open", MN_A, 20, 0), (45, "closed", MN_A, 20, 20)]
    assert rows[0]["message"] == f"{NAME}：数采仪 {MN_A} 报告终端断电（11-23 10:20 起）"
    assert rows[1]["message"] == f"{NAME}：数采仪 {MN_A} 报告终端断电（11-23 10:20 起），已恢复"
    assert rows[0]["severity"] == "high"


@pytest_twisted.ensureDeferred
async def test_power_loss_ends_when_data_flows_again_without_a_restored_event(influx, db, make_engine, registry):
    store(influx, db, outage(registry, restored=False))
    await make_engine(registry=registry).evaluate(at(60))
    assert brief(alarms(influx, db, "power_loss")) == [(20, "open", MN_A, 20, 0), (46, "closed", MN_A, 20, 21)]


@pytest_twisted.ensureDeferred
async def test_power_loss_events_arriving_late(influx, db, make_engine, registry):
    # The logger holds its events until its line is back, then sends them with the records in between.
    store(influx, db, records(registry, MN_A, range(0, 20), i33200=200))
    engine = make_engine(registry=registry)
    await engine.evaluate(at(30))
    assert alarms(influx, db, "power_loss") == []
    store(influx, db, outage(registry))
    await engine.evaluate(at(60))
    assert brief(alarms(influx, db, "power_loss")) == [(20, "open", MN_A, 20, 0), (45, "closed", MN_A, 20, 20)]


@pytest_twisted.ensureDeferred
async def test_power_loss_across_restarts(influx, db, make_engine, registry):
    # Opened by one process; another one, started after the event left its window, closes it once.
    store(influx, db, records(registry, MN_A, range(0, 20), i33200=200), event(registry, MN_A, 20.5, "PowerLoss"))
    await make_engine(registry=registry).evaluate(at(30))
    await make_engine(registry=registry).evaluate(at(85))  # silent since: still open
    assert brief(alarms(influx, db, "power_loss")) == [(20, "open", MN_A, 20, 0)]
    store(influx, db, outage(registry))
    await make_engine(registry=registry).evaluate(at(95))  # window 35-94: the restored event at 40
    await make_engine(registry=registry).evaluate(at(96))
    assert brief(alarms(influx, db, "power_loss")) == [(20, "open", MN_A, 20, 0), (45, "closed", MN_A, 20, 20)]


@pytest_twisted.ensureDeferred
async def test_power_loss_negatives(influx, db, make_engine, registry):
    # Data flowing, a PowerRestored without a loss before it, and a silent device with no event.
    store(influx, db, records(registry, MN_A, range(0, 60), i33200=200), event(registry, MN_A, 30, "PowerRestored"))
    await make_engine(registry=registry).evaluate(at(60))
    assert alarms(influx, db, "power_loss") == []


# --- flat data -------------------------------------------------------------------------------------------------------

RUNNING = {m: 200.0 + m % 2 for m in range(0, 1600)}  # the furnace runs, its current moving by an ampere


@pytest_twisted.ensureDeferred
async def test_flat_opens_after_24_running_hours_and_closes_when_the_value_moves(influx, db, make_engine, registry):
    # The RTO's thermocouple repeats 812.5 from T0 until 1570 (26 h 10 min), then reads 815.
    store(influx, db, records(registry, MN_A, range(0, 1600), i33200=RUNNING,
                              a01012=spans(flat=(0, 1569, 812.5), moved=(1570, 1599, 815))))
    engine = make_engine(registry=registry)
    for minute in range(1450, 1601, 5):  # loaded from InfluxDB at start, then folded hour by hour
        await engine.evaluate(at(minute))
    rows = alarms(influx, db, "flat_data")
    assert brief(rows) == [(1440, "open", "T2", 1440, 0), (1575, "closed", "T2", 1440, 130)]
    assert rows[0]["message"] == (f"{NAME}：治污设施 蓄热式焚烧炉 温度（a01012） 连续 24 小时数值无变化（恒为 812.5），"
                                  "数据恒值，疑似造假")
    assert rows[0]["severity"] == "high"


@pytest_twisted.ensureDeferred
async def test_flat_across_restarts(influx, db, make_engine, registry):
    store(influx, db, records(registry, MN_A, range(0, 1600), i33200=RUNNING,
                              a01012=spans(flat=(0, 1569, 812.5), moved=(1570, 1599, 815))))
    await make_engine(registry=registry).evaluate(at(1450))
    await make_engine(registry=registry).evaluate(at(1451))
    await make_engine(registry=registry).evaluate(at(1600))
    assert brief(alarms(influx, db, "flat_data")) == [(1440, "open", "T2", 1440, 0), (1575, "closed", "T2", 1440, 130)]


@pytest_twisted.ensureDeferred
async def test_flat_judged_again_when_late_data_arrives(influx, db, make_engine, registry):
    flat = spans(flat=(0, 1599, 812.5))
    store(influx, db, records(registry, MN_A, range(0, 1420), i33200=RUNNING, a01012=flat))
    engine = make_engine(registry=registry)
    await engine.evaluate(at(1450))  # the logger is silent from 1420: no reading to judge at 1440
    assert alarms(influx, db, "flat_data") == []
    store(influx, db, records(registry, MN_A, range(1420, 1460), i33200=RUNNING, a01012=flat))  # it replays
    await engine.evaluate(at(1460))
    assert brief(alarms(influx, db, "flat_data")) == [(1440, "open", "T2", 1440, 0)]


@pytest.mark.parametrize("current, temperature", [
    (RUNNING, {m: 812.5 + (m % 3) / 10 for m in range(0, 1600)}),  # steady, but a real sensor: it moves a little
    ({m: 0.0 for m in range(0, 1600)}, {m: 25.0 for m in range(0, 1600)}),  # everything off: a cold RTO is flat
    (spans(on=(0, 1599, 200), stop=(600, 660, 0)), {m: 812.5 for m in range(0, 1600)}),  # not running throughout
])
@pytest_twisted.ensureDeferred
async def test_flat_negatives(influx, db, make_engine, registry, current, temperature):
    store(influx, db, records(registry, MN_A, range(0, 1600), i33200=current, a01012=temperature))
    await make_engine(registry=registry).evaluate(at(1600))
    assert alarms(influx, db, "flat_data") == []


# --- transmission rate -----------------------------------------------------------------------------------------------

DAY = 840  # 2026-11-24 00:00 in Shanghai; the next day starts at DAY + 1440
EVERY_5 = range(DAY, DAY + 2 * 1440, 5)  # MN_B's rtd_interval is 300 s
GAP = range(DAY + 8 * 60, DAY + 11 * 60)  # 08:00-11:00 of the first day: 36 of its 288 records


def flow(minutes: Iterable[int]) -> dict[int, float]:
    return {m: 1000.0 + m % 7 for m in minutes}


@pytest_twisted.ensureDeferred
async def test_transmission_rate_of_a_day_below_90_percent(influx, db, make_engine, registry):
    store(influx, db, records(registry, MN_B, [m for m in EVERY_5 if m not in GAP], a00000=flow(EVERY_5)))
    await make_engine(registry=registry).evaluate(at(DAY - 10))  # watching it since the day before
    await make_engine(registry=registry).evaluate(at(DAY + 1450))
    await make_engine(registry=registry).evaluate(at(DAY + 1451))  # a restart: nothing twice
    await make_engine(registry=registry).evaluate(at(DAY + 2890))  # the second day was complete
    rows = [r for r in alarms(influx, db, "transmission_rate") if r["fac"] == MN_B]
    assert brief(rows) == [(DAY + 1440, "open", MN_B, DAY + 1440, 0),
                           (DAY + 2885, "closed", MN_B, DAY + 1440, 1440)]
    assert rows[0]["message"] == (f"{NAME}：数采仪 {MN_B} 2026-11-24 实时数据传输率 87.5%，低于 90%"
                                  "（应传 288 条，实传 252 条）")


@pytest.mark.parametrize("reload_minutes, alarmed", [(60, False), (0, True)])
@pytest_twisted.ensureDeferred
async def test_transmission_rate_counts_records_replayed_late(influx, db, make_engine, registry, reload_minutes,
                                                              alarmed):
    # The gap is replayed at 22:00, hours after the engine folded those hours: only a reload counts it.
    store(influx, db, records(registry, MN_B, [m for m in EVERY_5 if m not in GAP], a00000=flow(EVERY_5)))
    engine = make_engine(registry=registry, history_reload_minutes=reload_minutes)
    for minute in (DAY - 10, DAY + 1320):
        await engine.evaluate(at(minute))
        if engine.history.reloading:
            await engine.history.reloading
    store(influx, db, records(registry, MN_B, [m for m in EVERY_5 if m in GAP], a00000=flow(EVERY_5)))
    await engine.evaluate(at(DAY + 1390))  # a reload is due: it runs in the background
    if engine.history.reloading:
        await engine.history.reloading
    await engine.evaluate(at(DAY + 1450))
    rows = [r for r in alarms(influx, db, "transmission_rate") if r["fac"] == MN_B]
    assert brief(rows) == ([(DAY + 1440, "open", MN_B, DAY + 1440, 0)] if alarmed else [])


@pytest_twisted.ensureDeferred
async def test_transmission_rate_counts_only_the_hours_watched(influx, db, make_engine, registry):
    # Registered and watched from 12:00 of the first day, sending from then on: 100 % of what was expected.
    store(influx, db, records(registry, MN_B, [m for m in EVERY_5 if m >= DAY + 720], a00000=flow(EVERY_5)))
    await make_engine(registry=registry).evaluate(at(DAY + 720))
    await make_engine(registry=registry).evaluate(at(DAY + 1450))
    assert [r for r in alarms(influx, db, "transmission_rate") if r["fac"] == MN_B] == []
    assert [r["fac"] for r in alarms(influx, db, "transmission_rate")] == [MN_A]  # MN_A sent nothing at all


@pytest_twisted.ensureDeferred
async def test_transmission_rate_uploading_too_often_does_not_hide_a_gap(influx, db, make_engine, registry):
    # Every minute instead of every 5: 60 records an hour, but an hour counts at most the 12 expected.
    every_minute = range(DAY, DAY + 1440)
    store(influx, db, records(registry, MN_B, [m for m in every_minute if m not in GAP], a00000=flow(every_minute)))
    await make_engine(registry=registry).evaluate(at(DAY - 10))
    await make_engine(registry=registry).evaluate(at(DAY + 1450))
    rows = [r for r in alarms(influx, db, "transmission_rate") if r["fac"] == MN_B]
    assert brief(rows) == [(DAY + 1440, "open", MN_B, DAY + 1440, 0)]
    assert "传输率 87.5%" in rows[0]["message"]
