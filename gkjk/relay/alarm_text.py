"""The Chinese texts the rule engine stored for alarm series: the latest `message` of `alarm` in InfluxDB."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twisted.logger import Logger

from ingest_twisted.influx import InfluxClient, InfluxError, quote_literal

log = Logger()

SERIES_TAGS = ("ent", "fac", "rule")
Series = tuple[str, str, str]


def series_of(labels: Mapping[str, str]) -> Series | None:
    """The alarm series an alert is about, or None when it lacks the ent/fac/rule labels."""
    if not all(labels.get(tag) for tag in SERIES_TAGS):
        return None
    return labels["ent"], labels["fac"], labels["rule"]


def query(series: Sequence[Series]) -> str:
    """One InfluxQL statement for the latest non-retracted message of every series."""
    wanted = " OR ".join(
        "(" + " AND ".join(f'"{tag}" = {quote_literal(value)}' for tag, value in zip(SERIES_TAGS, one)) + ")"
        for one in series)
    return (f'SELECT last("message") FROM "alarm" WHERE "state" != \'retracted\' AND ({wanted}) '
            'GROUP BY "ent", "fac", "rule"')


async def latest_messages(client: InfluxClient, labels: Sequence[Mapping[str, str]]) -> list[str | None]:
    """Per alert (by its labels), the stored text or None: not an alarm series, none stored, or InfluxDB
    unreachable (the caller words one itself). One query for all of them: Grafana waits for the answer."""
    series = [series_of(one) for one in labels]
    wanted = sorted({one for one in series if one is not None})
    if not wanted:
        return [None] * len(series)
    try:
        result = await client.query(query(wanted))
    except InfluxError as exc:
        log.warn("alarm texts not read from InfluxDB, using the template: {error}", error=str(exc))
        return [None] * len(series)
    found: dict[Series, str] = {}
    for statement in result.get("results", []):
        for rows in statement.get("series", []):
            tags = rows.get("tags", {})
            key = (tags.get("ent", ""), tags.get("fac", ""), tags.get("rule", ""))
            for row in rows.get("values", []):
                if isinstance(row[1], str) and row[1]:
                    found[key] = row[1]
    return [found.get(one) if one is not None else None for one in series]
