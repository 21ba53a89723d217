"""Emergency control (应急管控) of production lines: what a line must do during an alert period, and whether it did.

A line is under control when its enterprise is on the 应急管控 list and the line has an `emergency_action` in the
registry: 停产 (must be off, by the run state every rule uses) or 限产 (its load must stay at or under a cap).
The period's level may tighten that (its file's `[levels.<level>]`: `stop_limited`, `load_cap`). One judgement
per line and minute serves both the `emergency` rule and the `control` measurement, so the dashboard shows what
the alarms were raised by. The load of a line, in % (docs/plugins.md, "Emergency control"):

- by power when the facility has `rated_power` (kW) and `active_power` points: their sum (phase-less points only
  if there are any, else the phases) over `rated_power`; a minute is judged only if every one of them reported;
- else by current: the mean over its `current` points that have a `normal` (else `rated`) of value / that base;
- else the line's load is unknown and a 限产 line is judged only when it is off (compliant).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gkjk.registry import Enterprise, ProductionFacility, Registry
from ingest_twisted.lineprotocol import point
from rules_plugins.emergency_periods import Period, strictest
from rules_plugins.site import Site

CONTROL_LIST = "应急管控"
DEFAULT_LOAD_CAP = 0.5  # of a 限产 line without its own load_cap (threshold `emergency_load_cap`)
KW = {"kW": 1.0, "W": 0.001, "MW": 1000.0}


@dataclass(frozen=True, slots=True)
class Judgement:
    """One controlled line in one minute of a period."""

    period: Period
    action: str  # 停产 or 限产, after the level's overrides
    cap: float | None  # % of the load base, 限产 only
    run: bool | None
    load: float | None  # %, rounded to 0.1 as stored and compared
    compliant: bool | None  # None: the data cannot tell


def controlled(enterprise: Enterprise) -> list[ProductionFacility]:
    """Lines with an emergency measure, if the enterprise is on the emergency-control list."""
    if CONTROL_LIST not in enterprise.control_lists:
        return []
    return [f for f in enterprise.facilities.production if f.emergency_action]


def requirement(line: ProductionFacility, period: Period, default_cap: float) -> tuple[str, float | None]:
    """(action, cap in %) a line must keep to during a period."""
    if line.emergency_action == "停产" or period.stop_limited:
        return "停产", None
    cap = line.load_cap if line.load_cap is not None else default_cap
    if period.load_cap is not None:
        cap = min(cap, period.load_cap)
    return "限产", round(cap * 100, 1)


def loads(site: Site, line: ProductionFacility) -> Mapping[int, float]:
    """Minute -> load of a production line in % (by power, else by current; see the module docstring)."""
    power = site.points(line.id, "active_power")
    if line.rated_power and power:
        totals = [p for p in power if p.point.phase is None] or list(power)
        series = [(site.series(p), KW.get(p.point.unit, 1.0)) for p in totals]
        found: dict[int, float] = {}
        for minute in set.intersection(*(set(s) for s, _ in series)):
            found[minute] = 100.0 * sum(s[minute] * scale for s, scale in series) / line.rated_power
        return found
    parts: dict[int, list[float]] = {}
    for ref in site.points(line.id, "current"):
        if base := ref.normal or ref.rated:
            for minute, value in site.series(ref).items():
                parts.setdefault(minute, []).append(100.0 * value / base)
    return {minute: sum(p) / len(p) for minute, p in parts.items()}


def judge(site: Site) -> dict[str, dict[int, Judgement]]:
    """Per controlled line, a judgement for every minute of the window that lies in a period covering it."""
    if not site.periods:
        return {}
    in_force = {m: p for m in site.minutes if (p := strictest(site.periods, m)) is not None}
    if not in_force:
        return {}
    default_cap = site.thresholds.get("emergency_load_cap", DEFAULT_LOAD_CAP)  # the rule may be disabled
    found: dict[str, dict[int, Judgement]] = {}
    for line in controlled(site.enterprise):
        line_loads = loads(site, line)
        judged = found[line.id] = {}
        for minute, period in in_force.items():
            action, cap = requirement(line, period, default_cap)
            run = site.running(line.id, minute)
            load = line_loads.get(minute)
            load = None if load is None else round(load, 1)
            if action == "停产":
                compliant = None if run is None else not run
            elif load is not None:
                compliant = load <= cap
            else:
                compliant = True if run is False else None
            judged[minute] = Judgement(period, action, cap, run, load, compliant)
    return found


class ControlWriter:
    """Lines for the `control` points (per controlled line and minute in a period) and the `emergency` points
    (per period, county and minute in force) that differ from what was written; `commit` once they are stored."""

    def __init__(self) -> None:
        self._written: dict[tuple[Any, ...], int] = {}  # key -> hash of the line written (memory: one int)
        self._pending: dict[tuple[Any, ...], int] = {}

    def lines(self, site: Site, judgements: Mapping[str, Mapping[int, Judgement]]) -> list[bytes]:
        enterprise = site.enterprise
        lines = []
        for fac, minutes in judgements.items():
            for minute, j in minutes.items():
                if j.compliant is None:
                    continue
                tags = {"ent": enterprise.id, "county": enterprise.county, "fac": fac, "level": j.period.level,
                        "action": j.action}
                fields: dict[str, Any] = {"period": j.period.name, "compliant": int(j.compliant)}
                if j.run is not None:
                    fields["run"] = int(j.run)
                if j.load is not None:
                    fields["load"] = j.load
                if j.cap is not None:
                    fields["cap"] = j.cap
                lines.extend(self._changed(("control", enterprise.id, fac, minute),
                                           point("control", tags, fields, minute)))
        return lines

    def periods(self, periods: Iterable[Period], registry: Registry, minutes: range) -> list[bytes]:
        """Per period in force and county it covers: how many controlled lines it covers, every minute."""
        lines = []
        for period in periods:
            active = [m for m in minutes if period.active(m)]
            if not active:
                continue
            per_county: dict[str, int] = {}
            for enterprise in registry.enterprises.values():
                if period.covers(enterprise) and (count := len(controlled(enterprise))):
                    per_county[enterprise.county] = per_county.get(enterprise.county, 0) + count
            for county, count in sorted(per_county.items()):
                tags = {"period": period.id, "level": period.level, "county": county}
                fields = {"name": period.name, "scope": period.scope, "start": period.start, "end": period.end,
                          "lines": count}
                for minute in active:
                    lines.extend(self._changed(("emergency", period.id, county, minute),
                                               point("emergency", tags, fields, minute)))
        return lines

    def _changed(self, key: tuple[Any, ...], line: bytes) -> list[bytes]:
        self._pending[key] = digest = hash(line)
        return [] if self._written.get(key) == digest else [line]

    def commit(self) -> None:
        """Remember this evaluation's points (after they were written)."""
        self._written, self._pending = self._pending, {}
