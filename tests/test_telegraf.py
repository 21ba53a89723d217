"""Telegraf configs: TOML, only documented option names, the committed sample is current, and they read the simulator.

telegraf/allowed_options.toml lists, per plugin, the option names of Telegraf's documented sample configs; every
generated file is checked against it. The last test reads the simulator the way a generated config tells Telegraf
to (register table, address, FLOAT32 in the byte order) and expects the device model's values.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient

from gkjk import cli
from gkjk.config import InfluxConfig
from gkjk.registry import load_registry
from ingest_twisted.field import layout, telegraf
from ingest_twisted.field.modbus_sim import SiteSimulator
from ingest_twisted.field.registers import BYTE_ORDERS, KIND_OF_QUANTITY
from ingest_twisted.field.scenario import Scenario
from field_support import telegraf_float32

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = tomllib.loads((ROOT / "telegraf" / "allowed_options.toml").read_text(encoding="utf-8"))
GENERATED = ROOT / "telegraf" / "generated"
DEMO = ROOT / "registry" / "demo"
SITE = ROOT / "tests" / "data" / "field" / "site.yaml"
README = ROOT / "telegraf" / "README.md"
PLATFORM_TAGS = {"mn", "ent", "county", "fac"}

VARIANTS = {
    "defaults": telegraf.Options(),
    "credentials": telegraf.Options(
        modbus_host="10.20.0.7", port_base=502, byte_order="CDAB", hosts_database="hosts",
        influx=InfluxConfig(url="https://influx.example:8086", database="gkjk", retention_policy="rtd_90d",
                            username="writer", password="secret", org="bureau", timeout=2.5)),
}


def _names(section: dict[str, Any]) -> set[str]:
    names = set(section.get("options", []))
    if "common" in section:
        names |= set(ALLOWED["common"][section["common"]]["options"])
    return names


def _check_table(table: dict[str, Any], path: str, where: str) -> None:
    section = ALLOWED["sections"].get(path)
    assert section is not None, f"{where}: [{path}] has no entry in allowed_options.toml"
    if section.get("free"):
        return
    allowed = _names(section)
    for key, value in table.items():
        assert key in allowed, f"{where}: {path}.{key} is not in Telegraf's documented options ({section['source']})"
        child = f"{path}.{key}"
        if child in ALLOWED["sections"]:
            for item in value if isinstance(value, list) else [value]:
                _check_table(item, child, where)
        elif key in section.get("items", {}):
            for item in value:
                unknown = set(item) - set(section["items"][key])
                assert not unknown, f"{where}: {child} items use {unknown} ({section['source']})"


def check_options(text: str, where: str) -> dict[str, Any]:
    """Parse a generated config and check every option name against allowed_options.toml."""
    doc = tomllib.loads(text)
    assert set(doc) <= {"agent", "inputs", "outputs", "processors"}, where
    _check_table(doc["agent"], "agent", where)
    for kind in ("inputs", "outputs", "processors"):
        for plugin, instances in doc.get(kind, {}).items():
            for instance in instances:
                _check_table(instance, f"{kind}.{plugin}", where)
    return doc


def test_allowed_options_name_their_documentation() -> None:
    for entry in [*ALLOWED["common"].values(), *ALLOWED["sections"].values()]:
        assert entry["source"].startswith("https://github.com/influxdata/telegraf/blob/master/")
        assert entry.get("free") or entry["options"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_generated_file_is_toml_with_documented_options_only(variant: str) -> None:
    files = telegraf.render(load_registry(DEMO), VARIANTS[variant])
    assert files
    for name, text in files.items():
        check_options(text, f"{variant}: {name}")


def test_option_check_catches_an_undocumented_option() -> None:
    text = telegraf.render(load_registry(SITE), telegraf.Options())["influxdb_v1/91320682MA1FLD000G.conf"]
    with pytest.raises(AssertionError, match="inputs.modbus.request.byteorder"):
        check_options(text.replace("byte_order =", "byteorder =", 1), "edited")
    with pytest.raises(AssertionError, match="items use"):
        check_options(text.replace(", type = ", ", datatype = ", 1), "edited")


def test_committed_sample_equals_a_fresh_generation() -> None:
    fresh = telegraf.render(load_registry(DEMO), telegraf.Options())
    committed = {str(p.relative_to(GENERATED)): p.read_text(encoding="utf-8")
                 for p in sorted(GENERATED.rglob("*")) if p.is_file()}
    assert committed.keys() == fresh.keys(), "run: gkjk telegraf build --registry registry/demo"
    for name, text in fresh.items():
        assert committed[name] == text, f"telegraf/generated/{name} is stale: run gkjk telegraf build"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_site_configs_read_every_modbus_point_once_with_the_platform_tags(variant: str) -> None:
    options = VARIANTS[variant]
    registry = load_registry(DEMO)
    files = telegraf.render(registry, options)
    for output in telegraf.OUTPUTS:
        for enterprise_id, enterprise in registry.enterprises.items():
            doc = tomllib.loads(files[f"{output}/{enterprise_id}.conf"])
            assert doc["agent"]["omit_hostname"] is True
            inputs = {i["name"]: i for i in doc["inputs"]["modbus"]}
            for index, device in enumerate(enterprise.devices):
                instruments = layout.instruments(device)
                if not instruments:
                    assert device.mn not in inputs
                    continue
                modbus = inputs[device.mn]
                assert modbus["controller"] == f"tcp://{options.modbus_host}:{options.port_base + index}"
                assert modbus["interval"] == f"{device.rtd_interval}s"
                assert modbus["configuration_type"] == "request" and modbus["exclude_register_type_tag"] is True
                expected = {(b.point.factor + "-Rtd", i.slave_id, b.register.table, b.register.address)
                            for i in instruments for b in i.bindings}
                read = set()
                for request in modbus["request"]:
                    assert request["byte_order"] == options.byte_order in BYTE_ORDERS
                    assert request["measurement"] == "rtd"
                    assert request["tags"] == {"mn": device.mn, "ent": enterprise.id, "county": enterprise.county,
                                               "fac": request["tags"]["fac"]}
                    assert set(request["tags"]) == PLATFORM_TAGS
                    for field in request["fields"]:
                        assert field.get("type") == ("FLOAT32" if request["register"] == "holding" else None)
                        read.add((field["name"], request["slave_id"], request["register"], field["address"]))
                assert read == expected
                modbus_points = [p for p in device.points if p.quantity in KIND_OF_QUANTITY]
                assert len(read) == len(modbus_points)  # every point once: no duplicate field names


def test_outputs_follow_the_platform_influx_settings() -> None:
    files = telegraf.render(load_registry(SITE), VARIANTS["credentials"])
    v1 = tomllib.loads(files["influxdb_v1/91320682MA1FLD000G.conf"])["outputs"]["influxdb"][0]
    assert v1 == {"urls": ["https://influx.example:8086"], "database": "gkjk", "skip_database_creation": True,
                  "retention_policy": "rtd_90d", "timeout": "2.5s", "username": "${GKJK_INFLUX_USERNAME}",
                  "password": "${GKJK_INFLUX_PASSWORD}"}
    v2 = tomllib.loads(files["influxdb_v2/91320682MA1FLD000G.conf"])["outputs"]["influxdb_v2"][0]
    assert v2 == {"urls": ["https://influx.example:8086"], "token": "${GKJK_INFLUX_TOKEN}", "organization": "bureau",
                  "bucket": "gkjk", "timeout": "2.5s"}
    hosts = tomllib.loads(files["influxdb_v1/platform_hosts.conf"])
    assert hosts["outputs"]["influxdb"][0]["database"] == "hosts"
    assert hosts["outputs"]["influxdb"][0]["skip_database_creation"] is False
    assert hosts["agent"]["omit_hostname"] is False
    assert {p["pattern"] for p in hosts["inputs"]["procstat"] if "pattern" in p} == {"gkjk serve"}
    assert {p["exe"] for p in hosts["inputs"]["procstat"] if "exe" in p} == {"influxd"}
    assert set(hosts["inputs"]) == {"cpu", "mem", "disk", "net", "procstat"}


def test_build_writes_the_files_and_removes_configs_it_no_longer_produces(tmp_path: Path) -> None:
    stale = tmp_path / "influxdb_v1" / "91320682MA1P7Q3K3X.conf"
    stale.parent.mkdir(parents=True)
    stale.write_text("# an enterprise that left the registry\n", encoding="utf-8")
    notes = tmp_path / "influxdb_v1" / "NOTES.txt"
    notes.write_text("kept\n", encoding="utf-8")
    written = telegraf.build(load_registry(SITE), tmp_path, telegraf.Options())
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == sorted(
        f"{output}/{name}" for output in telegraf.OUTPUTS for name in ("91320682MA1FLD000G.conf", "platform_hosts.conf"))
    assert not stale.exists() and notes.exists()


def test_cli_builds_the_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["telegraf", "build", "--registry", str(SITE), "--out", str(tmp_path), "--byte-order", "DCBA"])
    assert "4 Telegraf configs written" in capsys.readouterr().out
    assert 'byte_order = "DCBA"' in (tmp_path / "influxdb_v2" / "91320682MA1FLD000G.conf").read_text(encoding="utf-8")


def test_readme_has_telegrafs_section_order() -> None:
    headings = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    assert headings == ["## Description", "## Configuration", "## Metrics", "## Example output",
                        "## Troubleshooting"]


# --- the generated config against the simulator -------------------------------------------------------------------


def free_port_base(count: int) -> int:
    """A base port with `count` free ports after it (the configs address devices as base + index)."""
    for _ in range(100):
        base = random.randrange(20000, 60000)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free ports")


async def gather(doc: dict[str, Any]) -> dict[tuple[str, ...], dict[str, float]]:
    """What the config's inputs.modbus sections would collect: fields per (measurement, tags)."""
    metrics: dict[tuple[str, ...], dict[str, float]] = {}
    for modbus in doc["inputs"]["modbus"]:
        address = urlsplit(modbus["controller"])
        framer = {"TCP": "tcp", "RTUoverTCP": "rtu_over_tcp"}[modbus.get("transmission_mode", "TCP")]
        client = AsyncModbusTcpClient(address.hostname, port=address.port, retries=0, timeout=2,
                                      framer=layout.PYMODBUS_FRAMERS[framer])
        assert await client.connect()
        for request in modbus["request"]:
            key = (request["measurement"], *sorted(request["tags"].items()))
            for field in request["fields"]:
                if request["register"] == "holding":
                    response = await client.read_holding_registers(field["address"], count=2,
                                                                   device_id=request["slave_id"])
                    value = telegraf_float32(response.registers, request["byte_order"])
                else:
                    response = await client.read_discrete_inputs(field["address"], count=1,
                                                                 device_id=request["slave_id"])
                    value = float(response.bits[0])
                metrics.setdefault(key, {})[field["name"]] = value
        client.close()
    return metrics


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
def test_a_generated_config_reads_the_model_values_from_the_simulator(byte_order: str) -> None:
    registry = load_registry(SITE)
    enterprise = registry.enterprises["91320682MA1FLD000G"]
    base = free_port_base(len(enterprise.devices))
    options = telegraf.Options(port_base=base, byte_order=byte_order)
    doc = tomllib.loads(telegraf.render(registry, options)["influxdb_v1/91320682MA1FLD000G.conf"])

    async def scenario() -> dict[tuple[str, ...], dict[str, float]]:
        simulator = SiteSimulator(registry, enterprise.id, Scenario(start=datetime(2024, 5, 6, 9, 0)),
                                  byte_order=byte_order, port_base=base)
        try:
            await simulator.step(simulator.start_time)
            collected = await gather(doc)
            expected: dict[tuple[str, ...], dict[str, float]] = {}
            for gateway in simulator.gateways:
                for instrument in gateway.instruments:
                    tags = {"county": enterprise.county, "ent": enterprise.id, "fac": instrument.facility,
                            "mn": gateway.device.mn}
                    for binding in instrument.bindings:
                        value = gateway.values[binding.point.factor]
                        value = float(value >= 0.5) if binding.register.table == "discrete" else value
                        expected.setdefault(("rtd", *sorted(tags.items())), {})[f"{binding.point.factor}-Rtd"] = (
                            struct.unpack(">f", struct.pack(">f", value))[0])
            assert collected == expected
            return collected
        finally:
            await simulator.stop()

    collected = asyncio.run(scenario())
    assert sum(len(fields) for fields in collected.values()) == 16  # every point of the site but carbon hours


# --- a real site's wiring (registry modbus block) ----------------------------------------------------------------


def wired_site(tmp_path: Path, host: str, port: int) -> Path:
    """The test site whose first logger reads a serial server (RTU over TCP), CDAB floats, one meter moved."""
    doc = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    doc["devices"][0]["modbus"] = {"host": host, "port": port, "framer": "rtu_over_tcp", "byte_order": "CDAB",
                                   "points": [{"factor": "i33200", "unit_id": 17, "address": 200},
                                              {"factor": "a01012", "byte_order": "DCBA"}]}
    path = tmp_path / "wired.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_a_wired_site_reads_where_the_registry_says_with_documented_options(tmp_path: Path) -> None:
    registry = load_registry(wired_site(tmp_path, "192.168.10.20", 4001))
    files = telegraf.render(registry, telegraf.Options(port_base=5020, byte_order="ABCD"))
    for name, text in files.items():
        check_options(text, f"wired: {name}")
    doc = tomllib.loads(files["influxdb_v1/91320682MA1FLD000G.conf"])
    wired, plain = doc["inputs"]["modbus"]
    assert (wired["controller"], wired["transmission_mode"]) == ("tcp://192.168.10.20:4001", "RTUoverTCP")
    by_slave = {(r["slave_id"], r["register"]): r for r in wired["request"]}
    meter = by_slave[17, "holding"]
    assert meter["byte_order"] == "CDAB" and {"address": 200, "name": "i33200-Rtd", "type": "FLOAT32"} in meter[
        "fields"]
    temperature = next(r for r in wired["request"] if any(f["name"] == "a01012-Rtd" for f in r["fields"]))
    assert temperature["byte_order"] == "DCBA"
    # The second logger has no modbus block: the options' address (index 1), Modbus TCP, the default byte order.
    assert plain["controller"] == "tcp://127.0.0.1:5021" and "transmission_mode" not in plain
    assert {r["byte_order"] for r in plain["request"]} == {"ABCD"}


def test_a_wired_config_reads_the_model_values_from_an_rtu_simulator(tmp_path: Path) -> None:
    port = free_port_base(1)
    registry = load_registry(wired_site(tmp_path, "127.0.0.1", port))
    enterprise = registry.enterprises["91320682MA1FLD000G"]
    doc = tomllib.loads(telegraf.render(registry, telegraf.Options(port_base=free_port_base(2)))[
        "influxdb_v1/91320682MA1FLD000G.conf"])
    doc["inputs"]["modbus"] = doc["inputs"]["modbus"][:1]  # the wired logger

    async def scenario() -> None:
        simulator = SiteSimulator(registry, enterprise.id, Scenario(start=datetime(2024, 5, 6, 9, 0)),
                                  registry_ports=True)
        try:
            await simulator.step(simulator.start_time)
            gateway = simulator.gateways[0]
            assert (gateway.port, gateway.framer) == (port, "rtu_over_tcp")
            collected = await gather(doc)
            read = {name: value for fields in collected.values() for name, value in fields.items()}
            expected = {}
            for instrument in gateway.instruments:
                for binding in instrument.bindings:
                    value = gateway.values[binding.point.factor]
                    value = float(value >= 0.5) if binding.register.table == "discrete" else value
                    expected[f"{binding.point.factor}-Rtd"] = struct.unpack(">f", struct.pack(">f", value))[0]
            assert read == expected and len(read) == 12
            assert read["i33200-Rtd"] > 10 and read["a01012-Rtd"] > 700
        finally:
            await simulator.stop()

    asyncio.run(scenario())


# --- packaging -----------------------------------------------------------------------------------------------------


def test_configs_build_from_an_installed_layout(tmp_path: Path) -> None:
    """What a wheel installs (setuptools build_py: packages and package data), run away from the source tree."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("gkjk", "ingest_twisted", "rules_plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    installed = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                    "--build-lib", str(installed)], cwd=source, check=True, capture_output=True)
    templates = sorted(p.relative_to(installed).as_posix() for p in installed.rglob("*.j2"))
    assert templates == sorted(f"ingest_twisted/field/telegraf_templates/{p.relative_to(telegraf.TEMPLATES).as_posix()}"
                               for p in telegraf.TEMPLATES.rglob("*.j2"))
    out = tmp_path / "out"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import ingest_twisted.field.telegraf as t; print(t.TEMPLATES)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed)
    done = subprocess.run([sys.executable, "-m", "gkjk.cli", "telegraf", "build", "--registry", str(SITE),
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    built = (out / "influxdb_v1" / "91320682MA1FLD000G.conf").read_text(encoding="utf-8")
    assert built == telegraf.render(load_registry(SITE), telegraf.Options())["influxdb_v1/91320682MA1FLD000G.conf"]
