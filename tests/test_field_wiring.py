"""A real site's wiring: the registry's `modbus` block (validation, overrides on the layout), RTU frames over TCP,
split uploads under SM4, and the logger's own running-time counters.

The end-to-end runs (simulator -> logger -> serve -> InfluxDB) are in test_field_logger.py; these are the pieces.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient
from twisted.internet.task import Clock as FakeReactor

from gkjk.registry import RegistryError, load_registry
from ingest_twisted.field import layout
from ingest_twisted.field.counters import RunCounters, run_points
from ingest_twisted.field.logger import MAX_SEGMENT, Clock, DataLogger, ModbusReader, _spans
from ingest_twisted.field.modbus_sim import SiteSimulator
from ingest_twisted.field.scenario import Scenario
from ingest_twisted.hj212 import sm4
from ingest_twisted.hj212.frame import FrameDecoder
from ingest_twisted.hj212.packet import CP, parse_segment
from field_support import telegraf_float32

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "tests" / "data" / "field" / "site.yaml"
ENT = "91320682MA1FLD000G"
MN = "0A0000A8900016F0001F1E01"


def site_with(tmp_path: Path, modbus: dict | None, device: int = 0, **device_keys) -> Path:
    """The test site with a `modbus` block (and other keys) on one device."""
    doc = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    if modbus is not None:
        doc["devices"][device]["modbus"] = modbus
    doc["devices"][device].update(device_keys)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def device_of(path: Path, mn: str = MN):
    return load_registry(path).device(mn).device


# --- registry ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("modbus", "field", "message"), [
    ({"port": 502}, "devices[0].modbus.host", "Field required"),
    ({"host": "gw 1"}, "devices[0].modbus.host", "must be a host name or IP address"),
    ({"host": "10.0.0.7", "port": 70000}, "devices[0].modbus.port", "less than or equal to 65535"),
    ({"host": "10.0.0.7", "framer": "rtu"}, "devices[0].modbus.framer", "'tcp' or 'rtu_over_tcp'"),
    ({"host": "10.0.0.7", "byte_order": "ABDC"}, "devices[0].modbus.byte_order", "unknown value 'ABDC'"),
    ({"host": "10.0.0.7", "unit": 3}, "devices[0].modbus.unit", "unknown key"),
    ({"host": "10.0.0.7", "points": [{"factor": "x99999", "unit_id": 3}]},
     "devices[0].modbus.points[0].factor", "factor 'x99999' is not a point of this device"),
    ({"host": "10.0.0.7", "points": [{"factor": "g10401", "address": 3}]},
     "devices[0].modbus.points[0].factor", "carbon_hours is computed by the data logger"),
    ({"host": "10.0.0.7", "points": [{"factor": "i33200", "unit_id": 3}, {"factor": "I33200", "address": 8}]},
     "devices[0].modbus.points[1].factor", "duplicate factor 'I33200' (also points[0])"),
    ({"host": "10.0.0.7", "points": [{"factor": "i33200", "unit_id": 248}]},
     "devices[0].modbus.points[0].unit_id", "less than or equal to 247"),
    ({"host": "10.0.0.7", "points": [{"factor": "i33200", "address": -1}]},
     "devices[0].modbus.points[0].address", "greater than or equal to 0"),
])
def test_a_bad_modbus_block_names_the_field(tmp_path: Path, modbus: dict, field: str, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        load_registry(site_with(tmp_path, modbus))
    found = [str(issue) for issue in caught.value.issues]
    assert any(f": {field}: " in line and message in line for line in found), found


def test_a_modbus_block_defaults(tmp_path: Path) -> None:
    device = device_of(site_with(tmp_path, {"host": "192.168.10.20"}))
    assert (device.modbus.port, device.modbus.framer, device.modbus.byte_order) == (502, None, None)
    wiring = layout.connection(device, layout.Connection("127.0.0.1", 5020, "tcp", "DCBA"))
    assert wiring == layout.Connection("192.168.10.20", 502, "tcp", "DCBA")  # unsaid: the command's defaults
    plain = device_of(SITE)
    assert layout.connection(plain, layout.Connection("127.0.0.1", 5020)) == layout.Connection("127.0.0.1", 5020)


# --- layout overrides -------------------------------------------------------------------------------------------------


def test_overrides_move_instruments_and_registers_and_leave_the_rest(tmp_path: Path) -> None:
    modbus = {"host": "10.0.0.7", "framer": "rtu_over_tcp", "byte_order": "CDAB", "points": [
        {"factor": "i33200", "unit_id": 21, "address": 300},
        {"factor": "i33201", "byte_order": "BADC"},  # energy: on the same meter as i33200
        {"factor": "a01012", "unit_id": 9},
    ]}
    derived = {i.slave_id: i for i in layout.instruments(device_of(SITE))}
    wired = {i.slave_id: i for i in layout.instruments(device_of(site_with(tmp_path, modbus)))}
    assert set(wired) == {21, 2, 3, 4, 5, 9}
    meter = wired[21]
    assert meter.byte_order == "BADC" and meter.bound("I").register.address == 300
    assert meter.bound("EP_imp").register.address == derived[1].bound("EP_imp").register.address
    assert {i.byte_order for s, i in wired.items() if s != 21} == {"CDAB"}
    # The meter serves the moved register at 300 and no longer at 14; registers that overlap nothing stay.
    served = {(r.name, r.address) for r in meter.registers() if r.table == "holding"}
    assert ("I", 300) in served and ("I", 14) not in served and ("Ia", 8) in served
    assert len(served) == len({(r.name, r.address) for r in derived[1].registers() if r.table == "holding"})


def test_a_moved_register_hides_the_unbound_register_it_covers(tmp_path: Path) -> None:
    modbus = {"host": "10.0.0.7", "points": [{"factor": "i33200", "address": 24}]}  # where Qa (unbound) was
    meter = layout.instruments(device_of(site_with(tmp_path, modbus)))[0]
    at_24 = [r.name for r in meter.registers() if r.table == "holding" and r.address in (24, 25)]
    assert at_24 == ["I"]


@pytest.mark.parametrize(("points", "message"), [
    ([{"factor": "i33200", "unit_id": 2}],
     "unit id 2 is given to two instruments: power_meter of P1 (i33200, i33201, i33202, i33203, i33204, i33205, "
     "i33206) and current_transducer of T1 (g10201)"),
    ([{"factor": "i33200", "unit_id": 7}, {"factor": "i33201", "unit_id": 8}],
     "modbus.points i33201: unit_id 8 but i33200 on the same instrument (power_meter of P1) says 7"),
    ([{"factor": "i33200", "byte_order": "ABCD"}, {"factor": "i33203", "byte_order": "DCBA"}],
     "modbus.points i33203: byte_order DCBA but i33200 on the same instrument (power_meter of P1) says ABCD"),
    ([{"factor": "i33200", "address": 49}],  # F (i33205) is at 48-49, EP_imp (i33201) at 50-51
     "i33200 and i33201 overlap at holding address 49 of unit id 1"),
])
def test_colliding_overrides_are_errors_naming_what_collides(tmp_path: Path, points: list, message: str) -> None:
    device = device_of(site_with(tmp_path, {"host": "10.0.0.7", "points": points}))
    with pytest.raises(layout.LayoutError, match="device 0A0000A8900016F0001F1E01: ") as caught:
        layout.instruments(device)
    assert message in str(caught.value)


def test_reads_are_split_where_an_override_puts_registers_far_apart(tmp_path: Path) -> None:
    modbus = {"host": "10.0.0.7", "points": [{"factor": "i33200", "address": 1000}]}
    meter = layout.instruments(device_of(site_with(tmp_path, modbus)))[0]
    spans = _spans([b for b in meter.bindings if b.register.table == "holding"], 125)
    assert [(first, count) for first, count, _ in spans] == [(0, 90), (1000, 2)]
    assert sum(len(bindings) for _, _, bindings in spans) == len(meter.bindings)


# --- RTU over TCP -----------------------------------------------------------------------------------------------------


def test_a_serial_server_speaks_rtu_frames_only(tmp_path: Path) -> None:
    registry = load_registry(site_with(tmp_path, {"host": "127.0.0.1", "framer": "rtu_over_tcp",
                                                  "byte_order": "BADC"}))

    async def scenario() -> tuple[float, float, bool]:
        simulator = SiteSimulator(registry, ENT, Scenario(start=datetime(2024, 5, 6, 9, 0)))
        try:
            await simulator.step(simulator.start_time)
            gateway = next(g for g in simulator.gateways if g.device.mn == MN)
            rtu = AsyncModbusTcpClient("127.0.0.1", port=gateway.port, framer=layout.PYMODBUS_FRAMERS["rtu_over_tcp"],
                                       retries=0, timeout=1)
            assert await rtu.connect()
            response = await rtu.read_holding_registers(14, count=2, device_id=1)
            rtu.close()
            tcp = AsyncModbusTcpClient("127.0.0.1", port=gateway.port, retries=0, timeout=0.5)
            assert await tcp.connect()
            try:
                answered = not (await tcp.read_holding_registers(14, count=2, device_id=1)).isError()
            except Exception:  # pymodbus: no valid answer to an MBAP request
                answered = False
            tcp.close()
            return telegraf_float32(response.registers, "BADC"), gateway.values["i33200"], answered
        finally:
            await simulator.stop()

    read, model, tcp_answered = asyncio.run(scenario())
    assert read == pytest.approx(model, rel=1e-6) and read > 10
    assert not tcp_answered


# --- split uploads and counters (the logger's pieces, no network) ----------------------------------------------------


def test_fragments_of_an_encrypted_upload_fit_1024_bytes_as_sent(tmp_path: Path) -> None:
    key = "30303030303030303030303030303030"
    device = device_of(site_with(tmp_path, None, device=1, sm4_key=key), "0B0000A8900016F0001F1E02")
    registry = load_registry(tmp_path / "site.yaml")
    reactor = FakeReactor()
    logger = DataLogger(device, registry.enterprises[ENT], ModbusReader(device, layout.Connection("127.0.0.1", 1)),
                        [("127.0.0.1", 1)], tmp_path / "store", Clock(reactor, datetime(2024, 5, 6, 9, 0)))
    try:
        factors = {f"d{n:05d}": {"Avg": "123.456", "Min": "120.001", "Max": "130.999", "Flag": "N"}
                   for n in range(60)}
        moment = datetime(2024, 5, 6, 9, 10)
        frames = logger.fragments("2051", CP(data_time="20240506090000", factors=factors), moment)
        packets = []
        for frame, _ in frames:
            [event] = list(FrameDecoder().feed(frame))
            assert len(event.segment) <= MAX_SEGMENT
            segment, crc_ok = sm4.decrypt_frame(event, key)
            assert crc_ok
            packets.append(parse_segment(segment))
        assert len(packets) >= 5 and [p.pno for p in packets] == list(range(1, len(packets) + 1))
        assert {p.pnum for p in packets} == {len(packets)} and {p.flag for p in packets} == {8 | 2 | 1}
        assert {p.cp.data_time for p in packets} == {"20240506090000"}
        merged = {code: items for p in packets for code, items in p.cp.factors.items()}
        assert merged == factors
        small = logger.fragments("2011", CP(data_time="20240506090000", factors={"d10101": {"Rtd": "1"}}), moment)
        assert len(small) == 1 and small[0][1].pnum is None
    finally:
        logger.stop()


def test_an_adsorber_without_a_meter_runs_with_the_fans_of_its_production(tmp_path: Path) -> None:
    registry = load_registry(SITE)
    ref = registry.device(MN)
    by_facility = {p.facility: p for p in ref.device.points if p.quantity == "carbon_hours"}
    # T4 (activated carbon, serves P1) has no run point: the fan T1 serving P1 tells (its current and switch).
    sources = run_points(ref.device, ref.enterprise, by_facility["T4"].facility)
    assert sorted(p.factor for p in sources) == ["g10101", "g10201"]
    # A facility with run points of its own uses those.
    assert [p.factor for p in run_points(ref.device, ref.enterprise, "P1")] == ["i33200"]


def test_counters_credit_running_intervals_in_the_points_unit_and_persist(tmp_path: Path) -> None:
    doc = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    doc["devices"][0]["points"].append({"factor": "g10501", "facility": "P1", "quantity": "run_time", "unit": "min"})
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    ref = load_registry(path).device(MN)
    counters = RunCounters(ref.device, ref.enterprise, tmp_path / "counters.json")
    at = datetime(2024, 5, 6, 9, 0)
    running = {"i33200": 40.0, "g10201": 45.0, "g10101": 1.0}  # P1 above on_threshold 12, fan T1 on

    def advance(minutes: float, values: dict[str, float]) -> dict[str, float]:
        return counters.advance(at + timedelta(minutes=minutes), values, max_step=60)

    assert advance(0, running) == {"g10401": 0.0, "g10501": 0.0}  # the first record credits nothing
    assert advance(1, running) == {"g10401": pytest.approx(1 / 60), "g10501": pytest.approx(1.0)}
    # P1 stops (i33200 at 5 A, below its on_threshold of 12): its run time holds, the fan's carbon hours go on.
    assert advance(2, {**running, "i33200": 5.0}) == {"g10401": pytest.approx(2 / 60), "g10501": pytest.approx(1.0)}
    counters.pause()  # the gateway was unreachable: the next record credits nothing
    assert advance(30, running) == {"g10401": pytest.approx(2 / 60), "g10501": pytest.approx(1.0)}
    assert advance(40, running)["g10501"] == pytest.approx(2.0)  # ten minutes later: at most one interval (60 s)
    counters.save()
    again = RunCounters(ref.device, ref.enterprise, tmp_path / "counters.json")
    assert again.advance(at, running, 60) == {"g10401": pytest.approx(3 / 60), "g10501": pytest.approx(2.0)}
