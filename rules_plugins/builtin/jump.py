"""数据异常 (sudden jump): a value steps between two consecutive minutes by more than a running machine or a
process with inertia can, while its facility runs on both sides of the step (starting and stopping are not jumps).

The limit of a point is `jump_fraction` (0.8) of its `rated` value; points without `rated` use an absolute limit
for their quantity: `jump_temperature` (200 ℃ within a minute) or `jump_ph` (3 pH units). Other points without
`rated`, counters (energy, run hours) and on/off signals are not judged. Consecutive minutes are the minute means
of the readings (a reading stands for its upload interval, so a logger sending every 5 minutes compares 5 minutes
apart). The step's minute is violated (a spike is two: up, then down); `jump_minutes` (1) of them open the alarm.
A minute is clear when its step is within the limit, or when the facility was off on either side of a larger one.
A facility without run points of its own is judged by the production it serves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise, PointRef
from rules_plugins import hookimpl
from rules_plugins.builtin.quality import facilities, label, merge, run_sources
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "{point} 读数在一分钟内由 {before} 突变为 {after}（变化超过 {limit}），数据异常"
QUANTITIES = ("current", "fan_current", "voltage", "active_power", "reactive_power", "apparent_power", "demand",
              "temperature", "ph", "pressure", "flow", "velocity", "concentration")
ABSOLUTE = {"temperature": "jump_temperature", "ph": "jump_ph"}  # quantity -> threshold key, for points without rated


def spread(values: list[float | None]) -> float:
    """Highest minus lowest value: no step between two of them can be larger (a cheap first look)."""
    known = [v for v in values if v is not None]
    return max(known) - min(known) if known else 0.0


class Jump:
    name = "jump"
    severity: Literal["medium"] = "medium"

    def limit(self, site: Site, ref: PointRef) -> float | None:
        if ref.rated:
            return site.thresholds["jump_fraction"] * ref.rated
        key = ABSOLUTE.get(ref.quantity)
        return None if key is None else site.thresholds[key]

    def conditions(self, site: Site) -> Iterator[Condition]:
        start, end = site.readings.start, site.readings.end
        for facility in facilities(site):
            sources = run_sources(site, facility)
            if not sources:
                continue
            steps = []  # (point, limit, its minute means from the minute before the window)
            for ref in site.points(facility.id, *QUANTITIES):
                limit, series = self.limit(site, ref), site.series(ref)
                if limit is not None and series:
                    steps.append((ref, limit, [series.get(m) for m in range(start - 60, end, 60)]))
            if site.quiet(self.name, facility.id) and not any(spread(values) > limit for _, limit, values in steps):
                continue  # no step can be over a limit and nothing stored: the engine would write nothing
            producing = site.operating(sources)
            per_point = []
            for ref, limit, values in steps:
                verdicts: dict[int, Verdict] = {}
                for minute, before, after in zip(site.minutes, values, values[1:]):
                    if after is None or before is None:
                        continue
                    if abs(after - before) <= limit:
                        verdicts[minute] = False
                        continue
                    running = (producing.get(minute - 60), producing.get(minute))
                    if running == (True, True):
                        verdicts[minute] = {"point": label(facility, ref), "before": f"{before:g}",
                                            "after": f"{after:g}", "limit": f"{limit:g}"}
                    elif False in running:  # a start or a stop
                        verdicts[minute] = False
                per_point.append(verdicts)
            if per_point:
                yield Condition(facility.id, merge(per_point), int(site.thresholds["jump_minutes"]),
                                TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [Jump()] if enterprise.devices else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"jump_fraction": 0.8, "jump_temperature": 200, "jump_ph": 3, "jump_minutes": 1}
