"""Running-time counters the data logger keeps itself: registry points of quantity `carbon_hours` or `run_time`.

No instrument holds these (docs/field.md): a real 数采仪 integrates the run state of the point's facility and
reports the total, which the platform's activated-carbon rule compares with the design cycle. The state comes from
the facility's own run points on the same device (`current`, `fan_current`, `switch`: on above `on_threshold`,
else above `ON_FRACTION` of `rated`; a switch at 1), as the rule engine reads run states. An adsorber usually has
no meter of its own: without run points, a treatment facility takes the fans (`kind: fan`) of its enterprise that
serve one of the same production facilities, because the carbon adsorbs only while a fan pulls air through it.

Each record credits the time since the previous record (at most one RtdInterval, nothing across an outage or a
restart) if the facility runs at that record. The totals are kept in `counters.json` in the logger's store, written
atomically with the queues, so they survive restarts and power cuts; deleting a factor's entry resets it (carbon
replaced).

The same steps make the day's run time of every facility the device meters (HJ 212 2041, ``SB<n>-RT`` in hours):
`Device.equipment_numbers` (the registry) gives each facility of the device its ``SB`` number,
`RunCounters.close_day` the hours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from twisted.logger import Logger

from gkjk.registry import COMPUTED_QUANTITIES, Device, Enterprise, Point
from ingest_twisted.field.store import write_json

log = Logger()

#: Fraction of `rated` above which a point without `on_threshold` counts as running (the rule engine's default
#: `on_fraction`, rules_plugins/builtin/run_state.py).
ON_FRACTION = 0.1
RUN_QUANTITIES = ("current", "fan_current", "switch")
#: Seconds in each unit a counter point may have (docs/registry.md: carbon_hours h; run_time h, min, s).
SECONDS_PER_UNIT = {"h": 3600.0, "min": 60.0, "s": 1.0}


def is_on(point: Point, value: float) -> bool | None:
    """The point's run state at `value`; None if the registry does not say how to tell."""
    if point.quantity == "switch":
        return value >= 0.5
    if point.on_threshold is not None:
        return value > point.on_threshold
    if point.rated is not None:
        return value > ON_FRACTION * point.rated
    return None


def run_points(device: Device, enterprise: Enterprise, facility_id: str) -> list[Point]:
    """The device's points whose state tells whether `facility_id` runs (see the module docstring)."""

    def readable(facility_ids: set[str]) -> list[Point]:
        return [p for p in device.points if p.facility in facility_ids and p.quantity in RUN_QUANTITIES
                and is_on(p, 0.0) is not None]

    own = readable({facility_id})
    facility = enterprise.facility(facility_id)
    if own or facility is None or facility.role != "treatment":
        return own
    fans = {t.id for t in enterprise.facilities.treatment
            if t.kind == "fan" and t.id != facility_id and set(t.serves) & set(facility.serves)}
    return readable(fans)


@dataclass(slots=True)
class Counter:
    point: Point
    sources: list[Point]
    seconds: float = 0.0


class RunCounters:
    """The device's counter points and its facilities' run time of the day, advanced at every real-time record;
    the counters are persisted in `path`."""

    def __init__(self, device: Device, enterprise: Enterprise, path: Path) -> None:
        self.path = path
        stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        self.counters = [Counter(p, run_points(device, enterprise, p.facility), float(stored.get(p.factor, 0.0)))
                         for p in device.points if p.quantity in COMPUTED_QUANTITIES]
        for counter in self.counters:
            if not counter.sources:
                log.warn("MN {mn}: {factor} ({facility}) has no run points on this device: it will not count",
                         mn=device.mn, factor=counter.point.factor, facility=counter.point.facility)
        #: Run points of each facility whose run state can be told, by its equipment number (2041).
        self.facilities = {number: sources for facility, number in device.equipment_numbers().items()
                           if (sources := run_points(device, enterprise, facility))}
        self.day_seconds = dict.fromkeys(self.facilities, 0.0)
        self._last: datetime | None = None
        self._unsaved = False

    def __bool__(self) -> bool:
        return bool(self.counters or self.facilities)

    def pause(self) -> None:
        """Nothing was measured (gateway unreachable): the next record credits no time."""
        self._last = None

    def advance(self, moment: datetime, values: dict[str, float], max_step: float) -> dict[str, float]:
        """Credit the time since the previous record to the counters and the day's run time of the facilities
        that run; the counters' totals in their units."""
        step = 0.0 if self._last is None else min(max((moment - self._last).total_seconds(), 0.0), max_step)
        self._last = moment
        self._unsaved = bool(self.counters)
        totals = {}
        for counter in self.counters:
            if _runs(counter.sources, values):
                counter.seconds += step
            totals[counter.point.factor] = counter.seconds / SECONDS_PER_UNIT[counter.point.unit]
        for number, sources in self.facilities.items():
            if _runs(sources, values):
                self.day_seconds[number] += step
        return totals

    def close_day(self) -> dict[int, float]:
        """Run hours of each facility since the last call (the day that just closed), by equipment number."""
        hours = {number: seconds / 3600 for number, seconds in self.day_seconds.items()}
        self.day_seconds = dict.fromkeys(self.facilities, 0.0)
        return hours

    def save(self) -> None:
        """Write the totals durably (temporary file, fsync, rename), if they were advanced since the last save."""
        if not self._unsaved:
            return
        self._unsaved = False
        write_json(self.path, {c.point.factor: c.seconds for c in self.counters})


def _runs(sources: list[Point], values: dict[str, float]) -> bool:
    """Whether any of the run points read in `values` is on."""
    return any(is_on(p, values[p.factor]) for p in sources if p.factor in values)
