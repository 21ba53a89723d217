"""应急管控不落实 against a real InfluxDB: alert periods from files, exact open/close times, the `control` and
`emergency` points the dashboard reads, late data, restarts, and period files that must be refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest
import pytest_twisted

from gkjk.config import RulesConfig
from gkjk.registry import load_registry
from ingest_twisted.influx import InfluxClient
from rules_plugins.emergency_periods import EmergencyPeriods, PeriodError, load, main
from rules_plugins.engine import Engine
from rules_plugins.plugins import Plugins
from rules_support import T0, alarms, at, brief, steady, write

REGISTRY = load_registry(Path(__file__).parent / "data" / "emergency" / "registry")
RUGAO, HAIAN = "91320682MA1WXE0012", "91320621MA1WXE002R"
MN = {RUGAO: "010000A8900016F000E00001", HAIAN: "010000A8900016F000E00002"}
COUNTY = {RUGAO: "如皋市", HAIAN: "海安市"}
# T0 is 10:00 local; the standard period is in force from minute 10 to minute 40.
ORANGE = """
[[periods]]
id = "rugao-orange"
name = "如皋市重污染天气预警"
level = "橙色"
start = 2026-11-23T10:10:00
end = 2026-11-23T10:40:00
counties = ["如皋市"]
"""
QUIET = {"offline", "treatment_off", "start_stop", "low_load"}  # rules the data is not about


def rtd(ent: str, fac: str, factor: str, values: Iterable[tuple[float, float]]) -> bytes:
    tags = f"rtd,county={COUNTY[ent]},ent={ent},fac={fac},mn={MN[ent]}"
    return "\n".join(f"{tags} {factor}-Rtd={value} {at(minute)}" for minute, value in values).encode()


def furnace(**changes: float) -> bytes:
    """P1 (停产, rated 400 A): 200 A is running, at 50 % of rated."""
    return rtd(RUGAO, "P1", "i33200", steady(0, 59, 200, **changes))


def booth(value: float, **changes: float) -> bytes:
    """P2 (限产 at 50 % of its normal 80 A)."""
    return rtd(RUGAO, "P2", "i33210", steady(0, 59, value, **changes))


@pytest.fixture
def periods(tmp_path: Path) -> Path:
    directory = tmp_path / "emergency"
    directory.mkdir()
    (directory / "rugao.toml").write_text(ORANGE, encoding="utf-8")
    return directory


@pytest_twisted.async_yield_fixture
async def make_engine(influx_db, periods) -> AsyncIterator[Callable[..., Engine]]:
    clients: list[InfluxClient] = []

    def make(disabled: Iterable[str] = (), **config: object) -> Engine:
        clients.append(InfluxClient(influx_db[0].url, influx_db[1]))
        return Engine(clients[-1], lambda: REGISTRY, Plugins({*QUIET, *disabled}, load_entry_points=False),
                      RulesConfig(**{"emergency_path": str(periods), **config}))

    yield make
    for client in clients:
        await client.close()


def control(influx, db, fac: str = "P1") -> list[dict]:
    """`control` points of a line, minutes from T0."""
    result = influx.query(f'SELECT * FROM "control" WHERE "fac" = \'{fac}\' AND "ent" = \'{RUGAO}\'', db=db,
                          epoch="s")["results"][0]
    rows = []
    for series in result.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values))
            row["minute"] = (row.pop("time") - T0) / 60
            rows.append(row)
    return rows


@pytest_twisted.ensureDeferred
async def test_a_stopped_line_running_during_the_period_until_it_ends(influx, db, make_engine):
    write(influx, db, furnace())
    await make_engine().evaluate(at(60))
    rows = alarms(influx, db, "emergency")
    # Runs throughout: violated from the period's first minute (10), opens after 10 minutes, and closes the
    # hold-off after the period ended (40 + 5) with 30 minutes held.
    assert brief(rows) == [(20, "open", "P1", 10, 10), (45, "closed", "P1", 10, 30)]
    assert rows[0]["message"] == ("如皋市应急测试有限公司：如皋市重污染天气预警（橙色预警）期间，生产设施 中频炉 "
                                  "应急管控要求停产，实际仍在运行（负荷 50%），已持续 10 分钟")
    assert rows[1]["message"].endswith("已持续 30 分钟，已恢复")
    assert rows[0]["severity"] == "high"
    points = control(influx, db)
    assert [p["minute"] for p in points] == list(range(10, 40))
    assert {(p["level"], p["action"], p["period"], p["compliant"], p["run"], p["load"]) for p in points} == {
        ("橙色", "停产", "如皋市重污染天气预警", 0, 1, 50.0)}


@pytest_twisted.ensureDeferred
async def test_a_limited_line_above_its_cap(influx, db, make_engine):
    # 60 A of a normal 80 A is 75 % against a cap of 50 %; from minute 30 it runs at 30 A (37.5 %).
    write(influx, db, booth(60, m30_59=30))
    await make_engine().evaluate(at(60))
    rows = alarms(influx, db, "emergency")
    assert brief(rows) == [(20, "open", "P2", 10, 10), (35, "closed", "P2", 10, 20)]
    assert rows[0]["message"] == ("如皋市应急测试有限公司：如皋市重污染天气预警（橙色预警）期间，生产设施 喷漆房 "
                                  "应急管控要求限产（负荷不超过 50%），实际负荷 75%，已持续 10 分钟")
    points = {p["minute"]: (p["compliant"], p["load"], p["cap"], p["action"]) for p in control(influx, db, "P2")}
    assert points[10] == (0, 75.0, 50.0, "限产") and points[30] == (1, 37.5, 50.0, "限产")


@pytest_twisted.ensureDeferred
async def test_power_is_judged_against_rated_power(influx, db, make_engine):
    # P3 has rated_power 100 kW: 80 kW is 80 % against its cap of 70 %, whatever its current says.
    write(influx, db, rtd(RUGAO, "P3", "i33221", steady(0, 59, 80, m25_59=65)),
          rtd(RUGAO, "P3", "i33220", steady(0, 59, 100)))
    await make_engine().evaluate(at(60))
    assert brief(alarms(influx, db, "emergency")) == [(20, "open", "P3", 10, 10), (30, "closed", "P3", 10, 15)]
    points = {p["minute"]: (p["compliant"], p["load"], p["cap"]) for p in control(influx, db, "P3")}
    assert points[24] == (0, 80.0, 70.0) and points[25] == (1, 65.0, 70.0)


@pytest.mark.parametrize("data", [
    [furnace(m8_59=0), booth(40)],  # off from before the period; the booth at exactly its cap (50 %)
    [furnace(m15_59=0)],  # stopped within 10 minutes of the period's start
    [furnace(m10_59=0, m25_33=200)],  # ran again for 9 minutes only
])
@pytest_twisted.ensureDeferred
async def test_compliant_lines_raise_nothing(influx, db, make_engine, data):
    write(influx, db, *data)
    await make_engine().evaluate(at(60))
    assert alarms(influx, db, "emergency") == []


@pytest_twisted.ensureDeferred
async def test_compliance_is_stored_per_minute_of_the_period(influx, db, make_engine):
    write(influx, db, furnace(m8_59=0), booth(40))
    await make_engine().evaluate(at(60))
    assert {(p["minute"], p["compliant"], p["run"]) for p in control(influx, db)} == {
        (m, 1, 0) for m in range(10, 40)}
    assert {(p["compliant"], p["load"], p["cap"]) for p in control(influx, db, "P2")} == {(1, 50.0, 50.0)}
    result = influx.query('SELECT * FROM "emergency"', db=db, epoch="s")["results"][0]
    [series] = result["series"]
    rows = [dict(zip(series["columns"], v)) for v in series["values"]]
    assert [(r["time"] - T0) / 60 for r in rows] == list(range(10, 40))
    assert {(r["period"], r["level"], r["county"], r["name"], r["lines"], r["scope"], r["start"], r["end"])
            for r in rows} == {("rugao-orange", "橙色", "如皋市", "如皋市重污染天气预警", 3, "如皋市", at(10), at(40))}


@pytest_twisted.ensureDeferred
async def test_outside_the_scope_or_the_period_nothing_is_judged(influx, db, make_engine, periods):
    (periods / "rugao.toml").write_text(ORANGE.replace("10:10:00", "11:10:00").replace("10:40:00", "11:40:00")
                                        + ORANGE.replace("rugao-orange", "haian").replace("如皋市", "海安市"),
                                        encoding="utf-8")
    write(influx, db, furnace())  # 如皋市's period starts after the window; 海安市's covers another enterprise
    await make_engine().evaluate(at(60))
    assert alarms(influx, db, "emergency") == [] and control(influx, db) == []


@pytest_twisted.ensureDeferred
async def test_an_enterprise_named_by_a_period_is_judged(influx, db, make_engine, periods):
    (periods / "rugao.toml").write_text(ORANGE.replace('counties = ["如皋市"]', f'enterprises = ["{HAIAN}"]'),
                                        encoding="utf-8")
    write(influx, db, furnace(), rtd(HAIAN, "P1", "i33200", steady(0, 59, 50)))
    await make_engine().evaluate(at(60))
    assert {(r["ent"], r["fac"], r["state"]) for r in alarms(influx, db, "emergency")} == {
        (HAIAN, "P1", "open"), (HAIAN, "P1", "closed")}


@pytest_twisted.ensureDeferred
async def test_a_period_for_all_covers_every_county(influx, db, make_engine, periods):
    (periods / "rugao.toml").write_text(ORANGE.replace('counties = ["如皋市"]', "all = true"), encoding="utf-8")
    write(influx, db, furnace(), rtd(HAIAN, "P1", "i33200", steady(0, 59, 50)))
    await make_engine().evaluate(at(60))
    assert {(r["ent"], r["state"], r["minute"]) for r in alarms(influx, db, "emergency")} == {
        (RUGAO, "open", 20), (RUGAO, "closed", 45), (HAIAN, "open", 20), (HAIAN, "closed", 45)}
    result = influx.query('SELECT last("lines") FROM "emergency" GROUP BY "county", "period"', db=db)["results"][0]
    assert {(s["tags"]["county"], s["values"][0][1]) for s in result["series"]} == {("如皋市", 3), ("海安市", 1)}


@pytest_twisted.ensureDeferred
async def test_with_the_rule_disabled_compliance_is_still_stored(influx, db, make_engine):
    write(influx, db, furnace(), booth(60))
    await make_engine(disabled=["emergency"]).evaluate(at(60))
    assert alarms(influx, db, "emergency") == []
    assert {(p["compliant"], p["cap"]) for p in control(influx, db, "P2")} == {(0, 50.0)}


@pytest_twisted.ensureDeferred
async def test_a_red_level_stops_limited_lines_too(influx, db, make_engine, periods):
    (periods / "rugao.toml").write_text(ORANGE.replace("橙色", "红色") + '\n[levels."红色"]\nstop_limited = true\n',
                                        encoding="utf-8")
    write(influx, db, booth(40))  # at its cap: compliant at 橙色, but 红色 stops limited lines here
    await make_engine().evaluate(at(60))
    rows = alarms(influx, db, "emergency")
    assert brief(rows) == [(20, "open", "P2", 10, 10), (45, "closed", "P2", 10, 30)]
    assert "（红色预警）期间，生产设施 喷漆房 应急管控要求停产，实际仍在运行（负荷 50%）" in rows[0]["message"]
    assert {(p["level"], p["action"]) for p in control(influx, db, "P2")} == {("红色", "停产")}


@pytest_twisted.ensureDeferred
async def test_a_level_cap_tightens_the_registry_s(influx, db, make_engine, periods):
    (periods / "rugao.toml").write_text(ORANGE + '\n[levels."橙色"]\nload_cap = 0.3\n', encoding="utf-8")
    write(influx, db, booth(32))  # 40 %: under the registry's 50 %, over the level's 30 %
    await make_engine().evaluate(at(60))
    assert brief(alarms(influx, db, "emergency")) == [(20, "open", "P2", 10, 10), (45, "closed", "P2", 10, 30)]
    assert {p["cap"] for p in control(influx, db, "P2")} == {30.0}


@pytest_twisted.ensureDeferred
async def test_late_data_is_judged_when_it_arrives(influx, db, make_engine):
    engine = make_engine()
    # The logger falls silent after minute 14 (its last reading stands for minute 15) and replays the rest later.
    write(influx, db, rtd(RUGAO, "P1", "i33200", steady(0, 14, 200)))
    await engine.evaluate(at(30))
    assert alarms(influx, db, "emergency") == []  # 6 violating minutes, then the data cannot tell
    assert [p["minute"] for p in control(influx, db)] == list(range(10, 16))
    write(influx, db, rtd(RUGAO, "P1", "i33200", steady(15, 59, 200)))
    await engine.evaluate(at(60))
    assert brief(alarms(influx, db, "emergency")) == [(20, "open", "P1", 10, 10), (45, "closed", "P1", 10, 30)]
    assert {p["compliant"] for p in control(influx, db)} == {0}


@pytest_twisted.ensureDeferred
async def test_a_restart_resumes_without_duplicates(influx, db, make_engine):
    write(influx, db, furnace())
    await make_engine().evaluate(at(30))
    for now in (30, 35, 60):  # a new process re-evaluates what the first one stored
        await make_engine().evaluate(at(now))
    rows = alarms(influx, db, "emergency", live=False)
    assert brief(rows) == [(20, "open", "P1", 10, 10), (45, "closed", "P1", 10, 30)]
    assert len({r["id"] for r in rows}) == 1
    assert len(control(influx, db)) == 30


@pytest_twisted.ensureDeferred
async def test_unchanged_control_points_are_not_rewritten(influx, db, make_engine):
    write(influx, db, furnace())
    engine = make_engine()
    assert (await engine.evaluate(at(30))).controls == 20 + 20  # control and emergency, minutes 10..29
    assert (await engine.evaluate(at(31))).controls == 1 + 1  # only minute 30 is new
    assert (await engine.evaluate(at(31))).controls == 0
    assert (await make_engine().evaluate(at(31))).controls == 21 + 21  # a new process writes its first window once


@pytest_twisted.ensureDeferred
async def test_a_broken_period_file_is_refused_and_the_last_good_set_stays(influx, db, make_engine, periods):
    write(influx, db, furnace())
    engine = make_engine()
    await engine.evaluate(at(30))
    (periods / "rugao.toml").write_text(ORANGE.replace('level = "橙色"', 'level = "紫色"'), encoding="utf-8")
    await engine.evaluate(at(60))
    assert engine.emergency.error == (f"{periods / 'rugao.toml'}: periods[0].level: must be one of 黄色, 橙色, 红色, "
                                      "got '紫色'")
    assert brief(alarms(influx, db, "emergency")) == [(20, "open", "P1", 10, 10), (45, "closed", "P1", 10, 30)]


@pytest.mark.parametrize("text, problem", [
    ("[[periods]\n", "not valid TOML"),
    (ORANGE.replace("counties", "county"), "periods[0].county: unknown key"),
    (ORANGE.replace('counties = ["如皋市"]', ""), "periods[0]: scope: give counties, enterprises, or all = true"),
    (ORANGE.replace('counties = ["如皋市"]', 'all = true\ncounties = ["如皋市"]'), "periods[0].all: all = true covers"),
    (ORANGE.replace("2026-11-23T10:40:00", "2026-11-23T10:00:00"), "periods[0].end: must be after start"),
    (ORANGE.replace("2026-11-23T10:10:00", '"2026-11-23 10:10"'), "periods[0].start: must be a TOML date-time"),
    (ORANGE.replace('name = "如皋市重污染天气预警"\n', ""), "periods[0].name: required"),
    (ORANGE + '[levels."橙色"]\nload_cap = 1.5\n', "levels.橙色.load_cap: must be a number between 0 and 1"),
    (ORANGE + '[levels."紫色"]\nstop_limited = true\n', "levels.紫色: unknown level"),
    ("", "periods: at least one [[periods]] table is required"),
])
def test_period_file_errors_name_file_and_key(tmp_path, text, problem):
    (tmp_path / "a.toml").write_text(text, encoding="utf-8")
    with pytest.raises(PeriodError) as raised:
        load(tmp_path)
    assert str(raised.value).startswith(f"{tmp_path / 'a.toml'}: ") and problem in str(raised.value), raised.value


def test_period_ids_are_unique_across_files(tmp_path):
    (tmp_path / "a.toml").write_text(ORANGE, encoding="utf-8")
    (tmp_path / "b.toml").write_text(ORANGE, encoding="utf-8")
    with pytest.raises(PeriodError, match=r"b.toml: periods\[0\].id: 'rugao-orange' is already used by .*a.toml"):
        load(tmp_path)


def test_the_set_is_read_again_only_when_a_file_changes(tmp_path):
    periods = EmergencyPeriods(tmp_path)
    assert periods.current() == []  # an empty directory: no periods
    (tmp_path / "a.toml").write_text(ORANGE, encoding="utf-8")
    [first] = periods.current()
    assert (first.id, first.level, first.start, first.end, first.counties) == (
        "rugao-orange", "橙色", at(10), at(40), frozenset({"如皋市"}))
    assert periods.current()[0] is first  # unchanged files are not parsed again
    (tmp_path / "b.toml").write_text(ORANGE.replace("rugao-orange", "second"), encoding="utf-8")
    assert [p.id for p in periods.current()] == ["rugao-orange", "second"]
    (tmp_path / "b.toml").unlink()
    assert [p.id for p in periods.current()] == ["rugao-orange"]


def test_the_demo_periods_load(capsys):
    assert main([str(Path(__file__).parent.parent / "config" / "emergency")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ok: ")
