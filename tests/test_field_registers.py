"""Field side: register maps, float32 byte orders, the layout of registry points on instruments, scenario files, docs."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import get_args

import pytest

from gkjk.registry import PHASED_QUANTITIES, Device, Quantity, load_registry
from ingest_twisted.field import layout
from ingest_twisted.field.registers import KIND_OF_QUANTITY, MAPS, Register, float32_words
from ingest_twisted.field.scenario import FAULTS, ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "tests" / "data" / "field" / "site.yaml"
DEMO = ROOT / "registry" / "demo"
DOCS = ROOT / "docs" / "field.md"
#: Quantities the data logger computes itself; every other quantity must have an instrument.
COMPUTED_BY_LOGGER = {"carbon_hours", "run_time"}


@pytest.mark.parametrize(("byte_order", "words"), [
    ("ABCD", (0x3F80, 0x0000)),
    ("CDAB", (0x0000, 0x3F80)),
    ("BADC", (0x803F, 0x0000)),
    ("DCBA", (0x0000, 0x803F)),
])
def test_float32_words_of_one_in_every_byte_order(byte_order: str, words: tuple[int, int]) -> None:
    assert float32_words(1.0, byte_order) == words


def test_float32_words_of_a_value_with_four_distinct_bytes() -> None:
    # -1.5e-3 is 0xBAC49BA6: each letter of the byte order is visible.
    assert float32_words(-1.5e-3, "ABCD") == (0xBAC4, 0x9BA6)
    assert float32_words(-1.5e-3, "CDAB") == (0x9BA6, 0xBAC4)
    assert float32_words(-1.5e-3, "BADC") == (0xC4BA, 0xA69B)
    assert float32_words(-1.5e-3, "DCBA") == (0xA69B, 0xC4BA)


@pytest.mark.parametrize("kind", list(MAPS))
def test_registers_do_not_overlap_and_fit_one_read(kind: str) -> None:
    register_map = MAPS[kind]
    for table in register_map.tables():
        used: set[int] = set()
        for register in (r for r in register_map.registers if r.table == table):
            cells = set(range(register.address, register.address + register.words))
            assert not cells & used, f"{kind}: {register.name} overlaps"
            used |= cells
        assert max(used) < (125 if table == "holding" else 2000), "one read (FC 03 / FC 02) covers the map"
    names = [r.name for r in register_map.registers if r.table != "coil"]
    assert len(names) == len(set(names))


def test_every_registry_quantity_has_an_instrument_or_is_computed_by_the_logger() -> None:
    quantities = set(get_args(Quantity))
    assert set(KIND_OF_QUANTITY) == quantities - COMPUTED_BY_LOGGER


def _device(*points: dict) -> Device:
    return Device.model_validate({"mn": "0A0000A8900016F0001F1E01", "pw": "123456", "protocol": "hj212-2017",
                                  "points": list(points)})


@pytest.mark.parametrize("quantity", sorted(KIND_OF_QUANTITY))
def test_every_quantity_and_phase_has_a_register(quantity: str) -> None:
    phases = [None, "a", "b", "c"] if quantity in PHASED_QUANTITIES else [None]
    for phase in phases:
        point = {"factor": "x1", "facility": "P1", "quantity": quantity, **({"phase": phase} if phase else {})}
        (instrument,) = layout.instruments(_device(point))
        (binding,) = instrument.bindings
        assert instrument.map.kind == KIND_OF_QUANTITY[quantity]
        assert binding.register.binds
        assert binding.register.quantity in (quantity, None)
        if instrument.map.kind == "power_meter":
            assert binding.register.phase == phase


def test_layout_of_the_test_site() -> None:
    devices = load_registry(SITE).enterprises["91320682MA1FLD000G"].devices
    assert [[(i.slave_id, i.map.kind, i.facility, [(b.point.factor, b.register.name) for b in i.bindings])
             for i in layout.instruments(device)] for device in devices] == [
        [
            (1, "power_meter", "P1", [("i33200", "I"), ("i33201", "EP_imp"), ("i33202", "Ua"), ("i33203", "P"),
                                      ("i33204", "PF"), ("i33205", "F"), ("i33206", "P_dmd")]),
            (2, "current_transducer", "T1", [("g10201", "I1")]),
            (3, "digital_inputs", "T2", [("g10301", "DI1")]),
            (4, "digital_inputs", "T1", [("g10101", "DI1")]),
            (5, "transmitter", "T2", [("w01001", "PV")]),
            (6, "transmitter", "T3", [("a01012", "PV")]),
        ],
        [
            (1, "current_transducer", "T1", [("d10101", "I1"), ("d10201", "I2"), ("d10301", "I3")]),
            (2, "power_meter", "T1", [("d12101", "P")]),
        ],
    ]


def test_a_taken_register_sends_the_point_to_the_next_instrument() -> None:
    instruments = layout.instruments(_device(
        {"factor": "i1", "facility": "P1", "quantity": "current"},
        {"factor": "i2", "facility": "P1", "quantity": "current"},  # a second line of P1: a second meter
        {"factor": "i3", "facility": "P2", "quantity": "current"},  # another facility: its own meter
        {"factor": "f1", "facility": "T1", "quantity": "fan_current"},
        {"factor": "f2", "facility": "T1", "quantity": "fan_current"},  # two single-phase fans: channels 1, 2
        {"factor": "s1", "facility": "T1", "quantity": "switch"},
        {"factor": "s2", "facility": "T1", "quantity": "spray"},
        {"factor": "t1", "facility": "T2", "quantity": "temperature"},
        {"factor": "t2", "facility": "T2", "quantity": "temperature"},  # one transmitter per point
        {"factor": "c1", "facility": "T3", "quantity": "carbon_hours"},  # no instrument
    ))
    assert [(i.slave_id, i.map.kind, i.facility, [b.register.name for b in i.bindings]) for i in instruments] == [
        (1, "power_meter", "P1", ["I"]),
        (2, "power_meter", "P1", ["I"]),
        (3, "power_meter", "P2", ["I"]),
        (4, "current_transducer", "T1", ["I1", "I2"]),
        (5, "digital_inputs", "T1", ["DI1", "DI2"]),
        (6, "transmitter", "T2", ["PV"]),
        (7, "transmitter", "T2", ["PV"]),
    ]


def test_more_instruments_than_a_line_can_address_is_an_error() -> None:
    points = [{"factor": f"t{n}", "facility": "T1", "quantity": "temperature"} for n in range(248)]
    with pytest.raises(layout.LayoutError, match="more than 247"):
        layout.instruments(_device(*points))


def test_every_demo_point_with_an_instrument_is_read_from_exactly_one_register() -> None:
    registry = load_registry(DEMO)
    for ref in registry.devices.values():
        instruments = layout.instruments(ref.device)
        assert [i.slave_id for i in instruments] == list(range(1, len(instruments) + 1))
        bound = [b.point.factor for i in instruments for b in i.bindings]
        assert sorted(bound) == sorted(p.factor for p in ref.device.points if p.quantity in KIND_OF_QUANTITY)
        for instrument in instruments:
            names = [b.register.name for b in instrument.bindings]
            assert len(names) == len(set(names))
            assert all(b.point.facility == instrument.facility for b in instrument.bindings)


# --- scenario files -------------------------------------------------------------------------------------------------


def test_the_example_scenario_loads() -> None:
    scenario = load_scenario(ROOT / "config" / "scenarios" / "workday.toml")
    assert scenario.speed == 60.0 and scenario.shifts == ((8.0, 11.5), (12.5, 17.5))
    assert {e.fault for e in scenario.events} <= set(FAULTS)
    assert [e.fault for e in scenario.active(timedelta(minutes=95))] == ["treatment_off"]
    assert scenario.active(timedelta(minutes=110)) == []


def test_an_empty_scenario_is_a_normal_day_from_now() -> None:
    scenario = parse_scenario({})
    assert scenario.start is None and scenario.events == () and scenario.shifts is None


@pytest.mark.parametrize(("data", "message"), [
    ({"sped": 2}, "sped: unknown key"),
    ({"speed": "fast"}, "speed: must be a number"),
    ({"speed": 0}, "speed: must be in"),
    ({"noise": 2}, "noise: must be in"),
    ({"start": "07:30"}, "start: must be a local date-time"),
    ({"schedule": {"shifts": [[9, 8]]}}, r"schedule.shifts\[0\]: from_hour must be before to_hour"),
    ({"schedule": {"shifts": [[8]]}}, r"schedule.shifts\[0\]: must be \[from_hour, to_hour\]"),
    ({"schedule": {"shift": []}}, "schedule.shift: unknown key"),
    ({"events": [{"fault": "treatmnt_off", "at": 0, "minutes": 1}]}, r"events\[0\].fault: unknown fault"),
    ({"events": [{"fault": "stale", "minutes": 1}]}, r"events\[0\].at: required"),
    ({"events": [{"fault": "low_load", "at": 0, "minutes": 1, "slave": 2}]}, r"events\[0\].slave: only for"),
    ({"events": [{"fault": "stale", "at": 0, "minutes": 1, "slave": 300}]}, r"events\[0\].slave: must be in"),
    ({"events": [{"fault": "stale", "at": 0, "minutes": 1, "when": 3}]}, r"events\[0\].when: unknown key"),
])
def test_scenario_errors_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=f"^x.toml: {message}"):
        parse_scenario(data, "x.toml")


def test_a_scenario_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("speed = = 1\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="bad.toml"):
        load_scenario(path)


# --- docs ----------------------------------------------------------------------------------------------------------


def _doc_row(register: Register) -> str:
    if not register.binds:
        point = "—"
    elif register.quantity is None:
        point = "the transmitter's point" if register.table == "holding" else "`switch`, `spray`"
    else:
        point = f"`{register.quantity}`" + (f" phase `{register.phase}`" if register.phase else "")
    return (f"| {register.table} | {register.address} | 0x{register.address:04X} | `{register.name}` | "
            f"{register.unit or '—'} | {point} | {register.meaning} |")


def test_docs_show_every_register_map_as_the_code_has_it() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for register_map in MAPS.values():
        heading = f"### `{register_map.kind}`: {register_map.title}\n"
        assert heading in text
        section = text.split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if re.match(r"\| (holding|discrete|coil) ", line)]
        assert rows == [_doc_row(r) for r in register_map.registers]


def test_docs_describe_every_fault_and_scenario_key() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for fault in FAULTS:
        assert f"| `{fault}` |" in text
    for key in ("start", "speed", "seed", "noise", "[schedule] shifts", "[schedule] lead_minutes",
                "[schedule] lag_minutes", "[[events]] fault", "[[events]] at", "[[events]] minutes",
                "[[events]] mn", "[[events]] slave"):
        assert f"| `{key}` |" in text
