"""应急管控: during heavy-pollution alerts, which periods are in force, which lines are under control, whether they
keep to their measure (停产/限产) minute by minute, and the alarms raised when they do not.

Everything comes from what `gkjk rules` stores (docs/schema.md: `emergency`, `control`, `alarm` with rule
`emergency`); the period files themselves are not visible to Grafana.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db, stat, statetimeline, table
from grafana_foundation_sdk.models import common as common_model, dashboard as model

from gkjk.grafana.alarms import STATE
from gkjk.grafana.common import (
    COLORED, COUNTY, ENT, county_variable, enterprise_link, enterprise_names, enterprise_variable, mapped,
    new_dashboard, place, render, DROP_TIME, shown, unit, value_texts,
)
from gkjk.grafana.influxql import InfluxQL, open_alarms
from gkjk.registry import Registry

UID = "gkjk-emergency"
FILTERS = f"{COUNTY} AND {ENT}"
RULE = "\"rule\" = 'emergency'"

PERIODS = ('SELECT last("name") AS "name", min("start") * 1000 AS "start", max("end") * 1000 AS "end", '
           f'last("lines") AS "lines" FROM "emergency" WHERE {COUNTY} AND $timeFilter '
           'GROUP BY "period", "level", "county"')
LINES = ('SELECT last("compliant") AS "compliant", last("period") AS "period", last("load") AS "load", '
         'last("cap") AS "cap", mean("compliant") * 100 AS "rate" FROM "control" '
         f'WHERE {FILTERS} AND $timeFilter GROUP BY "ent", "county", "fac", "level", "action"')
LINE_COUNT = ('SELECT count("compliant") AS "管控生产设施" FROM (SELECT last("compliant") AS "compliant" FROM "control" '
              f'WHERE {FILTERS} AND $timeFilter GROUP BY "ent", "fac")')
TIMELINE = (f'SELECT last("compliant") FROM "control" WHERE {FILTERS} AND $timeFilter '
            'GROUP BY time($__interval), "ent", "fac" fill(null)')
ALARMS = ('SELECT "state", "message", "duration_s" / 60 AS "持续分钟", "ent", "county", "fac" FROM "alarm" '
          f'WHERE $timeFilter AND {RULE} AND "state" != \'retracted\' AND {FILTERS} ORDER BY time DESC LIMIT 1000')

LEVELS = {"黄色": "yellow", "橙色": "orange", "红色": "red"}
COMPLIANT = {"1": ("落实", "green"), "0": ("未落实", "red")}


TIME = unit("dateTimeAsLocal")
PERCENT = unit("percent")
LEVEL = shown("预警级别", mapped(value_texts({level: (level, color) for level, color in LEVELS.items()})),
              COLORED)


def _enterprise(panel: table.Panel, names: list[model.ValueMap]) -> table.Panel:
    return (panel.override_by_name("ent", shown("企业", mapped(names), *enterprise_link()))
            .override_by_name("county", shown("区县")).override_by_name("fac", shown("生产设施")))


def build(registry: Registry) -> dict[str, Any]:
    """The dashboard JSON."""
    names = enterprise_names(registry)
    periods = (table.Panel().title("预警期").description("所选时间范围内生效过的重污染天气预警，按区县列出其管控的生产设施数")
               .with_target(InfluxQL(PERIODS, result_format="table")).with_transformation(DROP_TIME).filterable(True)
               .override_by_name("period", shown("预警编号")).override_by_name("name", shown("预警名称"))
               .override_by_name("level", LEVEL).override_by_name("county", shown("区县"))
               .override_by_name("start", shown("开始时间", TIME)).override_by_name("end", shown("结束时间", TIME))
               .override_by_name("lines", shown("管控生产设施")))
    line_count = (stat.Panel().title("管控生产设施").description("所选时间范围内处于预警期管控下的生产设施数")
                  .with_target(InfluxQL(LINE_COUNT)).unit("none").no_value("0"))
    open_count = (stat.Panel().title("未落实告警").description("当前仍处于开启状态的应急管控不落实告警，不受时间范围限制")
                  .with_target(InfluxQL(open_alarms('count("state") AS "未落实告警"', f"{RULE} AND {FILTERS}")))
                  .unit("none").no_value("0")
                  .thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
                      model.Threshold(value=None, color="green"), model.Threshold(value=1, color="red")])))
    lines = _enterprise(
        table.Panel().title("管控生产设施落实情况")
        .description("每条管控生产设施的措施、最近一分钟是否落实、负荷率（按功率或电流）与限值，及所选时间范围内的落实率")
        .with_target(InfluxQL(LINES, result_format="table")).with_transformation(DROP_TIME).filterable(True)
        .override_by_name("level", LEVEL).override_by_name("action", shown("管控措施"))
        .override_by_name("compliant", shown("最近状态", mapped(value_texts(COMPLIANT)), COLORED))
        .override_by_name("period", shown("预警名称"))
        .override_by_name("load", shown("负荷率", PERCENT)).override_by_name("cap", shown("负荷限值", PERCENT))
        .override_by_name("rate", shown("落实率", PERCENT, model.DynamicConfigValue(id_val="decimals", value=1))),
        names)
    timeline = (statetimeline.Panel().title("管控生产设施落实时间线")
                .description("每分钟的判定：绿色落实，红色未落实（企业信用代码 + 设施编号）")
                .with_target(InfluxQL(TIMELINE, alias="$tag_ent $tag_fac"))
                .mappings([model.ValueMap({key: model.ValueMappingResult(text=text, color=color)
                                           for key, (text, color) in COMPLIANT.items()})])
                .show_value(common_model.VisibilityMode.NEVER).merge_values(True))
    alarms = _enterprise(
        table.Panel().title("应急管控告警").description("所选时间范围内应急管控不落实告警的开启与恢复事件，最新在前")
        .with_target(InfluxQL(ALARMS, result_format="table")).filterable(True)
        .override_by_name("Time", shown("时间"))
        .override_by_name("state", shown("状态", mapped(value_texts(STATE)), COLORED))
        .override_by_name("message", shown("告警内容")), names)
    dashboard = (new_dashboard("应急管控", UID)
                 .with_variable(county_variable()).with_variable(enterprise_variable(multi=True))
                 .with_panel(place(periods, 0, 0, 16, 7))
                 .with_panel(place(line_count, 16, 0, 4, 7))
                 .with_panel(place(open_count, 20, 0, 4, 7))
                 .with_panel(place(lines, 0, 7, 24, 10))
                 .with_panel(place(timeline, 0, 17, 24, 10))
                 .with_panel(place(alarms, 0, 27, 24, 10)))
    return render(dashboard)
