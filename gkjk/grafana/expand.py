"""InfluxQL as Grafana sends it: time macros and template variables expanded in a panel's raw query.

Shared by `gkjk grafana preview` (which runs the queries to draw them) and tests/test_grafana_queries.py (which
checks what they return), so both see the same text Grafana's InfluxDB data source would send.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone, tzinfo

from gkjk.grafana.common import ALL_VALUE

# Grafana's default dashboard range (last 6 h) and the data source's minimum interval (`timeInterval: 1m`).
DEFAULT_TIME_FILTER = "time >= now() - 6h"
DEFAULT_INTERVAL = "1m"
DEFAULT_RANGE_S = 6 * 3600
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# How Grafana rounds $__interval (seconds): below the bound, this step; never below the data source's 1 m.
_ROUNDING = ((90, 60), (210, 120), (450, 300), (750, 600), (1050, 900), (1500, 1200), (2700, 1800), (5400, 3600),
             (9000, 7200), (16200, 3 * 3600), (32400, 6 * 3600), (86400, 12 * 3600), (7 * 86400, 86400))


class ExpandError(ValueError):
    """A query or time range Grafana could not expand either (undefined variable, unreadable time)."""


def expand(query: str, variables: Mapping[str, Sequence[str]], time_filter: str = DEFAULT_TIME_FILTER,
           interval: str = DEFAULT_INTERVAL, range_s: int = DEFAULT_RANGE_S) -> str:
    """The query as Grafana's InfluxDB data source sends it. Macros: `$timeFilter`, `$__interval`, `$__range_s`,
    `$__range_ms`. Each `$variable` / `${variable}`: one value regex-escaped, several as (a|b|...), "全部" as the
    all value, unescaped."""
    macros = {"timeFilter": time_filter, "__timeFilter": time_filter, "interval": interval, "__interval": interval,
              "__range_s": str(range_s), "__range_ms": str(range_s * 1000)}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in macros:
            return macros[name]
        if name not in variables:
            raise ExpandError(f"undefined template variable ${name} in {textwrap.shorten(query, 160)!r}")
        chosen = tuple(variables[name])
        if chosen == (ALL_VALUE,):
            return ALL_VALUE
        values = [re.escape(v) for v in chosen]
        return values[0] if len(values) == 1 else "(" + "|".join(values) + ")"

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, query)


def time_bound(text: str, zone: tzinfo = timezone.utc) -> str:
    """A Grafana time (`now`, `now-24h`, an ISO date-time, in `zone` unless it has an offset, epoch milliseconds)
    as an InfluxQL time expression."""
    text = text.strip()
    if text == "now":
        return "now()"
    relative = re.fullmatch(r"now-(\d+)([smhdw])", text)
    if relative:
        return f"now() - {relative.group(1)}{relative.group(2)}"
    return f"{_epoch_ms(text, zone)}ms"


def time_filter(start: str, end: str, zone: tzinfo = timezone.utc) -> str:
    """`$timeFilter` for a range, as Grafana writes it: no upper bound when the range ends now."""
    lower = f"time >= {time_bound(start, zone)}"
    return lower if end.strip() == "now" else f"{lower} and time <= {time_bound(end, zone)}"


def range_seconds(start: str, end: str, now: datetime, zone: tzinfo = timezone.utc) -> tuple[float, float]:
    """The range as epoch seconds (start, end) at `now`."""
    return _seconds(start, now, zone), _seconds(end, now, zone)


def interval_for(span_seconds: float, points: int) -> str:
    """`$__interval` for a range drawn over `points` pixels: the span per point rounded to a nice step."""
    wanted = span_seconds / max(points, 1)
    step = next((step for bound, step in _ROUNDING if wanted < bound), 7 * 86400)
    return f"{step // 60}m" if step < 3600 else f"{step // 3600}h"


def _seconds(text: str, now: datetime, zone: tzinfo) -> float:
    text = text.strip()
    if text == "now":
        return now.timestamp()
    relative = re.fullmatch(r"now-(\d+)([smhdw])", text)
    if relative:
        return now.timestamp() - int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
    return _epoch_ms(text, zone) / 1000


def _epoch_ms(text: str, zone: tzinfo) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExpandError(f"unreadable time {text!r}: use now, now-<n><s|m|h|d|w>, an ISO date-time or epoch ms")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return int(moment.timestamp() * 1000)
