"""监管总览: what a county or city officer looks at first: devices online, open alarms where, and on a map."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from grafana_foundation_sdk.builders import barchart, common, dashboard as db, geomap, stat, table
from grafana_foundation_sdk.models import common as common_model, dashboard as model, geomap as geomap_model

from gkjk.grafana.common import (
    COUNTY, DROP_TIME, county_variable, enterprise_link, enterprise_names, mapped, new_dashboard, place, render,
    shown,
)
from gkjk.grafana.influxql import InfluxQL, open_alarms
from gkjk.registry import Registry

UID = "gkjk-overview"
GAZETTEER = "public/gazetteer/gkjk-enterprises.json"
# Table results carry InfluxDB's time column; for counts per tag it is the epoch and means nothing.

ONLINE = ('SELECT count("peer") AS "在线设备" FROM (SELECT last("peer") AS "peer", "event" FROM "device_event" '
          f'WHERE {COUNTY} GROUP BY "mn") WHERE "event" = \'online\'')
HEARD = f'SELECT last("peer") AS "最近连接" FROM "device_event" WHERE {COUNTY} GROUP BY "ent", "county"'


def gazetteer(registry: Registry) -> list[dict[str, Any]]:
    """Enterprise locations for the geomap's lookup layer (Grafana's worldmap gazetteer format), keyed by credit
    code: InfluxDB has no coordinates, the registry has."""
    return [{"key": e.id, "name": e.name, "latitude": e.location.lat, "longitude": e.location.lon}
            for e in sorted(registry.enterprises.values(), key=lambda e: e.id)]


def _markers(name: str, ref_id: str, color: str, size: dict[str, Any]) -> common.MapLayerOptions:
    location = common.FrameGeometrySource().mode(common_model.FrameGeometrySourceMode.LOOKUP).lookup("ent") \
        .gazetteer(GAZETTEER)
    style = {"color": {"fixed": color}, "size": size, "opacity": 0.8,
             "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"}}
    return (common.MapLayerOptions().type("markers").name(name).location(location).tooltip(True)
            .config({"style": style, "showLegend": True}).filter_data({"id": "byRefId", "options": ref_id}))


def build(registry: Registry) -> dict[str, Any]:
    """The dashboard JSON."""
    names = enterprise_names(registry)
    lat = fmean(e.location.lat for e in registry.enterprises.values())
    lon = fmean(e.location.lon for e in registry.enterprises.values())
    online = (stat.Panel().title("在线设备").description("最后一次会话事件为上线的数采仪台数")
              .with_target(InfluxQL(ONLINE)).unit("none").no_value("0"))
    open_count = (stat.Panel().title("未关闭告警").description("当前仍处于开启状态的告警（各企业、设施、规则）")
                  .with_target(InfluxQL(open_alarms('count("state") AS "未关闭告警"', COUNTY)))
                  .unit("none").no_value("0")
                  .thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
                      model.Threshold(value=None, color="green"), model.Threshold(value=1, color="red")])))
    by_county = (barchart.Panel().title("各区县未关闭告警")
                 .with_target(InfluxQL(open_alarms('count("state") AS "未关闭告警"', COUNTY, '"county"'),
                                       result_format="table"))
                 .with_transformation(DROP_TIME).x_field("county")
                 .override_by_name("county", shown("区县")))
    enterprises = (table.Panel().title("有未关闭告警的企业")
                   .with_target(InfluxQL(open_alarms('count("state") AS "告警数", last("message") AS "最新告警"',
                                                     COUNTY, '"ent", "county"'), result_format="table"))
                   .with_transformation(DROP_TIME).filterable(True)
                   .override_by_name("ent", shown("企业", mapped(names),
                                                  *enterprise_link()))
                   .override_by_name("county", shown("区县")))
    world = (geomap.Panel().title("企业分布")
             .description("绿点：有数采仪接入的企业；红点：有未关闭告警的企业（点越大告警越多）")
             .with_target(InfluxQL(HEARD, ref_id="A", result_format="table"))
             .with_target(InfluxQL(open_alarms('count("state") AS "告警数"', COUNTY, '"ent"'), ref_id="B",
                                   result_format="table"))
             .view(geomap.MapViewConfig().id("coords").lat(round(lat, 4)).lon(round(lon, 4)).zoom(9))
             .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
             .basemap(common.MapLayerOptions().type("default").name("底图"))
             .layers([_markers("接入企业", "A", "green", {"fixed": 6}),
                      _markers("告警企业", "B", "red", {"field": "告警数", "min": 8, "max": 24})])
             .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
             .mappings(names))
    dashboard = (new_dashboard("监管总览", UID).with_variable(county_variable())
                 .with_panel(place(online, 0, 0, 6, 8))
                 .with_panel(place(open_count, 6, 0, 6, 8))
                 .with_panel(place(by_county, 12, 0, 12, 8))
                 .with_panel(place(enterprises, 0, 8, 12, 14))
                 .with_panel(place(world, 12, 8, 12, 14)))
    return render(dashboard)
