"""企业详情: one enterprise over time: which facilities ran, whether treatment kept up, and the readings the rules
judge by, with its alarms as annotations."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common, statetimeline, timeseries
from grafana_foundation_sdk.models import common as common_model, dashboard as model

from gkjk.grafana.common import (
    ENT, ENTERPRISE_UID, county_variable, enterprise_variable, new_dashboard, place, render,
)
from gkjk.grafana.influxql import DATASOURCE, InfluxQL, Selection, field_regex, selection
from gkjk.registry import Registry

RUN = [model.ValueMap({"1": model.ValueMappingResult(text="运行", color="green"),
                       "0": model.ValueMappingResult(text="停止", color="red")})]
# A facility's run state per minute, judged by the rule engine (schema.md, `state`).
STATE = ('SELECT last("run") FROM "state" WHERE {ent} AND "fac" =~ /^({facs})$/ AND $timeFilter '
         'GROUP BY time($__interval), "fac" fill(null)')
ALARMS = ('SELECT "message", "rule", "severity" FROM "alarm" WHERE {ent} AND "state" != \'retracted\' '
          'AND $timeFilter')


def metered_facilities(registry: Registry, role: str) -> list[str]:
    """Ids of facilities with a role that have a run state (a current, fan current or switch point)."""
    return sorted({p.facility for ent in registry.enterprises.values() for dev in ent.devices for p in dev.points
                   if p.quantity in ("current", "fan_current", "switch") and ent.facility(p.facility).role == role})


def strays(registry: Registry) -> list[str]:
    """What a panel would plot wrongly, for the build to report: points of another quantity a readings panel also
    matches (see Selection), facility ids that are production in one enterprise and treatment in another."""
    both = set(metered_facilities(registry, "production")) & set(metered_facilities(registry, "treatment"))
    return [*(f"{quantity}: {stray}" for quantity in ("fan_current", "temperature", "ph")
              for stray in selection(registry, quantity).strays),
            *(f"both run-state timelines: facility id {fac}" for fac in sorted(both))]


def _timeline(title: str, facs: list[str]) -> statetimeline.Panel:
    query = STATE.format(ent=ENT, facs="|".join(facs))
    return (statetimeline.Panel().title(title).with_target(InfluxQL(query, alias="$tag_fac"))
            .mappings(RUN).show_value(common_model.VisibilityMode.NEVER).merge_values(True))


def _readings(title: str, chosen: Selection, unit: str) -> timeseries.Panel:
    facs = "|".join(chosen.facilities)
    query = (f'SELECT mean({field_regex(chosen.codes)}) FROM "rtd" WHERE {ENT} AND "fac" =~ /^({facs})$/ '
             'AND $timeFilter GROUP BY time($__interval), "fac" fill(null)')
    return (timeseries.Panel().title(title).with_target(InfluxQL(query, alias="$tag_fac $col")).unit(unit)
            .span_nulls(False)
            .legend(common.VizLegendOptions().display_mode(common_model.LegendDisplayMode.LIST)
                    .placement(common_model.LegendPlacement.BOTTOM).show_legend(True)))


def build(registry: Registry) -> dict[str, Any]:
    """The dashboard JSON; panels for quantities no point in the registry measures are left out."""
    full: list[Any] = []
    for title, role in (("生产设施运行状态", "production"), ("治污设施运行状态", "treatment")):
        if facs := metered_facilities(registry, role):
            full.append(_timeline(title, facs))
    half: list[Any] = []
    if (fans := selection(registry, "fan_current")).codes:
        half.append(_readings("治污风机电流", fans, "amp"))
        load = (f'SELECT mean("load") FROM "state" WHERE {ENT} AND $timeFilter '
                'GROUP BY time($__interval), "fac" fill(null)')
        half.append(timeseries.Panel().title("治污风机负荷率").description("风机电流占正常运行电流的百分比")
                    .with_target(InfluxQL(load, alias="$tag_fac")).unit("percent").min(0))
    if (temperatures := selection(registry, "temperature")).codes:
        half.append(_readings("燃烧温度", temperatures, "celsius"))
    if (ph := selection(registry, "ph")).codes:
        half.append(_readings("pH", ph, "none").min(0).max(14))
    dashboard = (new_dashboard("企业详情", ENTERPRISE_UID)
                 .with_variable(county_variable()).with_variable(enterprise_variable(multi=False)))
    y = 0
    for panel in full:
        dashboard.with_panel(place(panel, 0, y, 24, 7))
        y += 7
    for i, panel in enumerate(half):
        dashboard.with_panel(place(panel, 12 * (i % 2), y + 9 * (i // 2), 12, 9))
    alarms = {"name": "告警", "enable": True, "iconColor": "red", "datasource": DATASOURCE,
              "target": {"refId": "Anno", "rawQuery": True, "query": ALARMS.format(ent=ENT),
                         "textColumn": "message", "tagsColumn": "rule,severity"}}
    return render(dashboard, [alarms])
