"""平台运行状态 (platform.json): every query against the self-metrics the real ingest server writes.

The data goes the real way: `gkjk serve` with two workers and a half-second `[metrics] interval` on an InfluxDB of
its own (the test stops it for a while). Two data loggers upload and stay connected; a third connection sends
frames with a bad CRC; a string value planted in `rtd` makes InfluxDB refuse a batch (400: dead-lettered); and
InfluxDB is down for three seconds while the loggers upload (the spool backs up, the writer retries). Each panel
query, expanded as Grafana expands it, must return the series the panel is meant to show.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gkjk import grafana
from gkjk.config import InfluxConfig
from gkjk.grafana import platform
from gkjk.grafana.common import ALL_VALUE
from gkjk.grafana.expand import expand
from gkjk.influxd import InfluxServer
from gkjk.registry import load_registry
from gkjk_process import COATING_MN, COATING_PW, FOUNDRY_MN, FOUNDRY_PW, Logger, ServerProcess
from ingest_twisted.hj212.frame import encode_frame
from ingest_twisted.hj212.packet import build_segment
from test_grafana_queries import run

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 2  # loggers connected and logged in at the end
MINUTES = 20  # readings per logger before the outage, and again during it
HOUR = {"time_filter": "time >= now() - 1h", "interval": "1s", "range_s": 3600}
ALL = {"host": (ALL_VALUE,)}


def _wait(what: str, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _latest(influx: InfluxServer, db: str, field: str) -> dict[str, object]:
    series = run(influx, db, f'SELECT last("{field}") FROM "gkjk_ingest" GROUP BY "worker"')
    return {s["tags"]["worker"]: s["rows"][-1]["last"] for s in series}


def _bad_crc(logger: Logger) -> bytes:
    frame = encode_frame(build_segment(logger.packet("2011", datetime.now(), {"i33200": {"Rtd": "1"}})))
    return frame[:-6] + (b"0000" if frame[-6:-2] != b"0000" else b"FFFF") + frame[-2:]


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, str]]:
    workdir = tmp_path_factory.mktemp("platform")
    influx = InfluxServer(workdir / "influxd")  # its own: the test stops it
    influx.start()
    db = f"platform_{uuid.uuid4().hex[:12]}"
    influx.query(f'CREATE DATABASE "{db}"')
    server = ServerProcess(workdir / "server", influx.url, db, ingest={"workers": 2}, metrics={"interval": 0.5},
                           spool={"flush_interval": 0.05})
    loggers: list[Logger] = []
    try:
        now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, second=0, microsecond=0)
        # A string where the ingest server writes a number: InfluxDB refuses those batches (field type conflict).
        planted = int((now - timedelta(minutes=MINUTES)).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
                      .astimezone(timezone.utc).timestamp())
        influx.write(f'rtd,mn=planted i33200-Rtd="text" {planted}'.encode(), db, precision="s")
        server.start()
        loggers = [Logger(server.port, FOUNDRY_MN, FOUNDRY_PW), Logger(server.port, COATING_MN, COATING_PW)]
        for logger in loggers:
            logger.upload_minutes(now - timedelta(hours=1), MINUTES, {"i33200": {"Rtd": "20"}})
        _wait("the dead-lettered batch", lambda: sum(_latest(influx, db, "writer_dead_lettered_lines").values()) > 0)
        # Errors in two reports (a counter's rate needs two points of it): bad CRC on a connection of its own.
        noisy = Logger(server.port, FOUNDRY_MN, FOUNDRY_PW)
        for _ in range(2):
            noisy.send_raw(_bad_crc(noisy))
            time.sleep(1.2)
        noisy.close()
        influx.stop()
        for logger in loggers:  # acknowledged from the spool while InfluxDB is down
            logger.upload_minutes(now, MINUTES, {"i33200": {"Rtd": "20"}})
        time.sleep(3)
        influx.start()
        restarted = time.time_ns()

        def steady() -> bool:  # ten reports per worker since the restart, stored, all with nothing backed up
            newest = rows(run(influx, db, 'SELECT "writer_spool_records" FROM "gkjk_ingest" '
                                          f'WHERE time > {restarted} ORDER BY time DESC LIMIT 20'))
            return len(newest) == 20 and not any(r["writer_spool_records"] for r in newest)

        _wait("the spool to drain", steady, timeout=60)
        yield influx, db
    finally:
        for logger in loggers:
            logger.close()
        server.stop()
        influx.close()


def rows(series: list[dict]) -> list[dict]:
    return [row for s in series for row in s["rows"]]


def column(series: list[dict], name: str) -> list:
    return [row[name] for row in rows(series) if row.get(name) is not None]


def settled(series: list[dict], name: str) -> list:
    """The values of the last full time buckets (the current one may hold only one worker's report)."""
    [s] = series
    return [row[name] for row in s["rows"][-4:-1]]


def renamed(panel: dict, name: str) -> str:
    """A column name after the panel's renameByRegex transformations, as Grafana applies them in order."""
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "renameByRegex":
            options = transformation["options"]
            if re.fullmatch(options["regex"], name):
                name = re.sub(options["regex"], options["renamePattern"].replace("$", "\\"), name)
    return name


def _workers(series: list[dict]) -> bool:
    latest = {(s["tags"]["host"], s["tags"]["worker"]): s["rows"][-1] for s in series}
    return ({worker for _, worker in latest} == {"0", "1"}
            and {host for host, _ in latest} == {socket.gethostname()}
            and sum(r["连接数"] for r in latest.values()) == DEVICES
            and sum(r["在线设备"] for r in latest.values()) == DEVICES
            and sum(r["接收报文"] for r in latest.values()) >= 4 * (MINUTES + 1) + 2
            and sum(r["已应答"] for r in latest.values()) >= 4 * (MINUTES + 1)
            and sum(r["错误"] for r in latest.values()) >= 2
            and sum(r["死信行数"] for r in latest.values()) >= 1
            and sum(r["写入重试"] for r in latest.values()) >= 1
            and all(r["积压条数"] == 0 and r["积压字节"] == 0 for r in latest.values())
            and all(r["写入延迟"] > 0 for r in latest.values()))


def _errors(series: list[dict]) -> bool:
    [s] = series
    panel = _panel("错误速率（按类型）")
    peaks = {renamed(panel, name): max(column(series, name)) for name in s["rows"][0] if name != "time"}
    return peaks["错误合计"] >= 0.5 and peaks["CRC 校验失败"] >= 0.5 and min(peaks.values()) >= 0


def _latency(series: list[dict]) -> bool:
    return (bool(rows(series)) and all(0 < r["P50"] <= r["P99"] <= r["最大值"] * 1.02 for r in rows(series))
            and max(column(series, "最大值")) < 10_000)


Check = Callable[[list[dict]], bool]
EXPECTED: dict[tuple[str, str], Check] = {
    ("各工作进程最新状态", "A"): _workers,
    ("连接数与在线设备", "A"): lambda s: settled(s, "连接数") == settled(s, "在线设备") == [DEVICES] * 3
    and max(column(s, "连接数")) == DEVICES + 1,  # the noisy connection
    ("报文速率", "A"): lambda s: all(max(column(s, name)) > 1 for name in ("接收报文", "已存储", "已应答"))
    and settled(s, "接收报文") == [0, 0, 0],
    ("错误速率（按类型）", "A"): _errors,
    ("应答延迟", "A"): _latency,
    ("写入积压", "A"): lambda s: max(column(s, "积压条数")) >= 1 and max(column(s, "积压字节")) > 100
    and settled(s, "积压条数") == [0, 0, 0],
    ("写入延迟", "A"): lambda s: max(column(s, "InfluxDB 写入")) > 0 and max(column(s, "缓存落盘（fsync）")) > 0
    and max(column(s, "InfluxDB 写入")) < 30,
    ("写入重试与死信", "A"): lambda s: sum(column(s, "写入重试")) >= 1 and sum(column(s, "死信行数")) >= 1,
    ("垃圾回收停顿", "A"): lambda s: len(column(s, "最长停顿")) > 5 and min(column(s, "最长停顿")) >= 0,
    ("垃圾回收停顿", "B"): lambda s: len(column(s, "回收耗时占比")) > 5
    and all(0 <= v < 1 for v in column(s, "回收耗时占比")),
}


def dashboard() -> dict:
    return json.loads(grafana.render(load_registry(ROOT / "registry" / "demo"), InfluxConfig())
                      ["dashboards/platform.json"])


def _panel(title: str) -> dict:
    [panel] = [p for p in dashboard()["panels"] if p["title"] == title]
    return panel


def targets() -> dict[tuple[str, str], str]:
    return {(p["title"], t["refId"]): t["query"] for p in dashboard()["panels"] for t in p["targets"]}


def test_dashboard_is_generated_and_provisioned():
    data = dashboard()
    assert (data["uid"], data["title"], data["time"]["from"], data["refresh"]) == \
        (platform.UID, "平台运行状态", "now-6h", "1m")
    assert [v["name"] for v in data["templating"]["list"]] == ["host"]
    assert "dashboards/platform.json" in grafana.render(load_registry(ROOT / "registry" / "demo"), InfluxConfig())
    # Provisioned like the others: the file provider loads every JSON of dashboards/ (checked in test_grafana.py,
    # with ids, grid, data sources and variables of every dashboard).
    assert (ROOT / "dashboards" / "platform.json").read_text(encoding="utf-8") == \
        json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def test_every_query_has_an_expectation():
    assert set(targets()) == set(EXPECTED)


def test_error_kinds_have_chinese_names():
    panel = _panel("错误速率（按类型）")
    assert renamed(panel, "sum_non_negative_derivative_errors") == "错误合计"
    assert renamed(panel, "sum_non_negative_derivative_error_max_connections") == "超出连接总数上限"
    assert renamed(panel, "sum_non_negative_derivative_error_max_connections_per_ip") == "超出单 IP 连接数上限"
    assert renamed(panel, "sum_non_negative_derivative_error_packet_bad_cp") == "数据段解析错误 bad_cp"
    assert renamed(panel, "sum_non_negative_derivative_error_frame_bad_trailer") == "帧格式错误 bad_trailer"


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}:{k[1]}")
def test_panel_query_returns_its_series(metrics, key):
    influx, db = metrics
    query = expand(targets()[key], ALL, **HOUR)
    series = run(influx, db, query)
    filled = [s for s in series if any(v is not None for r in s["rows"] for k, v in r.items() if k != "time")]
    assert series and filled == series, f"no data for {query}"
    assert EXPECTED[key](series), (query, [s["rows"][-6:] for s in series])


def test_a_host_filter_keeps_only_that_host(metrics):
    influx, db = metrics
    query = expand(targets()["连接数与在线设备", "A"], {"host": ("no-such-host",)}, **HOUR)
    assert run(influx, db, query) == []
    query = expand(targets()["连接数与在线设备", "A"], {"host": (socket.gethostname(),)}, **HOUR)
    assert settled(run(influx, db, query), "连接数") == [DEVICES] * 3


def test_host_variable_offers_the_reporting_hosts(metrics):
    influx, db = metrics
    [variable] = dashboard()["templating"]["list"]
    assert {r["value"] for r in rows(run(influx, db, expand(variable["query"], {})))} == {socket.gethostname()}
