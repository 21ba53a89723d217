"""数据质量: whether every data logger is connected and delivers what it should, the figure O&M contracts are held
to (>= 90 % of the expected real-time records), per device and per county."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from grafana_foundation_sdk.builders import barchart, common, dashboard as db, stat, table, timeseries
from grafana_foundation_sdk.models import dashboard as model

from gkjk.grafana.common import (
    COLORED, COUNTY, ENT, county_variable, enterprise_link, enterprise_names, enterprise_variable, mapped,
    new_dashboard, place, render, DROP_TIME, shown, unit,
)
from gkjk.grafana.influxql import InfluxQL
from gkjk.registry import Registry

UID = "gkjk-quality"
FILTERS = f"{COUNTY} AND {ENT}"
TARGET = 90  # % of the expected records a device must deliver (O&M contracts, DOMAIN: effective transmission)
EVENTS = [model.ValueMap({"online": model.ValueMappingResult(text="在线", color="green"),
                          "offline": model.ValueMappingResult(text="离线", color="red")})]

# Each logger's last session event (device_event), whatever its age: a logger offline for a week is still offline.
LAST_EVENT = ('SELECT last("peer") AS "peer", "event", "reason" FROM "device_event" WHERE {filters} '
              'GROUP BY "mn", "ent", "county"')
# Loggers the rule engine watches (`watched` marker) that never sent a reading (`seen` marker): watched - seen = 1.
# The markers are written once each, so there is no time filter (docs/schema.md, `state`).
NEVER_SEEN = ('SELECT "n" AS "从未上报" FROM (SELECT sum("v") AS "n" FROM '
              '(SELECT first("watched") AS "v" FROM "state" WHERE {filters} GROUP BY "fac", "ent", "county"), '
              '(SELECT -1 * first("seen") AS "v" FROM "state" WHERE {filters} GROUP BY "fac", "ent", "county") '
              'GROUP BY "fac", "ent", "county") WHERE "n" = 1 GROUP BY "fac", "ent", "county"')


def _count_events(event: str, title: str) -> str:
    inner = LAST_EVENT.format(filters=FILTERS)
    return f'SELECT count("peer") AS "{title}" FROM ({inner}) WHERE "event" = \'{event}\''


def device_rates(registry: Registry) -> str | None:
    """Per data logger: records received in the dashboard's range ("接收条数") and in % of those expected in it
    ("传输率": one every `rtd_interval` seconds of the range); None when no logger of the registry has a point.

    A record is counted by the `-Rtd` field of a logger's first registry point; InfluxQL cannot count points
    across fields, so each such factor code has its own subquery and the outer query keeps the largest count per
    logger. Loggers are grouped by `rtd_interval` (the most common one matched by exclusion, so the query does not
    list every MN of a province). A logger that sent nothing in the range has no row (see 从未上报 and 离线).
    """
    by_interval: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for ent in registry.enterprises.values():
        for device in ent.devices:
            if device.points:
                by_interval[device.rtd_interval][device.points[0].factor].add(device.mn)
    if not by_interval:
        return None

    def loggers(interval: int) -> list[str]:
        return sorted(mn for mns in by_interval[interval].values() for mn in mns)

    common = max(sorted(by_interval), key=lambda interval: len(loggers(interval)))
    others = sorted(mn for interval in by_interval if interval != common for mn in loggers(interval))
    subqueries = []
    for interval, codes in sorted(by_interval.items()):
        if interval != common:
            which = f' AND "mn" =~ /^({"|".join(loggers(interval))})$/'
        else:
            which = f' AND "mn" !~ /^({"|".join(others)})$/' if others else ""
        for code in sorted(codes):
            count = f'count("{code}-Rtd")'
            subqueries.append(f'(SELECT {count} AS "n", {count} * {interval} / $__range_s * 100 AS "rate" FROM "rtd" '
                              f'WHERE {FILTERS}{which} AND $timeFilter GROUP BY "mn", "ent", "county")')
    return (f'SELECT max("n") AS "接收条数", max("rate") AS "传输率" FROM {", ".join(subqueries)} '
            'GROUP BY "mn", "ent", "county"')


def _device_table(panel: table.Panel, names: list[model.ValueMap], device_column: str = "mn") -> table.Panel:
    """Chinese headers for the tag columns every device table has; enterprise cells link to 企业详情."""
    return (panel.filterable(True)
            .override_by_name(device_column, shown("数采仪"))
            .override_by_name("ent", shown("企业", mapped(names), *enterprise_link()))
            .override_by_name("county", shown("区县")))


def _rate_cells(panel: table.Panel) -> table.Panel:
    """传输率 in %, red below the target."""
    steps = [model.Threshold(value=None, color="red"), model.Threshold(value=TARGET, color="green")]
    return (panel.override_by_name("传输率", [
        unit("percent"),
        model.DynamicConfigValue(id_val="decimals", value=1),
        model.DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": steps}),
        model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"})]))


def _count(title: str, description: str, query: str, alarming: bool) -> stat.Panel:
    """A device count; red from 1 when any device counted is a problem."""
    panel = stat.Panel().title(title).description(description).with_target(InfluxQL(query)).unit("none") \
        .no_value("0")
    if alarming:
        panel = panel.thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
            model.Threshold(value=None, color="green"), model.Threshold(value=1, color="red")]))
    return panel


def _rate_panels(rates: str, names: list[model.ValueMap]) -> list[tuple[Any, int, int, int, int]]:
    """The transmission-rate panels and their places."""
    below = f'SELECT "接收条数", "传输率" FROM ({rates}) WHERE "传输率" < {TARGET} GROUP BY "mn", "ent", "county"'
    failing = _count("传输率不达标设备数", f"所选时间范围内传输率低于 {TARGET}% 的数采仪台数（不含完全无数据的）",
                     f'SELECT count("传输率") AS "设备数" FROM ({rates}) WHERE "传输率" < {TARGET}', True)
    per_device = _rate_cells(_device_table(
        table.Panel().title("各设备传输率")
        .description("所选时间范围内收到的实时数据条数及其占应收条数（按站点档案的上报间隔）的百分比；"
                     "选择“昨天”即为日传输率")
        .with_target(InfluxQL(rates, result_format="table")).with_transformation(DROP_TIME)
        .sort_by([common.TableSortByFieldState().display_name("传输率")]), names))
    per_county = (barchart.Panel().title("各区县平均传输率").description("区县内各数采仪传输率的平均值")
                  .with_target(InfluxQL(f'SELECT mean("传输率") AS "传输率" FROM ({rates}) GROUP BY "county"',
                                        result_format="table"))
                  .with_transformation(DROP_TIME).x_field("county").unit("percent").min(0)
                  .override_by_name("county", shown("区县")))
    failing_table = _rate_cells(_device_table(
        table.Panel().title(f"传输率低于 {TARGET}% 的设备")
        .description(f"运维合同要求有效传输率不低于 {TARGET}%；完全无数据的设备见“设备在线状态”和“从未上报数据的设备”")
        .with_target(InfluxQL(below, result_format="table")).with_transformation(DROP_TIME), names))
    return [(failing, 18, 0, 6, 5), (per_device, 12, 5, 12, 10), (per_county, 0, 15, 12, 9),
            (failing_table, 12, 15, 12, 9)]


def build(registry: Registry) -> dict[str, Any]:
    """The dashboard JSON; without any metered logger in the registry, the rate panels are left out."""
    names = enterprise_names(registry)
    never = NEVER_SEEN.format(filters=FILTERS)
    online = _count("在线设备", "最后一次会话事件为上线的数采仪台数", _count_events("online", "在线设备"), False)
    offline = _count("离线设备", "最后一次会话事件为离线的数采仪台数", _count_events("offline", "离线设备"), True)
    silent = _count("从未上报设备数", "已纳入监控但从未上报过数据的数采仪台数",
                    f'SELECT count("从未上报") AS "从未上报设备数" FROM ({never})', True)
    status = _device_table(
        table.Panel().title("设备在线状态").description("每台数采仪最后一次上线或离线事件，不受时间范围限制")
        .with_target(InfluxQL(LAST_EVENT.format(filters=FILTERS), result_format="table"))
        .override_by_name("Time", shown("状态时间"))
        .override_by_name("event", shown("状态", mapped(EVENTS), COLORED))
        .override_by_name("peer", shown("连接地址"))
        .override_by_name("reason", shown("离线原因")), names)
    silent_table = _device_table(
        table.Panel().title("从未上报数据的设备").description("规则引擎已纳入监控，但至今没有任何一条读数")
        .with_target(InfluxQL(never, result_format="table")).with_transformation(DROP_TIME)
        .override_by_name("从未上报", [model.DynamicConfigValue(id_val="custom.hidden", value=True)]),
        names, device_column="fac")
    ingest = (timeseries.Panel().title("接入数据异常")
              .description("全平台：非数值读数与站点档案未登记的因子，每个时间段的新增数")
              .with_target(InfluxQL(
                  'SELECT non_negative_difference(last("bad_values")) AS "非数值读数", '
                  'non_negative_difference(last("unmapped_factors")) AS "未登记因子" FROM "gkjk_ingest" '
                  'WHERE $timeFilter GROUP BY time($__interval), "host", "worker" fill(none)',
                  alias="$col $tag_host/$tag_worker"))
              .unit("none").min(0))
    panels = [(online, 0, 0, 6, 5), (offline, 6, 0, 6, 5), (silent, 12, 0, 6, 5), (status, 0, 5, 12, 10),
              (silent_table, 0, 24, 12, 8), (ingest, 12, 24, 12, 8)]
    if (rates := device_rates(registry)) is not None:
        panels += _rate_panels(rates, names)
    dashboard = new_dashboard("数据质量", UID, refresh="5m").with_variable(county_variable()).with_variable(enterprise_variable(multi=True))
    for panel, x, y, w, h in sorted(panels, key=lambda placed: (placed[2], placed[1])):
        dashboard.with_panel(place(panel, x, y, w, h))
    return render(dashboard)
