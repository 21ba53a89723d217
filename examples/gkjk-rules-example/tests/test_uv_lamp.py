"""The UV lamp rule on the real engine objects (registry, plugin manager, Site), minute by minute."""

from __future__ import annotations

from pathlib import Path

import gkjk_rules_example
from gkjk.registry import load_registry
from rules_plugins.plugins import Plugins
from rules_plugins.site import Readings, Site
from rules_plugins.watch import Watch

REGISTRY = load_registry(Path(__file__).with_name("site.yaml"))
ENTERPRISE = next(iter(REGISTRY.enterprises.values()))
MN = ENTERPRISE.devices[0].mn
START = 1_795_000_000 - 1_795_000_000 % 60
MINUTES = range(START, START + 5 * 60, 60)
PLUGINS = Plugins(load_entry_points=False, extra=[("uv_lamps", gkjk_rules_example)])


def verdicts(line: list[float | None], lamps: list[float | None], industry_defaults: str = "制鞋") -> dict:
    """The rule's verdicts for five minutes of gluing-line current and UV lamp current (None: no reading)."""
    values = {(MN, "i33200"): line, (MN, "i33220"): lamps}
    readings = Readings(START, MINUTES.stop, START, {
        key: {m: v for m, v in zip(MINUTES, series) if v is not None} for key, series in values.items()})
    site = Site(ENTERPRISE, REGISTRY, readings, PLUGINS.defaults(industry_defaults), Watch())
    [condition] = gkjk_rules_example.UvLampFailure().conditions(site)
    assert (condition.subject, condition.duration) == ("T1", 10)
    return {(m - START) // 60: v for m, v in condition.minutes.items()}


def test_lamps_below_80_percent_while_the_line_runs():
    found = verdicts([10, 10, 10, 10, 10], [9.5, 7.9, 6.0, 8.0, None])
    assert found == {0: False, 1: {"unit": "UV光氧净化器", "share": "79", "limit": "80"},
                     2: {"unit": "UV光氧净化器", "share": "60", "limit": "80"}, 3: False}
    assert gkjk_rules_example.TEMPLATE.format(minutes=10, **found[2]) == \
        "生产设施运行期间，治污设施 UV光氧净化器 灯管电流仅为额定值的 60%（低于 80%），疑似灯管损坏，已持续 10 分钟"


def test_a_stopped_line_or_dark_unit_is_not_a_lamp_failure():
    # Line off (2 A < 3 A): clear. Unit off (0.5 A < 1 A): treatment_off's business, clear here. No line data: unknown.
    assert verdicts([2, 10, None, 10, 10], [6.0, 0.5, 6.0, 9, 9]) == {0: False, 1: False, 3: False, 4: False}


def test_applies_to_shoemaking_and_printing_with_uv_units_only():
    assert [type(r).__name__ for r in gkjk_rules_example.gkjk_rules(ENTERPRISE)] == ["UvLampFailure"]
    foundry = ENTERPRISE.model_copy(update={"industry": "铸造"})
    assert gkjk_rules_example.gkjk_rules(foundry) is None


def test_its_defaults_merge_with_the_built_ins_and_a_bureau_may_override_them():
    assert PLUGINS.names[-1] == "uv_lamps"
    defaults = PLUGINS.defaults("包装印刷", {"uv_lamp_min_fraction": 0.7})
    assert (defaults["uv_lamp_min_fraction"], defaults["uv_lamp_minutes"], defaults["on_fraction"]) == (0.7, 10, 0.1)
    PLUGINS.check_thresholds({"uv_lamp_min_fraction": 0.7})  # a known key now
