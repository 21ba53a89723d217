"""Since when the platform watches each data logger, and when it first heard from it.

The window alone cannot tell "silent" from "not there yet": on a fresh database every device looks silent for
the whole window. So the engine records, once per MN, two marker points in the `state` measurement (`fac` = MN):
`watched` at the end of the first evaluation that found the MN in the registry, and `seen` at the first minute a
reading of it stood (moved earlier if late data shows an earlier one). The `offline` and `no_data` rules judge
silence against them (see rules_plugins.builtin.offline); the engine reads them back when it starts, so a
restarted engine keeps them, and keeps them up to date in memory after that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gkjk.registry import Registry
from ingest_twisted.influx import InfluxClient
from ingest_twisted.lineprotocol import point
from rules_plugins.site import Readings

QUERY = ('SELECT first("watched") FROM "state" GROUP BY "fac"; '
         'SELECT first("seen") FROM "state" GROUP BY "fac"')


@dataclass(frozen=True, slots=True)
class Watch:
    """Per MN: the minute the engine started watching it and the first minute a reading of it stood."""

    watched: Mapping[str, int] = field(default_factory=dict)
    seen: Mapping[str, int] = field(default_factory=dict)


async def stored(client: InfluxClient) -> Watch:
    """The markers written by earlier evaluations (one point per MN and marker)."""
    result = await client.query(QUERY, epoch="s")
    found: list[dict[str, int]] = [{}, {}]
    for marks, statement in zip(found, result["results"]):
        for series in statement.get("series", []):
            marks[series["tags"]["fac"]] = series["values"][0][0]
    return Watch(*found)


def update(watch: Watch, registry: Registry, readings: Readings, end: int) -> tuple[Watch, list[bytes]]:
    """Markers including this evaluation's news, and the lines that store the news."""
    watched, seen = dict(watch.watched), dict(watch.seen)
    lines = []
    for mn, ref in registry.devices.items():
        tags = {"ent": ref.enterprise.id, "county": ref.enterprise.county, "fac": mn}
        if mn not in watched:
            watched[mn] = end
            lines.append(point("state", tags, {"watched": 1}, end))
        present = readings.present.get(mn)
        if present and min(present) < seen.get(mn, end):
            seen[mn] = min(present)
            lines.append(point("state", tags, {"seen": 1}, seen[mn]))
    return Watch(watched, seen), lines
