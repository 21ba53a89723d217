"""告警列表: the alarms to act on now and those of the chosen period, filterable by county, enterprise and rule."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db, table
from grafana_foundation_sdk.models import dashboard as model

from gkjk.grafana.common import (
    ALL_VALUE, COLORED, COUNTY, DATASOURCE_REF, ENT, county_variable, enterprise_link, enterprise_names,
    enterprise_variable, DROP_TIME, mapped, new_dashboard, place, render, shown, unit, value_texts,
)
from gkjk.grafana.influxql import InfluxQL, open_alarms
from gkjk.registry import Registry
from rules_plugins.titles import RULE_TITLES

UID = "gkjk-alarms"
RULE = '"rule" =~ /^$rule$/'
FILTERS = f"{COUNTY} AND {ENT} AND {RULE}"
SEVERITY = {"high": ("高", "red"), "medium": ("中", "orange"), "low": ("低", "yellow")}
STATE = {"open": ("开启", "red"), "closed": ("已恢复", "green")}
RECENT = ('SELECT "state", "message", "duration_s" / 60 AS "持续分钟", "rule", "severity", "ent", "county", "fac" '
          f'FROM "alarm" WHERE $timeFilter AND "state" != \'retracted\' AND {FILTERS} ORDER BY time DESC LIMIT 1000')


def _columns(panel: table.Panel, names: list[model.ValueMap]) -> table.Panel:
    """Chinese headers and readable values for the tag columns both tables share."""
    return (panel.filterable(True)
            .override_by_name("ent", shown("企业", mapped(names), *enterprise_link()))
            .override_by_name("county", shown("区县"))
            .override_by_name("fac", shown("设施"))
            .override_by_name("rule", shown("规则", mapped(value_texts(RULE_TITLES))))
            .override_by_name("severity", shown("级别", mapped(value_texts(SEVERITY)), COLORED))
            .override_by_name("state", shown("状态", mapped(value_texts(STATE)), COLORED))
            .override_by_name("message", shown("告警内容")))


def build(registry: Registry) -> dict[str, Any]:
    """The dashboard JSON."""
    names = enterprise_names(registry)
    rule = (db.QueryVariable("rule").label("规则").datasource(DATASOURCE_REF)
            .query('SHOW TAG VALUES FROM "alarm" WITH KEY = "rule"').multi(True).include_all(True).all_value(ALL_VALUE)
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).sort(model.VariableSort.ALPHABETICAL_ASC))
    current = open_alarms('"state", "message", "severity", "started" * 1000 AS "开始时间"', FILTERS,
                          '"ent", "county", "fac", "rule"')
    open_table = _columns(
        table.Panel().title("未关闭告警").description("当前仍处于开启状态的告警，不受时间范围限制")
        .with_target(InfluxQL(current, result_format="table"))
        .with_transformation(DROP_TIME)
        .override_by_name("开始时间", [unit("dateTimeAsLocal")]), names)
    recent = _columns(
        table.Panel().title("近期告警事件").description("所选时间范围内的告警开启与恢复事件，最新在前")
        .with_target(InfluxQL(RECENT, result_format="table"))
        .override_by_name("Time", shown("时间")), names)
    dashboard = (new_dashboard("告警列表", UID, since="now-7d")
                 .with_variable(county_variable()).with_variable(enterprise_variable(multi=True))
                 .with_variable(rule)
                 .with_panel(place(open_table, 0, 0, 24, 10))
                 .with_panel(place(recent, 0, 10, 24, 14)))
    return render(dashboard)
