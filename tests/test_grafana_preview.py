"""`gkjk grafana preview` as a real process against real data (the database of test_grafana_queries: two data
loggers through `gkjk serve`, alarms and states from `gkjk rules`).

Every dashboard gives a valid PNG of the size its grid implies, no panel area is blank, the panels that have data
draw it (they differ from the same panel drawn from an empty database, and charts show coloured marks), and a
panel type without a drawer becomes a placeholder instead of a crash.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from gkjk import grafana
from gkjk.config import InfluxConfig
from gkjk.grafana import expand, preview
from gkjk.influxd import InfluxServer
from gkjk.registry import load_registry
from gkjk_process import write_config
from PIL import Image
from test_grafana_queries import REGISTRY_PATH, loaded  # noqa: F401 - the loaded database is a fixture

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHARTS = {"timeseries", "state-timeline", "barchart", "geomap"}  # marks in colour only when there is data
# Panels without data in the dashboards this data is about, with the defaults (企业 = the first credit code, the
# coating line): only pH, which the foundry measures. Other dashboards are only checked to be drawn.
EMPTY_WITH_DEFAULTS = {"gkjk-overview": set(), "gkjk-enterprise": {"pH"}, "gkjk-alarms": set()}
SUMMARY = re.compile(r"(?P<uid>[\w-]+)\.png: (?P<panels>\d+) panels, (?P<empty>\d+) without data, "
                     r"(?P<placeholders>\d+) not previewed, (?P<failed>\d+) failed queries")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dashboards/ and provisioning/ generated from the test registry."""
    out = tmp_path_factory.mktemp("built")
    grafana.build(load_registry(REGISTRY_PATH), out, InfluxConfig())
    return out


def run_preview(influx: InfluxServer, db: str, workdir: Path, dashboards: Path, gazetteer: Path,
                *extra: str) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir / "preview.toml", {"influx": {"url": influx.url, "database": db}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
    return subprocess.run(
        [sys.executable, "-m", "gkjk.cli", "grafana", "preview", "--config", str(config),
         "--dashboards", str(dashboards), "--gazetteer", str(gazetteer), "--out", str(workdir / "png"), *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def dashboards_of(directory: Path) -> dict[str, dict]:
    return {d["uid"]: d for d in (json.loads(p.read_text(encoding="utf-8")) for p in directory.glob("*.json"))}


def summaries(stdout: str) -> dict[str, dict[str, int]]:
    """The command's line per dashboard: uid -> panels, empty, placeholders, failed."""
    return {m["uid"]: {k: int(v) for k, v in m.groupdict().items() if k != "uid"}
            for m in SUMMARY.finditer(stdout)}


def image(path: Path) -> np.ndarray:
    """RGB pixels of a PNG, after checking it is one."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as png:
        png.verify()
    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"), dtype=np.int16)


def area(pixels: np.ndarray, box: tuple[int, int, int, int], below_title: bool = False) -> np.ndarray:
    left, top, right, bottom = box
    return pixels[top + (preview.TITLE_PX if below_title else 0):bottom, left:right]


def ink(pixels: np.ndarray) -> float:
    """Share of pixels clearly off the area's dominant colour: 0 for a blank area."""
    dominant = np.median(pixels.reshape(-1, 3), axis=0)
    return float((np.abs(pixels - dominant).max(axis=2) > 40).mean())


def coloured(pixels: np.ndarray) -> int:
    """Pixels of a clear colour (lines, bars, bands, markers), not grey text or frames."""
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


@pytest.fixture(scope="module")
def drawn(loaded, built: Path,  # noqa: F811
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """uid -> (pixels with the loaded data, pixels from an empty database), both drawn by the real command."""
    influx, db = loaded
    gazetteer = built / "provisioning" / "gazetteer" / "gkjk-enterprises.json"
    workdir = tmp_path_factory.mktemp("preview")
    last_hour = ("--from", "now-1h", "--to", "now")  # the 40 minutes of data fill most of the time axes
    full = run_preview(influx, db, workdir / "full", built / "dashboards", gazetteer, *last_hour)
    assert full.returncode == 0, full.stderr
    empty_db = f"empty_{uuid.uuid4().hex[:12]}"
    influx.query(f'CREATE DATABASE "{empty_db}"')
    try:
        empty = run_preview(influx, empty_db, workdir / "empty", built / "dashboards", gazetteer, *last_hour)
    finally:
        influx.query(f'DROP DATABASE "{empty_db}"')
    assert empty.returncode == 0, empty.stderr
    summary = summaries(full.stdout)
    assert set(summary) == set(dashboards_of(built / "dashboards")), full.stdout
    for uid, dashboard in dashboards_of(built / "dashboards").items():
        assert summary[uid]["panels"] == len(dashboard["panels"]) and summary[uid]["failed"] == 0, full.stderr
        if uid in EMPTY_WITH_DEFAULTS:
            assert summary[uid]["empty"] == len(EMPTY_WITH_DEFAULTS[uid]), full.stdout
    return {uid: (image(workdir / "full" / "png" / f"{uid}.png"), image(workdir / "empty" / "png" / f"{uid}.png"))
            for uid in dashboards_of(built / "dashboards")}


def test_a_png_per_dashboard_of_the_grid_size(drawn, built: Path):
    dashboards = dashboards_of(built / "dashboards")
    assert set(drawn) == set(dashboards) and len(drawn) >= 3
    for uid, (pixels, _) in drawn.items():
        rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboards[uid]["panels"])
        assert pixels.shape == (preview.HEADER_PX + rows * preview.ROW_PX, preview.WIDTH_PX, 3), uid


def test_every_panel_is_drawn_and_those_with_data_show_it(drawn, built: Path):
    for uid, dashboard in dashboards_of(built / "dashboards").items():
        full, empty = drawn[uid]
        for panel in dashboard["panels"]:
            box = preview.panel_box(panel["gridPos"])
            where = (uid, panel["title"])
            assert ink(area(full, box, True)) > 0.0005, f"{where}: blank panel"
            if uid not in EMPTY_WITH_DEFAULTS or panel["title"] in EMPTY_WITH_DEFAULTS[uid]:
                continue
            with_data, without = area(full, box, True), area(empty, box, True)
            assert np.abs(with_data - without).mean() > 0.5, f"{where}: looks as without data"
            if panel["type"] in CHARTS:
                assert coloured(with_data) > coloured(without) + 300, f"{where}: no coloured marks"
            if panel["type"] == "stat":
                assert coloured(with_data) > 300, f"{where}: the value is not coloured by its threshold"


def test_other_panel_types_and_an_unknown_one_as_placeholder(loaded, built: Path, tmp_path: Path):  # noqa: F811
    """Types the generator does not use yet are drawn too (text, bar gauge); an unknown one is a placeholder."""
    influx, db = loaded
    dashboards = tmp_path / "dashboards"
    dashboards.mkdir()
    overview = json.loads((built / "dashboards" / "overview.json").read_text(encoding="utf-8"))
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in overview["panels"])
    current = 'SELECT last("i33200-Rtd") AS "电流" FROM "rtd" WHERE $timeFilter GROUP BY "ent"'
    added = [
        {"type": "text", "title": "说明", "gridPos": {"x": 0, "y": bottom, "w": 8, "h": 5},
         "options": {"mode": "markdown", "content": "## 本看板\n**数据**来自数采仪，每分钟刷新。"}},
        {"type": "bargauge", "title": "各企业电流", "gridPos": {"x": 8, "y": bottom, "w": 8, "h": 5},
         "targets": [{"refId": "A", "rawQuery": True, "query": current, "resultFormat": "time_series"}],
         "fieldConfig": {"defaults": {"unit": "amp"}, "overrides": []}},
        {"type": "news", "title": "行业新闻", "gridPos": {"x": 16, "y": bottom, "w": 8, "h": 5},
         "options": {"feedUrl": "https://example.invalid/rss"}, "targets": []},
    ]
    overview["panels"] += added
    (dashboards / "overview.json").write_text(json.dumps(overview, ensure_ascii=False), encoding="utf-8")
    (dashboards / "other.json").write_text(json.dumps({"uid": "other", "title": "其他", "panels": []}),
                                           encoding="utf-8")
    result = run_preview(influx, db, tmp_path, dashboards, built / "provisioning" / "gazetteer" /
                         "gkjk-enterprises.json", "--dashboard", "gkjk-overview", "--from", "now-1h")
    assert result.returncode == 0, result.stderr
    assert "'行业新闻' (news) is not previewed (placeholder)" in result.stderr, result.stderr
    assert summaries(result.stdout)["gkjk-overview"] == {"panels": len(overview["panels"]), "empty": 0,
                                                         "placeholders": 1, "failed": 0}, result.stdout
    assert [p.name for p in (tmp_path / "png").iterdir()] == ["gkjk-overview.png"]  # --dashboard chose one
    pixels = image(tmp_path / "png" / "gkjk-overview.png")
    assert pixels.shape == (preview.HEADER_PX + (bottom + 5) * preview.ROW_PX, preview.WIDTH_PX, 3)
    for panel in added:
        assert ink(area(pixels, preview.panel_box(panel["gridPos"]), True)) > 0.0005, panel["title"]
    assert coloured(area(pixels, preview.panel_box(added[1]["gridPos"]), True)) > 300  # the bars


def test_a_failing_query_is_shown_and_fails_the_command(loaded, built: Path, tmp_path: Path):  # noqa: F811
    influx, db = loaded
    dashboards = tmp_path / "dashboards"
    dashboards.mkdir()
    alarms = json.loads((built / "dashboards" / "alarms.json").read_text(encoding="utf-8"))
    alarms["panels"][0]["targets"][0]["query"] = 'SELECT nonsense( FROM "alarm"'
    (dashboards / "alarms.json").write_text(json.dumps(alarms, ensure_ascii=False), encoding="utf-8")
    result = run_preview(influx, db, tmp_path, dashboards, tmp_path / "no-gazetteer.json")
    assert result.returncode == 1, result.stderr
    assert f"panel {alarms['panels'][0]['title']!r}: target A" in result.stderr, result.stderr
    assert summaries(result.stdout)["gkjk-alarms"]["failed"] == 1, result.stdout
    image(tmp_path / "png" / "gkjk-alarms.png")  # written all the same


def test_time_macros_as_grafana_writes_them():
    shanghai = ZoneInfo("Asia/Shanghai")
    assert expand.time_filter("now-24h", "now") == "time >= now() - 24h"
    assert expand.time_filter("2026-01-02T08:00", "now-1h", shanghai) == \
        "time >= 1767312000000ms and time <= now() - 1h"  # 08:00 in Shanghai is 00:00 UTC
    # $__interval: the range over the panel's pixels, rounded as Grafana rounds it, never under the 1 m minimum.
    assert [expand.interval_for(span, 1200) for span in (3600, 86400, 7 * 86400, 30 * 86400)] == \
        ["1m", "1m", "10m", "30m"]
    query = 'SELECT count("x") * 60 / $__range_s FROM "rtd" WHERE "ent" =~ /^${ent}$/ AND $timeFilter'
    assert expand.expand(query, {"ent": ("a.b", "c")}, "time >= now() - 1h", "1m", 3600) == \
        'SELECT count("x") * 60 / 3600 FROM "rtd" WHERE "ent" =~ /^(a\\.b|c)$/ AND time >= now() - 1h'
    with pytest.raises(expand.ExpandError, match=r"\$county"):
        expand.expand('SELECT * FROM "rtd" WHERE "county" =~ /^$county$/', {})
