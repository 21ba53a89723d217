"""A full demo day: the simulated fleet plays tests/data/rules_day through the real `gkjk serve` at high speed, with
faults injected on chosen loggers, one logger never online and one activated carbon due; the rule engine then judges
the stored day window by window, with `now` in simulated time, and must raise exactly the injected alarms and
nothing else (no data-quality alarm on the healthy values)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted

from gkjk.config import RulesConfig
from gkjk.registry import load_registry
from gkjk_process import ServerProcess, play_simulator
from ingest_twisted.influx import InfluxClient
from rules_plugins.engine import Engine
from rules_plugins.plugins import Plugins

REGISTRY_PATH = Path(__file__).parent / "data" / "rules_day"
REGISTRY = load_registry(REGISTRY_PATH)
ZONE = ZoneInfo("Asia/Shanghai")
# 06:30 to 21:00 local covers both shifts of every enterprise (the last ends by 20:30, its treatment 10 min later).
DAY_START, DAY_END = datetime(2026, 11, 20, 6, 30), datetime(2026, 11, 20, 21, 0)
SPEED = 1800  # 14.5 simulated hours in about 29 s

FOUNDRY_A, COATING_B, FOUNDRY_C, COATING_D = "91320682MA1DEM001R", "91320682MA1DEM002W", "91320682MA1DEM0030", \
    "91320682MA1DEM0043"
MN_A, MN_B, MN_C, MN_D, MN_SILENT = (f"010000A8900016F0D000000{i}" for i in range(1, 6))
FAULTS = [f"{MN_A}=treatment_off", f"{MN_B}=burner_cold", f"{MN_B}=spray_off", f"{MN_C}=low_load", f"{MN_D}=flat"]
# Three flat hours instead of a day's 24, so that the frozen logger is caught within the played day.
RULES = RulesConfig(thresholds={"flat_hours": 3})

EXPECTED = {
    # The bag filter fan never runs: off while the furnace runs, and so also not started before / stopped after it.
    ("treatment_off", FOUNDRY_A, "T1"),
    ("start_stop", FOUNDRY_A, "T1"),
    ("combustion_temperature", COATING_B, "T1"),  # RTO at ~650 ℃ against min_temperature 760
    ("spray_off", COATING_B, "T2"),  # tower fan runs, pump off
    ("low_load", FOUNDRY_C, "T1"),  # fan at 35 % of rated = 39 % of normal, limit 50 %
    ("no_data", COATING_D, MN_SILENT),  # the logger left out of the fleet
    ("carbon", COATING_B, "T3"),  # 1.5 running hours since the replacement of 09:00 in the registry
    # The frozen logger: booth current, RTO temperature and tower fan current stop moving at running values.
    ("flat_data", COATING_D, "P1"),
    ("flat_data", COATING_D, "T1"),
    ("flat_data", COATING_D, "T2"),
}
# Alarms that open once at a known minute and stay open: rule -> (local time it opens, local time its episode starts).
# The carbon counts from 09:00 (that minute included), so 91 running minutes > 1.5 h at 10:30, open 5 minutes later;
# the frozen logger's values all stop moving in the 7 o'clock hour (treatment from 07:29, booth from 07:39 with
# seed 7), so 08:00 to 11:00 are three flat hours and the alarms open at 11:00 (flat_minutes 0).
ONCE = {"no_data": ("07:35", "07:05"), "carbon": ("10:35", "10:30"), "flat_data": ("11:00", "11:00")}
# Rules that judge every enterprise of the day, so that "nothing else" covers them (emergency judges none: no
# enterprise of the day is on the emergency-control list).
JUDGED_EVERYWHERE = {"jump", "stuck_low", "transmission_rate", "power_loss", "flat_data", "no_data", "offline"}


def epoch(local: datetime) -> int:
    return int(local.replace(tzinfo=ZONE).timestamp())


def on_the_day(clock: str) -> int:
    return epoch(datetime.fromisoformat(f"{DAY_START:%Y-%m-%d} {clock}"))


@pytest.fixture
def demo_day(tmp_path, influx_db) -> dict:
    """Play the day through `gkjk serve`; returns what was played."""
    influx, database = influx_db
    devices = [d.mn for e in REGISTRY.enterprises.values() for d in e.devices]
    assert devices[-1] == MN_SILENT, "--limit leaves out the registry's last device"
    began = time.monotonic()
    with ServerProcess(tmp_path / "serve", influx.url, database, registry=REGISTRY_PATH,
                       spool={"flush_interval": 0.05}) as server:
        faults = [option for fault in FAULTS for option in ("--fault", fault)]
        log = play_simulator(server, REGISTRY_PATH, DAY_START, DAY_END, SPEED, tmp_path / "simulate.log",
                             "--seed", "7", "--limit", str(len(devices) - 1), *faults)
        time.sleep(1.5)  # let the server flush what it acknowledged last
    played = re.findall(r"MN (\w+) \(.*?\) plays fault (\w+)", log)
    return {"played": sorted(played), "seconds": time.monotonic() - began}


def stored(influx, database: str, query: str) -> list[list]:
    result = influx.query(query, db=database, epoch="s")["results"][0]
    return [row for series in result.get("series", []) for row in series["values"]]


@pytest_twisted.ensureDeferred
async def test_demo_day_raises_exactly_the_injected_alarms(demo_day, influx, db):  # noqa: F811
    assert demo_day["played"] == sorted(tuple(f.split("=")) for f in FAULTS)
    plugins = Plugins(load_entry_points=False)
    for enterprise in REGISTRY.enterprises.values():
        assert JUDGED_EVERYWHERE <= {rule.name for _, rule in plugins.rules(enterprise)}, enterprise.id
    # Every played logger's day is stored without a hole; the silent one sent nothing.
    first, last = epoch(DAY_START), epoch(DAY_END)
    for mn in (MN_A, MN_B, MN_C, MN_D):
        times = [row[0] for row in stored(influx, db, f"SELECT * FROM rtd WHERE mn = '{mn}'")]
        minutes = sorted({t - t % 60 for t in times})
        assert minutes[0] <= first + 60 and minutes[-1] >= last - 60, mn
        assert minutes == list(range(minutes[0], minutes[-1] + 60, 60)), f"a hole in {mn}'s day"
    assert stored(influx, db, f"SELECT * FROM rtd WHERE mn = '{MN_SILENT}'") == []

    client = InfluxClient(influx.url, db)
    try:
        engine = Engine(client, lambda: REGISTRY, plugins, RULES)
        retracted = 0
        # Every 30 simulated minutes (the default 60-minute lookback overlaps), up to the end of the stored day.
        for now in range(first + 35 * 60, last + 1, 30 * 60):
            report = await engine.evaluate(now)
            retracted += report.retracted
    finally:
        await client.close()

    rows = [dict(zip(s["columns"], v)) | s.get("tags", {})
            for s in influx.query('SELECT * FROM "alarm"', db=db, epoch="s")["results"][0].get("series", [])
            for v in s["values"]]
    live = [r for r in rows if r["state"] != "retracted"]
    raised = {(r["rule"], r["ent"], r["fac"]) for r in live}
    assert raised == EXPECTED
    assert retracted == 0
    # The shift faults open in each of the two shifts and close when production (or the treatment) stops; the
    # silent logger's alarm opens once, 30 minutes after the engine began watching it, and stays open, as do the
    # carbon due (nobody replaces it) and the frozen values (they never move again).
    states: dict[tuple, list[str]] = {}
    for row in sorted(live, key=lambda r: r["time"]):
        states.setdefault((row["rule"], row["ent"], row["fac"]), []).append(row["state"])
    assert states == {key: ["open"] if key[0] in ONCE else ["open", "closed"] * 2 for key in EXPECTED}
    opened = {(r["rule"], r["fac"]): (r["time"], r["started"]) for r in live if r["rule"] in ONCE}
    assert opened == {(rule, fac): tuple(map(on_the_day, ONCE[rule])) for rule, _ent, fac in EXPECTED if rule in ONCE}
    assert all(first <= r["time"] <= last for r in live)
