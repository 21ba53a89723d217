"""One enterprise's minute-by-minute readings, and the run state and load every rule derives from them.

Run state lives here rather than in each rule so that `treatment_off`, `low_load` and `combustion` agree on
when a facility runs, and so the engine can store the same state it judged by (measurement `state`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gkjk.registry import Enterprise, PointRef, Registry

if TYPE_CHECKING:
    from rules_plugins.builtin.carbon import Ledger
    from rules_plugins.emergency_periods import Period
    from rules_plugins.history import History
    from rules_plugins.watch import Watch

RUN_QUANTITIES = frozenset({"current", "fan_current", "switch"})


def tells_run_state(points: Iterable[PointRef]) -> bool:
    """Whether a facility's points include one its run state can be read from: a switch, or a current with an
    on-threshold or a rated value."""
    return any(p.quantity in RUN_QUANTITIES and (p.on_threshold is not None or p.rated is not None
                                                 or p.quantity == "switch") for p in points)


@dataclass(frozen=True, slots=True)
class Readings:
    """Minute means of the `rtd` measurement for a window; a reading stands until the next one is due."""

    start: int  # epoch s, first minute of the window
    end: int  # epoch s, end of the window (exclusive, on a minute)
    first: int  # epoch s, first minute read: rules may look back to it, alarms are judged from `start`
    values: Mapping[tuple[str, str], Mapping[int, float]] = field(default_factory=dict)  # (MN, factor) -> minute
    present: Mapping[str, frozenset[int]] = field(default_factory=dict)  # MN -> minutes with a standing reading
    records: Mapping[str, Mapping[int, int]] = field(default_factory=dict)  # MN -> minute -> records received
    events: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)  # MN -> (epoch s, 3020 Event)

    @property
    def minutes(self) -> range:
        return range(self.start, self.end, 60)


class Site:
    """What the rules see of one enterprise: its registry entry, its readings and its thresholds."""

    def __init__(
        self, enterprise: Enterprise, registry: Registry, readings: Readings, thresholds: Mapping[str, float],
        watch: Watch, periods: Sequence[Period] = (), carbon: Ledger | None = None, history: History | None = None,
        alarmed: Collection[tuple[str, str, str]] = (),
    ) -> None:
        self.enterprise = enterprise
        self.registry = registry
        self.readings = readings
        self.thresholds = thresholds
        self.watch = watch
        self.carbon = carbon  # activated-carbon replacements and hours before the window (builtin/carbon.py)
        self.periods = periods  # emergency alert periods covering the enterprise within the window (control.py)
        self.history = history  # hourly statistics before the window (rules_plugins.history)
        self.alarmed = alarmed  # (enterprise, subject, rule): series with an open episode or events in the window
        self._running: dict[str, dict[int, bool]] = {}  # facility -> minute -> state, computed once per facility
        self._load: dict[str, dict[int, float]] = {}
        self._operating: dict[tuple[str, ...], Mapping[int, bool]] = {}
        self._point_states: dict[tuple[str, str], dict[int, bool]] = {}  # (MN, factor) -> minute -> state
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

    def series(self, ref: PointRef) -> Mapping[int, float]:
        """Minute -> value of a point, over the minutes read."""
        return self.readings.values.get((ref.device.mn, ref.point.factor.lower()), {})

    def value(self, ref: PointRef, minute: int) -> float | None:
        return self.series(ref).get(minute)

    def mean(self, refs: Iterable[PointRef], minute: int) -> float | None:
        """Mean over the points that have a reading this minute (the phases of a fan, two thermocouples)."""
        known = [v for v in (self.value(r, minute) for r in refs) if v is not None]
        return sum(known) / len(known) if known else None

    def present(self, mn: str, minute: int) -> bool:
        return minute in self.readings.present.get(mn, ())

    def watched(self, mn: str) -> int | None:
        """The minute the engine started watching this device (rules_plugins.watch)."""
        return self.watch.watched.get(mn)

    def first_seen(self, mn: str) -> int | None:
        """The first minute a reading of this device stood, this window included; None if never."""
        return self.watch.seen.get(mn)

    def point_running(self, ref: PointRef, minute: int) -> bool | None:
        """On when above the point's on_threshold, else above `on_fraction` of rated; None if it cannot tell."""
        value, on = self.value(ref, minute), self._on(ref)
        return None if value is None or on is None else on(value)

    def point_states(self, ref: PointRef) -> Mapping[int, bool]:
        """Minute -> `point_running` of a point over the minutes read, where it can tell (computed once)."""
        key = (ref.device.mn, ref.point.factor)
        states = self._point_states.get(key)
        if states is None:
            on = self._on(ref)
            states = self._point_states[key] = {} if on is None else {m: on(v) for m, v in self.series(ref).items()}
        return states

    def quiet(self, rule: str, subject: str) -> bool:
        """Nothing stored for this alarm series (no open episode, no event in the window): a condition clear
        throughout would write nothing, so a rule may skip building it."""
        return (self.enterprise.id, subject, rule) not in self.alarmed

    def is_on(self, ref: PointRef, value: float) -> bool | None:
        """Whether this value of a run point means running (an hour's lowest value: ran the whole hour)."""
        on = self._on(ref)
        return None if on is None else on(value)

    def _on(self, ref: PointRef) -> Callable[[float], bool] | None:
        if ref.quantity == "switch":
            return lambda value: value >= 0.5
        if ref.on_threshold is not None:
            threshold = ref.on_threshold
            return lambda value: value > threshold
        if ref.quantity == "spray":  # a pump's on/off signal unless it has an on_threshold
            return lambda value: value >= 0.5
        if ref.rated is not None:
            threshold = self.thresholds["on_fraction"] * ref.rated
            return lambda value: value > threshold
        return None

    def running(self, facility_id: str, minute: int) -> bool | None:
        """A facility runs if any of its run points says so; off only if all that report say off."""
        states = self._running.get(facility_id)
        return (self.run_states(facility_id) if states is None else states).get(minute)

    def run_states(self, facility_id: str) -> Mapping[int, bool]:
        """Minute -> run state of a facility over the minutes read (computed once: every rule asks)."""
        states = self._running.get(facility_id)
        if states is None:
            judged = [(ref, on) for ref in self.points(facility_id, *RUN_QUANTITIES) if (on := self._on(ref))]
            if len(judged) == 1:  # the common case, without the merge
                states = {m: on(value) for m, value in self.series(judged[0][0]).items()}
            else:
                states = {}
                for ref, on in judged:
                    for m, value in self.series(ref).items():
                        states[m] = states.get(m, False) or on(value)
            self._running[facility_id] = states
        return states

    def metered(self, facility_id: str) -> bool:
        """Whether the facility has any point its run state can be read from."""
        return tells_run_state(self.points(facility_id, *RUN_QUANTITIES))

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

    def operating(self, facility_ids: Sequence[str]) -> Mapping[int, bool]:
        """Minute -> True when any of the facilities runs, False when every one is known off; minutes where
        neither holds are missing. `running_of` for every minute at once (rules ask it per minute, per rule)."""
        key = tuple(facility_ids)
        operating = self._operating.get(key)
        if operating is None:
            if len(key) == 1:
                operating = self.run_states(key[0])
            else:
                operating = {m: bool(on) for m in self.minutes_read for on, known in (self.running_of(key, m),)
                             if on or known}
            self._operating[key] = operating
        return operating

    @property
    def minutes_read(self) -> range:
        """Every minute read, the context before the window included."""
        return range(self.readings.first, self.readings.end, 60)

    def load(self, facility_id: str, minute: int) -> float | None:
        """Fan current as a percentage of its normal running current (or of rated), mean over phases."""
        return self.loads(facility_id).get(minute)

    def loads(self, facility_id: str) -> Mapping[int, float]:
        """Minute -> fan load of a facility over the minutes read."""
        loads = self._load.get(facility_id)
        if loads is None:
            based = [(ref, base) for ref in self.points(facility_id, "fan_current")
                     if (base := ref.normal or ref.rated)]
            if len(based) == 1:  # the common case: the mean of one value is that value
                ref, base = based[0]
                loads = {m: 100.0 * value / base for m, value in self.series(ref).items()}
            else:
                parts: dict[int, list[float]] = {}
                for ref, base in based:
                    for m, value in self.series(ref).items():
                        parts.setdefault(m, []).append(100.0 * value / base)
                loads = {m: sum(p) / len(p) for m, p in parts.items()}
            self._load[facility_id] = loads
        return loads
