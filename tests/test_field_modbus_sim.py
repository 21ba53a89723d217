"""Modbus simulator: a pymodbus client reads the device model's values in every byte order; faults act on registers.

The simulator's clock is driven by hand (`SiteSimulator.step`), so every test sees exact moments of the scenario.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gkjk import cli
from gkjk.registry import load_registry
from ingest_twisted.field.modbus_sim import Gateway, SiteSimulator
from ingest_twisted.field.registers import BYTE_ORDERS
from ingest_twisted.field.scenario import Event, Scenario
from field_support import telegraf_float32

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "tests" / "data" / "field" / "site.yaml"
ENT = "91320682MA1FLD000G"
MN_2017, MN_2025 = "0A0000A8900016F0001F1E01", "0B0000A8900016F0001F1E02"
MORNING = datetime(2024, 5, 6, 9, 0)  # production runs 8-12 in every scenario below
SHIFTS = ((8.0, 12.0), (13.0, 17.0))


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on its own event loop (pymodbus is asyncio; the suite has no asyncio plugin)."""
    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return wrapper


def float32(value: float) -> float:
    """The value as float32 holds it: what 'equal within float32 precision' compares against."""
    return struct.unpack(">f", struct.pack(">f", value))[0]


def site(*events: Event, byte_order: str = "ABCD", noise: float = 0.0) -> SiteSimulator:
    scenario = Scenario(start=MORNING, shifts=SHIFTS, noise=noise, events=events)
    return SiteSimulator(load_registry(SITE), ENT, scenario, byte_order=byte_order)


def gateway(simulator: SiteSimulator, mn: str) -> Gateway:
    return next(g for g in simulator.gateways if g.device.mn == mn)


async def connect(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, timeout=2)
    assert await client.connect()
    return client


async def read_point(client: AsyncModbusTcpClient, g: Gateway, factor: str) -> float:
    """Read one registry point where the layout puts it, decoded in the gateway's byte order."""
    instrument, binding = next((i, b) for i in g.instruments for b in i.bindings if b.point.factor == factor)
    if binding.register.table == "discrete":
        response = await client.read_discrete_inputs(binding.register.address, count=1,
                                                     device_id=instrument.slave_id)
        assert not response.isError(), response
        return float(response.bits[0])
    response = await client.read_holding_registers(binding.register.address, count=2, device_id=instrument.slave_id)
    assert not response.isError(), response
    return telegraf_float32(response.registers, g.byte_order)


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@run_async
async def test_a_client_reads_the_model_values_in_every_byte_order(byte_order: str) -> None:
    simulator = site(byte_order=byte_order)
    try:
        for moment in (MORNING, MORNING + timedelta(seconds=1)):  # the registers follow the model every step
            await simulator.step(moment)
            for g in simulator.gateways:
                client = await connect(g.port)
                for instrument in g.instruments:
                    for binding in instrument.bindings:
                        expected = g.values[binding.point.factor]
                        if binding.register.table == "discrete":
                            expected = float(expected >= 0.5)
                        assert await read_point(client, g, binding.point.factor) == float32(expected), (
                            instrument.slave_id, binding)
                    # The whole map, unbound registers included, shows what the gateway says it shows.
                    holding = [r for r in instrument.map.registers if r.table == "holding"]
                    if holding:
                        count = max(r.address + 2 for r in holding)
                        words = (await client.read_holding_registers(0, count=count,
                                                                     device_id=instrument.slave_id)).registers
                        for r in holding:
                            assert telegraf_float32(words[r.address:r.address + 2], byte_order) == float32(
                                g.readings[instrument.slave_id][r.name]), r.name
                client.close()
    finally:
        await simulator.stop()


@pytest.mark.parametrize("byte_order", ["ABCD", "CDAB"])
@run_async
async def test_pymodbus_own_decoder_agrees_for_the_orders_it_knows(byte_order: str) -> None:
    simulator = site(byte_order=byte_order)
    try:
        await simulator.step(MORNING)
        g = gateway(simulator, MN_2017)
        client = await connect(g.port)
        words = (await client.read_holding_registers(14, count=2, device_id=1)).registers  # meter of P1, I
        word_order = "big" if byte_order == "ABCD" else "little"
        assert client.convert_from_registers(words, client.DATATYPE.FLOAT32, word_order=word_order) == float32(
            g.values["i33200"])
        client.close()
    finally:
        await simulator.stop()


@run_async
async def test_meter_values_are_plausible_while_producing() -> None:
    simulator = site()
    try:
        await simulator.step(MORNING)
        g = gateway(simulator, MN_2017)
        readings = g.readings[1]  # the power meter of P1, rated 80 A
        assert 40 < readings["I"] < 80 and 40 < readings["Ia"] < 80
        assert 200 < readings["Ua"] < 240 and 49.5 < readings["F"] < 50.5 and 0.85 < readings["PF"] <= 1
        assert 0 < readings["Pa"] < readings["P"]
        assert readings["EP_exp"] == readings["EPa_exp"] == 0.0  # a consuming site exports nothing
        assert g.readings[3]["DI1"] == 1.0 and g.readings[3]["DI2"] == 0.0  # spray pump on, unused input off
    finally:
        await simulator.stop()


@run_async
async def test_digital_inputs_are_readable_as_coils_too_and_instruments_are_read_only() -> None:
    simulator = site()
    try:
        await simulator.step(MORNING)
        g = gateway(simulator, MN_2017)
        client = await connect(g.port)
        discrete = await client.read_discrete_inputs(0, count=8, device_id=3)
        coils = await client.read_coils(0, count=8, device_id=3)
        assert discrete.bits[:8] == coils.bits[:8] == [True] + [False] * 7
        refused = [
            await client.write_register(14, 1, device_id=1),
            await client.write_coil(0, False, device_id=3),
            await client.read_input_registers(0, count=2, device_id=1),  # the meter has no input registers
            await client.read_coils(0, count=1, device_id=1),  # nor coils
            await client.read_holding_registers(96, count=2, device_id=1),  # past its map
        ]
        assert [r.exception_code for r in refused] == [2] * len(refused)
        client.close()
    finally:
        await simulator.stop()


# (fault, factor read, predicate during the fault, predicate after it), on the 2017 device.
MODEL_FAULTS = [
    ("treatment_off", "g10201", lambda v: v < 9, lambda v: v > 9),  # fan below its on_threshold
    ("treatment_off", "g10301", lambda v: v == 0, lambda v: v == 1),  # spray pump input
    ("treatment_off", "i33200", lambda v: v > 12, lambda v: v > 12),  # production keeps running
    ("low_load", "g10201", lambda v: 9 < v < 0.5 * 45, lambda v: v > 0.7 * 45),  # normal running current 45 A
    ("burner_cold", "a01012", lambda v: v < 760, lambda v: v > 760),  # RTO minimum temperature
    ("spray_off", "g10301", lambda v: v == 0, lambda v: v == 1),
]


@pytest.mark.parametrize(("fault", "factor", "during", "after"), MODEL_FAULTS,
                         ids=[f"{f}-{p}" for f, p, _, _ in MODEL_FAULTS])
@run_async
async def test_model_faults_change_the_registers(fault: str, factor: str, during: Callable[[float], bool],
                                                 after: Callable[[float], bool]) -> None:
    simulator = site(Event(fault, timedelta(minutes=0), timedelta(minutes=10)))
    try:
        g = gateway(simulator, MN_2017)
        await simulator.step(MORNING + timedelta(minutes=1))
        client = await connect(g.port)
        assert during(await read_point(client, g, factor))
        await simulator.step(MORNING + timedelta(minutes=11))
        assert after(await read_point(client, g, factor))
        client.close()
    finally:
        await simulator.stop()


@run_async
async def test_flat_freezes_every_value() -> None:
    simulator = site(Event("flat", timedelta(minutes=0), timedelta(minutes=10)))
    try:
        g = gateway(simulator, MN_2017)
        await simulator.step(MORNING)
        first = dict(g.readings[1])
        await simulator.step(MORNING + timedelta(minutes=5))
        assert g.readings[1] == first
    finally:
        await simulator.stop()


@run_async
async def test_power_loss_closes_the_gateway_until_the_event_ends() -> None:
    simulator = site(Event("power_loss", timedelta(minutes=5), timedelta(minutes=5), mn=MN_2017))
    try:
        g, other = gateway(simulator, MN_2017), gateway(simulator, MN_2025)
        await simulator.step(MORNING)
        port = g.port
        client = await connect(port)
        assert await read_point(client, g, "i33200") > 12
        await simulator.step(MORNING + timedelta(minutes=6))
        with pytest.raises(OSError):  # the port refuses connections ...
            await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)  # let the client see its connection go
        with pytest.raises(ModbusException):  # ... and open connections are closed
            await client.read_holding_registers(0, count=2, device_id=1)
        client.close()
        other_client = await connect(other.port)  # the other device (mn given) is unaffected
        assert await read_point(other_client, other, "d10101") > 9
        other_client.close()
        await simulator.step(MORNING + timedelta(minutes=11))
        assert g.port == port
        client = await connect(port)
        assert await read_point(client, g, "i33200") == float32(g.values["i33200"])
        client.close()
    finally:
        await simulator.stop()


@run_async
async def test_stale_registers_keep_their_last_values() -> None:
    simulator = site(Event("stale", timedelta(minutes=5), timedelta(minutes=5), slave=1), noise=0.01)
    try:
        g = gateway(simulator, MN_2017)
        await simulator.step(MORNING + timedelta(minutes=4))
        client = await connect(g.port)
        before = (await client.read_holding_registers(0, count=96, device_id=1)).registers
        transducer = (await client.read_holding_registers(0, count=6, device_id=2)).registers
        for minute in (6, 7):
            await simulator.step(MORNING + timedelta(minutes=minute))
            assert (await client.read_holding_registers(0, count=96, device_id=1)).registers == before
        assert (await client.read_holding_registers(0, count=6, device_id=2)).registers != transducer  # slave 2 not
        await simulator.step(MORNING + timedelta(minutes=11))
        assert (await client.read_holding_registers(0, count=96, device_id=1)).registers != before
        client.close()
    finally:
        await simulator.stop()


@run_async
async def test_a_slave_stale_from_the_start_serves_its_first_reading() -> None:
    simulator = site(Event("stale", timedelta(minutes=0), timedelta(minutes=10)))
    try:
        await simulator.step(MORNING)
        g = gateway(simulator, MN_2017)
        first = g.values["i33200"]
        await simulator.step(MORNING + timedelta(minutes=1))
        client = await connect(g.port)
        assert await read_point(client, g, "i33200") == float32(first) != float32(g.values["i33200"])
        client.close()
    finally:
        await simulator.stop()


@run_async
async def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        simulator = SiteSimulator(load_registry(SITE), ENT, Scenario(start=MORNING), port_base=port)
        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}"):
            await simulator.step(MORNING)
        await simulator.stop()


@run_async
async def test_a_slave_that_does_not_answer_gives_exception_0x0b() -> None:
    simulator = site(Event("no_response", timedelta(minutes=0), timedelta(minutes=5), slave=2))
    try:
        g = gateway(simulator, MN_2017)
        await simulator.step(MORNING + timedelta(minutes=1))
        client = await connect(g.port)
        response = await client.read_holding_registers(0, count=2, device_id=2)
        assert response.isError() and response.exception_code == 0x0B
        assert not (await client.read_holding_registers(0, count=2, device_id=1)).isError()
        await simulator.step(MORNING + timedelta(minutes=6))
        assert not (await client.read_holding_registers(0, count=2, device_id=2)).isError()
        client.close()
    finally:
        await simulator.stop()


@run_async
async def test_meter_noise_changes_analog_readings_but_not_energy_counters() -> None:
    simulator = site(noise=0.02)
    try:
        await simulator.step(MORNING)
        g = gateway(simulator, MN_2017)
        meter = g.readings[1]
        assert meter["I"] != g.values["i33200"] and abs(meter["I"] / g.values["i33200"] - 1) < 0.15
        assert meter["EP_imp"] == g.values["i33201"]
    finally:
        await simulator.stop()


@run_async
async def test_run_steps_on_the_clock_and_stops_the_gateways_when_cancelled() -> None:
    simulator = SiteSimulator(load_registry(SITE), ENT, Scenario(start=MORNING, shifts=SHIFTS, speed=600))
    task = asyncio.create_task(simulator.run(interval=0.1))
    await asyncio.sleep(0.5)
    g = gateway(simulator, MN_2017)
    client = await connect(g.port)
    first = await read_point(client, g, "i33201")
    await asyncio.sleep(0.5)
    assert await read_point(client, g, "i33201") > first  # energy counts on the compressed clock
    client.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(gw.running for gw in simulator.gateways)


def test_an_unknown_enterprise_is_an_error() -> None:
    with pytest.raises(ValueError, match="not in the registry"):
        SiteSimulator(load_registry(SITE), "91320682MA1P7Q3K3X", Scenario())


@pytest.mark.parametrize(("extra", "message"), [
    (["--enterprise", "91320682MA1P7Q3K3X"], "enterprise 91320682MA1P7Q3K3X is not in the registry"),
    (["--enterprise", ENT, "--scenario", str(ROOT / "pyproject.toml")], "scenario error: .*pyproject.toml: "),
])
def test_cli_errors_name_the_problem(extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        cli.main(["modbus-sim", "--registry", str(SITE), "--port-base", "0", *extra])
