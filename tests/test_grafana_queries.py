"""Every InfluxQL query of the generated dashboards, expanded as Grafana expands it, against real data.

The data goes the real way: two data loggers upload 40 minutes of readings to `gkjk serve`, then `gkjk rules`
judges them and writes `state` and `alarm`. Each query must return the series the panel is meant to show.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gkjk import grafana
from gkjk.config import InfluxConfig
from gkjk.grafana.common import ALL_VALUE
from gkjk.grafana.expand import expand
from gkjk.influxd import InfluxServer
from gkjk.registry import load_registry
from gkjk_process import Logger, ServerProcess, start_gkjk, write_config

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_PATH = ROOT / "tests" / "data" / "grafana" / "registry"
FOUNDRY, COATING = "91320682MA1WXG001G", "91320621MA1WXG0028"
FOUNDRY_MN, COATING_MN = "010000A8900016F0000G0001", "010000A8900016F0000G0002"
MINUTES = 40
OPEN_RULES = {"treatment_off", "ph", "combustion_temperature"}
# Rules the data is not about, kept off so that the expected alarms stay exactly OPEN_RULES.
QUIET = "offline, low_load, spray_off, carbon, start_stop"


def run(influx: InfluxServer, db: str, query: str) -> list[dict]:
    """Series of the answer: name, tags, rows as dicts; an InfluxQL error fails the test."""
    result = influx.query(query, db=db)["results"][0]
    assert "error" not in result, (query, result["error"])
    return [{"tags": s.get("tags", {}), "rows": [dict(zip(s["columns"], v)) for v in s["values"]]}
            for s in result.get("series", [])]


def rules_until(influx: InfluxServer, db: str, workdir: Path) -> None:
    """Run `gkjk rules` until it has stored the alarms and run states the data implies."""
    config = write_config(workdir / "rules.toml", {
        "influx": {"url": influx.url, "database": db},
        "registry": {"path": str(REGISTRY_PATH)},
        "rules": {"interval": 0.5, "disabled_plugins": QUIET},
    })
    log = workdir / "rules.log"
    process = start_gkjk("rules", config, log)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            rules = {s["tags"]["rule"] for s in run(influx, db, 'SELECT last("state") FROM "alarm" GROUP BY "rule"')}
            states = run(influx, db, 'SELECT count("run") FROM "state" GROUP BY "ent"')
            if rules >= OPEN_RULES and len(states) == 2:
                return
            time.sleep(0.3)
        raise AssertionError(f"rule engine stored no alarms:\n{log.read_text()}")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def loaded(influxdb: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, str]]:
    """A database filled through the ingest server and the rule engine; the loggers stay connected (online)."""
    db = f"grafana_{uuid.uuid4().hex[:12]}"
    influxdb.query(f'CREATE DATABASE "{db}"')
    workdir = tmp_path_factory.mktemp("grafana")
    server = ServerProcess(workdir / "server", influxdb.url, db, registry=REGISTRY_PATH,
                           spool={"flush_interval": 0.05})
    server.start()
    loggers = [Logger(server.port, FOUNDRY_MN, "100000"), Logger(server.port, COATING_MN, "123456")]
    try:
        now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, second=0, microsecond=0)
        readings = [  # furnace runs, its fan is off, scrubber pH 11.5; booth runs, RTO at 650 ℃, fan at normal
            {"i33200": {"Rtd": "200"}, "g10201": {"Rtd": "0"}, "w01001": {"Rtd": "11.5"}},
            {"i33200": {"Rtd": "50"}, "a01012": {"Rtd": "650"}, "g10202": {"Rtd": "40"}},
        ]
        for logger, factors in zip(loggers, readings):
            logger.upload_minutes(now, MINUTES, factors)
        deadline = time.monotonic() + 15
        while len(run(influxdb, db, 'SELECT count("i33200-Rtd") FROM "rtd" GROUP BY "ent"')) < 2:
            assert time.monotonic() < deadline, "ingest stored no data"
            time.sleep(0.1)
        rules_until(influxdb, db, workdir)
        yield influxdb, db
    finally:
        for logger in loggers:
            logger.close()
        server.stop()
        influxdb.query(f'DROP DATABASE "{db}"')


# 应急管控 (emergency.json) has its own data: lines under control during an alert period in force now. 如皋市's
# furnace (停产) runs: alarm; its booth and mixer (限产) keep under their caps; 海安市's booth, named by the
# period, is off.
EMERGENCY_REGISTRY = ROOT / "tests" / "data" / "emergency" / "registry"
RUGAO_E, HAIAN_E = "91320682MA1WXE0012", "91320621MA1WXE002R"
LINE_COLUMNS = ("compliant", "load", "cap", "rate")  # of the table 管控生产设施落实情况


@pytest.fixture(scope="module")
def controlled(influxdb: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, str]]:
    """A database filled through the ingest server and the rule engine with an alert period in force."""
    db = f"grafana_{uuid.uuid4().hex[:12]}"
    influxdb.query(f'CREATE DATABASE "{db}"')
    workdir = tmp_path_factory.mktemp("emergency")
    server = ServerProcess(workdir / "server", influxdb.url, db, registry=EMERGENCY_REGISTRY,
                           spool={"flush_interval": 0.05})
    server.start()
    loggers = [Logger(server.port, "010000A8900016F000E00001", "100000"),
               Logger(server.port, "010000A8900016F000E00002", "123456")]
    now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, second=0, microsecond=0)
    periods = workdir / "periods"
    periods.mkdir()
    (periods / "now.toml").write_text(
        f'[[periods]]\nid = "now"\nname = "看板测试预警"\nlevel = "橙色"\nstart = {(now - timedelta(minutes=30)).isoformat()}'
        f'\nend = {(now + timedelta(hours=2)).isoformat()}\ncounties = ["如皋市"]\nenterprises = ["{HAIAN_E}"]\n',
        encoding="utf-8")
    config = write_config(workdir / "rules.toml", {
        "influx": {"url": influxdb.url, "database": db}, "registry": {"path": str(EMERGENCY_REGISTRY)},
        "rules": {"interval": 0.5, "disabled_plugins": QUIET + ", treatment_off", "emergency_path": str(periods)}})
    try:
        readings = [{"i33200": {"Rtd": "200"}, "i33210": {"Rtd": "30"}, "i33221": {"Rtd": "50"}},
                    {"i33200": {"Rtd": "0"}}]
        for logger, factors in zip(loggers, readings):
            logger.upload_minutes(now, MINUTES, factors)
        process = start_gkjk("rules", config, workdir / "rules.log")
        try:
            deadline = time.monotonic() + 30
            lines = 'SELECT count("compliant") FROM "control" GROUP BY "ent", "fac"'
            while not (run(influxdb, db, 'SELECT * FROM "alarm" WHERE "rule" = \'emergency\'')
                       and len(run(influxdb, db, lines)) == 4):
                assert time.monotonic() < deadline and process.poll() is None, (workdir / "rules.log").read_text()
                time.sleep(0.3)
        finally:
            process.terminate()
            process.wait(timeout=10)
        yield influxdb, db
    finally:
        for logger in loggers:
            logger.close()
        server.stop()
        influxdb.query(f'DROP DATABASE "{db}"')


ALL = {"county": (ALL_VALUE,), "ent": (ALL_VALUE,), "rule": (ALL_VALUE,)}
PICKED = {"county": ("如皋市", "海安市"), "ent": (FOUNDRY, COATING), "rule": tuple(sorted(OPEN_RULES))}
ONE = {**ALL, "ent": (FOUNDRY,)}
OTHER = {**ALL, "ent": (COATING,)}


def tagged(series: list[dict], tag: str, column: str) -> dict[str, object]:
    """Last non-null value of a column per tag value (fill(null) pads the minutes without data)."""
    return {s["tags"][tag]: [r[column] for r in s["rows"] if r[column] is not None][-1] for s in series}


def values(series: list[dict], column: str) -> set[object]:
    """Non-null values of a column over all series."""
    return {row[column] for s in series for row in s["rows"] if row.get(column) is not None}


def only(series: list[dict], column: str) -> object:
    """The value of a single-row, single-series answer (a count)."""
    [s] = series
    [row] = s["rows"]
    return row[column]


# (dashboard file, panel title or "annotation <name>", refId) -> (variables, check of the series returned).
Check = Callable[[list[dict]], bool]
EXPECTED: dict[tuple[str, str, str], tuple[dict[str, tuple[str, ...]], Check]] = {
    ("overview.json", "在线设备", "A"): (ALL, lambda s: only(s, "在线设备") == 2),
    ("overview.json", "未关闭告警", "A"): (ALL, lambda s: only(s, "未关闭告警") == 3),
    ("overview.json", "各区县未关闭告警", "A"): (ALL, lambda s: tagged(s, "county", "未关闭告警") ==
                                                  {"如皋市": 2, "海安市": 1}),
    ("overview.json", "有未关闭告警的企业", "A"): (
        ALL, lambda s: tagged(s, "ent", "告警数") == {FOUNDRY: 2, COATING: 1}
        and all(str(row["最新告警"]).startswith(("如皋市看板", "海安市看板")) for x in s for row in x["rows"])),
    ("overview.json", "企业分布", "A"): (ALL, lambda s: set(tagged(s, "ent", "最近连接")) == {FOUNDRY, COATING}),
    ("overview.json", "企业分布", "B"): (ALL, lambda s: tagged(s, "ent", "告警数") == {FOUNDRY: 2, COATING: 1}),
    ("enterprise.json", "生产设施运行状态", "A"): (ONE, lambda s: tagged(s, "fac", "last") == {"P1": 1}),
    ("enterprise.json", "治污设施运行状态", "A"): (ONE, lambda s: values(s, "last") == {0}
                                                  and {x["tags"]["fac"] for x in s} == {"T1"}),
    ("enterprise.json", "治污风机电流", "A"): (OTHER, lambda s: values(s, "mean_g10202-Rtd") == {40.0}),
    ("enterprise.json", "治污风机负荷率", "A"): (OTHER, lambda s: values(s, "mean") == {100.0}),
    ("enterprise.json", "燃烧温度", "A"): (OTHER, lambda s: values(s, "mean_a01012-Rtd") == {650.0}),
    ("enterprise.json", "pH", "A"): (ONE, lambda s: values(s, "mean_w01001-Rtd") == {11.5}),
    ("enterprise.json", "annotation 告警", "Anno"): (ONE, lambda s: values(s, "rule") == {"treatment_off", "ph"}),
    ("alarms.json", "未关闭告警", "A"): (ALL, lambda s: {x["tags"]["rule"] for x in s} == OPEN_RULES
                                       and values(s, "state") == {"open"}),
    ("alarms.json", "近期告警事件", "A"): (PICKED, lambda s: values(s, "rule") == OPEN_RULES),
    # emergency.json runs against `controlled` (see there).
    ("emergency.json", "预警期", "A"): (ALL, lambda s: tagged(s, "county", "lines") == {"如皋市": 3, "海安市": 1}
                                      and values(s, "name") == {"看板测试预警"}),
    ("emergency.json", "管控生产设施", "A"): ({**ALL, "county": ("如皋市",)}, lambda s: only(s, "管控生产设施") == 3),
    ("emergency.json", "未落实告警", "A"): (ALL, lambda s: only(s, "未落实告警") == 1),
    ("emergency.json", "管控生产设施落实情况", "A"): (ALL, lambda s: {
        (x["tags"]["ent"], x["tags"]["fac"], x["tags"]["action"], *(x["rows"][0][c] for c in LINE_COLUMNS))
        for x in s} == {(RUGAO_E, "P1", "停产", 0, 50.0, None, 0), (RUGAO_E, "P2", "限产", 1, 37.5, 50.0, 100),
                        (RUGAO_E, "P3", "限产", 1, 50.0, 70.0, 100), (HAIAN_E, "P1", "停产", 1, 0.0, None, 100)}),
    ("emergency.json", "管控生产设施落实时间线", "A"): (
        {**ALL, "ent": (RUGAO_E,)}, lambda s: tagged(s, "fac", "last") == {"P1": 0, "P2": 1, "P3": 1}),
    ("emergency.json", "应急管控告警", "A"): (
        {**ALL, "county": ("如皋市",)}, lambda s: values(s, "state") == {"open"} and values(s, "fac") == {"P1"}
        and all(str(m).startswith("如皋市应急测试有限公司：看板测试预警（橙色预警）期间，生产设施 中频炉")
                for m in values(s, "message"))),
}
VARIABLES = {  # (variable, counties chosen) -> values offered
    ("county", ()): {"如皋市", "海安市"},
    ("ent", (ALL_VALUE,)): {FOUNDRY, COATING},
    ("ent", ("如皋市", "海安市")): {FOUNDRY, COATING},
    ("ent", ("海安市",)): {COATING},
    ("rule", ()): OPEN_RULES,
}


# 数据质量 runs on data of its own (sessions that end, gaps in transmission): tests/test_grafana_alerting.py;
# 平台运行状态 on the ingest server's self-metrics (its `host` variable too): tests/test_grafana_platform.py.
TESTED_ELSEWHERE = {"quality.json", "platform.json"}
OWN_VARIABLES = {"platform.json"}


def targets() -> dict[tuple[str, str, str], str]:
    """Every query of every generated dashboard (panels and annotations), keyed like EXPECTED."""
    files = grafana.render(load_registry(REGISTRY_PATH), InfluxConfig())
    found = {}
    for name in grafana.DASHBOARDS.keys() - TESTED_ELSEWHERE:
        dashboard = json.loads(files[f"dashboards/{name}"])
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                found[name, panel["title"], target["refId"]] = target["query"]
        for annotation in dashboard["annotations"].get("list", []):
            target = annotation["target"]
            found[name, f"annotation {annotation['name']}", target["refId"]] = target["query"]
    return found


def variable_queries() -> dict[str, str]:
    files = grafana.render(load_registry(REGISTRY_PATH), InfluxConfig())
    found = {}
    for name in grafana.DASHBOARDS.keys() - OWN_VARIABLES:
        for variable in json.loads(files[f"dashboards/{name}"])["templating"]["list"]:
            assert found.setdefault(variable["name"], variable["query"]) == variable["query"], variable["name"]
    return found


def test_every_query_has_an_expectation():
    assert set(targets()) == set(EXPECTED)
    assert {name for name, _ in VARIABLES} == set(variable_queries())


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}:{k[1]}:{k[2]}")
def test_panel_query_returns_its_series(request, key):
    influx, db = request.getfixturevalue("controlled" if key[0] == "emergency.json" else "loaded")
    variables, check = EXPECTED[key]
    query = expand(targets()[key], variables)
    series = run(influx, db, query)
    filled = [s for s in series if any(v is not None for r in s["rows"] for k, v in r.items() if k != "time")]
    assert series and filled == series, f"no data for {query}"
    assert check(series), (query, series)


@pytest.mark.parametrize("key", sorted(VARIABLES), ids=lambda k: f"{k[0]}{list(k[1])}")
def test_variable_query_returns_its_values(loaded, key):
    influx, db = loaded
    name, counties = key
    query = expand(variable_queries()[name], {"county": counties})
    assert values(run(influx, db, query), "value") == VARIABLES[key], query
