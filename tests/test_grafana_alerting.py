"""Grafana alerting provisioning and the 数据质量 dashboard.

Structure: every provisioning/alerting file against Grafana's documented file-provisioning schema (apiVersion 1)
and the routing the policies give. Data: every alert rule query and every 数据质量 query, expanded as Grafana
does, against a database filled the real way: four data loggers of three enterprises (one uploading every minute,
one every other minute, one that connects, sends three readings and leaves, one that never sends) through
`gkjk serve`, then `gkjk rules` with an installed rule pack of low severity writes `state` and the alarms (one
closed, three open: high, medium, low).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
import yaml
from gkjk import grafana
from gkjk.grafana import quality
from gkjk.config import InfluxConfig, RelayConfig
from gkjk.grafana.alerting import GROUP, PLATFORM_GROUP, SCOPE, SERIES, contact_points, open_alarm_query
from gkjk.grafana.common import ALL_VALUE
from gkjk.grafana.expand import expand
from gkjk.influxd import InfluxServer
from gkjk.registry import load_registry
from gkjk_process import Logger, ServerProcess, start_gkjk, write_config
from test_grafana_queries import only, run, tagged
from rules_plugins.plugins import Plugins
from rules_support import ENT as RULES_ENT
from rules_support import alarms, at, make_engine, rtd, steady, write  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
DEMO = load_registry(ROOT / "registry" / "demo")
FILES = grafana.render(DEMO, InfluxConfig())
ALERTING = {Path(name).name: yaml.safe_load(text) for name, text in FILES.items()
            if name.startswith("provisioning/alerting/")}
DASHBOARDS = {name: json.loads(text) for name, text in FILES.items() if name.startswith("dashboards/")}
DATASOURCE_UIDS = {s["uid"] for s in yaml.safe_load(FILES["provisioning/datasources/gkjk.yaml"])["datasources"]}
FOLDER = yaml.safe_load(FILES["provisioning/dashboards/gkjk.yaml"])["providers"][0]["folder"]

# Keys of Grafana's alerting provisioning files (pkg/services/provisioning/alerting: AlertingFileV1,
# AlertRuleGroupV1, AlertRuleV1, QueryV1, ContactPointV1, ReceiverV1, TemplateV1; policies are a Route).
FILE_KEYS = {"apiVersion", "groups", "deleteRules", "contactPoints", "deleteContactPoints", "policies",
             "resetPolicies", "muteTimes", "deleteMuteTimes", "templates", "deleteTemplates"}
GROUP_KEYS = {"orgId", "name", "folder", "interval", "rules"}
RULE_KEYS = {"uid", "title", "condition", "data", "dashboardUid", "panelId", "noDataState", "execErrState", "for",
             "keepFiringFor", "missing_series_evals_to_resolve", "annotations", "labels", "isPaused",
             "notification_settings", "record"}
QUERY_KEYS = {"refId", "queryType", "relativeTimeRange", "datasourceUid", "model"}
CONTACT_POINT_KEYS = {"orgId", "name", "receivers"}
RECEIVER_KEYS = {"uid", "type", "settings", "disableResolveMessage"}
WEBHOOK_KEYS = {"url", "httpMethod", "username", "password", "authorization_scheme", "authorization_credentials",
                "maxAlerts", "title", "message"}
ROUTE_KEYS = {"orgId", "receiver", "group_by", "matchers", "object_matchers", "mute_time_intervals",
              "active_time_intervals", "group_wait", "group_interval", "repeat_interval", "routes", "continue"}
TEMPLATE_KEYS = {"orgId", "name", "template"}
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # Grafana's short uid rule
DURATION = re.compile(r"^(\d+[smhdw])+$")


def seconds(duration: str) -> int:
    assert DURATION.match(duration), duration
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return sum(int(n) * unit[u] for n, u in re.findall(r"(\d+)([smhdw])", duration))


# --- structure -------------------------------------------------------------------------------------------------

def test_alerting_files_are_version_1_with_known_sections():
    assert set(ALERTING) == {"rules.yaml", "contact-points.yaml", "policies.yaml", "templates.yaml"}
    for name, data in ALERTING.items():
        assert data["apiVersion"] == 1 and set(data) <= FILE_KEYS, name


def test_rule_groups_follow_the_schema():
    groups = ALERTING["rules.yaml"]["groups"]
    assert [g["name"] for g in groups] == [GROUP, PLATFORM_GROUP]
    uids, titles = [], []
    for group in groups:
        assert set(group) <= GROUP_KEYS and group["name"] and group["orgId"] == 1
        assert group["folder"] == FOLDER  # the dashboards' folder
        assert seconds(group["interval"]) == 60
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS and {"uid", "title", "condition", "data"} <= set(rule), rule["title"]
            uids.append(rule["uid"])
            titles.append(rule["title"])  # alertname: unique in the folder
            assert UID.match(rule["uid"]), rule["uid"]
            if group["name"] == GROUP:
                assert rule["noDataState"] == "OK", "no alarm data at all is no alert"
                assert seconds(rule["for"]) == 0
            else:
                assert rule["labels"][SCOPE[0]] == SCOPE[1] and rule["labels"]["severity"] in {"high", "medium", "low"}
                assert rule["noDataState"] in {"OK", "Alerting", "NoData"} and seconds(rule["for"]) <= 300
                assert re.search("[\u4e00-\u9fff]", rule["annotations"]["description"])
            assert rule["execErrState"] in {"Error", "Alerting", "OK"} and rule["execErrState"] != "Alerting"
            assert isinstance(rule["annotations"]["summary"], str) and re.search("[\u4e00-\u9fff]", rule["title"])
            assert all(isinstance(v, str) for v in [*rule["annotations"].values(), *rule["labels"].values()])
            refs = [query["refId"] for query in rule["data"]]
            assert len(set(refs)) == len(refs) and rule["condition"] in refs
            for number, query in enumerate(rule["data"]):
                assert set(query) <= QUERY_KEYS and query["model"]["refId"] == query["refId"]
                window = query["relativeTimeRange"]
                assert set(window) == {"from", "to"} and window["from"] >= window["to"] >= 0
                if query["datasourceUid"] == "__expr__":
                    assert query["model"]["type"] in {"reduce", "threshold", "math", "resample", "classic_conditions"}
                    assert query["model"]["expression"] in refs[:number], "an expression reads an earlier query"
                else:
                    assert query["datasourceUid"] in DATASOURCE_UIDS and window["from"] > 0
                    assert query["model"]["datasource"]["uid"] == query["datasourceUid"]
                    assert query["model"]["rawQuery"] and query["model"]["query"]
            # Grafana takes a dashboard link with both keys or neither (规则引擎无判定 has no panel to show).
            assert ("dashboardUid" in rule) == ("panelId" in rule)
            if "dashboardUid" in rule or rule["uid"] != "gkjk-platform-rules-silent":
                dashboard = next(d for d in DASHBOARDS.values() if d["uid"] == rule["dashboardUid"])
                assert rule["panelId"] in {p["id"] for p in dashboard["panels"]}
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)


def test_one_rule_per_severity_covers_every_alarm():
    queries = [rule["data"][0]["model"]["query"] for rule in ALERTING["rules.yaml"]["groups"][0]["rules"]]
    assert queries == [open_alarm_query(s) for s in ("high", "medium", "low")]
    assert all(q.endswith('GROUP BY "ent", "county", "fac", "rule", "severity"') for q in queries)


def test_contact_points_reach_the_relay_for_every_recipient():
    points = ALERTING["contact-points.yaml"]["contactPoints"]
    names = [p["name"] for p in points]
    assert len(set(names)) == len(names) and all(re.search("[\u4e00-\u9fff]", n) for n in names)
    receivers = [r for p in points for r in p["receivers"]]
    uids = [r["uid"] for r in receivers]
    assert len(set(uids)) == len(uids) and all(UID.match(u) for u in uids)
    base = f"{RelayConfig().public_url}/grafana/"
    paths = set()
    for point in points:
        assert set(point) <= CONTACT_POINT_KEYS
        [receiver] = point["receivers"]
        assert set(receiver) <= RECEIVER_KEYS and receiver["type"] == "webhook"
        settings = receiver["settings"]
        assert set(settings) <= WEBHOOK_KEYS and settings["httpMethod"] == "POST"
        assert (settings["authorization_scheme"], settings["authorization_credentials"]) == \
            ("Bearer", "$__env{GKJK_RELAY_TOKEN}")
        assert settings["url"].startswith(base)
        paths.add(settings["url"][len(base):])
    counties = {e.county for e in DEMO.enterprises.values()}
    assert paths == {"bureau", *(f"county/{quote(c, safe='')}" for c in counties),
                     *(f"enterprise/{e}" for e in DEMO.enterprises)}
    assert {f"企业 {e.name}" for e in DEMO.enterprises.values()} | {f"分局 {c}" for c in counties} <= set(names)


def test_contact_points_follow_relay_public_url():
    data = contact_points(DEMO, "https://relay.example.cn/gkjk/")
    urls = {r["settings"]["url"] for p in data["contactPoints"] for r in p["receivers"]}
    assert "https://relay.example.cn/gkjk/grafana/bureau" in urls
    assert all(u.startswith("https://relay.example.cn/gkjk/grafana/") for u in urls)


def test_same_enterprise_names_get_distinct_contact_points(tmp_path):
    source = ROOT / "tests" / "data" / "grafana" / "registry"
    shutil.copy(source / "foundry.yaml", tmp_path / "a.yaml")
    twin = (source / "coating.yaml").read_text(encoding="utf-8").replace("海安市看板测试涂装有限公司",
                                                                           "如皋市看板测试铸造有限公司")
    (tmp_path / "b.yaml").write_text(twin, encoding="utf-8")
    names = [p["name"] for p in contact_points(load_registry(tmp_path), "http://relay")["contactPoints"]]
    assert len(set(names)) == len(names) == 5


def _walk(route: dict) -> Iterator[dict]:
    yield route
    for child in route.get("routes", []):
        yield from _walk(child)


def test_policies_follow_the_schema():
    [root] = ALERTING["policies.yaml"]["policies"]
    receivers = {p["name"] for p in ALERTING["contact-points.yaml"]["contactPoints"]}
    for route in _walk(root):
        assert set(route) <= ROUTE_KEYS and route["receiver"] in receivers
        for matcher in route.get("object_matchers", []):
            assert len(matcher) == 3 and matcher[1] in {"=", "!=", "=~", "!~"} and matcher[0] in {*SERIES, SCOPE[0]}
    # Platform alerts first, to the bureau only; every other route continues to the next.
    platform, *alarms = root["routes"]
    assert platform["object_matchers"] == [[SCOPE[0], "=", SCOPE[1]]] and platform["continue"] is False
    assert set(platform["group_by"]) == {"alertname", "host", "worker", "channel"}
    assert all(route["continue"] is True for route in alarms)
    assert set(root["group_by"]) <= {"alertname", "grafana_folder", *SERIES}
    wait, interval, repeat = (seconds(root[k]) for k in ("group_wait", "group_interval", "repeat_interval"))
    assert wait + interval <= 60 and interval <= repeat, "an alarm reaches its recipients within a minute"


def route(tree: dict, labels: dict[str, str]) -> set[str]:
    """The receivers an alert with `labels` reaches (Alertmanager routing: the first matching child unless it
    continues, the route's own receiver when no child matches; only `=` matchers are generated)."""
    def matches(node: dict) -> bool:
        return all(labels.get(name) == value for name, _op, value in node.get("object_matchers", []))

    def visit(node: dict) -> set[str]:
        reached: set[str] = set()
        for child in node.get("routes", []):
            if matches(child):
                reached |= visit(child)
                if not child.get("continue"):
                    break
        return reached or {node["receiver"]}

    return visit(tree)


def test_every_alarm_reaches_its_enterprise_county_branch_and_the_bureau():
    [root] = ALERTING["policies.yaml"]["policies"]
    for ent in DEMO.enterprises.values():
        labels = {"alertname": "高级别工况告警", "ent": ent.id, "county": ent.county, "fac": "T1",
                  "rule": "treatment_off", "severity": "high"}
        assert route(root, labels) == {f"企业 {ent.name}", f"分局 {ent.county}", "生态环境局"}
    assert route(root, {"alertname": "DatasourceError", "rulename": "高级别工况告警"}) == {"生态环境局"}


def test_platform_alerts_reach_the_bureau_only():
    [root] = ALERTING["policies.yaml"]["policies"]
    [group] = [g for g in ALERTING["rules.yaml"]["groups"] if g["name"] == PLATFORM_GROUP]
    ent = next(iter(DEMO.enterprises.values()))
    for rule in group["rules"]:
        labels = {"alertname": rule["title"], **rule["labels"], "host": "ingest-01", "worker": "0"}
        assert route(root, labels) == {"生态环境局"}
        # Even a platform alert that carried an enterprise's labels would not reach the enterprise.
        assert route(root, {**labels, "ent": ent.id, "county": ent.county}) == {"生态环境局"}


def test_templates_define_what_the_contact_points_use():
    [template] = ALERTING["templates.yaml"]["templates"]
    assert set(template) <= TEMPLATE_KEYS and template["name"]
    text = template["template"]
    defined = set(re.findall(r'\{\{-? *define "([^"]+)"', text))
    used = {name for p in ALERTING["contact-points.yaml"]["contactPoints"] for r in p["receivers"]
            for value in r["settings"].values() for name in re.findall(r'template "([^"]+)"', str(value))}
    assert used and used <= defined
    assert set(re.findall(r'template "([^"]+)"', text)) <= defined
    opened = len(re.findall(r"\{\{-? *(?:define|if|range|with) ", text))
    assert opened == len(re.findall(r"\{\{-? *end *-?\}\}", text)), "every block ends"
    assert text.count("{{") == text.count("}}") and "告警" in text and "已恢复" in text
    # Platform alerts (no ent/fac/rule): their rule title, summary, description and dashboard link.
    assert f'eq .Labels.{SCOPE[0]} "{SCOPE[1]}"' in text and f'eq .CommonLabels.{SCOPE[0]} "{SCOPE[1]}"' in text
    for needed in (".Labels.alertname", ".Annotations.summary", ".Annotations.description", ".DashboardURL",
                   ".CommonLabels.host", "平台运行状态", "【平台告警】"):
        assert needed in text, needed


def test_quality_dashboard_is_generated():
    quality = DASHBOARDS["dashboards/quality.json"]
    assert (quality["uid"], quality["title"]) == ("gkjk-quality", "数据质量")
    assert {v["name"] for v in quality["templating"]["list"]} == {"county", "ent"}
    # The checks every dashboard gets (ids, grid, data sources, variables) are in test_grafana.py.


def test_quality_without_metered_loggers_leaves_the_rates_out(tmp_path):
    foundry = (ROOT / "tests" / "data" / "grafana" / "registry" / "foundry.yaml").read_text(encoding="utf-8")
    (tmp_path / "a.yaml").write_text(foundry[:foundry.index("devices:")], encoding="utf-8")
    titles = [p["title"] for p in quality.build(load_registry(tmp_path))["panels"]]
    assert "设备在线状态" in titles and not any("传输率" in t for t in titles)


@pytest_twisted.ensureDeferred
async def test_alarm_events_tell_the_alert_rules_whether_they_are_open(influx, db, make_engine):
    """`active` is 1 on open events, 0 on closed and retracted ones; the rule query sees the last live event."""
    fan = steady(0, 44, 40, m10_21=0)
    series = (RULES_ENT, "如皋市", "T1", "treatment_off", "high")
    write(influx, db, rtd("P1", "i33200", steady(0, 44, 200)), rtd("T1", "g10201", fan))
    engine = make_engine(plugins=Plugins(disabled=["offline"], load_entry_points=False))
    await engine.evaluate(at(18))
    assert [(r["state"], r["active"]) for r in alarms(influx, db, "treatment_off")] == [("open", 1)]
    assert firing(run(influx, db, open_alarm_query("high"))) == {series: True}
    await engine.evaluate(at(30))
    assert [(r["state"], r["active"]) for r in alarms(influx, db, "treatment_off")] == [("open", 1), ("closed", 0)]
    assert firing(run(influx, db, open_alarm_query("high"))) == {series: False}
    write(influx, db, rtd("T1", "g10201", [(m + 0.5, 40.0) for m in range(10, 22)]))  # late: the fan ran after all
    await engine.evaluate(at(45))
    events = alarms(influx, db, "treatment_off", live=False)
    assert [(r["state"], r["active"]) for r in events] == [("retracted", 0), ("retracted", 0)]
    assert run(influx, db, open_alarm_query("high")) == []  # no data: the rule's noDataState OK, nothing fires


# --- real data -------------------------------------------------------------------------------------------------

GRAFANA_REGISTRY = ROOT / "tests" / "data" / "grafana" / "registry"
FOUNDRY, COATING, PRINTER = "91320682MA1WXG001G", "91320621MA1WXG0028", "91320682MA1WXG003N"
FOUNDRY_MN, COATING_MN = "010000A8900016F0000G0001", "010000A8900016F0000G0002"
LEAVING_MN, SILENT_MN = "010000A8900016F0000G0003", "010000A8900016F0000G0004"
MINUTES = 59  # readings from 59 minutes ago to now, inside the rule engine's 60-minute window
FAN_BACK = 25  # the foundry's fan runs again from 25 minutes ago: its treatment_off episode closes
QUIET = "offline, low_load, spray_off, carbon, start_stop, emergency"
PRINTER_YAML = f"""\
id: {PRINTER}
name: 如皋市看板测试印刷有限公司
county: 如皋市
town: 城南街道
industry: 包装印刷
location: {{lat: 32.37, lon: 120.57}}
facilities:
  production:
    - {{id: P1, name: 印刷机, kind: printing_press}}
  treatment:
    - {{id: T1, name: 废气风机, kind: fan, serves: [P1]}}
devices:
  - mn: {LEAVING_MN}
    pw: "200000"
    protocol: hj212-2017
    points:
      - {{factor: i33200, facility: P1, quantity: current, rated: 40}}
      - {{factor: g10201, facility: T1, quantity: fan_current, rated: 30}}
  - mn: {SILENT_MN}
    pw: "200001"
    protocol: hj212-2017
    points:
      - {{factor: i33210, facility: P1, quantity: current, rated: 40}}
"""
# A rule pack as installed with pip: a module and its entry point (group gkjk.rules), low severity.
PACK = '''\
"""pH 偏高预警: scrubber liquor above 10 for 3 minutes (a low-severity warning before the pH alarm)."""

from rules_plugins import hookimpl
from rules_plugins.model import Condition


class PhWarning:
    name = "ph_warning"
    severity = "low"

    def conditions(self, site):
        for facility in site.enterprise.facilities.treatment:
            meters = site.points(facility.id, "ph")
            if meters:
                verdicts = {}
                for minute in site.minutes:
                    ph = site.mean(meters, minute)
                    if ph is not None:
                        verdicts[minute] = {"facility": facility.name, "ph": f"{ph:.1f}"} if ph > 10 else False
                yield Condition(facility.id, verdicts, 3, "治污设施 {facility} pH 值 {ph} 偏高，已持续 {minutes} 分钟")


@hookimpl
def gkjk_rules(enterprise):
    return [PhWarning()]
'''


def _install_pack(directory: Path) -> None:
    directory.mkdir()
    (directory / "gkjk_test_ph_warning.py").write_text(PACK, encoding="utf-8")
    info = directory / "gkjk_test_ph_warning-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gkjk-test-ph-warning\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gkjk.rules]\nph_warning = gkjk_test_ph_warning\n")


def _upload(server: ServerProcess, now: datetime) -> Logger:
    """Readings through the real server; returns the logger left connected to be closed later."""
    foundry, coating = Logger(server.port, FOUNDRY_MN, "100000"), Logger(server.port, COATING_MN, "123456")
    leaving = Logger(server.port, LEAVING_MN, "200000")
    for minute in range(MINUTES, -1, -1):
        fan = "40" if minute <= FAN_BACK else "0"
        foundry.send(foundry.packet("2011", now - timedelta(minutes=minute),
                                    {"i33200": {"Rtd": "200"}, "g10201": {"Rtd": fan}, "w01001": {"Rtd": "11.5"}}))
        if minute % 2 == 0:
            coating.send(coating.packet("2011", now - timedelta(minutes=minute),
                                        {"i33200": {"Rtd": "50"}, "a01012": {"Rtd": "650"}, "g10202": {"Rtd": "40"}}))
    for minute in (12, 11, 10):
        leaving.send(leaving.packet("2011", now - timedelta(minutes=minute),
                                    {"i33200": {"Rtd": "0"}, "g10201": {"Rtd": "0"}}))
    assert len(foundry.read(MINUTES + 1)) == MINUTES + 1
    assert len(coating.read(MINUTES // 2 + 1)) == MINUTES // 2 + 1
    assert len(leaving.read(3)) == 3
    leaving.close()  # offline from now on
    time.sleep(1.5)  # a self-metrics report (every second) between the clean data and the bad packet
    foundry.send(foundry.packet("2011", now - timedelta(seconds=30), {"w01001": {"Rtd": "--"}, "x99999": {"Rtd": "1"}}))
    assert len(foundry.read(1)) == 1
    coating.close()
    return foundry


def _rules_until_judged(influx: InfluxServer, db: str, workdir: Path, registry: Path) -> None:
    config = write_config(workdir / "rules.toml", {
        "influx": {"url": influx.url, "database": db}, "registry": {"path": str(registry)},
        "rules": {"interval": 0.5, "disabled_plugins": QUIET},
    })
    log = workdir / "rules.log"
    pack = workdir / "pack"
    _install_pack(pack)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(pack), os.environ.get("PYTHONPATH")])))
        process = start_gkjk("rules", config, log)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and process.poll() is None:
            last = {s["tags"]["rule"]: s["rows"][0]["last"] for s in
                    run(influx, db, 'SELECT last("state") FROM "alarm" GROUP BY "rule"')}
            watched = run(influx, db, 'SELECT first("watched") FROM "state" GROUP BY "fac"')
            if last == {"treatment_off": "closed", "ph": "open", "ph_warning": "open",
                        "combustion_temperature": "open"} and len(watched) == 4:
                return
            time.sleep(0.3)
        raise AssertionError(f"rule engine did not judge the data:\n{log.read_text()}")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def loaded(influxdb: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, str]]:
    db = f"alerting_{uuid.uuid4().hex[:12]}"
    influxdb.query(f'CREATE DATABASE "{db}"')
    workdir = tmp_path_factory.mktemp("alerting")
    registry = workdir / "registry"
    shutil.copytree(GRAFANA_REGISTRY, registry)
    (registry / "printer.yaml").write_text(PRINTER_YAML, encoding="utf-8")
    server = ServerProcess(workdir / "server", influxdb.url, db, registry=registry, spool={"flush_interval": 0.05})
    server.start()
    connected = None
    try:
        now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, second=0, microsecond=0)
        connected = _upload(server, now)
        deadline = time.monotonic() + 15
        while len(run(influxdb, db, 'SELECT count("i33200-Rtd") FROM "rtd" GROUP BY "mn"')) < 3:
            assert time.monotonic() < deadline, "ingest stored no data"
            time.sleep(0.1)
        _rules_until_judged(influxdb, db, workdir, registry)
        yield influxdb, db
    finally:
        if connected:
            connected.close()
        server.stop()
        influxdb.query(f'DROP DATABASE "{db}"')


def firing(series: list[dict]) -> dict[tuple[str, ...], bool]:
    """What Grafana makes of a rule's answer: per series (labels), reduce `last` dropping nulls, threshold > 0."""
    result = {}
    for s in series:
        last = [v for row in s["rows"] for k, v in row.items() if k != "time" and v is not None][-1]
        result[tuple(s["tags"][label] for label in SERIES)] = last > 0
    return result


TREATMENT_OFF = (FOUNDRY, "如皋市", "T1", "treatment_off", "high")
EXPECTED_ALERTS = {
    "high": {TREATMENT_OFF: False, (COATING, "海安市", "T1", "combustion_temperature", "high"): True},
    "medium": {(FOUNDRY, "如皋市", "T2", "ph", "medium"): True},
    "low": {(FOUNDRY, "如皋市", "T2", "ph_warning", "low"): True},
}


@pytest.mark.parametrize("rule", ALERTING["rules.yaml"]["groups"][0]["rules"], ids=lambda r: r["uid"])  # 工况告警
def test_alert_rule_fires_for_open_alarms_only(loaded, rule):
    influx, db = loaded
    [query] = [q for q in rule["data"] if q["datasourceUid"] != "__expr__"]
    series = run(influx, db, expand(query["model"]["query"], {}))
    assert series, f"no data for {rule['title']}"
    severity = rule["uid"].rsplit("-", 1)[1]
    assert firing(series) == EXPECTED_ALERTS[severity], series


def test_firing_alerts_reach_enterprise_county_and_bureau(loaded):
    influx, db = loaded
    files = grafana.render(load_registry(GRAFANA_REGISTRY), InfluxConfig())
    [root] = yaml.safe_load(files["provisioning/alerting/policies.yaml"])["policies"]
    series = run(influx, db, expand(open_alarm_query("high"), {}))
    [labels] = [dict(zip(SERIES, key)) for key, on in firing(series).items() if on]
    assert route(root, labels) == {"企业 海安市看板测试涂装有限公司", "分局 海安市", "生态环境局"}


# The 数据质量 queries: 1 h range ($__range_s = 3600), the foundry delivered every minute, the coating line every
# other minute, the printer's first logger three readings, its second nothing.
HOUR = {"time_filter": "time >= now() - 1h", "interval": "1m", "range_s": 3600}
ALL = {"county": (ALL_VALUE,), "ent": (ALL_VALUE,)}
HAIAN = {**ALL, "county": ("海安市",)}
RUGAO_TWO = {**ALL, "county": ("如皋市",), "ent": (FOUNDRY, PRINTER)}
Check = Callable[[list[dict]], bool]


def near(value: object, expected: float, slack: float = 3.5) -> bool:
    return isinstance(value, (int, float)) and abs(value - expected) <= slack


def _rates(expected: dict[str, float]) -> Check:
    return lambda s: tagged(s, "mn", "传输率").keys() == expected.keys() and all(
        near(tagged(s, "mn", "传输率")[mn], rate) for mn, rate in expected.items())


FULL, HALF, THREE = 100.0, 50.0, 5.0  # % of 60 expected records: 60, 30, 3
QUALITY: dict[tuple[str, str, str], tuple[dict, dict, Check]] = {
    ("在线设备", "A", "all"): (ALL, HOUR, lambda s: only(s, "在线设备") == 1),
    ("离线设备", "A", "all"): (ALL, HOUR, lambda s: only(s, "离线设备") == 2),
    ("从未上报设备数", "A", "all"): (ALL, HOUR, lambda s: only(s, "从未上报设备数") == 1),
    ("传输率不达标设备数", "A", "all"): (ALL, HOUR, lambda s: only(s, "设备数") == 2),
    ("设备在线状态", "A", "all"): (ALL, HOUR, lambda s: tagged(s, "mn", "event") == {
        FOUNDRY_MN: "online", COATING_MN: "offline", LEAVING_MN: "offline"}),
    ("各设备传输率", "A", "all"): (ALL, HOUR, _rates({FOUNDRY_MN: FULL, COATING_MN: HALF, LEAVING_MN: THREE})),
    ("各设备传输率", "A", "海安市"): (HAIAN, HOUR, _rates({COATING_MN: HALF})),
    ("各区县平均传输率", "A", "all"): (ALL, HOUR, lambda s: tagged(s, "county", "传输率").keys() == {"如皋市", "海安市"}
                                      and near(tagged(s, "county", "传输率")["如皋市"], (FULL + THREE) / 2)
                                      and near(tagged(s, "county", "传输率")["海安市"], HALF)),
    ("传输率低于 90% 的设备", "A", "all"): (ALL, HOUR, _rates({COATING_MN: HALF, LEAVING_MN: THREE})),
    ("传输率低于 90% 的设备", "A", "如皋市"): (RUGAO_TWO, HOUR, _rates({LEAVING_MN: THREE})),
    ("从未上报数据的设备", "A", "all"): (ALL, HOUR, lambda s: set(tagged(s, "fac", "从未上报")) == {SILENT_MN}
                                       and tagged(s, "fac", "从未上报")[SILENT_MN] == 1),
    ("从未上报数据的设备", "A", "海安市"): (HAIAN, HOUR, lambda s: False),  # none there: must return nothing
    ("接入数据异常", "A", "all"): (ALL, {**HOUR, "interval": "1s"},
                                 lambda s: sum(r["非数值读数"] or 0 for x in s for r in x["rows"]) >= 1
                                 and sum(r["未登记因子"] or 0 for x in s for r in x["rows"]) >= 1),
}
EMPTY = {("从未上报数据的设备", "A", "海安市")}
QUALITY_VARIABLES = {  # (variable, counties chosen) -> values offered
    ("county", ()): {"如皋市", "海安市"},
    ("ent", (ALL_VALUE,)): {FOUNDRY, COATING, PRINTER},
    ("ent", ("如皋市",)): {FOUNDRY, PRINTER},
}


def quality_targets() -> dict[tuple[str, str], str]:
    files = grafana.render(load_registry(GRAFANA_REGISTRY), InfluxConfig())
    dashboard = json.loads(files["dashboards/quality.json"])
    return {(p["title"], t["refId"]): t["query"] for p in dashboard["panels"] for t in p["targets"]}


def test_every_quality_query_has_an_expectation():
    assert {(title, ref) for title, ref, _ in QUALITY} == set(quality_targets())
    variables = {v["name"] for v in DASHBOARDS["dashboards/quality.json"]["templating"]["list"]}
    assert {name for name, _ in QUALITY_VARIABLES} == variables


@pytest.mark.parametrize("key", sorted(QUALITY), ids=lambda k: f"{k[0]}:{k[1]}:{k[2]}")
def test_quality_query_returns_its_series(loaded, key):
    influx, db = loaded
    variables, timing, check = QUALITY[key]
    query = expand(quality_targets()[key[:2]], variables, **timing)
    series = run(influx, db, query)
    if key in EMPTY:
        assert series == [], query
        return
    filled = [s for s in series if any(v is not None for r in s["rows"] for k, v in r.items() if k != "time")]
    assert series and filled == series, f"no data for {query}"
    assert check(series), (query, series)


@pytest.mark.parametrize("key", sorted(QUALITY_VARIABLES), ids=lambda k: f"{k[0]}{list(k[1])}")
def test_quality_variable_returns_its_values(loaded, key):
    influx, db = loaded
    name, counties = key
    [variable] = [v for v in DASHBOARDS["dashboards/quality.json"]["templating"]["list"] if v["name"] == name]
    query = expand(variable["query"], {"county": counties})
    assert {r["value"] for s in run(influx, db, query) for r in s["rows"]} == QUALITY_VARIABLES[key], query
