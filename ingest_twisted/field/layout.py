"""How a registry device's points sit on Modbus instruments: which slave id, which register.

The registry says what a data logger reports (factor, facility, quantity, phase); it does not say how the logger
reads it. This module decides that deterministically, so that the Modbus simulator serves each point where the
generated Telegraf config reads it, without a second file to keep in step:

* each point goes to an instrument of the kind `registers.KIND_OF_QUANTITY` names for its quantity, measuring the
  point's facility only (a facility's meter, its fan's current transducer, its digital-input module);
* within an instrument a point takes the register of its quantity and phase (a point without phase takes the
  total/average register, or on a current transducer the first free channel); if that register is taken by an
  earlier point, the point goes to the next instrument of that kind on the facility, or a new one;
* every transmitter measures one point;
* slave ids count from 1 in the order instruments are first needed, following the order of the points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gkjk.registry import Device, Point
from ingest_twisted.field.registers import KIND_OF_QUANTITY, MAPS, Register, RegisterMap

#: Highest unit id a Modbus serial line (or a gateway in front of one) can address.
MAX_SLAVE_ID = 247


class LayoutError(ValueError):
    """A device has more instruments than one Modbus line can address."""


@dataclass(frozen=True, slots=True)
class Binding:
    """A registry point read from one register."""

    point: Point
    register: Register


@dataclass(slots=True)
class Instrument:
    """One Modbus slave on the data logger's line, measuring one facility."""

    slave_id: int
    map: RegisterMap
    facility: str
    bindings: list[Binding] = field(default_factory=list)

    def bound(self, name: str) -> Binding | None:
        """The binding of the register with this name, if a point reads it."""
        return next((b for b in self.bindings if b.register.name == name), None)


def _candidates(register_map: RegisterMap, point: Point) -> list[Register]:
    """Registers that may carry the point, best first."""
    fits = [r for r in register_map.registers if r.binds and r.quantity in (point.quantity, None)]
    exact = [r for r in fits if r.phase == point.phase]
    return exact if exact or point.phase is not None else fits


def instruments(device: Device) -> list[Instrument]:
    """The instruments a device's points are read from (points of quantities no instrument measures are left out)."""
    placed: list[Instrument] = []
    for point in device.points:
        kind = KIND_OF_QUANTITY.get(point.quantity)
        if kind is None:
            continue
        register_map = MAPS[kind]
        candidates = _candidates(register_map, point)
        for instrument in placed:
            if instrument.map is not register_map or instrument.facility != point.facility:
                continue
            free = [r for r in candidates if instrument.bound(r.name) is None]
            if free:
                instrument.bindings.append(Binding(point, free[0]))
                break
        else:
            if len(placed) == MAX_SLAVE_ID:
                raise LayoutError(f"device {device.mn}: more than {MAX_SLAVE_ID} Modbus instruments needed")
            placed.append(Instrument(len(placed) + 1, register_map, point.facility, [Binding(point, candidates[0])]))
    return placed
