"""Pieces every generated dashboard shares: the data source, template variables, layout, rendering to JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from gkjk.grafana.influxql import DATASOURCE
from gkjk.registry import Registry

DATASOURCE_REF = model.DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"])
# Regex conditions on the template variables; Grafana expands a multi-value selection to (a|b|...) and "全部" to
# ALL_VALUE rather than listing every enterprise of a province in the query.
COUNTY = '"county" =~ /^$county$/'
ENT = '"ent" =~ /^$ent$/'
ENTERPRISE_UID = "gkjk-enterprise"
ALL_VALUE = ".*"
# Tables of tags and aggregates: InfluxDB's time column (the range's start) means nothing there.
DROP_TIME = model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})


def county_variable() -> db.QueryVariable:
    """区县: every county that has sent data."""
    return (db.QueryVariable("county").label("区县").datasource(DATASOURCE_REF)
            .query('SHOW TAG VALUES FROM "rtd" WITH KEY = "county"')
            .multi(True).include_all(True).all_value(ALL_VALUE).refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(model.VariableSort.ALPHABETICAL_ASC))


def enterprise_variable(multi: bool) -> db.QueryVariable:
    """企业: credit codes of the enterprises in the chosen counties (the tag InfluxDB has; names via mappings)."""
    variable = (db.QueryVariable("ent").label("企业").datasource(DATASOURCE_REF)
                .query(f'SHOW TAG VALUES FROM "rtd" WITH KEY = "ent" WHERE {COUNTY}')
                .multi(multi).include_all(multi).refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
                .sort(model.VariableSort.ALPHABETICAL_ASC))
    return variable.all_value(ALL_VALUE) if multi else variable


def enterprise_names(registry: Registry) -> list[model.ValueMap]:
    """Value mapping credit code -> enterprise name, from the registry (InfluxDB only stores the code)."""
    return [model.ValueMap({ent.id: model.ValueMappingResult(text=ent.name)
                            for ent in sorted(registry.enterprises.values(), key=lambda e: e.id)})]


def enterprise_link() -> list[model.DynamicConfigValue]:
    """Field override: an enterprise cell opens 企业详情 for it, keeping the time range."""
    url = f"/d/{ENTERPRISE_UID}?var-ent=${{__value.raw}}&${{__url_time_range}}"
    return [model.DynamicConfigValue(id_val="links", value=[{"title": "企业详情", "url": url}])]


def shown(title: str, *more: model.DynamicConfigValue) -> list[model.DynamicConfigValue]:
    """A field override: the column or series headed `title` (Chinese), with any further settings."""
    return [model.DynamicConfigValue(id_val="displayName", value=title), *more]


def value_texts(values: Mapping[str, str | tuple[str, str]]) -> list[model.ValueMap]:
    """A value mapping: each stored value shown as a Chinese text, or as (text, colour)."""
    return [model.ValueMap({key: model.ValueMappingResult(text=v) if isinstance(v, str)
                            else model.ValueMappingResult(text=v[0], color=v[1]) for key, v in values.items()})]


def mapped(values: list[model.ValueMap]) -> model.DynamicConfigValue:
    """A field setting: values shown through these mappings (`value_texts`, `enterprise_names`)."""
    return model.DynamicConfigValue(id_val="mappings", value=values)


#: A field setting: table cells coloured by their value mapping's colour.
COLORED = model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})


def unit(name: str) -> model.DynamicConfigValue:
    """A field setting: Grafana's unit `name` (``ms``, ``bytes``, ``dateTimeAsLocal``, ``suffix: 个`` ...)."""
    return model.DynamicConfigValue(id_val="unit", value=name)


def new_dashboard(title: str, uid: str, since: str = "now-24h", refresh: str = "1m") -> db.Dashboard:
    """What every gkjk dashboard shares: the tag, a time range up to now, auto-refresh, the browser's time zone."""
    return db.Dashboard(title).uid(uid).tags(["gkjk"]).time(since, "now").refresh(refresh).timezone("browser")


def place(panel: Any, x: int, y: int, w: int, h: int) -> Any:
    """Fixed grid position: the SDK's automatic flow would move panels whenever one is added or removed."""
    return panel.grid_pos(model.GridPos(x=x, y=y, w=w, h=h))


def render(dashboard: db.Dashboard, annotations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, plus InfluxQL annotations (the SDK only models Grafana's own)."""
    data = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    if annotations:
        data.setdefault("annotations", {}).setdefault("list", []).extend(annotations)
    return data
