"""Helpers for the rule engine tests: the test site, engines on a fresh database, rtd lines in the schema of
docs/schema.md, alarm rows (test modules import the fixtures by name)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

import pytest_twisted

from gkjk.config import RulesConfig
from gkjk.influxd import InfluxServer
from gkjk.registry import Registry, load_registry
from ingest_twisted.influx import InfluxClient
from rules_plugins.engine import Engine
from rules_plugins.plugins import Plugins

REGISTRY = load_registry(Path(__file__).parent / "data" / "rules")
ENT = "91320682MA1WX0R00P"
MN1, MN2 = "010000A8900016F0001R0001", "010000A8900016F0001R0002"
FAC_MN = {"P1": MN1, "T1": MN1, "P2": MN2, "T2": MN2, "T3": MN2, "T4": MN2}
T0 = int(datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc).timestamp())


def at(minute: float) -> int:
    return T0 + int(minute * 60)


def rtd(fac: str, factor: str, values: Iterable[tuple[float, float]]) -> bytes:
    """Line protocol for (minute, value) readings of one factor, as the ingest server writes them."""
    tags = f"rtd,county=如皋市,ent={ENT},fac={fac},mn={FAC_MN[fac]}"
    return "\n".join(f"{tags} {factor}-Rtd={value} {at(minute)}" for minute, value in values).encode()


def steady(first: int, last: int, value: float, **changes: float) -> list[tuple[int, float]]:
    """One reading a minute from `first` to `last`; `changes` maps "m10_21" to the value of minutes 10..21."""
    values = dict.fromkeys(range(first, last + 1), value)
    for span, changed in changes.items():
        low, high = (int(x) for x in span[1:].split("_"))
        values.update(dict.fromkeys(range(low, high + 1), changed))
    return sorted(values.items())


def write(influx: InfluxServer, db: str, *parts: bytes) -> None:
    influx.write(b"\n".join(parts), db, precision="s")


def alarms(influx: InfluxServer, db: str, rule: str | None = None, live: bool = True) -> list[dict]:
    """Alarm events, oldest first, times as minutes from T0; `live` leaves out retracted ones."""
    where = f" WHERE \"rule\" = '{rule}'" if rule else ""
    result = influx.query(f'SELECT * FROM "alarm"{where}', db=db, epoch="s")["results"][0]
    rows = []
    for series in result.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values))
            if live and row["state"] == "retracted":
                continue
            row["minute"] = (row.pop("time") - T0) / 60
            row["started"] = (row["started"] - T0) / 60 if row.get("started") is not None else None
            rows.append(row)
    return sorted(rows, key=lambda r: (r["minute"], r["state"]))


def brief(rows: list[dict]) -> list[tuple]:
    """(minute, state, facility, started minute, duration in minutes) of each event."""
    return [(r["minute"], r["state"], r["fac"], r["started"], r["duration_s"] / 60) for r in rows]


@pytest_twisted.async_yield_fixture
async def make_engine(influx_db: tuple[InfluxServer, str]) -> AsyncIterator[Callable[..., Engine]]:
    clients: list[InfluxClient] = []

    def make(db: str | None = None, plugins: Plugins | None = None, registry: Registry | None = None,
             **config: object) -> Engine:
        clients.append(InfluxClient(influx_db[0].url, db or influx_db[1]))
        return Engine(clients[-1], lambda: registry or REGISTRY, plugins or Plugins(load_entry_points=False),
                      RulesConfig(**config))

    yield make
    for client in clients:
        await client.close()
