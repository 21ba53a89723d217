"""The plugin manager: built-ins as plugins, entry-point packs, disabling, failure isolation, documented hooks."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest_twisted

import rules_pack_example
from gkjk.config import RulesConfig
from gkjk.influxd import InfluxServer
from ingest_twisted.influx import InfluxClient
from rules_plugins import hookimpl, hookspecs
from rules_plugins.engine import Engine
from rules_plugins.plugins import DEFAULT_PLUGINS, ENTRY_POINT_GROUP, Plugins, builtin_name, parse_disabled
from rules_support import REGISTRY, alarms, at, brief, rtd, steady, write

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
SCENARIO = (rtd("P1", "i33200", steady(0, 44, 200)), rtd("T1", "g10201", steady(0, 44, 40, m10_21=0)))


class Broken:
    """Raises in every hook."""

    @hookimpl
    def gkjk_rules(self, enterprise):
        raise RuntimeError("rules")

    @hookimpl
    def gkjk_rule_defaults(self, industry):
        raise RuntimeError("defaults")

    @hookimpl
    def gkjk_alarm_message(self, alarm, enterprise):
        raise RuntimeError("message")


class BadRule:
    name = "bad"
    severity = "low"

    def conditions(self, site):
        raise ZeroDivisionError


class BadRulePack:
    @hookimpl
    def gkjk_rules(self, enterprise):
        return [BadRule()]


@pytest_twisted.async_yield_fixture
async def evaluate(influx_db: tuple[InfluxServer, str]) -> AsyncIterator[Callable]:
    """Run the treatment-off scenario once with the given plugins; returns the treatment_off rows."""
    influx, db = influx_db
    write(influx, db, *SCENARIO)
    client = InfluxClient(influx.url, db)

    async def run(plugins: Plugins) -> list[dict]:
        await Engine(client, lambda: REGISTRY, plugins, RulesConfig()).evaluate(at(45))
        return alarms(influx, db, "treatment_off")

    yield run
    await client.close()


def test_builtins_are_plugins_under_short_names():
    assert Plugins(load_entry_points=False).names == [builtin_name(m) for m in DEFAULT_PLUGINS]


def test_disabled_plugins_are_not_registered():
    names = Plugins(parse_disabled(" ph, offline ,"), load_entry_points=False).names
    assert "ph" not in names and "offline" not in names and "treatment_off" in names


@pytest_twisted.ensureDeferred
async def test_a_plugin_raising_in_every_hook_stops_nothing(evaluate):
    plugins = Plugins(load_entry_points=False,
                      extra=[("broken", Broken()), ("bad_rule", BadRulePack())])
    rows = await evaluate(plugins)
    assert brief(rows) == [(15, "open", "T1", 10, 5), (27, "closed", "T1", 10, 12)]
    assert rows[0]["message"].endswith("治污设施 布袋除尘风机 已停运 5 分钟")  # the default message took over
    assert plugins.failures["broken"] >= 3  # rules, defaults, and every message
    assert plugins.failures["bad_rule"] == 1


@pytest_twisted.ensureDeferred
async def test_an_industry_pack_overrides_default_thresholds(evaluate):
    plugins = Plugins(load_entry_points=False, extra=[("example", rules_pack_example)])
    assert plugins.defaults("铸造")["treatment_off_minutes"] == 10
    assert plugins.defaults("工业涂装")["treatment_off_minutes"] == 5
    assert brief(await evaluate(plugins)) == [(20, "open", "T1", 10, 10), (27, "closed", "T1", 10, 12)]


class Wording:
    @hookimpl
    def gkjk_alarm_message(self, alarm, enterprise):
        return f"{alarm.facility} {alarm.state} {alarm.minutes}"


@pytest_twisted.ensureDeferred
async def test_a_message_plugin_replaces_the_default(evaluate):
    rows = await evaluate(Plugins(load_entry_points=False, extra=[("wording", Wording())]))
    assert [r["message"] for r in rows] == ["T1 open 5", "T1 closed 12"]


@pytest_twisted.ensureDeferred
async def test_disabling_a_rule_silences_it(evaluate):
    assert await evaluate(Plugins(["treatment_off"], load_entry_points=False)) == []


class FakeDistribution:
    def __init__(self, *entry_points: importlib.metadata.EntryPoint) -> None:
        self.entry_points = entry_points
        self.metadata = {"name": "gkjk-rules-example"}


def test_packs_load_from_the_entry_point_group_unless_disabled(monkeypatch):
    point = importlib.metadata.EntryPoint("example", "rules_pack_example", ENTRY_POINT_GROUP)
    other = importlib.metadata.EntryPoint("elsewhere", "no_such_module", "other.group")
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [FakeDistribution(point, other)])
    assert Plugins().names[-1] == "example"
    assert Plugins().defaults("铸造")["treatment_off_minutes"] == 10
    assert "example" not in Plugins(["example"]).names


def test_every_hookspec_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    hooks = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("gkjk_")]
    assert hooks
    for name in hooks:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert re.search(rf"^### `{name}\({params}\)`", text, re.M), f"{name}({params}) is not documented"
