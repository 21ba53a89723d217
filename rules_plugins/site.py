"""One enterprise's minute-by-minute readings, and the run state and load every rule derives from them.

Run state lives here rather than in each rule so that `treatment_off`, `low_load` and `combustion` agree on
when a facility runs, and so the engine can store the same state it judged by (measurement `state`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gkjk.registry import Enterprise, PointRef, Registry

RUN_QUANTITIES = frozenset({"current", "fan_current", "switch"})


@dataclass(frozen=True, slots=True)
class Readings:
    """Minute means of the `rtd` measurement for a window; a reading stands until the next one is due."""

    start: int  # epoch s, first minute of the window
    end: int  # epoch s, end of the window (exclusive, on a minute)
    values: Mapping[tuple[str, str], Mapping[int, float]] = field(default_factory=dict)  # (MN, factor) -> minute
    present: Mapping[str, frozenset[int]] = field(default_factory=dict)  # MN -> minutes with a standing reading

    @property
    def minutes(self) -> range:
        return range(self.start, self.end, 60)


class Site:
    """What the rules see of one enterprise: its registry entry, its readings and its thresholds."""

    def __init__(
        self, enterprise: Enterprise, registry: Registry, readings: Readings, thresholds: Mapping[str, float]
    ) -> None:
        self.enterprise = enterprise
        self.registry = registry
        self.readings = readings
        self.thresholds = thresholds
        self._running: dict[tuple[str, int], bool | None] = {}
        self._points: dict[tuple[str, tuple[str, ...]], tuple[PointRef, ...]] = {}

    @property
    def minutes(self) -> range:
        return self.readings.minutes

    def points(self, facility_id: str, *quantities: str) -> tuple[PointRef, ...]:
        """Points of a facility measuring one of `quantities` (asked every minute, so kept)."""
        key = (facility_id, quantities)
        if key not in self._points:
            self._points[key] = tuple(
                p for p in self.registry.points_of(self.enterprise.id, facility_id) if p.quantity in quantities)
        return self._points[key]

    def value(self, ref: PointRef, minute: int) -> float | None:
        return self.readings.values.get((ref.device.mn, ref.point.factor.lower()), {}).get(minute)

    def mean(self, refs: Iterable[PointRef], minute: int) -> float | None:
        """Mean over the points that have a reading this minute (the phases of a fan, two thermocouples)."""
        known = [v for v in (self.value(r, minute) for r in refs) if v is not None]
        return sum(known) / len(known) if known else None

    def present(self, mn: str, minute: int) -> bool:
        return minute in self.readings.present.get(mn, ())

    def point_running(self, ref: PointRef, minute: int) -> bool | None:
        """On when above the point's on_threshold, else above `on_fraction` of rated; None if it cannot tell."""
        value = self.value(ref, minute)
        if value is None:
            return None
        if ref.quantity == "switch":
            return value >= 0.5
        if ref.on_threshold is not None:
            return value > ref.on_threshold
        if ref.rated is not None:
            return value > self.thresholds["on_fraction"] * ref.rated
        return None

    def running(self, facility_id: str, minute: int) -> bool | None:
        """A facility runs if any of its run points says so; off only if all that report say off."""
        key = (facility_id, minute)
        if key not in self._running:
            states = [self.point_running(r, minute) for r in self.points(facility_id, *RUN_QUANTITIES)]
            self._running[key] = True if True in states else False if False in states else None
        return self._running[key]

    def metered(self, facility_id: str) -> bool:
        """Whether the facility has any point its run state can be read from."""
        return any(p.on_threshold is not None or p.rated is not None or p.quantity == "switch"
                   for p in self.points(facility_id, *RUN_QUANTITIES))

    def running_of(self, facility_ids: Iterable[str], minute: int) -> tuple[list[str], bool]:
        """Ids of the facilities running this minute, and whether every one of them has a known state."""
        on, known = [], True
        for fid in facility_ids:
            state = self.running(fid, minute)
            if state:
                on.append(fid)
            elif state is None:
                known = False
        return on, known

    def load(self, facility_id: str, minute: int) -> float | None:
        """Fan current as a percentage of its normal running current (or of rated), mean over phases."""
        loads = []
        for ref in self.points(facility_id, "fan_current"):
            base = ref.normal or ref.rated
            value = self.value(ref, minute)
            if base and value is not None:
                loads.append(100.0 * value / base)
        return sum(loads) / len(loads) if loads else None
