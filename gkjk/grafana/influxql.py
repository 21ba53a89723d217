"""InfluxQL targets for Grafana panels, and the field selections the registry implies.

The SDK has no InfluxDB query builder, so targets are plain dicts wrapped in the SDK's builder interface. Queries
are raw InfluxQL (`rawQuery`): the visual editor cannot express subqueries or regex field keys, both needed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal, NamedTuple

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants

from gkjk.registry import Registry

DATASOURCE = {"type": "influxdb", "uid": "gkjk-influxdb"}

Format = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target as Grafana's InfluxDB data source stores it in dashboard JSON."""

    def __init__(self, ref_id: str, query: str, result_format: Format, alias: str | None) -> None:
        self.ref_id, self.query, self.result_format, self.alias = ref_id, query, result_format, alias

    def to_json(self) -> dict[str, object]:
        target: dict[str, object] = {"refId": self.ref_id, "datasource": DATASOURCE, "rawQuery": True,
                                     "query": self.query, "resultFormat": self.result_format}
        if self.alias:
            target["alias"] = self.alias
        return target


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder form of InfluxQLQuery, so panels take it through the SDK's `with_target`."""

    def __init__(self, query: str, ref_id: str = "A", result_format: Format = "time_series",
                 alias: str | None = None) -> None:
        self._internal = InfluxQLQuery(ref_id, query, result_format, alias)

    def build(self) -> InfluxQLQuery:
        return self._internal


class Selection(NamedTuple):
    """Which `rtd` fields and facilities hold one quantity; InfluxQL cannot pair them, so a panel selects the
    product, and `strays` lists registry points of another quantity that the product also matches."""

    codes: list[str]
    facilities: list[str]
    strays: list[str]


def selection(registry: Registry, quantity: str) -> Selection:
    """Factor codes and facility ids measuring `quantity` anywhere in the registry (sorted: stable output)."""
    points = [(ent, p) for ent in registry.enterprises.values() for dev in ent.devices for p in dev.points]
    codes = {p.factor.lower() for _, p in points if p.quantity == quantity}
    facilities = {p.facility for _, p in points if p.quantity == quantity}
    strays = sorted(f"{ent.id} {p.facility} {p.factor} ({p.quantity})" for ent, p in points
                    if p.quantity != quantity and p.factor.lower() in codes and p.facility in facilities)
    return Selection(sorted(codes), sorted(facilities), strays)


def field_regex(codes: Iterable[str]) -> str:
    """An InfluxQL regex matching the `-Rtd` field keys of these factor codes (the ingest server keeps wire case,
    so the match ignores case)."""
    return "/(?i)^(" + "|".join(re.escape(c) for c in codes) + ")-Rtd$/"


def open_alarms(select: str, where: str, group_by: str = "") -> str:
    """Alarm episodes open now: the last non-retracted event of each (ent, fac, rule) series is `open`.

    No time filter: an alarm raised a week ago and still open belongs on today's screen.
    """
    inner = ('SELECT last("state") AS "state", "message", "started", "severity" FROM "alarm" '
             f'WHERE "state" != \'retracted\' AND {where} GROUP BY "ent", "county", "fac", "rule"')
    outer = f'SELECT {select} FROM ({inner}) WHERE "state" = \'open\''
    return f"{outer} GROUP BY {group_by}" if group_by else outer
