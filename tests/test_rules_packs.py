"""Industry packs: facility templates as registry skeletons, each pack's rules and defaults on a registry of its
industry against a real InfluxDB (a positive and a negative scenario each), and the precedence of thresholds:
plugin defaults < industry pack < bureau [rules.thresholds] < bureau [rules.thresholds.<industry>] < registry."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest
import pytest_twisted

from gkjk.config import ConfigError, RulesConfig, load_config
from gkjk.influxd import InfluxServer
from gkjk.registry import INDUSTRIES, Registry, load_registry
from gkjk_process import start_gkjk, write_config
from ingest_twisted.influx import InfluxClient
from rules_plugins import hookimpl
from rules_plugins.builtin.carbon import replacement_line
from rules_plugins.engine import Engine
from rules_plugins.packs.template import skeleton
from rules_plugins.plugins import Plugins
from rules_support import T0, alarms, at, brief, steady, write

ROOT = Path(__file__).resolve().parent.parent
PACKS = ROOT / "tests" / "data" / "packs"
PACK_INDUSTRIES = {"generic": "通用", "coating": "工业涂装", "printing": "包装印刷", "shoemaking": "制鞋",
                   "electroplating": "电镀", "leather": "制革", "foundry": "铸造"}


def plugins(*disabled: str) -> Plugins:
    return Plugins(["offline", *disabled], load_entry_points=False)


# --- templates ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("industry", PACK_INDUSTRIES.values())
def test_every_pack_template_is_a_valid_registry_whose_facilities_its_rules_judge(industry, tmp_path):
    template = plugins().template(industry)
    assert template is not None and template.industry == industry
    path = tmp_path / "site.yaml"
    path.write_text(skeleton(template), encoding="utf-8")
    enterprise = next(iter(load_registry(path).enterprises.values()))
    assert enterprise.industry == industry
    applied = {rule.name for _name, rule in plugins().rules(enterprise)}
    for facility in template.facilities:
        assert set(facility.rules) <= applied, facility.id
        assert enterprise.facility(facility.id).kind == facility.kind
    assert any(f.rules for f in template.treatment)


def test_industries_without_a_pack_have_no_template():
    assert {i for i in INDUSTRIES if plugins().template(i) is not None} == set(PACK_INDUSTRIES.values())


def test_an_installed_pack_template_wins_over_the_built_in_one():
    class Mine:
        @hookimpl
        def gkjk_facility_template(self, industry):
            return plugins().template("通用") if industry == "电镀" else None

    assert Plugins(load_entry_points=False, extra=[("mine", Mine())]).template("电镀").industry == "通用"
    assert plugins("packs.electroplating").template("电镀") is None


def test_registry_template_command_prints_a_skeleton_the_loader_accepts(tmp_path):
    out = tmp_path / "coating.yaml"
    done = subprocess.run([sys.executable, "-m", "gkjk.cli", "registry", "template", "--industry", "工业涂装"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    out.write_text(done.stdout, encoding="utf-8")
    enterprise = next(iter(load_registry(out).enterprises.values()))
    assert [t.kind for t in enterprise.facilities.treatment] == [
        "water_curtain", "dry_filter", "activated_carbon", "rto", "fan"]
    assert "- {id: T4, name: 蓄热式焚烧炉, kind: rto, serves: [P1, P2]}  # rules: combustion_temperature" in done.stdout
    done = subprocess.run([sys.executable, "-m", "gkjk.cli", "registry", "template", "--industry", "石材"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and "no rule pack has a facility template for industry '石材'" in done.stderr


# --- each pack on a registry of its industry ----------------------------------------------------------------------


class Site:
    """One pack's test registry (tests/data/packs/<pack>.yaml): one enterprise, one logger."""

    def __init__(self, pack: str) -> None:
        self.registry: Registry = load_registry(PACKS / f"{pack}.yaml")
        self.enterprise = next(iter(self.registry.enterprises.values()))
        self.mn = self.enterprise.devices[0].mn

    def rtd(self, fac: str, factor: str, values: list[tuple[int, float]]) -> bytes:
        tags = f"rtd,county={self.enterprise.county},ent={self.enterprise.id},fac={fac},mn={self.mn}"
        return "\n".join(f"{tags} {factor}-Rtd={value} {at(minute)}" for minute, value in values).encode()

    def running(self, fac: str, first: int, last: int) -> bytes:
        """`state` run points as earlier evaluations of the engine stored them, one per minute (epoch s)."""
        tags = f"state,county={self.enterprise.county},ent={self.enterprise.id},fac={fac}"
        return "\n".join(f"{tags} run=1i {t}" for t in range(first, last, 60)).encode()


@pytest_twisted.async_yield_fixture
async def evaluate(influx_db: tuple[InfluxServer, str]) -> AsyncIterator[Callable]:
    """evaluate(site, **rules config): one evaluation at minute 45 with the built-ins and packs."""
    client = InfluxClient(influx_db[0].url, influx_db[1])

    async def run(site: Site, **config: object) -> None:
        await Engine(client, lambda: site.registry, plugins(), RulesConfig(**config)).evaluate(at(45))

    yield run
    await client.close()


EPISODE = [(15, "open"), (27, "closed")]  # violated from minute 10 to 21: opens after 5 minutes, closes 5 after


def scenario(pack: str, positive: bool) -> tuple[str, list[bytes], dict[str, list[tuple]]]:
    """(pack, data, rule -> expected (minute, state, facility, started, minutes) events)."""
    site = Site(pack)
    on = (lambda fac, factor, value: site.rtd(fac, factor, steady(0, 44, value)))
    if pack == "generic":  # the fan stops for 12 minutes
        fan = steady(0, 44, 22, m10_21=0) if positive else steady(0, 44, 22)
        data = [on("P1", "i33200", 30), site.rtd("T1", "g10201", fan)]
        return pack, data, {"treatment_off": [(15, "open", "T1", 10, 5), (27, "closed", "T1", 10, 12)]}
    if pack == "coating":  # main fan at 56 % of normal (alarm at 60 %, not at the general 50 %); RTO at 700 ℃
        fan = steady(0, 44, 40, m10_21=25) if positive else steady(0, 44, 40, m10_21=30)
        rto = steady(0, 44, 800, m10_21=700) if positive else steady(0, 44, 800)
        data = [on("P1", "i33200", 30), on("P2", "i33210", 20), site.rtd("T5", "g10202", fan),
                site.rtd("T4", "a01012", rto)]
        return pack, data, {"low_load": [(15, "open", "T5", 10, 5), (27, "closed", "T5", 10, 12)],
                            "combustion_temperature": [(15, "open", "T4", 10, 5), (27, "closed", "T4", 10, 12)]}
    if pack == "printing":  # catalytic oxidiser at 280 ℃ (below 300) against 320 ℃
        co = steady(0, 44, 350, m10_21=280 if positive else 320)
        data = [on("P1", "i33200", 30), on("T3", "g10201", 34), site.rtd("T2", "a01012", co)]
        return pack, data, {"combustion_temperature": [(15, "open", "T2", 10, 5), (27, "closed", "T2", 10, 12)]}
    if pack == "shoemaking":
        # No counter: the fan ran every minute since the registry's last_replaced (T0 - 301 h), over the pack's
        # 300 h (not the general 500 h); the negative records a replacement at T0 - 290 h, which wins.
        replaced = int((datetime(2026, 11, 10, 13, 0) - datetime(1970, 1, 1)).total_seconds())
        assert replaced == T0 - 301 * 3600
        data = [site.running("T3", replaced, at(-25)), on("P1", "i33200", 10),
                site.rtd("T3", "g10201", steady(-25, 44, 22))]
        if not positive:
            data.append(replacement_line(site.enterprise, "T2", T0 - 290 * 3600))
        return pack, data, {"carbon": [(-10, "open", "T2", -15, 5)]}
    if pack == "electroplating":  # scrubber liquor at pH 6.8 (below the pack's 7) against 10.5 (above the general 9)
        ph = steady(0, 44, 9.5, m10_21=6.8) if positive else steady(0, 44, 10.5)
        data = [on("P1", "i33200", 40), on("T1", "g10201", 16), on("T1", "g10101", 1), site.rtd("T1", "w01001", ph)]
        return pack, data, {"ph": [(15, "open", "T1", 10, 5), (27, "closed", "T1", 10, 12)]}
    if pack == "leather":  # waste water at pH 5 for 20 minutes against 12 (the pack waits 15, the general rule 5)
        ph = steady(0, 44, 7.5, m10_29=5.0) if positive else steady(0, 44, 7.5, m10_21=5.0)
        data = [on("P1", "i33200", 20), on("T1", "i33230", 20), site.rtd("T1", "w01001", ph)]
        return pack, data, {"ph": [(25, "open", "T1", 10, 15), (35, "closed", "T1", 10, 20)]}
    assert pack == "foundry"  # bag-filter fan at 47 % of normal (below the pack's 50 %) against 53 %
    fan = steady(0, 44, 40, m10_21=21 if positive else 24)
    data = [on("P1", "i33200", 200), site.rtd("T2", "g10201", fan)]
    return pack, data, {"low_load": [(15, "open", "T2", 10, 5), (27, "closed", "T2", 10, 12)]}


@pytest.mark.parametrize("positive", [True, False], ids=["positive", "negative"])
@pytest.mark.parametrize("pack", PACK_INDUSTRIES)
@pytest_twisted.ensureDeferred
async def test_pack_rules_on_a_registry_of_its_industry(influx, db, evaluate, pack, positive):
    pack, data, expected = scenario(pack, positive)
    write(influx, db, *data)
    await evaluate(Site(pack))
    for rule, events in expected.items():
        assert brief(alarms(influx, db, rule)) == (events if positive else []), rule


# --- threshold precedence -----------------------------------------------------------------------------------------


def test_thresholds_merge_defaults_pack_bureau_then_bureau_industry():
    p = plugins()
    assert (p.defaults("通用")["low_load_fraction"], p.defaults("工业涂装")["low_load_fraction"]) == (0.5, 0.6)
    bureau = {"low_load_fraction": 0.52, "ph_minutes": 8, "工业涂装": {"low_load_fraction": 0.65}}
    assert p.defaults("通用", bureau)["low_load_fraction"] == 0.52
    assert p.defaults("工业涂装", bureau)["low_load_fraction"] == 0.65
    assert p.defaults("制革", bureau)["ph_minutes"] == 8  # the bureau's global key beats the leather pack's 15
    assert p.defaults("电镀", bureau)["ph_min"] == 7  # untouched keys keep the pack's value


@pytest.mark.parametrize("bureau, message", [
    ({"low_load_fractoin": 0.6}, "[rules.thresholds] low_load_fractoin: unknown threshold (known: "),
    ({"电镀": {"ph_mni": 7}}, '[rules.thresholds."电镀"] ph_mni: unknown threshold'),
    ({"电渡": {"ph_min": 7}}, '[rules.thresholds."电渡"]: unknown industry'),
])
def test_unknown_thresholds_are_refused_by_name(bureau, message):
    with pytest.raises(ConfigError) as info:
        plugins().check_thresholds(bureau)
    assert message in str(info.value)


def test_threshold_tables_load_from_toml_and_must_be_numbers(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[rules.thresholds]\ncarbon_design_hours = 400\n[rules.thresholds.\"电镀\"]\nph_min = 7.5\n",
                    encoding="utf-8")
    assert load_config(path).rules.thresholds == {"carbon_design_hours": 400, "电镀": {"ph_min": 7.5}}
    path.write_text('[rules.thresholds."电镀"]\nph_min = "7"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r'\[rules.thresholds."电镀"\] ph_min: expected a number'):
        load_config(path)


def test_rules_command_stops_at_start_on_an_unknown_threshold(tmp_path, influx_db):
    influx, db = influx_db
    config = write_config(tmp_path / "gkjk.toml", {
        "influx": {"url": influx.url, "database": db}, "registry": {"path": str(PACKS)}})
    with open(config, "a", encoding="utf-8") as toml:
        toml.write('[rules.thresholds."电镀"]\nph_mni = 7\n')
    process = start_gkjk("rules", config, tmp_path / "rules.log")
    assert process.wait(timeout=60) == 1
    assert 'gkjk: configuration error: [rules.thresholds."电镀"] ph_mni: unknown threshold' in \
        (tmp_path / "rules.log").read_text()


@pytest.mark.parametrize("bureau, alarmed", [
    ({}, True),  # the foundry pack's 50 %: 47 % of normal is low
    ({"low_load_fraction": 0.45}, False),  # the bureau's global value beats the pack
    ({"low_load_fraction": 0.45, "铸造": {"low_load_fraction": 0.5}}, True),  # its foundry table beats that
    ({"通用": {"low_load_fraction": 0.4}}, True),  # another industry's table: no effect
])
@pytest_twisted.ensureDeferred
async def test_bureau_thresholds_decide_on_real_data(influx, db, evaluate, bureau, alarmed):
    _pack, data, expected = scenario("foundry", positive=True)
    write(influx, db, *data)
    await evaluate(Site("foundry"), thresholds=bureau)
    assert brief(alarms(influx, db, "low_load")) == (expected["low_load"] if alarmed else [])


@pytest_twisted.ensureDeferred
async def test_a_registry_value_wins_over_the_bureau(influx, db, evaluate):
    # The alkali scrubber's registry range is pH 8-12; the bureau's leather table says 5-12. pH 7.5 for 20 minutes.
    site = Site("leather")
    write(influx, db, site.rtd("T2", "g10201", steady(0, 44, 13)), site.rtd("T2", "g10101", steady(0, 44, 1)),
          site.rtd("T2", "g10601", steady(0, 44, 10, m10_29=7.5)))
    await evaluate(site, thresholds={"制革": {"ph_min": 5, "ph_minutes": 5}})
    rows = alarms(influx, db, "ph")
    assert brief(rows) == [(15, "open", "T2", 10, 5), (35, "closed", "T2", 10, 20)]
    assert rows[0]["message"] == "示例制革企业：治污设施 碱液喷淋塔 pH 值 7.5 超出 8-12 范围，已持续 5 分钟"
