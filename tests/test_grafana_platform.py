"""平台运行状态 (platform.json): every query against the self-metrics the real ingest server writes.

The data goes the real way: `gkjk serve` with two workers and a half-second `[metrics] interval` on an InfluxDB of
its own (the test stops it for a while). Two data loggers upload and stay connected; a third connection sends
frames with a bad CRC; a string value planted in `rtd` makes InfluxDB refuse a batch (400: dead-lettered); and
InfluxDB is down for three seconds while the loggers upload (the spool backs up, the writer retries). Each panel
query, expanded as Grafana expands it, must return the series the panel is meant to show.

The platform alert rules (group 平台告警 of rules.yaml) run on the same data, evaluated as Grafana evaluates them at
a given moment: `$timeFilter` as Grafana's InfluxQL backend writes it for an alert query (`time > <from>ms and
time < <to>ms`, the rule's relativeTimeRange before that moment), then the rule's own reduce and threshold. Each
must be false on the healthy data and true on the unhealthy case; the last test stops the server.
"""

from __future__ import annotations

import json
import operator
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from gkjk import grafana
from gkjk.config import InfluxConfig, RulesConfig
from gkjk.grafana import alerting, platform
from gkjk.grafana.common import ALL_VALUE
from gkjk.grafana.expand import expand
from gkjk.influxd import InfluxServer
from gkjk.registry import load_registry
from gkjk_process import COATING_MN, COATING_PW, FOUNDRY_MN, FOUNDRY_PW, Logger, ServerProcess
from ingest_twisted.hj212.frame import encode_frame
from ingest_twisted.hj212.packet import build_segment
from ingest_twisted.influx import InfluxClient
from rules_plugins.engine import Engine
from rules_plugins.plugins import Plugins
from rules_support import REGISTRY as RULES_REGISTRY
from test_grafana_queries import run
from test_relay_e2e import FOUNDRY, Receiver, Relay, aliyun_judge, alert, dingtalk_judge

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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Run:
    """The module's ingest run: its InfluxDB, database, server, and when things happened (epoch ms)."""

    influx: InfluxServer
    db: str
    server: ServerProcess
    started: int = 0  # the server listening
    outage: int = 0  # InfluxDB stopped
    restarted: int = 0  # InfluxDB started again
    drained: int = 0  # every spool empty again, nothing more to write


@pytest.fixture(scope="module")
def platform_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("platform")
    influx = InfluxServer(workdir / "influxd")  # its own: the test stops it
    influx.start()
    db = f"platform_{uuid.uuid4().hex[:12]}"
    influx.query(f'CREATE DATABASE "{db}"')
    server = ServerProcess(workdir / "server", influx.url, db, ingest={"workers": 2}, metrics={"interval": 0.5},
                           spool={"flush_interval": 0.05})
    run_ = Run(influx, db, server)
    loggers: list[Logger] = []
    try:
        now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, second=0, microsecond=0)
        # A string where the ingest server writes a number: InfluxDB refuses those batches (field type conflict).
        planted = int((now - timedelta(minutes=MINUTES)).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
                      .astimezone(timezone.utc).timestamp())
        influx.write(f'rtd,mn=planted i33200-Rtd="text" {planted}'.encode(), db, precision="s")
        server.start()
        run_.started = now_ms()
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
        run_.outage = now_ms()
        influx.stop()
        for logger in loggers:  # acknowledged from the spool while InfluxDB is down
            logger.upload_minutes(now, MINUTES, {"i33200": {"Rtd": "20"}})
        time.sleep(3)
        run_.restarted = now_ms()
        influx.start()
        restarted = time.time_ns()

        def steady() -> bool:  # ten reports per worker since the restart, stored, all with nothing backed up
            newest = rows(run(influx, db, 'SELECT "writer_spool_records" FROM "gkjk_ingest" '
                                          f'WHERE time > {restarted} ORDER BY time DESC LIMIT 20'))
            return len(newest) == 20 and not any(r["writer_spool_records"] for r in newest)

        _wait("the spool to drain", steady, timeout=60)
        run_.drained = now_ms()
        time.sleep(3)  # healthy reports (every 0.5 s) after that, for the alert rules
        yield run_
    finally:
        for logger in loggers:
            logger.close()
        server.stop()
        influx.close()


@dataclass
class Evaluations:
    """When the module's rule engine reported (epoch s): healthy cycles, then failed ones."""

    healthy: list[int]
    failed: list[int]


@pytest_twisted.async_fixture(scope="module")
async def evaluations(platform_run: Run) -> Evaluations:
    """A real rule engine (the test site's registry) evaluates three times a minute apart, ten to eight minutes ago;
    then three cycles fail, one a minute up to now, recorded as the engine records a cycle that raised."""
    client = InfluxClient(platform_run.influx.url, platform_run.db)
    now = int(time.time())
    try:
        engine = Engine(client, lambda: RULES_REGISTRY, Plugins(load_entry_points=False), RulesConfig())
        for minutes in (10, 9, 8):
            await engine.evaluate(now - minutes * 60)
        for minutes in (2, 1, 0):
            await engine.write_metrics(now - minutes * 60, 0.25, None)
    finally:
        await client.close()
    points = rows(run(platform_run.influx, platform_run.db, 'SELECT "failed" FROM "gkjk_rules"'))
    [healthy, failed] = [[round(datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp())
                          for p in points if p["failed"] == outcome] for outcome in (0, 1)]
    assert (len(healthy), len(failed)) == (3, 3)
    return Evaluations(healthy, failed)


@dataclass
class RelayRun:
    """When the module's relay did what (epoch ms)."""

    posted: int  # the alert posted: a DingTalk and an SMS message queued
    longest_wait: int  # the point with the longest wait of the DingTalk message
    stopped: int  # the relay stopped, after reporting the outcomes


RELAY_METRICS_INTERVAL = 0.2


@pytest.fixture(scope="module")
def relay_run(platform_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayRun]:
    """The real `gkjk relay` on the ingest run's InfluxDB and database, against local stand-ins for DingTalk and
    Aliyun: one alert is posted (a DingTalk message and an SMS); DingTalk fails twice, then delivers; Aliyun fails
    all 3 attempts, so the SMS is given up; a post with a wrong token is refused. Then the relay stops."""
    dingtalk, aliyun = Receiver(dingtalk_judge).start(), Receiver(aliyun_judge).start()
    relay = Relay(tmp_path_factory.mktemp("relay"), platform_run.influx.url, platform_run.db, dingtalk, aliyun,
                  metrics_interval=RELAY_METRICS_INTERVAL, max_attempts=3, retry_initial=0.4, retry_max=1.0)

    def reported(field: str, channel: str, value: int) -> bool:
        series = run(platform_run.influx, platform_run.db,
                     f'SELECT last("{field}") FROM "gkjk_relay" WHERE "channel" = \'{channel}\'')
        return bool(series) and series[0]["rows"][-1]["last"] == value

    try:
        relay.start()
        _wait("the relay's first points", lambda: reported("pending", "dingtalk", 0))
        # The panels take a counter's increase between 1 s buckets: the zeros must be in a bucket of their own,
        # before the second the alert is posted in.
        time.sleep(1.2 - time.time() % 1)
        dingtalk.script[:], aliyun.script[:] = [503, 503], [503, 503, 503]
        posted = now_ms()
        assert relay.post(f"enterprise/{FOUNDRY}", [alert()])[0] == 200
        assert relay.post(f"enterprise/{FOUNDRY}", [alert()], token="wrong")[0] == 401
        relay.wait_for(lambda health: health["sent"] == 1 and health["dead"] == 1)
        _wait("the outcomes in gkjk_relay", lambda: reported("delivered", "dingtalk", 1)
              and reported("dead_lettered", "sms", 1) and reported("pending", "dingtalk", 0))
        time.sleep(2 * RELAY_METRICS_INTERVAL)
        relay.stop()
        stopped = now_ms()
    finally:
        relay.stop()
        dingtalk.stop()
        aliyun.stop()
    [longest] = rows(run(platform_run.influx, platform_run.db, 'SELECT max("oldest_pending_seconds") '
                                                                'FROM "gkjk_relay" WHERE "channel" = \'dingtalk\''))
    waited = round(datetime.fromisoformat(longest["time"].replace("Z", "+00:00")).timestamp() * 1000)
    assert longest["max"] > 0.5
    yield RelayRun(posted, waited, stopped)


@pytest.fixture(scope="module")
def metrics(platform_run: Run, evaluations: Evaluations, relay_run: RelayRun) -> tuple[InfluxServer, str]:
    """The ingest run's database, with the rule engine's and the relay's points in it too."""
    return platform_run.influx, platform_run.db


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


def _engines(series: list[dict]) -> bool:
    [s] = series
    latest = s["rows"][-1]
    return (s["tags"] == {"host": socket.gethostname()} and latest["结果"] == 1
            and latest["企业数"] == len(RULES_REGISTRY.enterprises) and latest["判定耗时"] == 0.25
            and latest["新开告警"] is None)


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
    ("规则引擎最新判定", "A"): _engines,
    ("规则判定耗时", "A"): lambda s: len(column(s, "判定耗时")) == 6 and all(v > 0 for v in column(s, "判定耗时")),
    ("通知发送", "A"): lambda s: (sum(column(s, "已送达")), sum(column(s, "发送失败")),
                                 sum(column(s, "放弃（转入死信）"))) == (1, 5, 1),
    ("通知发送", "B"): lambda s: (sum(column(s, "收到告警推送")), sum(column(s, "拒收告警推送"))) == (1, 1),
    ("通知待发", "A"): lambda s: max(column(s, "待发条数")) == 2 and max(column(s, "最久等待")) > 0.5
    and column(s, "待发条数")[-1] == 0 and column(s, "最久等待")[-1] == 0,
    ("告警事件与判定失败", "A"): lambda s: sum(column(s, "判定失败")) == 3
    and len(column(s, "新开告警")) == 3 and min(column(s, "新开告警") + column(s, "恢复告警")) >= 0,
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


# --- platform alert rules ----------------------------------------------------------------------------------------

RULES = {rule["uid"].removeprefix("gkjk-platform-"): rule for rule in alerting.platform_rules()}
EVALUATORS = {"gt": operator.gt, "lt": operator.lt}


def evaluate(run_: Run, rule: dict, at: int, window: float | None = None) -> dict[tuple, bool]:
    """{labels: firing} of `rule` evaluated at `at` (epoch ms) over its relativeTimeRange (or `window` seconds):
    query A with Grafana's alert time filter, reduce B (last, nulls dropped), threshold C. {} is no data."""
    query, reduce, threshold = (next(q["model"] for q in rule["data"] if q["refId"] == ref) for ref in "ABC")
    assert (reduce["type"], reduce["reducer"], reduce["settings"]["mode"], threshold["type"], rule["condition"]) == \
        ("reduce", "last", "dropNN", "threshold", "C")
    seconds = window or next(q for q in rule["data"] if q["refId"] == "A")["relativeTimeRange"]["from"]
    text = expand(query["query"], {}, time_filter=f"time > {at - round(seconds * 1000)}ms and time < {at}ms")
    [condition] = threshold["conditions"]
    test, [limit] = EVALUATORS[condition["evaluator"]["type"]], condition["evaluator"]["params"]
    result = {}
    for s in run(run_.influx, run_.db, text):
        values = [v for row in s["rows"] for k, v in row.items() if k != "time" and v is not None]
        result[tuple(sorted(s["tags"].items()))] = test(values[-1], limit)
    return result


HOST = (("host", socket.gethostname()),)


def test_platform_rules_link_their_panels():
    panels = {p["id"]: p["title"] for p in dashboard()["panels"]}
    assert {uid: panels.get(r.get("panelId")) for uid, r in RULES.items()} == {
        "silent": "各工作进程最新状态", "spool": "写入积压", "retries": "写入重试与死信",
        "dead-letters": "写入重试与死信", "ack-latency": "应答延迟", "rules-silent": "规则引擎最新判定",
        "rules-failing": "告警事件与判定失败", "relay-silent": "通知发送", "relay-dead-letters": "通知发送",
        "relay-backlog": "通知待发"}
    assert {r["dashboardUid"] for r in RULES.values()} == {platform.UID}
    assert {uid: (r["noDataState"], r["for"]) for uid, r in RULES.items()} == {
        "silent": ("Alerting", "0s"), "spool": ("OK", "5m"), "retries": ("OK", "5m"),
        "dead-letters": ("OK", "0s"), "ack-latency": ("OK", "5m"), "rules-silent": ("Alerting", "0s"),
        "rules-failing": ("OK", "0s"), "relay-silent": ("Alerting", "0s"), "relay-dead-letters": ("OK", "0s"),
        "relay-backlog": ("OK", "0s")}


def test_rules_failing_rule_fires_on_three_failed_evaluations_in_five_minutes(platform_run, evaluations):
    rule = RULES["rules-failing"]
    last_healthy, last_failed = evaluations.healthy[-1] * 1000, evaluations.failed[-1] * 1000
    assert evaluate(platform_run, rule, last_healthy + 1000) == {HOST: False}  # healthy cycles: 0 failed
    assert evaluate(platform_run, rule, evaluations.failed[1] * 1000 + 1000) == {HOST: False}  # 2 failed so far
    assert evaluate(platform_run, rule, last_failed + 1000) == {HOST: True}
    assert evaluate(platform_run, rule, last_failed + 200_000) == {HOST: False}  # the first failed cycle has left the window


SMS, DINGTALK = ((("channel", "sms"), *HOST), (("channel", "dingtalk"), *HOST))  # labels sorted by name


def test_relay_dead_letters_rule_fires_for_the_channel_that_gave_up(platform_run, relay_run):
    rule = RULES["relay-dead-letters"]
    assert evaluate(platform_run, rule, relay_run.posted) == {SMS: False, DINGTALK: False}
    assert evaluate(platform_run, rule, relay_run.stopped) == {SMS: True, DINGTALK: False}
    assert evaluate(platform_run, rule, relay_run.stopped + 601_000) == {}  # nothing reported in its 10 minutes


def test_relay_backlog_rule_fires_while_a_message_waits_too_long(platform_run, relay_run):
    rule = RULES["relay-backlog"]
    assert evaluate(platform_run, rule, relay_run.longest_wait + 1) == {SMS: False, DINGTALK: False}  # under 1800 s
    # The wait was about a second here: the rule's query with a threshold it exceeds.
    low = next(r for r in alerting.platform_rules(relay_wait_seconds=0.5) if r["uid"] == rule["uid"])
    assert evaluate(platform_run, low, relay_run.longest_wait + 1)[DINGTALK] is True
    assert evaluate(platform_run, low, relay_run.stopped) == {SMS: False, DINGTALK: False}  # delivered or given up


def test_relay_silent_rule_fires_two_minutes_after_the_relay_stops(platform_run, relay_run):
    rule = RULES["relay-silent"]
    assert evaluate(platform_run, rule, relay_run.stopped) == {HOST: False}
    assert evaluate(platform_run, rule, relay_run.stopped + 100_000) == {HOST: False}
    assert evaluate(platform_run, rule, relay_run.stopped + 151_000) == {HOST: True}
    assert evaluate(platform_run, rule, relay_run.stopped + 86_400_000 + 60_000) == {}
    assert rule["noDataState"] == "Alerting"


def test_spool_rule_fires_while_influxdb_is_down(platform_run):
    rule = RULES["spool"]
    assert evaluate(platform_run, rule, now_ms()) == {HOST: False}  # drained
    # A 20,000-record backlog takes too long to build here: the rule with a threshold the 3-second outage
    # exceeds (2 loggers x 21 uploads acknowledged from the spool), healthy data staying below even that.
    low = next(r for r in alerting.platform_rules(spool_records=20) if r["uid"] == rule["uid"])
    assert evaluate(platform_run, low, platform_run.restarted) == {HOST: True}
    assert evaluate(platform_run, low, now_ms()) == {HOST: False}
    assert evaluate(platform_run, low, platform_run.outage) == {HOST: False}  # before the outage


def test_retries_rule_fires_after_failed_writes(platform_run):
    rule = RULES["retries"]
    # The run is seconds long, the rule's window 5 minutes: windows of the run's timeline instead.
    outage = (platform_run.drained + 2000 - platform_run.outage) / 1000
    assert evaluate(platform_run, rule, platform_run.drained + 2000, window=outage) == {HOST: True}
    assert evaluate(platform_run, rule, platform_run.outage, window=(platform_run.outage - platform_run.started)
                    / 1000) == {HOST: False}  # up to the outage: no retry
    healthy = (now_ms() - platform_run.drained) / 1000  # since the spool drained: seconds of healthy reports
    assert evaluate(platform_run, rule, now_ms(), window=healthy) == {HOST: False}


def test_dead_letter_rule_fires_per_worker_for_refused_batches(platform_run):
    rule = RULES["dead-letters"]
    fired = evaluate(platform_run, rule, platform_run.drained + 2000,
                     window=(platform_run.drained + 2000 - platform_run.started) / 1000)
    assert set(fired) == {(*HOST, ("worker", w)) for w in ("0", "1")} and any(fired.values())
    healthy = (now_ms() - platform_run.drained) / 1000
    assert evaluate(platform_run, rule, now_ms(), window=healthy) == {(*HOST, ("worker", w)): False
                                                                    for w in ("0", "1")}


def test_ack_latency_rule(platform_run):
    rule = RULES["ack-latency"]
    assert evaluate(platform_run, rule, platform_run.drained) == {HOST: False}  # milliseconds here
    # The query and its threshold are the rule's: with a threshold the run's latencies exceed, it fires.
    low = next(r for r in alerting.platform_rules(ack_p99_ms=0.001) if r["uid"] == rule["uid"])
    assert evaluate(platform_run, low, platform_run.drained) == {HOST: True}


@pytest_twisted.ensureDeferred
async def test_rules_silent_rule_fires_three_minutes_after_the_last_evaluation(platform_run):
    """A real rule engine evaluates once, on a database of its own (the test site's registry, no data): its
    `gkjk_rules` point keeps 规则引擎无判定 quiet for 3 minutes, then the rule fires until the host drops out."""
    db = f"rules_{uuid.uuid4().hex[:12]}"
    platform_run.influx.query(f'CREATE DATABASE "{db}"')
    rules_run = Run(platform_run.influx, db, platform_run.server)
    client = InfluxClient(platform_run.influx.url, db)
    try:
        engine = Engine(client, lambda: RULES_REGISTRY, Plugins(load_entry_points=False), RulesConfig())
        await engine.evaluate(time.time())
    finally:
        await client.close()
    [point] = rows(run(platform_run.influx, db, 'SELECT * FROM "gkjk_rules"'))
    last = round(datetime.fromisoformat(point["time"].replace("Z", "+00:00")).timestamp() * 1000)
    assert point["failed"] == 0 and point["enterprises"] == len(RULES_REGISTRY.enterprises)
    rule = RULES["rules-silent"]
    assert evaluate(rules_run, rule, max(now_ms(), last + 1000)) == {HOST: False}  # just evaluated
    assert evaluate(rules_run, rule, last + 170_000) == {HOST: False}  # not yet 3 minutes
    assert evaluate(rules_run, rule, last + 211_000) == {HOST: True}  # 3 to 3.5 minutes: always
    assert evaluate(rules_run, rule, last + 3_600_000) == {HOST: True}
    # A day later the host is out of the range: no data, which the rule's noDataState makes an alert.
    assert evaluate(rules_run, rule, last + 86_400_000 + 60_000) == {}
    assert rule["noDataState"] == "Alerting"


def test_silent_rule_fires_two_minutes_after_the_server_stops(platform_run):
    """Runs last: it stops the server. Grafana's evaluations after the stop are the moments after it."""
    rule = RULES["silent"]
    assert evaluate(platform_run, rule, now_ms()) == {HOST: False}
    platform_run.server.stop()
    stopped = now_ms()
    time.sleep(1.0)
    assert evaluate(platform_run, rule, stopped + 100_000) == {HOST: False}  # not yet 2 minutes
    assert evaluate(platform_run, rule, stopped + 151_000) == {HOST: True}  # 2 to 2.5 minutes: always
    assert evaluate(platform_run, rule, stopped + 3_600_000) == {HOST: True}
    # A day later the host is out of the range: no data at all, which the rule's noDataState makes an alert.
    assert evaluate(platform_run, rule, stopped + 86_400_000 + 60_000) == {}
    assert rule["noDataState"] == "Alerting"
    # Retiring the host (docs/grafana.md): its series dropped, the rule has nothing for it any more.
    platform_run.influx.query(f'DROP SERIES FROM "gkjk_ingest", "gkjk_rules", "gkjk_relay" '
                              f'WHERE "host" = \'{socket.gethostname()}\'', db=platform_run.db)
    assert evaluate(platform_run, rule, stopped + 151_000) == {}
