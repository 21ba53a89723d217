"""喷淋未开启 and 活性炭需更换 against a real InfluxDB: exact open/close times and negatives."""

from __future__ import annotations

import pytest
import pytest_twisted

from rules_plugins import hookimpl
from rules_plugins.plugins import Plugins
from rules_support import alarms, at, brief, make_engine, rtd, steady, write

TOWER_FAN_ON = rtd("T3", "g10203", steady(0, 44, 20))


@pytest_twisted.ensureDeferred
async def test_spray_off_while_the_fan_runs(influx, db, make_engine):
    write(influx, db, TOWER_FAN_ON, rtd("T3", "g10103", steady(0, 44, 1, m10_19=0)))
    await make_engine().evaluate(at(45))
    rows = alarms(influx, db, "spray_off")
    assert brief(rows) == [(15, "open", "T3", 10, 5), (25, "closed", "T3", 10, 10)]
    assert rows[0]["message"] == "如皋市规则测试有限公司：治污设施 喷淋塔 风机运行而喷淋未开启，已持续 5 分钟"
    assert rows[0]["severity"] == "medium"


@pytest.mark.parametrize("fan, pump", [
    (steady(0, 44, 20), steady(0, 44, 1, m10_13=0)),  # off for 4 minutes only
    (steady(0, 44, 20, m10_30=2), steady(0, 44, 1, m10_30=0)),  # 2 A is below the fan's on_threshold of 5 A
    (steady(0, 44, 20), []),  # no pump signal: cannot tell
])
@pytest_twisted.ensureDeferred
async def test_spray_off_negatives(influx, db, make_engine, fan, pump):
    write(influx, db, rtd("T3", "g10203", fan), *([rtd("T3", "g10103", pump)] if pump else []))
    await make_engine().evaluate(at(45))
    assert alarms(influx, db, "spray_off") == []


@pytest_twisted.ensureDeferred
async def test_carbon_over_its_design_hours_until_replaced(influx, db, make_engine):
    # The counter passes the adsorber's 500 design hours at minute 10; the carbon is replaced at 30 (reset).
    write(influx, db, rtd("T4", "g10304", steady(0, 44, 499.5, m10_29=500.4, m30_44=0.2)))
    await make_engine().evaluate(at(45))
    rows = alarms(influx, db, "carbon")
    assert brief(rows) == [(15, "open", "T4", 10, 5), (35, "closed", "T4", 10, 20)]
    assert rows[0]["message"] == ("如皋市规则测试有限公司：治污设施 活性炭吸附箱 活性炭累计吸附运行 500.4 小时，"
                                  "超过设计更换周期 500 小时，需更换")


class ShortCycle:
    @hookimpl
    def gkjk_rule_defaults(self, industry):
        return {"carbon_design_hours": 100}


@pytest_twisted.ensureDeferred
async def test_carbon_within_the_facility_design_hours(influx, db, make_engine):
    # 499.5 h is under the facility's own 500 h, which wins over a pack's shorter default.
    write(influx, db, rtd("T4", "g10304", steady(0, 44, 499.5)))
    await make_engine(plugins=Plugins(load_entry_points=False, extra=[("short", ShortCycle())])).evaluate(at(45))
    assert alarms(influx, db, "carbon") == []
