"""The rule engine against a real InfluxDB: each rule's exact alarm times, negatives, late data, restarts."""

from __future__ import annotations

import socket
import uuid

import pytest
import pytest_twisted

from rules_plugins.plugins import Plugins
from rules_support import MN1, REGISTRY, alarms, at, brief, make_engine, rtd, steady, write

FURNACE_ON = rtd("P1", "i33200", steady(0, 44, 200))


@pytest_twisted.ensureDeferred
async def test_treatment_off_opens_and_closes_at_exact_times(influx, db, make_engine):
    write(influx, db, FURNACE_ON, rtd("T1", "g10201", steady(0, 44, 40, m10_21=0)))
    report = await make_engine().evaluate(at(45) + 10)
    rows = alarms(influx, db, "treatment_off")
    assert brief(rows) == [(15, "open", "T1", 10, 5), (27, "closed", "T1", 10, 12)]
    text = "如皋市规则测试有限公司：生产设施 中频炉 运行中，治污设施 布袋除尘风机 已停运"
    assert [r["message"] for r in rows] == [f"{text} 5 分钟", f"{text} 12 分钟，已恢复"]
    assert rows[0]["id"] == rows[1]["id"]
    assert (rows[0]["ent"], rows[0]["county"], rows[0]["severity"]) == ("91320682MA1WX0R00P", "如皋市", "high")
    assert report.opened >= 1 and report.closed >= 1
    # Derived run state and load per facility and minute.
    state = influx.query(f'SELECT "run", "load" FROM "state" WHERE "fac" = \'T1\' AND time = {at(12)}s',
                         db=db)["results"][0]["series"][0]["values"][0]
    assert state[1:] == [0, 0.0]
    state = influx.query(f'SELECT "run", "load" FROM "state" WHERE "fac" = \'T1\' AND time = {at(30)}s',
                         db=db)["results"][0]["series"][0]["values"][0]
    assert state[1:] == [1, 88.9]
    # The cycle's self-metric point (docs/schema.md, `gkjk_rules`), at its end: the counts of its report.
    [series] = influx.query('SELECT * FROM "gkjk_rules"', db=db, epoch="s")["results"][0]["series"]
    [metric] = [dict(zip(series["columns"], values)) for values in series["values"]]
    assert at(45) + 10 <= metric["time"] <= at(45) + 10 + 60
    assert metric["host"] == socket.gethostname()
    assert 0 < metric["duration_seconds"] < 60 and metric["enterprises"] == len(REGISTRY.enterprises) > 0
    assert (metric["failed"], metric["opened"], metric["closed"], metric["retracted"], metric["states"],
            metric["controls"]) == (0, report.opened, report.closed, report.retracted, report.states,
                                    report.controls)


@pytest.mark.parametrize("furnace, fan", [
    (steady(0, 44, 200), steady(0, 44, 40, m10_13=0)),  # off for 4 minutes only
    (steady(0, 44, 200, m10_30=20), steady(0, 44, 40, m10_30=0)),  # furnace idles (20 A < 10 % of 400 A)
    (steady(0, 44, 200), steady(0, 44, 40)),
])
@pytest_twisted.ensureDeferred
async def test_treatment_off_negatives(influx, db, make_engine, furnace, fan):
    write(influx, db, rtd("P1", "i33200", furnace), rtd("T1", "g10201", fan))
    await make_engine().evaluate(at(45))
    assert alarms(influx, db, "treatment_off") == []


@pytest_twisted.ensureDeferred
async def test_low_load_while_production_runs(influx, db, make_engine):
    # 15 A is on (above 9 A) but 33 % of the normal 45 A; 25 A is 56 %.
    write(influx, db, FURNACE_ON, rtd("T1", "g10201", steady(0, 44, 40, m10_19=15, m30_40=25)))
    await make_engine().evaluate(at(45))
    rows = alarms(influx, db, "low_load")
    assert brief(rows) == [(15, "open", "T1", 10, 5), (25, "closed", "T1", 10, 10)]
    assert "布袋除尘风机 低负荷运行（风机电流为正常值的 33%，低于 50%）" in rows[0]["message"]
    assert alarms(influx, db, "treatment_off") == []


@pytest_twisted.ensureDeferred
async def test_low_load_not_while_production_stops(influx, db, make_engine):
    write(influx, db, rtd("P1", "i33200", steady(0, 44, 200, m8_22=5)),
          rtd("T1", "g10201", steady(0, 44, 40, m10_19=15)))
    await make_engine().evaluate(at(45))
    assert alarms(influx, db, "low_load") == []


BOOTH_ON = rtd("P2", "i33210", steady(0, 44, 50))


@pytest_twisted.ensureDeferred
async def test_combustion_temperature_below_facility_minimum(influx, db, make_engine):
    write(influx, db, BOOTH_ON, rtd("T2", "a01012", steady(0, 44, 820, m10_19=700)))
    await make_engine().evaluate(at(45))
    rows = alarms(influx, db, "combustion_temperature")
    assert brief(rows) == [(15, "open", "T2", 10, 5), (25, "closed", "T2", 10, 10)]
    assert "蓄热式焚烧炉 燃烧温度 700℃ 低于 760℃" in rows[0]["message"]


@pytest_twisted.ensureDeferred
async def test_combustion_cold_burner_while_production_stopped_is_fine(influx, db, make_engine):
    write(influx, db, rtd("P2", "i33210", steady(0, 44, 50, m5_30=3)),
          rtd("T2", "a01012", steady(0, 44, 820, m10_25=200)))
    await make_engine().evaluate(at(45))
    assert alarms(influx, db, "combustion_temperature") == []


@pytest_twisted.ensureDeferred
async def test_ph_outside_default_range(influx, db, make_engine):
    write(influx, db, rtd("T3", "w01001", steady(0, 44, 7, m10_19=5.2, m30_32=9.6)))
    await make_engine().evaluate(at(45))
    rows = alarms(influx, db, "ph")
    assert brief(rows) == [(15, "open", "T3", 10, 5), (25, "closed", "T3", 10, 10)]
    assert "喷淋塔 pH 值 5.2 超出 6-9 范围" in rows[0]["message"]


@pytest_twisted.ensureDeferred
async def test_ph_inside_range(influx, db, make_engine):
    write(influx, db, rtd("T3", "w01001", steady(0, 44, 8.9, m10_19=6.0)))
    await make_engine().evaluate(at(45))
    assert alarms(influx, db, "ph") == []


@pytest_twisted.ensureDeferred
async def test_offline_after_30_minutes_without_data(influx, db, make_engine):
    # A reading stands for its interval plus a minute: silent from minute 11, back at 50.
    write(influx, db, rtd("P1", "i33200", steady(0, 9, 200) + steady(50, 69, 200)))
    await make_engine().evaluate(at(70))
    rows = [r for r in alarms(influx, db, "offline") if r["fac"] == MN1]
    assert brief(rows) == [(41, "open", MN1, 11, 30), (55, "closed", MN1, 11, 39)]
    assert rows[0]["message"] == f"如皋市规则测试有限公司：数采仪 {MN1} 掉线，已 30 分钟无数据"


@pytest_twisted.ensureDeferred
async def test_gap_shorter_than_offline_threshold(influx, db, make_engine):
    write(influx, db, rtd("P1", "i33200", steady(0, 9, 200) + steady(30, 69, 200)))
    await make_engine().evaluate(at(70))
    assert [r for r in alarms(influx, db, "offline") if r["fac"] == MN1] == []


@pytest_twisted.ensureDeferred
async def test_minute_by_minute_with_a_restart_gives_the_one_shot_result(influx, db, make_engine):
    write(influx, db, FURNACE_ON, rtd("T1", "g10201", steady(0, 44, 40, m10_21=0)))
    first = make_engine()
    for minute in range(1, 19):  # the alarm opens at 15 and is open when the engine stops
        await first.evaluate(at(minute) + 5)
    assert brief(alarms(influx, db, "treatment_off")) == [(15, "open", "T1", 10, 5)]
    second = make_engine()  # a new process: nothing in memory
    for minute in range(19, 46):
        await second.evaluate(at(minute) + 5)
    assert brief(alarms(influx, db, "treatment_off", live=False)) == [
        (15, "open", "T1", 10, 5), (27, "closed", "T1", 10, 12)]


@pytest_twisted.ensureDeferred
async def test_long_episode_keeps_its_start_when_it_leaves_the_window(influx, db, make_engine):
    write(influx, db, rtd("P1", "i33200", steady(0, 99, 200)), rtd("T1", "g10201", steady(0, 99, 40, m10_79=0)))
    engine = make_engine(lookback_minutes=30)
    for minute in range(5, 100, 3):
        await engine.evaluate(at(minute))
    assert brief(alarms(influx, db, "treatment_off", live=False)) == [
        (15, "open", "T1", 10, 5), (85, "closed", "T1", 10, 70)]


@pytest.fixture
def second_db(influx):
    name = f"test_{uuid.uuid4().hex[:12]}"
    influx.query(f'CREATE DATABASE "{name}"')
    yield name
    influx.query(f'DROP DATABASE "{name}"')


def without_offline() -> Plugins:
    """The late-data tests compare windows that begin at different times; silence before the data is not theirs."""
    return Plugins(disabled=["offline"], load_entry_points=False)


def key(rows: list[dict]) -> list[tuple]:
    return [(r["minute"], r["state"], r["rule"], r["fac"], r["id"], r["started"], r["duration_s"], r["message"])
            for r in rows]


@pytest_twisted.ensureDeferred
async def test_late_data_that_clears_an_alarm_gives_the_on_time_result(influx, db, second_db, make_engine):
    """The fan logged 0 A at :00 and 40 A at :30 of minutes 10-21; the :30 readings arrive late."""
    at_00 = steady(0, 44, 40, m10_21=0)
    at_30 = [(m + 0.5, 40.0) for m in range(10, 22)]
    write(influx, second_db, FURNACE_ON, rtd("T1", "g10201", at_00), rtd("T1", "g10201", at_30))
    await make_engine(second_db, without_offline()).evaluate(at(45))

    write(influx, db, FURNACE_ON, rtd("T1", "g10201", at_00))
    engine = make_engine(plugins=without_offline())
    await engine.evaluate(at(30))
    assert brief(alarms(influx, db, "treatment_off")) == [(15, "open", "T1", 10, 5), (27, "closed", "T1", 10, 12)]
    write(influx, db, rtd("T1", "g10201", at_30))
    report = await engine.evaluate(at(45))
    assert report.retracted == 2
    assert alarms(influx, db, "treatment_off") == []
    # 20 A on average is 44 % of normal: the late data turns "off" into "low load", as it would have on time.
    assert key(alarms(influx, db)) == key(alarms(influx, second_db))
    assert [r["rule"] for r in alarms(influx, db) if r["fac"] == "T1"] == ["low_load", "low_load"]


@pytest_twisted.ensureDeferred
async def test_late_data_that_raises_an_alarm_gives_the_on_time_result(influx, db, second_db, make_engine):
    fan = steady(0, 44, 40, m10_21=0)
    write(influx, second_db, FURNACE_ON, rtd("T1", "g10201", fan))
    await make_engine(second_db, without_offline()).evaluate(at(45))

    write(influx, db, FURNACE_ON, rtd("T1", "g10201", [(m, v) for m, v in fan if not 10 <= m <= 21]))
    engine = make_engine(plugins=without_offline())
    await engine.evaluate(at(30))
    assert alarms(influx, db, "treatment_off") == []  # the fan's readings are missing: unknown, not off
    write(influx, db, rtd("T1", "g10201", [(m, v) for m, v in fan if 10 <= m <= 21]))
    await engine.evaluate(at(45))
    assert key(alarms(influx, db)) == key(alarms(influx, second_db))
    assert brief(alarms(influx, db, "treatment_off")) == [(15, "open", "T1", 10, 5), (27, "closed", "T1", 10, 12)]


@pytest_twisted.ensureDeferred
async def test_self_metrics_of_a_failed_cycle_and_a_failed_metric_write(influx, db, make_engine):
    engine = make_engine()

    async def broken(*args, **kwargs):
        raise RuntimeError("InfluxDB answered nonsense")

    engine.read = broken  # the cycle raises: its point still says so
    with pytest.raises(RuntimeError):
        await engine.evaluate(at(45))
    [series] = influx.query('SELECT * FROM "gkjk_rules"', db=db)["results"][0]["series"]
    [metric] = [dict(zip(series["columns"], values)) for values in series["values"]]
    assert (metric["failed"], metric["enterprises"], "opened" in metric) == (1, len(REGISTRY.enterprises), False)
    assert metric["duration_seconds"] >= 0

    engine = make_engine()
    write_data = engine.client.write

    def refuse_metrics(data, **kwargs):  # InfluxDB refuses the metric only: the evaluation is not affected
        if data.startswith(b"gkjk_rules"):
            raise ConnectionRefusedError()
        return write_data(data, **kwargs)

    engine.client.write = refuse_metrics
    write(influx, db, FURNACE_ON)
    report = await engine.evaluate(at(45) + 60)
    assert report.states > 0
    assert len(influx.query('SELECT * FROM "gkjk_rules"', db=db)["results"][0]["series"][0]["values"]) == 1
