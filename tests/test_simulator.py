"""The simulated fleet against the real server: what the demo shows, outages and replay included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from gkjk_process import COATING_MN, FOUNDRY_MN, ROOT, TEST_REGISTRY, ServerProcess


def stored(influx, db: str, query: str) -> list[list]:
    result = influx.query(query, db=db, epoch="s")["results"][0]
    return [row for series in result.get("series", []) for row in series["values"]]


def test_fleet_with_outages_leaves_no_hole_in_the_stored_series(tmp_path, influx_db):
    influx, db = influx_db
    with ServerProcess(tmp_path / "s", influx.url, db, spool={"flush_interval": 0.05}) as server:
        simulate = subprocess.Popen(
            [sys.executable, "-m", "gkjk.cli", "simulate", "--config", str(server.config), "--registry",
             str(TEST_REGISTRY), "--port", str(server.port), "--speed", "600", "--outage-rate", "0.05",
             "--outage-minutes", "20", "--bad-frame-rate", "0.05", "--status-every", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        time.sleep(12)
        simulate.send_signal(signal.SIGINT)
        status = simulate.communicate(timeout=30)[0].strip().splitlines()
        time.sleep(2)
    assert status and "bad frames sent" in status[-1]

    for mn, fac, field in ((FOUNDRY_MN, "P1", "i33200-Rtd"), (COATING_MN, "T1", "a01012-Rtd")):
        rows = stored(influx, db, f"SELECT \"{field}\" FROM rtd WHERE mn = '{mn}' AND fac = '{fac}'")
        times = [row[0] for row in rows]
        # About 2 simulated hours at one record a minute; outages were replayed, so no minute is missing.
        assert len(times) > 60
        assert times == list(range(times[0], times[-1] + 60, 60)), "a hole in the stored series"
        assert all(value >= 0 for _, value in rows)

    minute = stored(influx, db, f"SELECT \"i33200-Avg\", \"i33200-Min\", \"i33200-Max\" FROM minute "
                                f"WHERE mn = '{FOUNDRY_MN}' AND fac = 'P1'")
    assert minute and all(low <= avg <= high for _, avg, low, high in minute)
    offline = stored(influx, db, "SELECT \"peer\" FROM device_event WHERE event = 'offline'")
    assert offline, "the outages did not happen"
