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

A real site is wired as its installer wired it: the device's optional `modbus` registry block (docs/registry.md)
says where its gateway is (`connection`), how it frames requests, the float32 byte order, and for single points
the unit id of their instrument, their register address and the instrument's byte order. The overrides are
applied to the derived layout, so everything not named stays where the layout puts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pymodbus import FramerType

from gkjk.registry import Device, Point
from ingest_twisted.field.registers import KIND_OF_QUANTITY, MAPS, Register, RegisterMap

#: Highest unit id a Modbus serial line (or a gateway in front of one) can address.
MAX_SLAVE_ID = 247
#: How requests travel to the gateway: Modbus TCP (MBAP header), or RTU frames (CRC) over TCP to a serial server.
FRAMERS = ("tcp", "rtu_over_tcp")
PYMODBUS_FRAMERS = {"tcp": FramerType.SOCKET, "rtu_over_tcp": FramerType.RTU}


class LayoutError(ValueError):
    """A device's instruments cannot be addressed as laid out (too many, or overrides that collide)."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how a data logger's gateway is reached."""

    host: str
    port: int
    framer: str = "tcp"
    byte_order: str = "ABCD"


def connection(device: Device, default: Connection) -> Connection:
    """The device's gateway: its registry `modbus` block where it says so, else `default`."""
    block = device.modbus
    if block is None:
        return default
    return Connection(block.host, block.port, block.framer or default.framer, block.byte_order or default.byte_order)


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
    byte_order: str = "ABCD"

    def bound(self, name: str) -> Binding | None:
        """The binding of the register with this name, if a point reads it."""
        return next((b for b in self.bindings if b.register.name == name), None)

    def registers(self) -> list[Register]:
        """What the instrument serves: the map, bound registers where the overrides moved them, and the map's
        unbound registers that do not overlap a moved one."""
        bound = {b.register.name: b.register for b in self.bindings}
        original = {(r.name, r.table): r.address for r in self.map.registers}
        moved = [r for r in bound.values() if r.address != original[r.name, r.table]]
        served = []
        for register in self.map.registers:
            if register.name in bound and register.table == bound[register.name].table:
                served.append(bound[register.name])
            elif not any(_overlap(register, m) for m in moved):
                served.append(register)
        return served


def _overlap(one: Register, other: Register) -> bool:
    return (one.table == other.table and one.address < other.address + other.words
            and other.address < one.address + one.words)


def _candidates(register_map: RegisterMap, point: Point) -> list[Register]:
    """Registers that may carry the point, best first."""
    fits = [r for r in register_map.registers if r.binds and r.quantity in (point.quantity, None)]
    exact = [r for r in fits if r.phase == point.phase]
    return exact if exact or point.phase is not None else fits


def instruments(device: Device, byte_order: str = "ABCD") -> list[Instrument]:
    """The instruments a device's points are read from (points of quantities no instrument measures are left out),
    with the overrides of the device's `modbus` block applied; `byte_order` where the registry names none."""
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
    if device.modbus is not None:
        byte_order = device.modbus.byte_order or byte_order
    for instrument in placed:
        instrument.byte_order = byte_order
    if device.modbus is not None and device.modbus.points:
        _override(device, placed)
    return placed


def _override(device: Device, placed: list[Instrument]) -> None:
    """Apply the `modbus.points` of the registry: unit ids, addresses and byte orders of a real site."""
    where = {b.point.factor.lower(): (instrument, n) for instrument in placed
             for n, b in enumerate(instrument.bindings)}
    unit_of: dict[int, tuple[int, str]] = {}  # layout slave -> (unit id, factor that set it)
    order_of: dict[int, tuple[str, str]] = {}
    for override in device.modbus.points:
        instrument, n = where[override.factor.lower()]
        name = f"device {device.mn}: modbus.points {override.factor}"
        what = f"{instrument.map.kind} of {instrument.facility}"
        for setting, chosen, value in (("unit_id", unit_of, override.unit_id),
                                       ("byte_order", order_of, override.byte_order)):
            if value is None:
                continue
            earlier = chosen.setdefault(instrument.slave_id, (value, override.factor))
            if earlier[0] != value:
                raise LayoutError(f"{name}: {setting} {value} but {earlier[1]} on the same instrument ({what}) "
                                  f"says {earlier[0]}")
        if override.address is not None:
            binding = instrument.bindings[n]
            instrument.bindings[n] = Binding(binding.point, replace(binding.register, address=override.address))
    for instrument in placed:
        layout_slave = instrument.slave_id
        instrument.slave_id = unit_of.get(layout_slave, (layout_slave, ""))[0]
        instrument.byte_order = order_of.get(layout_slave, (instrument.byte_order, ""))[0]
    _check_collisions(device, placed)


def _check_collisions(device: Device, placed: list[Instrument]) -> None:
    units: dict[int, Instrument] = {}
    for instrument in placed:
        other = units.setdefault(instrument.slave_id, instrument)
        if other is not instrument:
            raise LayoutError(f"device {device.mn}: unit id {instrument.slave_id} is given to two instruments: "
                              f"{other.map.kind} of {other.facility} ({_factors(other)}) and "
                              f"{instrument.map.kind} of {instrument.facility} ({_factors(instrument)})")
        for i, one in enumerate(instrument.bindings):
            for two in instrument.bindings[i + 1:]:
                if _overlap(one.register, two.register):
                    raise LayoutError(f"device {device.mn}: {one.point.factor} and {two.point.factor} overlap at "
                                      f"{one.register.table} address {one.register.address} of unit id "
                                      f"{instrument.slave_id}")


def _factors(instrument: Instrument) -> str:
    return ", ".join(b.point.factor for b in instrument.bindings)
