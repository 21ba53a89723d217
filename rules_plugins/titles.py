"""Chinese names of the built-in rules (the `rule` tag of `alarm`), shared by the dashboards and the relay.

A rule pack's rule has no entry here: dashboards show its tag as is and the relay falls back to the alarm text.
"""

from __future__ import annotations

from collections.abc import Mapping

RULE_TITLES: Mapping[str, str] = {
    "treatment_off": "治污设施未开启/停运",
    "low_load": "低负荷运行",
    "combustion_temperature": "燃烧温度不足",
    "ph": "pH 异常",
    "spray_off": "喷淋未开启",
    "carbon": "活性炭需更换",
    "start_stop": "启停不同步",
    "offline": "数采仪掉线",
    "no_data": "未上报数据",
    "emergency": "应急管控不落实",
    "flat_data": "数据恒值（疑似造假）",
    "jump": "数据异常（突变）",
    "stuck_low": "数据异常（读数接近零）",
    "transmission_rate": "传输率不达标",
    "power_loss": "终端断电",
}
