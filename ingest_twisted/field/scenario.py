"""What happens at a simulated site: start time, clock speed, production shifts, faults at given times.

A scenario is a small TOML file (format in docs/field.md, example in config/scenarios/). Faults run for a window of
simulated minutes counted from the scenario's start; those of `ingest_twisted.simulator.Faults` change the values
the device model produces, the others change how the Modbus side answers.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ingest_twisted.simulator import Faults

#: Faults of the device model (values): production on, treatment off; fan at low load; RTO below temperature;
#: spray pump off while the fan runs; every value frozen.
MODEL_FAULTS: tuple[str, ...] = tuple(f.name for f in fields(Faults))
#: Faults of the Modbus side: the gateway is unreachable (power loss); registers stop updating; a slave does not
#: answer (the gateway replies with exception 0x0B).
LINK_FAULTS = ("power_loss", "stale", "no_response")
FAULTS = MODEL_FAULTS + LINK_FAULTS


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Event:
    """A fault from `at` to `at + duration` after the start, on one device (MN) and slave, or on all of them."""

    fault: str
    at: timedelta
    duration: timedelta
    mn: str | None = None
    slave: int | None = None

    def active(self, elapsed: timedelta) -> bool:
        return self.at <= elapsed < self.at + self.duration

    def applies(self, mn: str) -> bool:
        return self.mn is None or self.mn == mn.upper()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A site's simulated day; every field has a default, so an empty file (or none) is a normal day from now."""

    start: datetime | None = None
    speed: float = 1.0
    seed: int = 1
    noise: float = 0.0
    shifts: tuple[tuple[float, float], ...] | None = None
    lead: timedelta = timedelta(minutes=10)
    lag: timedelta = timedelta(minutes=10)
    events: tuple[Event, ...] = field(default=())

    def active(self, elapsed: timedelta) -> list[Event]:
        """Events in force `elapsed` after the start."""
        return [e for e in self.events if e.active(elapsed)]


_TOP = {"start", "speed", "seed", "noise", "schedule", "events"}
_SCHEDULE = {"shifts", "lead_minutes", "lag_minutes"}
_EVENT = {"fault", "at", "minutes", "mn", "slave"}


def _number(value: Any, where: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ScenarioError(f"{where}: must be in [{low}, {high if high is not None else 'inf'}], got {value}")
    return float(value)


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table.keys() - allowed:
        raise ScenarioError(f"{where}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _event(item: Any, where: str) -> Event:
    if not isinstance(item, dict):
        raise ScenarioError(f"{where}: must be a table")
    _unknown(item, _EVENT, f"{where}.")
    fault = item.get("fault")
    if fault not in FAULTS:
        raise ScenarioError(f"{where}.fault: unknown fault {fault!r} (one of {', '.join(FAULTS)})")
    for key in ("at", "minutes"):
        if key not in item:
            raise ScenarioError(f"{where}.{key}: required")
    mn = item.get("mn")
    if mn is not None and not isinstance(mn, str):
        raise ScenarioError(f"{where}.mn: must be a string")
    slave = item.get("slave")
    if slave is not None:
        if fault not in ("stale", "no_response"):
            raise ScenarioError(f"{where}.slave: only for stale and no_response")
        slave = int(_number(slave, f"{where}.slave", 1, 247))
    return Event(fault, timedelta(minutes=_number(item["at"], f"{where}.at", 0)),
                 timedelta(minutes=_number(item["minutes"], f"{where}.minutes", 0)),
                 mn.upper() if mn else None, slave)


def parse_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    """Validate a scenario read from TOML; the first problem raises ScenarioError naming `source` and the key."""
    try:
        _unknown(data, _TOP, "")
        start = data.get("start")
        if start is not None and not isinstance(start, datetime):
            raise ScenarioError(f"start: must be a local date-time such as 2024-05-06T07:30:00, got {start!r}")
        if start is not None and start.tzinfo is not None:
            raise ScenarioError("start: give local wall time without a UTC offset")
        schedule = data.get("schedule", {})
        if not isinstance(schedule, dict):
            raise ScenarioError("schedule: must be a table ([schedule])")
        _unknown(schedule, _SCHEDULE, "schedule.")
        shifts = schedule.get("shifts")
        if shifts is not None:
            if not isinstance(shifts, list):
                raise ScenarioError("schedule.shifts: must be a list of [from_hour, to_hour]")
            parsed = []
            for i, shift in enumerate(shifts):
                where = f"schedule.shifts[{i}]"
                if not isinstance(shift, list) or len(shift) != 2:
                    raise ScenarioError(f"{where}: must be [from_hour, to_hour]")
                begin, end = _number(shift[0], where, 0, 24), _number(shift[1], where, 0, 24)
                if begin >= end:
                    raise ScenarioError(f"{where}: from_hour must be before to_hour")
                parsed.append((begin, end))
            shifts = tuple(parsed)
        events = data.get("events", [])
        if not isinstance(events, list):
            raise ScenarioError("events: must be an array of tables ([[events]])")
        return Scenario(
            start=start,
            speed=_number(data.get("speed", 1.0), "speed", 0.001),
            seed=int(_number(data.get("seed", 1), "seed", 0)),
            noise=_number(data.get("noise", 0.0), "noise", 0.0, 1.0),
            shifts=shifts,
            lead=timedelta(minutes=_number(schedule.get("lead_minutes", 10), "schedule.lead_minutes", 0)),
            lag=timedelta(minutes=_number(schedule.get("lag_minutes", 10), "schedule.lag_minutes", 0)),
            events=tuple(_event(item, f"events[{i}]") for i, item in enumerate(events)),
        )
    except ScenarioError as error:
        raise ScenarioError(f"{source}: {error}") from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ScenarioError(f"{path}: {error}") from None
    return parse_scenario(data, str(path))
