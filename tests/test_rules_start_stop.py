"""启停不同步: treatment started less than sync_minutes before production, or stopped less than that after it."""

from __future__ import annotations

import pytest
import pytest_twisted

from rules_support import alarms, at, brief, make_engine, rtd, steady, write

TEXT = "如皋市规则测试有限公司：治污设施 布袋除尘风机 "


@pytest_twisted.ensureDeferred
async def test_treatment_started_late(influx, db, make_engine):
    # The furnace starts at 20; its fan only at 17, not at 15.
    write(influx, db, rtd("P1", "i33200", steady(0, 44, 200, m0_19=5)), rtd("T1", "g10201", steady(0, 44, 40, m0_16=0)))
    await make_engine().evaluate(at(45))
    rows = alarms(influx, db, "start_stop")
    assert brief(rows) == [(16, "open", "T1", 15, 1), (22, "closed", "T1", 15, 2)]
    assert rows[0]["message"] == f"{TEXT}未在生产设施 中频炉 启动前 5 分钟开启（启停不同步），已持续 1 分钟"
    assert alarms(influx, db, "treatment_off") == []


EARLY_STOP = (rtd("P1", "i33200", steady(0, 99, 5, m0_24=200)), rtd("T1", "g10201", steady(0, 99, 0, m0_26=40)))


@pytest_twisted.ensureDeferred
async def test_treatment_stopped_early(influx, db, make_engine):
    write(influx, db, *EARLY_STOP)  # the furnace's last minute is 24, the fan's 26 (it had to run through 29)
    await make_engine().evaluate(at(45))
    rows = alarms(influx, db, "start_stop")
    assert brief(rows) == [(28, "open", "T1", 27, 1), (35, "closed", "T1", 27, 3)]
    assert rows[1]["message"] == f"{TEXT}在生产设施 中频炉 停止后不足 5 分钟即停运（启停不同步），已持续 3 分钟，已恢复"


@pytest_twisted.ensureDeferred
async def test_judged_the_same_when_the_production_run_left_the_window(influx, db, make_engine):
    write(influx, db, *EARLY_STOP)
    engine = make_engine(lookback_minutes=20)
    for minute in range(20, 70):
        await engine.evaluate(at(minute))
    assert brief(alarms(influx, db, "start_stop", live=False)) == [(28, "open", "T1", 27, 1),
                                                                    (35, "closed", "T1", 27, 3)]


@pytest.mark.parametrize("furnace, fan", [
    (steady(0, 44, 200, m0_19=5), steady(0, 44, 40, m0_14=0)),  # started exactly 5 minutes before
    (steady(0, 44, 5, m0_24=200), steady(0, 44, 0, m0_29=40)),  # stopped exactly 5 minutes after
    (steady(0, 44, 5), steady(0, 44, 40, m10_12=0)),  # the furnace never ran
])
@pytest_twisted.ensureDeferred
async def test_start_stop_negatives(influx, db, make_engine, furnace, fan):
    write(influx, db, rtd("P1", "i33200", furnace), rtd("T1", "g10201", fan))
    await make_engine().evaluate(at(45))
    assert alarms(influx, db, "start_stop") == []
