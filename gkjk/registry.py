"""Site registry: which enterprise, facility and thresholds every data logger (MN) and factor code belongs to.

One YAML file per enterprise, validated completely on load (every error of every file at once, each naming the
file and the field), then served from dicts built at load time because the ingest server looks up every packet.
See docs/registry.md for the file format.
"""

from __future__ import annotations

import gc
import hashlib
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, get_args

import yaml
from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError, model_validator,
)

from gkjk import uscc

# --- vocabularies -------------------------------------------------------------------------------------------------

Industry = Literal[
    "工业涂装", "家具", "包装印刷", "制鞋", "电镀", "制革", "铸造", "石材", "混凝土", "建材",
    "化工", "医药", "橡胶塑料", "纺织印染", "通用",
]
ControlList = Literal["大气管控", "排污许可", "应急管控", "重点排污单位"]
ContactRole = Literal["enterprise", "county", "ops"]
EmergencyAction = Literal["停产", "限产"]
Protocol = Literal["hj212-2005", "hj212-2017", "hj212-2025"]
Phase = Literal["a", "b", "c"]
ProductionKind = Literal[
    "spray_booth", "oven", "drying_room", "plating_line", "mixer", "batching_plant", "reactor", "furnace",
    "boiler", "kiln", "cutting_line", "polishing_line", "crusher", "grinding_mill", "shot_blasting",
    "sanding_line", "welding_line", "printing_press", "laminating_machine", "gluing_line", "injection_molding",
    "extruder", "vulcanizer", "setting_machine", "dyeing_machine", "tanning_drum", "other",
]
TreatmentKind = Literal[
    "fan", "spray_tower", "water_curtain", "dry_filter", "activated_carbon", "zeolite_rotor", "rto", "rco", "co",
    "uv_photolysis", "plasma", "bag_filter", "cyclone", "electrostatic_precipitator", "acid_mist_scrubber",
    "alkali_scrubber", "condenser", "desulfurization", "denitrification", "wastewater_station", "other",
]
Quantity = Literal[
    "current", "voltage", "active_power", "reactive_power", "apparent_power", "power_factor", "frequency",
    "energy", "reactive_energy", "demand", "switch", "fan_current", "temperature", "pressure", "ph", "spray",
    "carbon_hours", "run_time", "flow", "velocity", "concentration", "humidity",
]

INDUSTRIES: tuple[str, ...] = get_args(Industry)
CONTROL_LISTS: tuple[str, ...] = get_args(ControlList)
PRODUCTION_KINDS: tuple[str, ...] = get_args(ProductionKind)
TREATMENT_KINDS: tuple[str, ...] = get_args(TreatmentKind)
PROTOCOLS: tuple[str, ...] = get_args(Protocol)

# Allowed units per quantity; the first one is the default when a point omits `unit`. "" means dimensionless.
QUANTITY_UNITS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "current": ("A", "mA", "kA"),
    "voltage": ("V", "kV"),
    "active_power": ("kW", "W", "MW"),
    "reactive_power": ("kvar", "var", "Mvar"),
    "apparent_power": ("kVA", "VA", "MVA"),
    "power_factor": ("",),
    "frequency": ("Hz",),
    "energy": ("kWh", "Wh", "MWh"),
    "reactive_energy": ("kvarh", "varh", "Mvarh"),
    "demand": ("kW", "W", "MW"),
    "switch": ("",),
    "fan_current": ("A", "mA", "kA"),
    "temperature": ("℃", "°C"),
    "pressure": ("Pa", "kPa", "MPa"),
    "ph": ("", "无量纲"),
    "spray": ("",),
    "carbon_hours": ("h",),
    "run_time": ("h", "min", "s"),
    "flow": ("m3/h", "m3/s", "m3/d", "L/s", "t/h"),
    "velocity": ("m/s",),
    "concentration": ("mg/m3", "mg/L", "ug/m3", "ppm", "%"),
    "humidity": ("%",),
})
# Quantities measured per phase of a three-phase line: only these may carry `phase`.
PHASED_QUANTITIES = frozenset({
    "current", "voltage", "active_power", "reactive_power", "apparent_power", "power_factor", "energy",
    "reactive_energy", "demand", "fan_current",
})
_SCRUBBERS = frozenset({"spray_tower", "water_curtain", "acid_mist_scrubber", "alkali_scrubber", "desulfurization"})
# Design parameters that only make sense for some treatment kinds (a typo'd kind would silently disable a rule).
TREATMENT_PARAM_KINDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "design_hours": frozenset({"activated_carbon"}),
    "last_replaced": frozenset({"activated_carbon"}),
    "min_temperature": frozenset({"rto", "rco", "co"}),
    "ph_min": _SCRUBBERS,
    "ph_max": _SCRUBBERS,
})

# --- field validators ---------------------------------------------------------------------------------------------


# Per-field formats are checked by pydantic-core itself (no Python call per value: a registry has ~10^6 fields);
# each pattern maps to the message shown when it fails.
_PATTERNS = {
    "[\u4e00-\u9fff]": "must be Chinese text",
    r"^[A-Za-z0-9_-]{1,32}$": "must be 1-32 ASCII letters, digits, '_' or '-'",
    r"^[A-Za-z0-9]{1,32}$": "MN must be 1-32 ASCII letters or digits (24 hex characters in HJ 212-2017)",
    r"^[A-Za-z0-9]{2,16}$": "factor code must be 2-16 ASCII letters or digits (e.g. i33200, a01012)",
    r"^[0-9A-Fa-f]{32}$": "SM4 key must be 32 hexadecimal characters (128 bits)",
}
_CJK, _IDENT, _MN, _FACTOR, _HEX32 = _PATTERNS
_PW = re.compile(r"[!-~]{6}").fullmatch  # printable ASCII, no space
_PHONE = re.compile(r"(?:\+86)?1\d{10}|0\d{2,3}-?\d{7,8}").fullmatch


def _credit_code(value: str) -> str:
    code = value.strip().upper()
    if (why := uscc.problem(code)) is not None:
        raise ValueError(f"invalid unified social credit code {value!r}: {why}")
    return code


def _pw(value: str) -> str:
    if len(value) != 6:
        raise ValueError(f"PW must be exactly 6 characters, got {len(value)}")
    if not _PW(value) or any(c in ";,=&" for c in value):
        raise ValueError("PW must be printable ASCII without ';', ',', '=', '&' or spaces")
    return value


def _phone(value: str) -> str:
    if not _PHONE(value):
        raise ValueError(f"must be a mobile number (11 digits) or a landline with area code, got {value!r}")
    return value


def _webhook(value: str) -> str:
    if not value.startswith("https://") or any(c.isspace() for c in value):
        raise ValueError("must be an https:// URL")
    return value


ChineseText = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_CJK)]
CreditCode = Annotated[str, AfterValidator(_credit_code)]
Ident = Annotated[str, StringConstraints(pattern=_IDENT)]
FactorCode = Annotated[str, StringConstraints(pattern=_FACTOR)]
MN = Annotated[str, StringConstraints(pattern=_MN, to_upper=True)]
Sm4Key = Annotated[str, StringConstraints(pattern=_HEX32, to_upper=True)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    """Strict (no type coercion: a YAML number is not a string), unknown keys rejected, immutable once loaded."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --- models -------------------------------------------------------------------------------------------------------


class Location(_Model):
    """WGS-84 position of the site (range-checked to China)."""

    lat: float = Field(ge=3.5, le=54.0)
    lon: float = Field(ge=73.0, le=136.0)


class Contact(_Model):
    """Who is told about an alarm: the enterprise first, the county branch, the O&M firm."""

    role: ContactRole
    name: Annotated[str, Field(min_length=1, max_length=50)]
    phone: Annotated[str, AfterValidator(_phone)]
    dingtalk_webhook: Annotated[str, AfterValidator(_webhook)] | None = None


class ProductionFacility(_Model):
    """A polluting production unit (生产设施) whose run state drives the treatment rules."""

    role: ClassVar[str] = "production"
    id: Ident
    name: ChineseText
    kind: ProductionKind
    rated_power: Positive | None = None
    emergency_action: EmergencyAction | None = None
    load_cap: float | None = Field(default=None, gt=0, lt=1)


class TreatmentFacility(_Model):
    """A pollution treatment unit (治污设施) that must run whenever a production unit it serves runs."""

    role: ClassVar[str] = "treatment"
    id: Ident
    name: ChineseText
    kind: TreatmentKind
    serves: list[Ident] = Field(min_length=1)
    rated_power: Positive | None = None
    airflow: Positive | None = None
    design_hours: Positive | None = None
    last_replaced: datetime | date | None = None  # carbon last replaced; a date is local midnight ([ingest] timezone)
    min_temperature: Positive | None = None
    ph_min: float | None = Field(default=None, ge=0, le=14)
    ph_max: float | None = Field(default=None, ge=0, le=14)


Facility = ProductionFacility | TreatmentFacility


class Facilities(_Model):
    """Production and treatment units of one enterprise; ids share one namespace."""

    production: list[ProductionFacility] = []
    treatment: list[TreatmentFacility] = []


class Point(_Model):
    """One factor code of a data logger: what it measures, on which facility, and its per-point thresholds."""

    factor: FactorCode
    facility: Ident
    quantity: Quantity
    unit: str
    phase: Phase | None = None
    rated: Positive | None = None
    on_threshold: NonNegative | None = None
    normal: Positive | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_unit(cls, data: Any) -> Any:
        """A point may omit `unit`; it then gets the quantity's standard unit (a bad quantity is reported alone)."""
        if isinstance(data, dict) and "unit" not in data:
            quantity = data.get("quantity")
            return {**data, "unit": QUANTITY_UNITS[quantity][0] if quantity in QUANTITY_UNITS else ""}
        return data


def _host(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", value):
        raise ValueError(f"must be a host name or IP address, got {value!r}")
    return value


#: Byte order of a 32-bit value in two Modbus registers, as Telegraf names it: A is the most significant byte, and
#: the letters are in the order the bytes travel (register 0 high, register 0 low, register 1 high, register 1 low).
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
ModbusFramer = Literal["tcp", "rtu_over_tcp"]
#: Quantities the data logger computes from run states: no instrument holds them.
COMPUTED_QUANTITIES = frozenset({"carbon_hours", "run_time"})


class ModbusPoint(_Model):
    """Where a real site's instrument holds one point, when not where the derived layout puts it."""

    factor: FactorCode
    unit_id: int | None = Field(default=None, ge=1, le=247)
    address: int | None = Field(default=None, ge=0, le=65534)
    byte_order: ByteOrder | None = None


class ModbusGateway(_Model):
    """How a data logger reaches its instruments: a Modbus TCP gateway or a serial server passing RTU frames."""

    host: Annotated[str, AfterValidator(_host)]
    port: int = Field(default=502, ge=1, le=65535)
    framer: ModbusFramer | None = None
    byte_order: ByteOrder | None = None
    points: list[ModbusPoint] = []


class Device(_Model):
    """A data logger (数采仪) speaking HJ 212; its MN is the key the ingest server receives."""

    mn: MN
    pw: Annotated[str, AfterValidator(_pw)]
    protocol: Protocol
    sm4_key: Sm4Key | None = None
    rtd_interval: int = Field(default=60, ge=1, le=86400)
    points: list[Point] = []
    modbus: ModbusGateway | None = None

    def equipment_numbers(self) -> dict[str, int]:
        """The HJ 212 equipment number (``SB<n>``: ``-RS`` run state, ``-RT`` run time of 2041) of each facility
        of the device's points: numbered from 1 in the order the facilities first appear in the points, so the
        numbers stay put while the points keep their order (docs/registry.md)."""
        numbers: dict[str, int] = {}
        for point in self.points:
            numbers.setdefault(point.facility, len(numbers) + 1)
        return numbers


class Enterprise(_Model):
    """One registry file: an enterprise (排污单位), its facilities and its data loggers."""

    id: CreditCode
    name: ChineseText
    county: ChineseText
    town: ChineseText
    branch: ChineseText | None = None
    industry: Industry
    control_lists: list[ControlList] = []
    location: Location
    contacts: list[Contact] = []
    facilities: Facilities
    devices: list[Device] = []

    _by_id: dict[str, Facility] = PrivateAttr(default_factory=dict)
    _served_by: dict[str, tuple[TreatmentFacility, ...]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Index facilities once, for the rules that walk production -> treatment links."""
        self._by_id = {f.id: f for f in (*self.facilities.production, *self.facilities.treatment)}
        served: dict[str, list[TreatmentFacility]] = {}
        for t in self.facilities.treatment:
            for pid in t.serves:
                served.setdefault(pid, []).append(t)
        self._served_by = {pid: tuple(ts) for pid, ts in served.items()}

    def facility(self, facility_id: str) -> Facility | None:
        """The production or treatment facility with this id."""
        return self._by_id.get(facility_id)

    def treatments_for(self, production_id: str) -> tuple[TreatmentFacility, ...]:
        """Treatment facilities that serve this production facility (the N:M link read the other way)."""
        return self._served_by.get(production_id, ())


# --- errors -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in one file; `field` is a path such as devices[0].points[2].facility (None: whole file)."""

    file: Path
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


class RegistryError(Exception):
    """The registry did not load; `issues` lists every problem found, not just the first."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        lines = [str(i) for i in self.issues]
        super().__init__(lines[0] if len(lines) == 1 else f"{len(lines)} registry errors:\n" + "\n".join(lines))


# --- lookup results -----------------------------------------------------------------------------------------------


class DeviceRef(NamedTuple):
    """A device with the enterprise it belongs to."""

    device: Device
    enterprise: Enterprise

    def __repr__(self) -> str:
        return f"DeviceRef(mn={self.device.mn!r}, enterprise={self.enterprise.id!r})"


class PointRef(NamedTuple):
    """A point with its facility, device and enterprise, resolved at load time."""

    point: Point
    facility: Facility
    device: Device
    enterprise: Enterprise

    def __repr__(self) -> str:
        return (f"PointRef(mn={self.device.mn!r}, factor={self.point.factor!r}, facility={self.facility.id!r}, "
                f"enterprise={self.enterprise.id!r})")

    @property
    def facility_id(self) -> str:
        return self.facility.id

    @property
    def quantity(self) -> str:
        return self.point.quantity

    @property
    def rated(self) -> float | None:
        return self.point.rated

    @property
    def on_threshold(self) -> float | None:
        return self.point.on_threshold

    @property
    def normal(self) -> float | None:
        return self.point.normal


class Registry:
    """A validated registry and the dicts the hot path needs; never mutated after load (reload builds a new one)."""

    __slots__ = ("_enterprises", "_devices", "_points", "_equipment", "_facility_points", "_sources", "_files")

    def __init__(self, loaded: Sequence[tuple[Path, bytes, Enterprise]]) -> None:
        """Index validated enterprises: (source file, digest of its content for reuse on reload, enterprise)."""
        self._enterprises: dict[str, Enterprise] = {}
        self._sources: dict[str, Path] = {}
        self._files: dict[Path, tuple[bytes, Enterprise]] = {}
        self._devices: dict[str, DeviceRef] = {}
        self._points: dict[tuple[str, str], PointRef] = {}
        self._equipment: dict[tuple[str, str], Facility] = {}  # (MN, "sb<n>") -> the device's n-th facility
        self._facility_points: dict[tuple[str, str], list[PointRef]] = {}
        for source, digest, ent in loaded:
            self._enterprises[ent.id] = ent
            self._sources[ent.id] = source
            self._files[source] = (digest, ent)
            for dev in ent.devices:
                self._devices[dev.mn] = DeviceRef(dev, ent)
                for p in dev.points:
                    ref = PointRef(p, ent._by_id[p.facility], dev, ent)
                    self._points[dev.mn, p.factor.lower()] = ref
                    self._facility_points.setdefault((ent.id, p.facility), []).append(ref)
                for facility, number in dev.equipment_numbers().items():
                    self._equipment[dev.mn, f"sb{number}"] = ent._by_id[facility]

    @property
    def enterprises(self) -> Mapping[str, Enterprise]:
        """Enterprises by credit code (upper case)."""
        return MappingProxyType(self._enterprises)

    @property
    def devices(self) -> Mapping[str, DeviceRef]:
        """All devices by upper-case MN (e.g. to find loggers that went silent)."""
        return MappingProxyType(self._devices)

    def device(self, mn: str) -> DeviceRef | None:
        """The device with this MN (any case), or None if unregistered."""
        return self._devices.get(mn.upper())

    def point(self, mn: str, factor_code: str) -> PointRef | None:
        """The point for this MN and factor code (both case-insensitive), or None if not registered."""
        return self._points.get((mn.upper(), factor_code.lower()))

    def facility_of(self, mn: str, code: str) -> Facility | None:
        """The facility a factor code of this MN is about (both case-insensitive): its registry point's; for an
        equipment code ``SB<n>`` without a point of its own, the device's n-th facility (`Device.equipment_numbers`);
        None if neither."""
        key = (mn.upper(), code.lower())
        ref = self._points.get(key)
        return ref.facility if ref is not None else self._equipment.get(key)

    def points_of(self, enterprise_id: str, facility_id: str) -> tuple[PointRef, ...]:
        """All points measuring one facility, across the enterprise's devices."""
        return tuple(self._facility_points.get((enterprise_id.upper(), facility_id), ()))

    def source(self, enterprise_id: str) -> Path:
        """The file an enterprise was loaded from (KeyError if unknown)."""
        return self._sources[enterprise_id.upper()]


# --- loading ------------------------------------------------------------------------------------------------------


_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"


class _YamlLoader(yaml.CSafeLoader):
    """Safe loader (libyaml parser) that builds plain data in one pass and rejects duplicate keys.

    PyYAML's generic constructor takes longer than parsing for registry-shaped files, and it silently keeps the
    last of two duplicate keys. Anything unusual (tags, merge keys `<<`) goes through the generic constructor.
    """

    _resolved: ClassVar[dict[str, str]] = {}  # plain scalar -> tag; keys repeat in every file

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)
        tag = self._resolved.get(value)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(self._resolved) < 4096:
                self._resolved[value] = tag
        return tag

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        return None if node is None else self._build(node, {})

    def _value(self, node: yaml.Node, memo: dict[int, Any]) -> Any:
        if type(node) is yaml.ScalarNode:
            return node.value if node.tag == _STR else self.construct_object(node)
        return self._build(node, memo)

    def _build(self, node: yaml.Node, memo: dict[int, Any]) -> Any:
        if id(node) in memo:  # an alias of an anchored node
            return memo[id(node)]
        if type(node) is yaml.SequenceNode and node.tag == _SEQ:
            items: list[Any] = []
            memo[id(node)] = items
            items.extend([self._value(child, memo) for child in node.value])
            return items
        if type(node) is not yaml.MappingNode or node.tag != _MAP or any(k.tag == _MERGE for k, _ in node.value):
            return self.construct_object(node, deep=True)
        mapping: dict[Any, Any] = {}
        memo[id(node)] = mapping
        for key_node, value_node in node.value:
            key = self._value(key_node, memo)
            if key in mapping:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            mapping[key] = self._value(value_node, memo)
        return mapping


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A load allocates millions of long-lived objects; cyclic-GC passes over them meanwhile are pure overhead."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _registry_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RegistryError([Issue(path, None, "no such file or directory")])
    files = sorted(
        p for p in path.rglob("*")
        if p.suffix in (".yaml", ".yml") and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and p.is_file()
    )
    if not files:
        raise RegistryError([Issue(path, None, "no registry files (*.yaml, *.yml) found")])
    return files


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(error: Any) -> str:
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    if error["type"] == "string_type" and isinstance(error["input"], (int, float, bool)):
        return f"must be a string, got {error['input']!r} (quote it in YAML)"
    if error["type"] == "string_pattern_mismatch":
        return f"{_PATTERNS[error['ctx']['pattern']]}, got {error['input']!r}"
    if error["type"] == "literal_error":
        return f"unknown value {error['input']!r}, expected {error['ctx']['expected']}"
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return str(error["msg"])


def _semantic_issues(ent: Enterprise) -> Iterator[tuple[str, str]]:
    """Checks across fields of one enterprise, as (field path, message)."""
    for i, code in enumerate(ent.control_lists):
        if code in ent.control_lists[:i]:
            yield f"control_lists[{i}]", f"duplicate entry {code!r}"
    where: dict[str, str] = {}
    for group in ("production", "treatment"):
        for i, fac in enumerate(getattr(ent.facilities, group)):
            path = f"facilities.{group}[{i}]"
            if fac.id in where:
                yield f"{path}.id", f"duplicate facility id {fac.id!r} (also {where[fac.id]})"
            else:
                where[fac.id] = path
    for i, prod in enumerate(ent.facilities.production):
        if prod.load_cap is not None and prod.emergency_action != "限产":
            yield f"facilities.production[{i}].load_cap", "load_cap applies only with emergency_action: 限产"
    production_ids = {f.id for f in ent.facilities.production}
    for i, treat in enumerate(ent.facilities.treatment):
        path = f"facilities.treatment[{i}]"
        for j, pid in enumerate(treat.serves):
            if pid in treat.serves[:j]:
                yield f"{path}.serves[{j}]", f"duplicate entry {pid!r}"
            elif pid in where and pid not in production_ids:
                yield f"{path}.serves[{j}]", f"{pid!r} is a treatment facility; serves lists production facilities"
            elif pid not in production_ids:
                yield f"{path}.serves[{j}]", f"unknown production facility {pid!r}"
        for param, kinds in TREATMENT_PARAM_KINDS.items():
            if getattr(treat, param) is not None and treat.kind not in kinds:
                yield f"{path}.{param}", f"does not apply to kind {treat.kind!r} (only {', '.join(sorted(kinds))})"
        if treat.ph_min is not None and treat.ph_max is not None and treat.ph_min >= treat.ph_max:
            yield f"{path}.ph_max", f"must be above ph_min ({treat.ph_min})"
    for d, dev in enumerate(ent.devices):
        if dev.sm4_key is not None and dev.protocol != "hj212-2025":
            yield f"devices[{d}].sm4_key", f"SM4 encryption exists only in hj212-2025, not {dev.protocol}"
        factors: dict[str, int] = {}
        for p, pt in enumerate(dev.points):
            path = f"devices[{d}].points[{p}]"
            key = pt.factor.lower()
            if key in factors:
                yield f"{path}.factor", f"duplicate factor {pt.factor!r} on this device (also points[{factors[key]}])"
            else:
                factors[key] = p
            if pt.facility not in where:
                yield f"{path}.facility", f"unknown facility {pt.facility!r}"
            units = QUANTITY_UNITS[pt.quantity]
            if pt.unit not in units:
                yield f"{path}.unit", f"unit {pt.unit!r} does not fit {pt.quantity} (use one of {list(units)})"
            if pt.phase is not None and pt.quantity not in PHASED_QUANTITIES:
                yield f"{path}.phase", f"{pt.quantity} has no phase"
            if pt.on_threshold is not None and pt.rated is not None and pt.on_threshold >= pt.rated:
                yield f"{path}.on_threshold", f"must be below rated ({pt.rated})"
            if pt.normal is not None and pt.on_threshold is not None and pt.normal <= pt.on_threshold:
                yield f"{path}.normal", f"must be above on_threshold ({pt.on_threshold})"
        if dev.modbus is not None:
            yield from _modbus_issues(dev, f"devices[{d}].modbus")


def _modbus_issues(dev: Device, path: str) -> Iterator[tuple[str, str]]:
    """A device's `modbus` block names its own points, each once, and only points an instrument holds."""
    quantities = {pt.factor.lower(): pt.quantity for pt in dev.points}
    seen: dict[str, int] = {}
    for i, override in enumerate(dev.modbus.points):
        key = override.factor.lower()
        where = f"{path}.points[{i}].factor"
        if key in seen:
            yield where, f"duplicate factor {override.factor!r} (also points[{seen[key]}])"
        elif key not in quantities:
            yield where, f"factor {override.factor!r} is not a point of this device"
        elif quantities[key] in COMPUTED_QUANTITIES:
            yield where, f"{quantities[key]} is computed by the data logger, not read from an instrument"
        seen.setdefault(key, i)


def _load_file(path: Path, content: bytes, issues: list[Issue]) -> Enterprise | None:
    try:
        data = yaml.load(content.decode("utf-8-sig"), Loader=_YamlLoader)
    except UnicodeDecodeError as exc:
        issues.append(Issue(path, None, f"not UTF-8 (byte {exc.start})"))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        issues.append(Issue(path, None, f"invalid YAML: {where}{getattr(exc, 'problem', None) or exc}"))
        return None
    if data is None:
        issues.append(Issue(path, None, "empty file"))
        return None
    try:
        ent = Enterprise.model_validate(data)
    except ValidationError as exc:
        issues.extend(Issue(path, _field_path(e["loc"]), _message(e)) for e in exc.errors())
        return None
    found = [Issue(path, field, message) for field, message in _semantic_issues(ent)]
    issues.extend(found)
    return None if found else ent


def load_registry(path: Path, previous: Registry | None = None) -> Registry:
    """Load and validate a registry file or directory (recursively, *.yaml and *.yml, dot-files skipped).

    Raises RegistryError listing every problem; MNs and enterprise ids must be unique across all files. Files whose
    content is unchanged since `previous` was loaded are not parsed again (a reload of 5,000 files takes ~0.5 s).
    """
    issues: list[Issue] = []
    loaded: list[tuple[Path, bytes, Enterprise]] = []
    first_id: dict[str, Path] = {}
    first_mn: dict[str, tuple[Path, int]] = {}
    reusable = previous._files if previous is not None else {}
    with _gc_paused():
        for file in _registry_files(Path(path)):
            try:
                content = file.read_bytes()
            except OSError as exc:
                issues.append(Issue(file, None, f"cannot read: {exc.strerror or exc}"))
                continue
            digest = hashlib.blake2b(content, digest_size=16).digest()
            cached = reusable.get(file)
            ent = cached[1] if cached is not None and cached[0] == digest else _load_file(file, content, issues)
            if ent is None:
                continue
            ok = True
            if ent.id in first_id:
                issues.append(Issue(file, "id", f"enterprise {ent.id} is also defined in {first_id[ent.id]}"))
                ok = False
            else:
                first_id[ent.id] = file
            for d, dev in enumerate(ent.devices):
                if dev.mn in first_mn:
                    other, od = first_mn[dev.mn]
                    issues.append(Issue(file, f"devices[{d}].mn",
                                        f"MN {dev.mn} is already used by {other}: devices[{od}]"))
                    ok = False
                else:
                    first_mn[dev.mn] = (file, d)
            if ok:
                loaded.append((file, digest, ent))
        if issues:
            raise RegistryError(issues)
        return Registry(loaded)


# --- reload -------------------------------------------------------------------------------------------------------


def _changes(old: Registry, new: Registry) -> list[str]:
    out: list[str] = []
    for eid in sorted(old.enterprises.keys() | new.enterprises.keys()):
        match old.enterprises.get(eid), new.enterprises.get(eid):
            case None, Enterprise() as added:
                out.append(f"added enterprise {eid} {added.name}")
            case Enterprise() as removed, None:
                out.append(f"removed enterprise {eid} {removed.name}")
            case Enterprise() as before, Enterprise() as after if before != after:
                out.append(f"changed enterprise {eid} {after.name}")
    for mn in sorted(old.devices.keys() | new.devices.keys()):
        match old.devices.get(mn), new.devices.get(mn):
            case None, DeviceRef() as added:
                out.append(f"added device {mn} ({added.enterprise.name})")
            case DeviceRef() as removed, None:
                out.append(f"removed device {mn} ({removed.enterprise.name})")
            case DeviceRef() as was, DeviceRef() as now if (
                was.device != now.device or was.enterprise.id != now.enterprise.id
            ):
                out.append(f"changed device {mn} ({now.enterprise.name})")
    return out


class RegistryHolder:
    """The registry a long-running server reads; reload() swaps in a new one only if it loads cleanly.

    Readers take `.current` once per packet (an atomic attribute read) and keep using that snapshot. reload() can
    run in a worker thread (loading thousands of files takes a moment) while readers go on with the old registry.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._current = load_registry(self.path)

    @property
    def current(self) -> Registry:
        return self._current

    def reload(self) -> list[str]:
        """Load the files again and return what changed; on RegistryError the current registry stays."""
        with self._lock:
            new = load_registry(self.path, previous=self._current)
            changes = _changes(self._current, new)
            self._current = new
            return changes


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gkjk.registry PATH`: validate a registry (for installers and CI), exit 1 on errors."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m gkjk.registry PATH", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        reg = load_registry(Path(args[0]))
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return 1
    points = sum(len(d.device.points) for d in reg.devices.values())
    print(f"ok: {len(reg.enterprises)} enterprises, {len(reg.devices)} devices, {points} points "
          f"({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
