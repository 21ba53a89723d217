"""Telegraf configs from the site registry: Modbus polling per site, and monitoring of the platform's own hosts.

Per enterprise, one config polls the Modbus instruments of each of its devices (`inputs.modbus`, request style,
laid out by `layout.instruments` exactly as `gkjk modbus-sim` serves them) and writes what it reads the way the
ingest server stores HJ 212 real-time data (docs/schema.md): measurement `rtd`, tags mn/ent/county/fac, float fields
`<factor>-Rtd`. Every config exists for InfluxDB 1.x (`outputs.influxdb`) and 2.x (`outputs.influxdb_v2`).
A device's registry `modbus` block says where its gateway is, how it frames requests (Telegraf's
`transmission_mode`), the byte order and unit id of each instrument; devices without one are read at the options'
address (the simulator's). The templates are package data (`telegraf_templates/`, so an installed wheel builds
configs too); telegraf/README.md describes the output.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from gkjk.config import InfluxConfig
from gkjk.registry import Enterprise, Registry
from ingest_twisted.field import layout
from ingest_twisted.field.registers import BYTE_ORDERS

TEMPLATES = Path(__file__).resolve().parent / "telegraf_templates"
#: Output flavours: subdirectory of the build and the output template.
OUTPUTS = ("influxdb_v1", "influxdb_v2")
HOSTS_FILE = "platform_hosts.conf"
#: The measurement of HJ 212 real-time data (docs/schema.md): dashboards and rules read both sources alike.
MEASUREMENT = "rtd"
#: Telegraf's data type for each register table's values (bits need none).
_FIELD_TYPE = {"holding": "FLOAT32"}
#: Telegraf's `transmission_mode` for each framer (plugins/inputs/modbus/sample_general_begin.conf).
TRANSMISSION_MODE = {"tcp": "TCP", "rtu_over_tcp": "RTUoverTCP"}


@dataclass(frozen=True, slots=True)
class Options:
    """Where the instruments are reached and where the metrics go; defaults match `gkjk modbus-sim`."""

    modbus_host: str = "127.0.0.1"
    port_base: int = 5020
    byte_order: str = "ABCD"
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    hosts_database: str = "telegraf"
    framer: str = "tcp"


def _toml(value: str | int | float | bool) -> str:
    """A TOML literal: JSON's string escapes are valid TOML basic-string escapes."""
    return json.dumps(value, ensure_ascii=False)


def _duration(seconds: float) -> str:
    """Seconds as a Telegraf duration ("10s", "2.5s")."""
    return f"{seconds:g}s"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["toml"] = _toml
    env.filters["duration"] = _duration
    return env


def _site(enterprise: Enterprise, options: Options) -> dict | None:
    """Template context of one enterprise, or None if none of its points is read over Modbus."""
    gateways = []
    for index, device in enumerate(enterprise.devices):
        wiring = layout.connection(device, layout.Connection(options.modbus_host, options.port_base + index,
                                                             options.framer, options.byte_order))
        requests = []
        for instrument in layout.instruments(device, wiring.byte_order):
            for table in instrument.map.tables():
                bindings = [b for b in instrument.bindings if b.register.table == table]
                if not bindings:
                    continue
                requests.append({
                    "slave_id": instrument.slave_id, "register": table, "kind": instrument.map.kind,
                    "facility": instrument.facility, "byte_order": instrument.byte_order,
                    "fields": [{"address": b.register.address, "name": f"{b.point.factor}-Rtd",
                                "type": _FIELD_TYPE.get(table), "register_name": b.register.name}
                               for b in sorted(bindings, key=lambda b: b.register.address)],
                })
        if requests:
            gateways.append({"mn": device.mn, "interval": f"{device.rtd_interval}s", "requests": requests,
                             "controller": f"tcp://{wiring.host}:{wiring.port}",
                             "transmission_mode": TRANSMISSION_MODE[wiring.framer]})
    if not gateways:
        return None
    return {"enterprise": enterprise, "gateways": gateways}


def render(registry: Registry, options: Options) -> dict[str, str]:
    """Every config file, by path relative to the output directory."""
    if options.byte_order not in BYTE_ORDERS:
        raise ValueError(f"byte order must be one of {', '.join(BYTE_ORDERS)}, got {options.byte_order!r}")
    if options.framer not in layout.FRAMERS:
        raise ValueError(f"framer must be one of {', '.join(layout.FRAMERS)}, got {options.framer!r}")
    env = _environment()
    site_template, hosts_template = env.get_template("site.conf.j2"), env.get_template("platform_hosts.conf.j2")
    files: dict[str, str] = {}
    for output in OUTPUTS:
        common = {"options": options, "influx": options.influx, "output": output, "measurement": MEASUREMENT}
        for enterprise_id in sorted(registry.enterprises):
            site = _site(registry.enterprises[enterprise_id], options)
            if site is not None:
                files[f"{output}/{enterprise_id}.conf"] = site_template.render(**common, **site)
        files[f"{output}/{HOSTS_FILE}"] = hosts_template.render(**common)
    return files


def build(registry: Registry, out: Path, options: Options) -> list[Path]:
    """Write every config below `out`; configs of a previous build that are no longer produced are removed."""
    files = render(registry, options)
    written = []
    for output in OUTPUTS:
        for old in (out / output).glob("*.conf"):
            if f"{output}/{old.name}" not in files:
                old.unlink()
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="registry to read (default: [registry] path of the config)")
    parser.add_argument("--out", default="telegraf/generated", help="output directory (default telegraf/generated)")
    parser.add_argument("--modbus-host", default="127.0.0.1",
                        help="address of the sites' Modbus TCP gateways (default 127.0.0.1, the simulator)")
    parser.add_argument("--port-base", type=int, default=5020,
                        help="port of each enterprise's first device; the next devices count up (default 5020)")
    parser.add_argument("--byte-order", choices=BYTE_ORDERS, default="ABCD",
                        help="byte order of float32 values where the registry names none (default ABCD)")
    parser.add_argument("--framer", choices=layout.FRAMERS, default="tcp",
                        help="Modbus TCP or RTU over TCP where the registry names none (default tcp)")
    parser.add_argument("--hosts-database", default="telegraf",
                        help="database (v1) or bucket (v2) for the platform hosts' metrics (default telegraf)")
