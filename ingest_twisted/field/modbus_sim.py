"""Modbus TCP servers playing one enterprise's field instruments, driven by the fleet simulator's device model.

Each registry device (data logger) becomes a Modbus TCP gateway on its own port (`port_base` + its index in the
enterprise file) with the device's instruments as slaves, laid out by `layout.instruments`. Every second the
`ingest_twisted.simulator.DeviceModel` of the device produces the values (production schedule, faults); registers
that no registry point reads get values from the same model through extra points of the right quantity, so the
whole register map of a meter looks alive. A scenario (`scenario.py`) sets the clock, shifts and faults.

pymodbus runs on asyncio; this module keeps to its own event loop (`gkjk modbus-sim` is a separate process) and
never touches the Twisted reactor.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from gkjk.registry import Device, Enterprise, Point, Registry
from ingest_twisted.field import layout
from ingest_twisted.field.registers import BYTE_ORDERS, Register, float32_words
from ingest_twisted.field.scenario import MODEL_FAULTS, Scenario
from ingest_twisted.simulator import DeviceModel, Faults, Schedule

#: Phase voltage (kV) and power factor used to size the power registers of a meter from its rated current.
PHASE_KV = 0.22
POWER_FACTOR = 0.92
#: Rated current (A) of a meter or transducer none of whose points gives one.
DEFAULT_RATED_CURRENT = 50.0
#: Counters: the meter's noise never makes them run backwards.
_COUNTERS = frozenset({"energy", "reactive_energy"})
_POWERS = frozenset({"active_power", "reactive_power", "apparent_power", "demand", "energy", "reactive_energy"})
#: Modbus read function code -> register table.
_TABLE_OF_FUNCTION = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_TABLES = ("coil", "discrete", "holding", "input")  # the order SimDevice takes its four blocks in


def _rated_current(instrument: layout.Instrument) -> float:
    """The instrument's rated current, from a bound current point, else from a bound power point."""
    points = [b.point for b in instrument.bindings if b.point.rated]
    for point in points:
        if point.quantity in ("current", "fan_current"):
            return point.rated
    for point in points:
        if point.quantity in ("active_power", "apparent_power", "demand"):
            total = point.rated if point.phase is None else 3 * point.rated
            return total / (3 * PHASE_KV * POWER_FACTOR)
    return DEFAULT_RATED_CURRENT


def _shadow_points(instrument: layout.Instrument) -> dict[str, Point]:
    """Model points for the registers no registry point reads, by register name (register quantity None: none)."""
    current = _rated_current(instrument)
    phase_kw = PHASE_KV * current * POWER_FACTOR
    shadows: dict[str, Point] = {}
    for register in instrument.map.registers:
        if register.quantity is None or register.name in shadows or instrument.bound(register.name):
            continue
        if register.quantity in _POWERS:
            rated = phase_kw if register.phase else 3 * phase_kw
        else:
            rated = current
        # Not a registry point: built without validation, keyed so that it cannot collide with a factor code.
        shadows[register.name] = Point.model_construct(
            factor=f"{instrument.slave_id}:{register.name}", facility=instrument.facility,
            quantity=register.quantity, unit=register.unit, phase=register.phase, rated=rated)
    return shadows


def _bits_to_registers(bits: list[bool]) -> list[int]:
    return SimUtils.bitsToRegisters(bits + [False] * (-len(bits) % 16))


class Gateway:
    """One data logger's Modbus line: its instruments as slaves behind a Modbus TCP gateway, or behind a serial
    server that passes RTU frames over TCP (`framer` rtu_over_tcp)."""

    def __init__(self, device: Device, enterprise: Enterprise, schedule: Schedule, rng: random.Random,
                 byte_order: str = "ABCD", noise: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 framer: str = "tcp") -> None:
        if byte_order not in BYTE_ORDERS:
            raise ValueError(f"byte order must be one of {', '.join(BYTE_ORDERS)}, got {byte_order!r}")
        if framer not in layout.FRAMERS:
            raise ValueError(f"framer must be one of {', '.join(layout.FRAMERS)}, got {framer!r}")
        self.device = device
        wiring = layout.connection(device, layout.Connection(host, port, framer, byte_order))
        self.byte_order = wiring.byte_order
        self.framer = wiring.framer
        self.noise = noise
        self.host, self.port = host, port
        self.rng = rng
        self.instruments = layout.instruments(device, byte_order)
        self._keys: dict[tuple[int, str], str] = {}  # (slave, register name) -> model key
        extra: list[Point] = []
        for instrument in self.instruments:
            for binding in instrument.bindings:
                self._keys[instrument.slave_id, binding.register.name] = binding.point.factor
            for name, point in _shadow_points(instrument).items():
                self._keys[instrument.slave_id, name] = point.factor
                extra.append(point)
        self.model = DeviceModel(device.model_copy(update={"points": [*device.points, *extra]}), enterprise,
                                 schedule, rng)
        #: The model's latest values by factor code (and shadow key): what the instruments measure.
        self.values: dict[str, float] = {}
        #: What each slave shows, by register name: the values plus the meter's noise, frozen while stale.
        self.readings: dict[int, dict[str, float]] = {i.slave_id: {} for i in self.instruments}
        self.stale: frozenset[int] = frozenset()
        self.silent: frozenset[int] = frozenset()
        self._images: dict[int, dict[str, list[int]]] = {i.slave_id: {} for i in self.instruments}
        self._server: ModbusTcpServer | None = None

    # values

    def update(self, moment: datetime, step_seconds: float) -> None:
        """Sample the model at `moment` and refresh the registers of every slave that is not stale."""
        self.values = self.model.sample(moment, step_seconds)
        for instrument in self.instruments:
            if instrument.slave_id not in self.stale or not self._images[instrument.slave_id]:
                self._refresh(instrument)

    def _reading(self, register: Register, key: str | None) -> float:
        value = self.values[key] if key is not None else 0.0
        if self.noise and register.table == "holding" and register.quantity not in _COUNTERS:
            value *= 1 + self.rng.gauss(0, self.noise)
        return value

    def _refresh(self, instrument: layout.Instrument) -> None:
        slave = instrument.slave_id
        readings: dict[str, float] = {}
        served = instrument.registers()
        for register in served:  # the coil copies of digital inputs share their input's name
            if register.name not in readings:
                readings[register.name] = self._reading(register, self._keys.get((slave, register.name)))
        self.readings[slave] = readings
        holding = [0] * max((r.address + r.words for r in served if r.table == "holding"), default=0)
        bits = {table: [False] * max((r.address + 1 for r in served if r.table == table), default=0)
                for table in ("discrete", "coil")}
        for register in served:
            value = readings[register.name]
            if register.table == "holding":
                holding[register.address:register.address + 2] = float32_words(value, instrument.byte_order)
            else:
                bits[register.table][register.address] = value >= 0.5
        self._images[slave] = {"holding": holding, **{t: _bits_to_registers(b) for t, b in bits.items()}}

    def slaves(self, selection: Iterable[int | None]) -> frozenset[int]:
        """Slave ids named by fault events; None names every slave of the gateway."""
        chosen: set[int] = set()
        for slave in selection:
            chosen.update(i.slave_id for i in self.instruments if slave in (None, i.slave_id))
        return frozenset(chosen)

    # Modbus side

    def _sim_device(self, instrument: layout.Instrument) -> SimDevice:
        used = instrument.map.tables()
        served = instrument.registers()
        blocks: list[list[SimData]] = []
        for table in _TABLES:
            registers = [r for r in served if r.table == table]
            if table in ("coil", "discrete"):  # pymodbus wants a bit block even where the instrument has none
                blocks.append([SimData(0, count=max((r.address + 1 for r in registers), default=1), values=False,
                                       datatype=DataType.BITS, readonly=True)])
            elif registers:
                blocks.append([SimData(0, count=max(r.address + r.words for r in registers),
                                       datatype=DataType.REGISTERS, readonly=True)])
            else:
                blocks.append([SimData(0, datatype=DataType.INVALID)])

        async def action(function_code: int, start_address: int, address: int, count: int,
                         registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
            """Copy the slave's current image into the block pymodbus is about to answer from."""
            if instrument.slave_id in self.silent:
                return ExcCodes.GATEWAY_NO_RESPONSE
            table = _TABLE_OF_FUNCTION.get(function_code)
            if table not in used:
                return ExcCodes.ILLEGAL_ADDRESS
            image = self._images[instrument.slave_id][table]
            registers[:len(image)] = image
            return None

        return SimDevice(instrument.slave_id, simdata=tuple(blocks), action=action)

    @property
    def running(self) -> bool:
        """The gateway listens (it has instruments and no power loss)."""
        return self._server is not None

    async def start(self) -> None:
        """Listen (again) on the gateway's port; port 0 picks a free one, kept across restarts."""
        if self._server is not None or not self.instruments:
            return
        server = ModbusTcpServer([self._sim_device(i) for i in self.instruments], address=(self.host, self.port),
                                 framer=layout.PYMODBUS_FRAMERS[self.framer])
        try:
            await server.serve_forever(background=True)
        except RuntimeError:  # pymodbus does not say why; the address is what the user can fix
            raise RuntimeError(f"device {self.device.mn}: cannot listen on {self.host}:{self.port}") from None
        self.port = server.transport.sockets[0].getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        """Close the port and every open connection, as a gateway losing power does."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()


class SiteSimulator:
    """One enterprise's gateways on one clock, with the scenario's faults applied at each step."""

    def __init__(self, registry: Registry, enterprise_id: str, scenario: Scenario, byte_order: str = "ABCD",
                 host: str = "127.0.0.1", port_base: int = 0, timezone: str = "Asia/Shanghai",
                 framer: str = "tcp", registry_ports: bool = False) -> None:
        enterprise = registry.enterprises.get(enterprise_id.upper())
        if enterprise is None:
            raise ValueError(f"enterprise {enterprise_id} is not in the registry")
        self.enterprise = enterprise
        self.scenario = scenario
        rng = random.Random(scenario.seed)
        shifts = list(scenario.shifts) if scenario.shifts is not None else Schedule.for_enterprise(rng).shifts
        schedule = Schedule(shifts, lead=scenario.lead, lag=scenario.lag)
        self.gateways = [
            Gateway(device, enterprise, schedule, rng, byte_order, scenario.noise, host,
                    device.modbus.port if registry_ports and device.modbus else port_base + index if port_base else 0,
                    framer)
            for index, device in enumerate(enterprise.devices)
        ]
        self.start_time = scenario.start or datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)
        self._last: datetime | None = None

    async def stop(self) -> None:
        for gateway in self.gateways:
            await gateway.stop()

    async def step(self, moment: datetime) -> None:
        """Advance to simulated local time `moment`: faults of the scenario, new values, gateways up or down."""
        step_seconds = (moment - self._last).total_seconds() if self._last is not None else 0.0
        self._last = moment
        active = self.scenario.active(moment - self.start_time)
        for gateway in self.gateways:
            events = [e for e in active if e.applies(gateway.device.mn)]
            gateway.model.faults = Faults(**{e.fault: True for e in events if e.fault in MODEL_FAULTS})
            gateway.stale = gateway.slaves(e.slave for e in events if e.fault == "stale")
            gateway.silent = gateway.slaves(e.slave for e in events if e.fault == "no_response")
            gateway.update(moment, step_seconds)
            if any(e.fault == "power_loss" for e in events):
                await gateway.stop()
            else:
                await gateway.start()

    async def run(self, interval: float = 1.0) -> None:
        """Step every `interval` real seconds, the simulated clock running `scenario.speed` times as fast."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            while True:
                elapsed = timedelta(seconds=(loop.time() - began) * self.scenario.speed)
                await self.step(self.start_time + elapsed)
                await asyncio.sleep(interval)
        finally:
            await self.stop()

    def describe(self) -> str:
        """Where every point is served: one line per slave, for installers and for pointing a client at it."""
        lines = [f"{self.enterprise.id} {self.enterprise.name}: simulated from {self.start_time:%Y-%m-%d %H:%M:%S}"]
        for gateway in self.gateways:
            if not gateway.instruments:
                lines.append(f"  {gateway.device.mn} no Modbus instruments")
                continue
            lines.append(f"  {gateway.device.mn} tcp://{gateway.host}:{gateway.port} framer {gateway.framer} "
                         f"byte order {gateway.byte_order}")
            for instrument in gateway.instruments:
                points = ", ".join(f"{b.point.factor}={b.register.table}:{b.register.address}({b.register.name})"
                                   for b in instrument.bindings)
                order = "" if instrument.byte_order == gateway.byte_order else f" byte order {instrument.byte_order}"
                lines.append(f"    slave {instrument.slave_id:3d} {instrument.map.kind:18s} "
                             f"{instrument.facility:8s} {points}{order}")
        return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="registry to read (default: [registry] path of the config)")
    parser.add_argument("--enterprise", required=True, help="credit code of the enterprise to play")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port-base", type=int, default=5020,
                        help="port of the enterprise's first device; the next devices count up (default 5020)")
    parser.add_argument("--byte-order", choices=BYTE_ORDERS, default="ABCD",
                        help="byte order of float32 values (default ABCD)")
    parser.add_argument("--framer", choices=layout.FRAMERS, default="tcp",
                        help="Modbus TCP, or RTU frames over TCP as a serial server passes them (default tcp)")
    parser.add_argument("--registry-ports", action="store_true",
                        help="devices with a registry modbus block listen on its port (on --host)")
    parser.add_argument("--scenario", help="scenario TOML file (default: a normal day from now, see docs/field.md)")


def main(args: argparse.Namespace, registry: Registry, scenario: Scenario, timezone: str) -> None:
    site = SiteSimulator(registry, args.enterprise, scenario, args.byte_order, args.host, args.port_base, timezone,
                         args.framer, args.registry_ports)

    async def serve() -> None:
        await site.step(site.start_time)  # the first values; the gateways listen from here on
        print(site.describe(), flush=True)
        await site.run()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
