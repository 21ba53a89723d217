"""Generated Grafana files: committed output is fresh, dashboards are well-formed, provisioning fits the schema.

The queries themselves run against real data in test_grafana_queries.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gkjk import grafana
from gkjk.cli import main
from gkjk.config import InfluxConfig
from gkjk.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
FILES = grafana.render(load_registry(ROOT / "registry" / "demo"), InfluxConfig())
DASHBOARDS = {name: json.loads(text) for name, text in FILES.items() if name.startswith("dashboards/")}
# Keys of the provisioning files as documented in "Provision Grafana" (administration/provisioning, apiVersion 1).
DATASOURCE_FILE_KEYS = {"apiVersion", "datasources", "deleteDatasources", "prune"}
DATASOURCE_KEYS = {"name", "type", "access", "orgId", "uid", "url", "user", "database", "basicAuth", "basicAuthUser",
                   "withCredentials", "isDefault", "jsonData", "secureJsonData", "version", "editable"}
PROVIDER_FILE_KEYS = {"apiVersion", "providers"}
PROVIDER_KEYS = {"name", "orgId", "folder", "folderUid", "type", "disableDeletion", "updateIntervalSeconds",
                 "allowUiUpdates", "options"}
PROVIDER_OPTION_KEYS = {"path", "foldersFromFilesStructure"}
# Grafana's own variables and InfluxQL macros; every other $name must be a template variable of the dashboard.
BUILT_IN = {"timeFilter", "__interval", "__interval_ms", "__value", "__url_time_range", "__range_s"}


def test_committed_files_equal_a_fresh_build():
    stale = [name for name, text in FILES.items() if (ROOT / name).read_text(encoding="utf-8") != text]
    assert not stale, f"run `gkjk grafana build --registry registry/demo --out .`; stale: {stale}"


def test_cli_writes_the_same_files(tmp_path, monkeypatch):
    monkeypatch.delenv("GKJK_INFLUX_URL", raising=False)
    monkeypatch.delenv("GKJK_INFLUX_DATABASE", raising=False)
    main(["grafana", "build", "--registry", str(ROOT / "registry" / "demo"), "--out", str(tmp_path)])
    assert {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()} == set(FILES)
    assert all((tmp_path / name).read_text(encoding="utf-8") == text for name, text in FILES.items())


def test_datasource_file_follows_the_provisioning_schema():
    data = yaml.safe_load(FILES["provisioning/datasources/gkjk.yaml"])
    assert data["apiVersion"] == 1 and set(data) <= DATASOURCE_FILE_KEYS
    [source] = data["datasources"]
    assert set(source) <= DATASOURCE_KEYS
    assert (source["type"], source["access"], source["uid"]) == ("influxdb", "proxy", "gkjk-influxdb")
    assert source["jsonData"]["version"] == "InfluxQL" and source["jsonData"]["dbName"] == "gkjk"


@pytest.mark.parametrize("api, secret, value", [("v1", "password", "${GKJK_INFLUX_PASSWORD}"),
                                                ("v2", "httpHeaderValue1", "Token ${GKJK_INFLUX_TOKEN}"),
                                                ("v3", "httpHeaderValue1", "Token ${GKJK_INFLUX_TOKEN}")])
def test_credentials_come_from_grafana_s_environment(api, secret, value):
    from gkjk.grafana.provisioning import datasource

    [source] = datasource(InfluxConfig(api=api, username="grafana", password="s3cret", token="t0ken"))["datasources"]
    assert set(source) <= DATASOURCE_KEYS
    assert "s3cret" not in json.dumps(source) and "t0ken" not in json.dumps(source)
    assert source["secureJsonData"] == {secret: value}


def test_dashboard_provider_follows_the_provisioning_schema():
    data = yaml.safe_load(FILES["provisioning/dashboards/gkjk.yaml"])
    assert data["apiVersion"] == 1 and set(data) <= PROVIDER_FILE_KEYS
    [provider] = data["providers"]
    assert set(provider) <= PROVIDER_KEYS and set(provider["options"]) <= PROVIDER_OPTION_KEYS
    assert provider["type"] == "file" and provider["options"]["path"]


def test_gazetteer_places_every_enterprise():
    registry = load_registry(ROOT / "registry" / "demo")
    places = json.loads(FILES["provisioning/gazetteer/gkjk-enterprises.json"])
    assert {p["key"] for p in places} == set(registry.enterprises)
    assert all(set(p) == {"key", "name", "latitude", "longitude"} for p in places)


def test_dashboard_and_panel_ids_are_unique():
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids) and all(uids)
    for dashboard in DASHBOARDS.values():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids)
        names = [v["name"] for v in dashboard["templating"]["list"]]
        assert len(set(names)) == len(names)
        for panel in dashboard["panels"]:
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs), panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_without_overlap(name):
    taken: dict[tuple[int, int], str] = {}
    for panel in DASHBOARDS[name]["panels"]:
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[x, y]}"
                taken[x, y] = panel["title"]


def _datasources(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasources(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasources(value)


def test_every_datasource_reference_is_provisioned():
    provisioned = {(s["type"], s["uid"]) for s in yaml.safe_load(FILES["provisioning/datasources/gkjk.yaml"])
                   ["datasources"]}
    for dashboard in DASHBOARDS.values():
        refs = list(_datasources(dashboard))
        assert refs and {(r["type"], r["uid"]) for r in refs} <= provisioned


def _queries(dashboard: dict) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield target["query"]
        yield json.dumps(panel["fieldConfig"], ensure_ascii=False)  # data links
    for variable in dashboard["templating"]["list"]:
        yield variable["query"]
    for annotation in dashboard["annotations"].get("list", []):
        yield annotation["target"]["query"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_used_is_defined(name):
    dashboard = DASHBOARDS[name]
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = {m for text in _queries(dashboard) for m in re.findall(r"\$\{?(\w+)", text)}
    assert used - BUILT_IN <= defined, used - BUILT_IN - defined
    # The device watch markers of `state` are written once each, so reading them has no time bound.
    assert all("$timeFilter" in t["query"] for p in dashboard["panels"] for t in p["targets"]
               if 'FROM "rtd"' in t["query"] or ('FROM "state"' in t["query"] and '"watched"' not in t["query"])
               or 'FROM "control"' in t["query"] or 'FROM "emergency"' in t["query"]), \
        "unbounded scan of rtd/state/control/emergency"


def test_links_pass_variables_the_target_defines():
    by_uid = {d["uid"]: {v["name"] for v in d["templating"]["list"]} for d in DASHBOARDS.values()}
    for dashboard in DASHBOARDS.values():
        for uid, query in re.findall(r"/d/([\w-]+)\?([^\"]*)", json.dumps(dashboard["panels"], ensure_ascii=False)):
            assert set(re.findall(r"var-(\w+)=", query)) <= by_uid[uid]


def test_user_facing_text_is_chinese():
    han = re.compile("[\u4e00-\u9fff]")
    for dashboard in DASHBOARDS.values():
        titles = [dashboard["title"], *(p["title"] for p in dashboard["panels"]),
                  *(v["label"] for v in dashboard["templating"]["list"])]
        assert all(han.search(t) or t == "pH" for t in titles), titles


def test_readings_panels_plot_only_their_quantity():
    """企业详情 selects factor codes x facility ids per quantity; no point of another quantity may match both."""
    for path in (ROOT / "registry" / "demo", ROOT / "tests" / "data" / "grafana" / "registry"):
        assert grafana.warnings(load_registry(path)) == []


def test_a_code_shared_by_two_quantities_is_reported(tmp_path):
    foundry = (ROOT / "tests" / "data" / "grafana" / "registry" / "foundry.yaml").read_text(encoding="utf-8")
    (tmp_path / "a.yaml").write_text(foundry, encoding="utf-8")
    other = (foundry.replace("91320682MA1WXG001G", "91320621MA1WXG0028").replace("G0001", "G0009")
             .replace("{factor: g10201, facility: T1, quantity: fan_current, rated: 60, on_threshold: 9, normal: 45}",
                      "{factor: g10201, facility: T1, quantity: temperature}"))
    (tmp_path / "b.yaml").write_text(other, encoding="utf-8")
    assert grafana.warnings(load_registry(tmp_path)) == [
        "企业详情 would also plot fan_current: 91320621MA1WXG0028 T1 g10201 (temperature)",
        "企业详情 would also plot temperature: 91320682MA1WXG001G T1 g10201 (fan_current)",
    ]
