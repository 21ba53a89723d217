"""Register maps of the Modbus instruments a data logger polls at a site (docs/field.md shows them as tables).

Four instrument kinds cover what the bureau monitors: a three-phase multifunction power meter (full electrical
quantities, as the terminal requirements of seed 002 ask), a fan current transducer, a digital-input module (spray
pumps, switches) and a single-variable transmitter (temperature, pH, pressure, ...). Analog values are IEEE 754
float32 in two holding registers, in one of the four byte orders field devices use; on/off signals are bits.

Addresses are Modbus PDU addresses (0-based, what goes on the wire and into Telegraf's `address`); datasheets that
count from 1 (40001 ...) are one higher.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

from gkjk.registry import ByteOrder

BYTE_ORDERS: tuple[str, ...] = get_args(ByteOrder)
#: Register tables, named as Telegraf's `register` setting names them.
Table = Literal["holding", "discrete", "coil"]


def float32_words(value: float, byte_order: str) -> tuple[int, int]:
    """The two register words that carry `value` as float32 in `byte_order` (ABCD: big endian, word 0 high)."""
    big = struct.pack(">f", value)
    wire = bytes(big["ABCD".index(letter)] for letter in byte_order)
    return wire[0] << 8 | wire[1], wire[2] << 8 | wire[3]


@dataclass(frozen=True, slots=True)
class Register:
    """One value of an instrument.

    `quantity`/`phase` say which registry points may be read from it (and what a simulated instrument shows when
    no point is bound); `quantity` None takes any point of the instrument's kind and reads 0 when none is bound.
    `binds` False marks values no registry quantity describes (export energy, current demand, the coil copies of
    the digital inputs): they are served but never bound to a point.
    """

    name: str
    address: int
    table: Table
    quantity: str | None
    phase: str | None
    unit: str
    meaning: str
    binds: bool = True

    @property
    def words(self) -> int:
        """Registers (holding) or bits (discrete, coil) the value occupies."""
        return 2 if self.table == "holding" else 1


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """What one kind of instrument exposes."""

    kind: str
    title: str
    registers: tuple[Register, ...]

    def tables(self) -> tuple[str, ...]:
        """The register tables this kind uses, in map order."""
        return tuple(dict.fromkeys(r.table for r in self.registers))


_PHASES = (("a", "phase A", "A相"), ("b", "phase B", "B相"), ("c", "phase C", "C相"))
_CN_TOTAL = {"average": "平均", "total": "总"}


def _floats(rows: list[tuple[str, str | None, str | None, str, str, bool]]) -> tuple[Register, ...]:
    """Float32 holding registers at consecutive even addresses from 0."""
    return tuple(Register(name, 2 * i, "holding", quantity, phase, unit, meaning, binds)
                 for i, (name, quantity, phase, unit, meaning, binds) in enumerate(rows))


def _per_phase(name: str, quantity: str | None, unit: str, what: str, cn: str, total: str | None,
               binds: bool = True) -> list[tuple[str, str | None, str | None, str, str, bool]]:
    """Rows for phases A, B, C and (unless `total` is None) the three-phase total or average."""
    rows = [(name.format(p), quantity, p, unit, f"{label} {what} ({cn_label}{cn})", binds)
            for p, label, cn_label in _PHASES]
    if total is not None:
        rows.append((name.format(""), quantity, None, unit, f"{total} {what} ({_CN_TOTAL[total]}{cn})", binds))
    return rows


POWER_METER = RegisterMap("power_meter", "Three-phase multifunction power meter (三相多功能电能表)", _floats([
    *_per_phase("U{}", "voltage", "V", "voltage, phase to neutral", "电压", "average"),
    *_per_phase("I{}", "current", "A", "current", "电流", "average"),
    *_per_phase("P{}", "active_power", "kW", "active power", "有功功率", "total"),
    *_per_phase("Q{}", "reactive_power", "kvar", "reactive power", "无功功率", "total"),
    *_per_phase("S{}", "apparent_power", "kVA", "apparent power", "视在功率", "total"),
    *_per_phase("PF{}", "power_factor", "", "power factor", "功率因数", "total"),
    ("F", "frequency", None, "Hz", "line frequency (频率)", True),
    ("EP_imp", "energy", None, "kWh", "total import active energy (正向有功总电能)", True),
    ("EP_exp", None, None, "kWh", "total export active energy (反向有功总电能); 0 at consuming sites", False),
    ("EQ_imp", "reactive_energy", None, "kvarh", "total import reactive energy (正向无功总电能)", True),
    ("EQ_exp", None, None, "kvarh", "total export reactive energy (反向无功总电能)", False),
    *_per_phase("EP{}_imp", "energy", "kWh", "import active energy", "正向有功电能", None),
    *_per_phase("EP{}_exp", None, "kWh", "export active energy", "反向有功电能", None, binds=False),
    *_per_phase("EQ{}_imp", "reactive_energy", "kvarh", "import reactive energy", "正向无功电能", None),
    *_per_phase("EQ{}_exp", None, "kvarh", "export reactive energy", "反向无功电能", None, binds=False),
    *_per_phase("P{}_dmd", "demand", "kW", "active power demand", "有功需量", "total"),
    *_per_phase("I{}_dmd", "current", "A", "current demand", "电流需量", None, binds=False),
]))

CURRENT_TRANSDUCER = RegisterMap("current_transducer", "Fan current transducer (风机电流变送器), 3 channels", _floats(
    [(f"I{n}", "fan_current", p, "A", f"channel {n}: {label} current ({cn}电流), or a single-phase fan", True)
     for n, (p, label, cn) in enumerate(_PHASES, start=1)]
))

#: Inputs of a digital-input module; the same bits are readable as coils for loggers that only use FC 01.
DIGITAL_INPUT_COUNT = 8
DIGITAL_INPUTS = RegisterMap("digital_inputs", "Digital-input module (开关量采集模块), 8 dry contacts", tuple(
    [Register(f"DI{n + 1}", n, "discrete", None, None, "",
              f"input {n + 1}: 1 = closed (pump running, switch on) (开关量输入)")
     for n in range(DIGITAL_INPUT_COUNT)]
    + [Register(f"DI{n + 1}", n, "coil", None, None, "", f"copy of input {n + 1}, read-only", binds=False)
       for n in range(DIGITAL_INPUT_COUNT)]
))

TRANSMITTER = RegisterMap("transmitter", "Single-variable transmitter (温度/pH/压差变送器)", _floats([
    ("PV", None, None, "unit of the point", "process value: temperature ℃, pH, pressure Pa, ... (测量值)", True),
]))

#: Register maps by kind.
MAPS: Mapping[str, RegisterMap] = MappingProxyType({m.kind: m for m in (
    POWER_METER, CURRENT_TRANSDUCER, DIGITAL_INPUTS, TRANSMITTER)})

#: Which instrument kind reads each registry quantity. Quantities not listed (carbon_hours, run_time) are computed
#: by the data logger from run states, not read from an instrument.
KIND_OF_QUANTITY: Mapping[str, str] = MappingProxyType({
    **dict.fromkeys(("current", "voltage", "active_power", "reactive_power", "apparent_power", "power_factor",
                     "frequency", "energy", "reactive_energy", "demand"), "power_meter"),
    "fan_current": "current_transducer",
    **dict.fromkeys(("switch", "spray"), "digital_inputs"),
    **dict.fromkeys(("temperature", "ph", "pressure", "flow", "velocity", "concentration", "humidity"),
                    "transmitter"),
})
