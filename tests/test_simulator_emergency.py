"""The simulated fleet under a heavy-pollution alert: it plays tests/data/simulator_emergency through the real
`gkjk serve` while a period file is in force, one enterprise obeying (its 停产 line stops, its 限产 line runs under
its cap, the treatment follows) and one whose logger plays `emergency_ignored`; the rule engine then judges the
stored morning and must raise 应急管控不落实 for the second only, opening and closing when the period says."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted

from gkjk.config import RulesConfig
from gkjk.registry import load_registry
from gkjk_process import ServerProcess, play_simulator
from ingest_twisted.influx import InfluxClient
from ingest_twisted.simulator import Faults, Fleet
from rules_plugins.engine import Engine
from rules_plugins.plugins import Plugins

DATA = Path(__file__).parent / "data" / "simulator_emergency"
REGISTRY_PATH, EMERGENCY_PATH = DATA / "registry", DATA / "emergency"
REGISTRY = load_registry(REGISTRY_PATH)
ZONE = ZoneInfo("Asia/Shanghai")
# Both enterprises produce all morning (their first shift starts by 08:30 and ends at 11:30); the alert in
# emergency/rugao.toml is in force from 09:30 to 10:30.
PLAY_START, PLAY_END = datetime(2026, 11, 20, 8, 40), datetime(2026, 11, 20, 11, 0)
PERIOD_START, PERIOD_END = datetime(2026, 11, 20, 9, 30), datetime(2026, 11, 20, 10, 30)
SPEED = 1800  # 140 simulated minutes in under 5 s

COMPLIES, IGNORES = "91320682MA1YJG001G", "91320682MA1YJG002K"
MN_COMPLIES, MN_IGNORES = "010000A8900016F0E0000001", "010000A8900016F0E0000002"


def epoch(local: datetime) -> int:
    return int(local.replace(tzinfo=ZONE).timestamp())


def stored(influx, database: str, query: str) -> list[dict]:
    result = influx.query(query, db=database, epoch="s")["results"][0]
    return [dict(zip(s["columns"], v)) | s.get("tags", {}) for s in result.get("series", []) for v in s["values"]]


@pytest.fixture
def alert_morning(tmp_path, influx_db) -> str:
    """Play the morning through `gkjk serve`, the periods taken from the config's [rules] emergency_path (the
    default of --emergency-path); returns the simulator's log."""
    influx, database = influx_db
    with ServerProcess(tmp_path / "serve", influx.url, database, registry=REGISTRY_PATH,
                       spool={"flush_interval": 0.05}, rules={"emergency_path": str(EMERGENCY_PATH)}) as server:
        log = play_simulator(server, REGISTRY_PATH, PLAY_START, PLAY_END, SPEED, tmp_path / "simulate.log",
                             "--seed", "3", "--fault", f"{MN_IGNORES}=emergency_ignored")
        time.sleep(1.5)  # let the server flush what it acknowledged last
    return log


@pytest_twisted.ensureDeferred
async def test_only_the_enterprise_ignoring_the_alert_is_alarmed(alert_morning, influx, db):
    assert re.findall(r"MN (\w+) \(.*?\) plays fault (\w+)", alert_morning) == [(MN_IGNORES, "emergency_ignored")]
    assert "emergency periods: 1 from" in alert_morning
    first, last = epoch(PLAY_START), epoch(PLAY_END)
    client = InfluxClient(influx.url, db)
    try:
        engine = Engine(client, lambda: REGISTRY, Plugins(load_entry_points=False),
                        RulesConfig(emergency_path=str(EMERGENCY_PATH)))
        # Every 30 simulated minutes (the default 60-minute lookback overlaps), up to the end of the morning.
        for now in range(first + 35 * 60, last + 1, 30 * 60):
            await engine.evaluate(now)
    finally:
        await client.close()

    live = [r for r in stored(influx, db, 'SELECT * FROM "alarm"') if r["state"] != "retracted"]
    # Nothing but the ignored alert: the obeying enterprise's treatment stopped after its furnace and started
    # again before it, as after any stop, so no treatment or start/stop rule has anything to say.
    events = sorted((r["ent"], r["fac"], r["rule"], r["state"], r["time"], r["started"], r["duration_s"])
                    for r in live)
    start, end = epoch(PERIOD_START), epoch(PERIOD_END)
    # Violated from the period's first minute: open after emergency_minutes (10), closed hold_off_minutes (5)
    # after the period ended, having held for the whole hour.
    assert events == [(IGNORES, line, "emergency", state, moment, start, seconds)
                      for line in ("P1", "P2")
                      for state, moment, seconds in (("closed", end + 5 * 60, 3600), ("open", start + 10 * 60, 600))]
    messages = {r["fac"]: r["message"] for r in live if r["state"] == "open"}
    assert "应急管控要求停产，实际仍在运行" in messages["P1"]
    found = re.search(r"应急管控要求限产（负荷不超过 50%），实际负荷 ([\d.]+)%", messages["P2"])
    assert found and float(found.group(1)) > 80  # ~75 A of a normal 80 A

    # What the engine judged each minute of the period (`control`): the obeying lines off and under the cap.
    control = stored(influx, db, 'SELECT * FROM "control"')
    judged = {(ent, fac): [r for r in control if r["ent"] == ent and r["fac"] == fac]
              for ent in (COMPLIES, IGNORES) for fac in ("P1", "P2")}
    for rows in judged.values():
        assert sorted(r["time"] for r in rows) == list(range(start, end, 60))
    assert {(r["compliant"], r["run"]) for r in judged[COMPLIES, "P1"]} == {(1, 0)}
    assert {(r["compliant"], r["run"]) for r in judged[IGNORES, "P1"]} == {(0, 1)}
    assert {r["compliant"] for r in judged[COMPLIES, "P2"]} == {1}
    assert {r["cap"] for r in judged[COMPLIES, "P2"]} == {50}
    assert all(30 <= r["load"] <= 50 for r in judged[COMPLIES, "P2"])  # at 80 % of the cap (40 %), still running
    assert all(r["load"] > 80 for r in judged[IGNORES, "P2"])

    # The obeying furnace's bag-filter fan stopped 10 minutes after it and started 10 minutes before it again.
    fan = stored(influx, db, f"SELECT \"g10201-Rtd\" AS amps FROM rtd WHERE mn = '{MN_COMPLIES}' AND fac = 'T1'")
    stopped = {r["time"] - r["time"] % 60 for r in fan if r["amps"] < 9}
    assert stopped == set(range(start + 10 * 60, end - 10 * 60, 60))


def value_faults(fleet: Fleet) -> list[tuple[str, str]]:
    return [(d.device.mn, f.name) for d in fleet.devices for f in fields(Faults) if getattr(d.model.faults, f.name)]


def test_fault_share_picks_alert_ignorers_among_controlled_lines_only(tmp_path):
    # The rules_day enterprises are not on the emergency-control list; the two of simulator_emergency are.
    for source in (Path(__file__).parent / "data" / "rules_day", REGISTRY_PATH):
        for path in source.glob("*.yaml"):
            shutil.copy(path, tmp_path)
    controlled = {MN_COMPLIES, MN_IGNORES}

    everyone = Fleet(tmp_path, "127.0.0.1", 9, fault_share=1.0)
    assert {d.device.mn for d in everyone.devices if d.model.ignores_emergency} == controlled
    assert len(value_faults(everyone)) == len(everyone.devices) == 7

    fleet = Fleet(tmp_path, "127.0.0.1", 9, seed=1, fault_share=0.5)
    # The value faults a seed gave before alert periods existed (the demo keeps its faulty devices).
    assert value_faults(fleet) == [("010000A8900016F0D0000001", "spray_off"), ("010000A8900016F0D0000002", "spray_off"),
                                   (MN_IGNORES, "spray_off"), ("010000A8900016F0D0000004", "flat"),
                                   ("010000A8900016F0D0000005", "spray_off")]
    assert [d.device.mn for d in fleet.devices if d.model.ignores_emergency] == [MN_COMPLIES]
    again = Fleet(tmp_path, "127.0.0.1", 9, seed=1, fault_share=0.5)
    assert [d.model.ignores_emergency for d in again.devices] == [d.model.ignores_emergency for d in fleet.devices]
