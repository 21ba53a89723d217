"""Device silence: no alarm for the time before a device was heard or watched; 掉线 after it was heard; 未上报数据
for a device never heard, once the duration has passed since the engine started watching it."""

from __future__ import annotations

import pytest_twisted

from rules_support import MN1, MN2, alarms, at, brief, make_engine, rtd, steady, write

ENT_NAME = "如皋市规则测试有限公司"


def silence(influx, db) -> list[tuple]:
    """(rule, minute, state, MN, started, duration) of the offline and no_data events."""
    rows = [r for r in alarms(influx, db) if r["rule"] in ("offline", "no_data")]
    return [(r["rule"], *t) for r, t in zip(rows, brief(rows))]


@pytest_twisted.ensureDeferred
async def test_fresh_start_with_devices_that_began_a_minute_ago(influx, db, make_engine):
    write(influx, db, rtd("P1", "i33200", steady(44, 90, 200)), rtd("P2", "i33210", steady(44, 90, 50)))
    engine = make_engine()
    for minute in range(45, 91, 5):
        await engine.evaluate(at(minute))
    assert silence(influx, db) == []


@pytest_twisted.ensureDeferred
async def test_device_starting_mid_window_is_not_offline_before_its_first_reading(influx, db, make_engine):
    write(influx, db, rtd("P1", "i33200", steady(30, 44, 200)), rtd("P2", "i33210", steady(20, 44, 50)))
    await make_engine().evaluate(at(45))
    assert silence(influx, db) == []


@pytest_twisted.ensureDeferred
async def test_device_going_silent_is_offline_after_the_duration(influx, db, make_engine):
    # MN1 sends 0-9 (the reading at 9 stands through 10), MN2 keeps sending.
    write(influx, db, rtd("P1", "i33200", steady(0, 9, 200)), rtd("P2", "i33210", steady(0, 60, 50)))
    engine = make_engine()
    for minute in range(1, 61):
        await engine.evaluate(at(minute))
    rows = alarms(influx, db, "offline")
    assert brief(rows) == [(41, "open", MN1, 11, 30)]
    assert rows[0]["message"] == f"{ENT_NAME}：数采仪 {MN1} 掉线，已 30 分钟无数据"
    assert alarms(influx, db, "no_data") == []


@pytest_twisted.ensureDeferred
async def test_device_never_sending_gets_no_data_after_the_duration_since_watching(influx, db, make_engine):
    engine = make_engine()
    for minute in range(0, 30):
        await engine.evaluate(at(minute))
    assert silence(influx, db) == []
    write(influx, db, rtd("P1", "i33200", steady(40, 50, 200)))  # MN1 is installed at last
    for minute in range(30, 51):
        await engine.evaluate(at(minute))
    assert silence(influx, db) == [
        ("no_data", 30, "open", MN1, 0, 30), ("no_data", 30, "open", MN2, 0, 30),
        ("no_data", 45, "closed", MN1, 0, 40)]
    assert alarms(influx, db, "no_data")[0]["message"] == f"{ENT_NAME}：数采仪 {MN1} 纳入监控后从未上报数据，已 30 分钟"


@pytest_twisted.ensureDeferred
async def test_a_restarted_engine_keeps_when_it_started_watching(influx, db, make_engine):
    await make_engine().evaluate(at(0))
    await make_engine().evaluate(at(35))  # a new process, nothing in memory
    assert [t[:5] for t in silence(influx, db)] == [("no_data", 30, "open", MN1, 0), ("no_data", 30, "open", MN2, 0)]


@pytest_twisted.ensureDeferred
async def test_a_restarted_engine_keeps_that_a_device_was_heard(influx, db, make_engine):
    write(influx, db, rtd("P1", "i33200", steady(0, 4, 200)))
    await make_engine().evaluate(at(5))
    await make_engine().evaluate(at(70))  # the readings have left the window: silence after them is 掉线
    assert [t for t in silence(influx, db) if t[3] == MN1] == [("offline", 40, "open", MN1, 10, 30)]
