"""`gkjk rules` as a process: configuration, the loop, and an alarm in InfluxDB from data of the last minutes."""

from __future__ import annotations

import time
from pathlib import Path

from gkjk_process import start_gkjk, write_config
from rules_support import ENT, FAC_MN

ROOT = Path(__file__).resolve().parent.parent


def test_rules_command_raises_an_alarm(tmp_path, influx_db):
    influx, db = influx_db
    minute = int(time.time() // 60) * 60
    lines = []
    for m in range(-20, 1):  # the furnace ran for the last 20 minutes with its fan off
        for fac, field, value in (("P1", "i33200", 200), ("T1", "g10201", 0)):
            lines.append(f"rtd,ent={ENT},fac={fac},mn={FAC_MN[fac]} {field}-Rtd={value} {minute + 60 * m}")
    influx.write("\n".join(lines).encode(), db, precision="s")
    config = write_config(tmp_path / "gkjk.toml", {
        "influx": {"url": influx.url, "database": db},
        "registry": {"path": str(ROOT / "tests/data/rules")},
        "rules": {"interval": 0.5, "disabled_plugins": "offline"},
    })
    log = tmp_path / "rules.log"
    process = start_gkjk("rules", config, log)
    try:
        deadline = time.monotonic() + 20
        series = None
        while series is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            result = influx.query('SELECT "state", "started" FROM "alarm" WHERE "rule" = \'treatment_off\'',
                                  db=db, epoch="s")
            series = result["results"][0].get("series")
        assert series, log.read_text()
        assert series[0]["values"][0][1:] == ["open", minute - 20 * 60]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "rule plugins: messages, run_state, treatment_off, low_load, combustion, ph" in log.read_text()
