"""数据恒值(疑似造假): a metered value has not moved for `flat_hours` (24) while its facility ran; a real meter on a
running machine never repeats itself for a day, a logger replaying a made-up number does.

A minute is violated when, for one point of the facility,
- the `flat_hours` complete clock hours before the minute's hour each have readings, their lowest and highest
  values together span at most `flat_tolerance` (0: the very same number), and the facility ran through each of
  them (the lowest value of one of its run points in that hour means running: rules_plugins.history);
- the minute's own reading stays within that span (plus the tolerance) and the facility runs.
It is clear when the facility is off, when the reading leaves the span, or when those hours were not flat (or not
run through, or missing). A facility without run points of its own is judged by the production it serves (an
RTO's thermocouple). On/off signals (`switch`, `spray`) are not judged. The episode starts at the first such
minute, so it opens at the first full hour after `flat_hours` flat hours (plus `flat_minutes`, default 0), and
closes `hold_off_minutes` after the value moves. A blip inside an hour clears only that minute; the next hour's
look back then holds the moved hour and clears it for good.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise, PointRef
from rules_plugins import hookimpl
from rules_plugins.builtin.quality import facilities, label, merge, run_points, run_sources
from rules_plugins.history import HOUR, hour_of
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "{point} 连续 {hours} 小时数值无变化（恒为 {value}），数据恒值，疑似造假"
QUANTITIES = (  # every metered quantity but the on/off signals (switch, spray), constant by nature
    "current", "voltage", "active_power", "reactive_power", "apparent_power", "power_factor", "frequency", "energy",
    "reactive_energy", "demand", "fan_current", "temperature", "pressure", "ph", "carbon_hours", "run_time", "flow",
    "velocity", "concentration", "humidity")


class Flat:
    name = "flat_data"
    severity: Literal["high"] = "high"

    def conditions(self, site: Site) -> Iterator[Condition]:
        history = site.history
        if history is None:
            return
        hours, tolerance = int(site.thresholds["flat_hours"]), site.thresholds["flat_tolerance"]
        ran: dict[tuple[str, int], bool] = {}  # (facility, hour) -> ran through that hour

        def ran_through(sources: tuple[str, ...], hour: int) -> bool:
            for fid in sources:
                if (fid, hour) not in ran:
                    ran[fid, hour] = any(
                        (low := history.extreme(ref.device.mn, ref.point.factor.lower(), hour)) is not None
                        and site.is_on(ref, low[0]) for ref in run_points(site, fid))
                if ran[fid, hour]:
                    return True
            return False

        def span(ref: PointRef, sources: tuple[str, ...], hour: int) -> tuple[float, float] | Literal[False] | None:
            """Lowest and highest value over the `hours` complete hours before `hour` if flat and run through."""
            if not history.known(hour - hours * HOUR) or not history.known(hour - HOUR):
                return None
            low, high, key = float("inf"), float("-inf"), (ref.device.mn, ref.point.factor.lower())
            for before in range(hour - HOUR, hour - (hours + 1) * HOUR, -HOUR):
                extremes = history.extremes.get(key, before)
                if extremes is None:
                    return False
                low, high = min(low, extremes[0]), max(high, extremes[1])
                if high - low > tolerance or not ran_through(sources, before):
                    return False
            return low, high

        start, end = site.readings.start, site.readings.end
        hours_of_window = [(h, range(max(h, start), min(h + HOUR, end), 60)) for h in range(hour_of(start), end, HOUR)]
        for facility in facilities(site):
            sources = run_sources(site, facility)
            if not sources:
                continue
            spans = [(ref, [(minutes, span(ref, sources, hour)) for hour, minutes in hours_of_window])
                     for ref in site.points(facility.id, *QUANTITIES) if site.series(ref)]
            if site.quiet(self.name, facility.id) and not any(flat for _, by_hour in spans for _, flat in by_hour):
                continue  # nothing flat and nothing stored: the engine would write nothing
            producing = site.operating(sources)
            per_point = []
            for ref, by_hour in spans:
                series = site.series(ref)
                verdicts: dict[int, Verdict] = {}
                for minutes, flat in by_hour:
                    if flat is None:
                        continue
                    if not flat:
                        verdicts.update((minute, False) for minute in minutes if minute in series)
                        continue
                    for minute in minutes:
                        value = series.get(minute)
                        if value is None:
                            continue
                        if max(flat[1], value) - min(flat[0], value) > tolerance:
                            verdicts[minute] = False
                        elif (running := producing.get(minute)) is not None:
                            verdicts[minute] = running and {
                                "point": label(facility, ref), "hours": hours, "value": f"{value:g}"}
                per_point.append(verdicts)
            if per_point:
                yield Condition(facility.id, merge(per_point), int(site.thresholds["flat_minutes"]),
                                TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [Flat()] if enterprise.devices else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"flat_hours": 24, "flat_tolerance": 0, "flat_minutes": 0}

