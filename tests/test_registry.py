"""Site registry: loading, every validation rule, lookups, reload, credit codes, the demo generator and the docs."""

import copy
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import given, strategies as st
from pydantic import ValidationError

from gkjk import demo_registry, registry, uscc
from gkjk.registry import RegistryError, RegistryHolder, load_registry

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "registry" / "demo"
DOCS = ROOT / "docs" / "registry.md"
ENT_ID = "91320682MA1P7Q3K3X"
OTHER_ID = "9144030071526726XG"
MN = "010000A8900016F000169DC0"


def base_doc() -> dict[str, Any]:
    return {
        "id": ENT_ID,
        "name": "南通测试涂装有限公司",
        "county": "如皋市",
        "town": "城南街道",
        "industry": "工业涂装",
        "control_lists": ["大气管控"],
        "location": {"lat": 32.35, "lon": 120.58},
        "contacts": [{"role": "enterprise", "name": "张伟", "phone": "13912345678"}],
        "facilities": {
            "production": [{"id": "P1", "name": "喷漆房", "kind": "spray_booth"}],
            "treatment": [
                {"id": "T1", "name": "活性炭吸附装置", "kind": "activated_carbon", "serves": ["P1"],
                 "design_hours": 500},
                {"id": "T2", "name": "废气风机", "kind": "fan", "serves": ["P1"]},
            ],
        },
        "devices": [{
            "mn": MN, "pw": "123456", "protocol": "hj212-2017",
            "points": [
                {"factor": "i33200", "facility": "P1", "quantity": "current", "rated": 40, "on_threshold": 6},
                {"factor": "g10201", "facility": "T2", "quantity": "fan_current", "rated": 60, "on_threshold": 9,
                 "normal": 45},
                {"factor": "g10401", "facility": "T1", "quantity": "carbon_hours", "unit": "h"},
            ],
        }],
    }


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def error_of(path: Path) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    return info.value


def issues_of(path: Path) -> list[str]:
    error = error_of(path)
    lines = [str(i) for i in error.issues]
    assert all(line in str(error) for line in lines)
    return lines


# --- valid registries -----------------------------------------------------------------------------------------------


def test_base_document_loads(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path / "a.yaml", base_doc()))
    assert list(reg.enterprises) == [ENT_ID]
    assert reg.source(ENT_ID) == tmp_path / "a.yaml"


def test_demo_registry_loads() -> None:
    reg = load_registry(DEMO)
    assert len(reg.enterprises) == 24
    protocols = Counter(ref.device.protocol for ref in reg.devices.values())
    assert protocols["hj212-2005"] == 1 and protocols["hj212-2025"] >= 2
    assert protocols["hj212-2017"] > protocols["hj212-2025"]
    assert any(ref.device.sm4_key for ref in reg.devices.values())
    firms = {name: town for town, name, _, _ in demo_registry.FIRMS}
    for ent in reg.enterprises.values():
        assert ent.county == "如皋市" and firms[ent.name] == ent.town
        assert 32.2 <= ent.location.lat <= 32.5 and 120.4 <= ent.location.lon <= 120.8
        assert 1 <= len(ent.devices) <= 3
        assert ent.facilities.production and ent.facilities.treatment
    for ref in reg.devices.values():
        mn = ref.device.mn
        assert re.fullmatch("[0-9]{14}" if ref.device.protocol == "hj212-2005" else "[0-9A-F]{24}", mn)
        assert re.fullmatch("[0-9]{6}", ref.device.pw)
    quantities = {pt.quantity for ref in reg.devices.values() for pt in ref.device.points}
    assert {"current", "fan_current", "spray", "temperature", "ph", "carbon_hours"} <= quantities
    assert len({ent.industry for ent in reg.enterprises.values()}) >= 10


def test_directory_is_searched_recursively_skipping_dot_files(tmp_path: Path) -> None:
    other = base_doc() | {"id": OTHER_ID}
    other["devices"][0]["mn"] = "AAAA0000BBBB1111CCCC2222"
    write(tmp_path / "a.yaml", base_doc())
    write(tmp_path / "sub" / "deeper" / "b.yml", other)
    write(tmp_path / ".git" / "c.yaml", {"broken": True})
    write(tmp_path / ".swap.yaml", {"broken": True})
    (tmp_path / "notes.txt").write_text("not a registry file")
    assert set(load_registry(tmp_path).enterprises) == {ENT_ID, OTHER_ID}


def test_missing_path_and_empty_directory_are_errors(tmp_path: Path) -> None:
    assert issues_of(tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such file or directory"]
    assert "no registry files" in issues_of(tmp_path)[0]


def test_unit_defaults_to_the_quantity_unit(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path / "a.yaml", base_doc()))
    assert reg.point(MN, "i33200").point.unit == "A"  # type: ignore[union-attr]


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    doc = base_doc()
    del doc["devices"]
    text = write(tmp_path / "a.yaml", doc).read_text(encoding="utf-8") + f"""\
devices:
- mn: {MN}
  pw: "123456"
  protocol: hj212-2017
  points:
  - &meter
    factor: i33200
    facility: P1
    quantity: current
    rated: 40
  - <<: *meter
    factor: i33201
    quantity: energy
    unit: kWh
"""
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    point = load_registry(tmp_path).point(MN, "i33201")
    assert point is not None and point.quantity == "energy" and point.facility_id == "P1" and point.rated == 40


# --- validation: one rule, one error naming file and field ------------------------------------------------------------


DELETE = object()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Mutation setting a dotted path (list indexes as numbers) of the base document."""
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parents:
            target = target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return mutate


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("credit code check digit", _set("id", ENT_ID[:-1] + "Y"), "id", "check digit is 'Y', expected 'X'"),
    ("credit code charset", _set("id", "9132068201234567IO"), "id", "not allowed in a credit code"),
    ("credit code length", _set("id", "91320682"), "id", "must be 18 characters"),
    ("credit code division digits", _set("id", "91AB0682MA1P7Q3K3X"), "id", "administrative division"),
    ("name must be Chinese", _set("name", "Test Coating Ltd"), "name", "must be Chinese text"),
    ("unknown industry", _set("industry", "造船"), "industry", "unknown value '造船', expected '工业涂装', "),
    ("unknown control list", _set("control_lists", ["大气管控", "臭氧管控"]), "control_lists[1]", "expected '大气管控'"),
    ("duplicate control list", _set("control_lists", ["大气管控", "大气管控"]), "control_lists[1]", "duplicate"),
    ("latitude outside China", _set("location.lat", 62.0), "location.lat", "less than or equal to 54"),
    ("missing location", _set("location", DELETE), "location", "Field required"),
    ("contact role", _set("contacts.0.role", "boss"), "contacts[0].role", "'enterprise', 'county' or 'ops'"),
    ("contact phone", _set("contacts.0.phone", "12345"), "contacts[0].phone", "mobile number"),
    ("phone given as a number", _set("contacts.0.phone", 13912345678), "contacts[0].phone", "quote it in YAML"),
    ("webhook not https", _set("contacts.0.dingtalk_webhook", "http://x"), "contacts[0].dingtalk_webhook", "https"),
    ("unknown key", _set("devices.0.password", "123456"), "devices[0].password", "unknown key"),
    ("production kind", _set("facilities.production.0.kind", "paint"), "facilities.production[0].kind",
     "unknown value 'paint', expected 'spray_booth'"),
    ("facility id format", _set("facilities.production.0.id", "P 1"), "facilities.production[0].id", "ASCII"),
    ("facility name Chinese", _set("facilities.treatment.1.name", "fan"), "facilities.treatment[1].name", "Chinese"),
    ("duplicate facility id", _set("facilities.treatment.0.id", "P1"), "facilities.treatment[0].id",
     "duplicate facility id 'P1' (also facilities.production[0])"),
    ("serves unknown", _set("facilities.treatment.1.serves", ["P9"]), "facilities.treatment[1].serves[0]",
     "unknown production facility 'P9'"),
    ("serves a treatment", _set("facilities.treatment.1.serves", ["T1"]), "facilities.treatment[1].serves[0]",
     "'T1' is a treatment facility"),
    ("serves duplicate", _set("facilities.treatment.1.serves", ["P1", "P1"]), "facilities.treatment[1].serves[1]",
     "duplicate entry 'P1'"),
    ("serves empty", _set("facilities.treatment.1.serves", []), "facilities.treatment[1].serves", "at least 1"),
    ("design hours on a fan", _set("facilities.treatment.1.design_hours", 500),
     "facilities.treatment[1].design_hours", "does not apply to kind 'fan' (only activated_carbon)"),
    ("min temperature on carbon", _set("facilities.treatment.0.min_temperature", 760),
     "facilities.treatment[0].min_temperature", "only co, rco, rto"),
    ("load cap without 限产", _set("facilities.production.0.load_cap", 0.5), "facilities.production[0].load_cap",
     "only with emergency_action: 限产"),
    ("unknown point facility", _set("devices.0.points.2.facility", "T9"), "devices[0].points[2].facility",
     "unknown facility 'T9'"),
    ("unit does not fit", _set("devices.0.points.0.unit", "V"), "devices[0].points[0].unit",
     "unit 'V' does not fit current"),
    ("phase on a non-electrical quantity", _set("devices.0.points.2.phase", "a"), "devices[0].points[2].phase",
     "carbon_hours has no phase"),
    ("phase value", _set("devices.0.points.0.phase", "d"), "devices[0].points[0].phase", "'a', 'b' or 'c'"),
    ("threshold above rated", _set("devices.0.points.0.on_threshold", 50), "devices[0].points[0].on_threshold",
     "must be below rated (40.0)"),
    ("normal below threshold", _set("devices.0.points.1.normal", 5), "devices[0].points[1].normal",
     "must be above on_threshold (9.0)"),
    ("rated not positive", _set("devices.0.points.0.rated", 0), "devices[0].points[0].rated", "greater than 0"),
    ("quantity", _set("devices.0.points.0.quantity", "amps"), "devices[0].points[0].quantity", "'amps'"),
    ("duplicate factor ignoring case", _set("devices.0.points.1.factor", "I33200"), "devices[0].points[1].factor",
     "duplicate factor 'I33200' on this device (also points[0])"),
    ("factor format", _set("devices.0.points.0.factor", "i332-00"), "devices[0].points[0].factor", "factor code"),
    ("pw length", _set("devices.0.pw", "12345"), "devices[0].pw", "exactly 6 characters, got 5"),
    ("pw separator", _set("devices.0.pw", "12;456"), "devices[0].pw", "without ';'"),
    ("pw unquoted", _set("devices.0.pw", 123456), "devices[0].pw", "quote it in YAML"),
    ("mn format", _set("devices.0.mn", "010000-A89"), "devices[0].mn", "MN must be"),
    ("protocol", _set("devices.0.protocol", "hj212-2018"), "devices[0].protocol", "'hj212-2005', 'hj212-2017'"),
    ("sm4 key format", _set("devices.0.sm4_key", "00ff"), "devices[0].sm4_key", "32 hexadecimal"),
    ("sm4 key needs 2025", _set("devices.0.sm4_key", "00" * 16), "devices[0].sm4_key", "only in hj212-2025"),
    ("rtd interval", _set("devices.0.rtd_interval", 0), "devices[0].rtd_interval", "greater than or equal to 1"),
    ("rtd interval integer", _set("devices.0.rtd_interval", 60.5), "devices[0].rtd_interval", "valid integer"),
]


@pytest.mark.parametrize(("mutate", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_names_file_and_field(tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field: str,
                                        fragment: str) -> None:
    doc = base_doc()
    mutate(doc)
    file = write(tmp_path / "x.yaml", doc)
    lines = issues_of(tmp_path)
    assert any(line.startswith(f"{file}: {field}: ") and fragment in line for line in lines), lines


def test_error_format_matches_the_documented_example(tmp_path: Path) -> None:
    doc = base_doc()
    doc["devices"][0]["points"][2]["facility"] = "T9"
    file = write(tmp_path / "x.yaml", doc)
    assert issues_of(file) == [f"{file}: devices[0].points[2].facility: unknown facility 'T9'"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("id: a\nid: b\n", "invalid YAML: line 2, column 1: duplicate key 'id'"),
    ("id: [unclosed\n", "invalid YAML: line 2"),
    ("", "empty file"),
    ("- just\n- a list\n", "(top level): Input should be a valid dictionary"),
    ("id: !!python/object:os.system x\n", "invalid YAML"),
])
def test_file_level_errors(tmp_path: Path, text: str, fragment: str) -> None:
    file = tmp_path / "x.yaml"
    file.write_text(text, encoding="utf-8")
    lines = issues_of(tmp_path)
    assert len(lines) == 1 and lines[0].startswith(f"{file}: ") and fragment in lines[0], lines


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_bytes("name: 如皋".encode("gbk"))
    assert "not UTF-8" in issues_of(tmp_path)[0]


def test_all_errors_of_a_load_are_collected(tmp_path: Path) -> None:
    first = base_doc()
    first["industry"] = "造船"
    first["location"]["lon"] = 200
    first["devices"][0]["points"][0]["unit"] = 5
    second = base_doc() | {"id": OTHER_ID}
    second["devices"][0]["mn"] = "BBBB"
    second["facilities"]["treatment"][0]["serves"] = ["P7"]
    a, b = write(tmp_path / "a.yaml", first), write(tmp_path / "b.yaml", second)
    error = error_of(tmp_path)
    assert [(i.file, i.field) for i in error.issues] == [
        (a, "industry"), (a, "location.lon"), (a, "devices[0].points[0].unit"),
        (b, "facilities.treatment[0].serves[0]"),
    ]
    assert str(error).startswith("4 registry errors:\n") and "quote it in YAML" in str(error)


def test_duplicate_mn_across_files_names_both_files(tmp_path: Path) -> None:
    other = base_doc() | {"id": OTHER_ID}
    other["devices"][0]["mn"] = MN.lower()  # same device in another case
    a, b = write(tmp_path / "a.yaml", base_doc()), write(tmp_path / "b.yaml", other)
    assert issues_of(tmp_path) == [f"{b}: devices[0].mn: MN {MN} is already used by {a}: devices[0]"]


def test_duplicate_mn_within_one_file(tmp_path: Path) -> None:
    doc = base_doc()
    doc["devices"].append(copy.deepcopy(doc["devices"][0]))
    file = write(tmp_path / "a.yaml", doc)
    assert issues_of(tmp_path) == [f"{file}: devices[1].mn: MN {MN} is already used by {file}: devices[0]"]


def test_duplicate_enterprise_id_across_files(tmp_path: Path) -> None:
    other = base_doc() | {"id": ENT_ID.lower()}
    other["devices"] = []
    a, b = write(tmp_path / "a.yaml", base_doc()), write(tmp_path / "b.yaml", other)
    assert issues_of(tmp_path) == [f"{b}: id: enterprise {ENT_ID} is also defined in {a}"]


# --- lookups --------------------------------------------------------------------------------------------------------


def test_lookups_are_case_insensitive(tmp_path: Path) -> None:
    doc = base_doc()
    doc["devices"][0]["mn"] = MN.lower()
    reg = load_registry(write(tmp_path / "a.yaml", doc))
    assert list(reg.devices) == [MN]
    for mn in (MN, MN.lower(), MN[:10].lower() + MN[10:]):
        ref = reg.device(mn)
        assert ref is not None and ref.device.mn == MN and ref.enterprise.id == ENT_ID
        point = reg.point(mn, "G10201")
        assert point is not None and point.facility_id == "T2" and point.quantity == "fan_current"
        assert (point.rated, point.on_threshold, point.normal) == (60, 9, 45)
        assert point.facility.role == "treatment" and point.device is ref.device
    assert reg.device("FFFF") is None and reg.point(MN, "w01018") is None and reg.point("FFFF", "i33200") is None


def test_facility_links(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path / "a.yaml", base_doc()))
    ent = reg.enterprises[ENT_ID]
    assert [t.id for t in ent.treatments_for("P1")] == ["T1", "T2"] and ent.treatments_for("T1") == ()
    assert ent.facility("P1").role == "production" and ent.facility("nope") is None  # type: ignore[union-attr]
    assert [p.point.factor for p in reg.points_of(ENT_ID.lower(), "T2")] == ["g10201"]
    assert reg.points_of(ENT_ID, "nope") == ()
    assert "i33200" in repr(reg.point(MN, "i33200"))


def test_registry_is_immutable(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path / "a.yaml", base_doc()))
    with pytest.raises(ValidationError):
        reg.enterprises[ENT_ID].name = "改名"  # type: ignore[misc]
    with pytest.raises(TypeError):
        reg.enterprises["x"] = reg.enterprises[ENT_ID]  # type: ignore[index]


# --- reload ---------------------------------------------------------------------------------------------------------


def test_reload_keeps_old_registry_on_error_and_swaps_on_success(tmp_path: Path) -> None:
    other = base_doc() | {"id": OTHER_ID}
    other["devices"][0]["mn"] = "AAAA0000BBBB1111CCCC2222"
    write(tmp_path / "a.yaml", base_doc())
    b = write(tmp_path / "b.yaml", other)
    holder = RegistryHolder(tmp_path)
    first = holder.current
    assert holder.reload() == [] and holder.current.enterprises[ENT_ID] is first.enterprises[ENT_ID]
    old = holder.current

    broken = copy.deepcopy(other)
    broken["devices"][0]["points"][0]["facility"] = "T9"
    write(b, broken)
    with pytest.raises(RegistryError, match=r"b\.yaml: devices\[0\]\.points\[0\]\.facility: unknown facility"):
        holder.reload()
    assert holder.current is old and holder.current.device("aaaa0000bbbb1111cccc2222") is not None

    fixed = copy.deepcopy(other)
    fixed["devices"][0]["mn"] = "DDDD0000BBBB1111CCCC2222"
    fixed["name"] = "南通另一家涂装有限公司"
    write(b, fixed)
    changes = holder.reload()
    assert changes == [
        f"changed enterprise {OTHER_ID} 南通另一家涂装有限公司",
        "removed device AAAA0000BBBB1111CCCC2222 (南通测试涂装有限公司)",
        "added device DDDD0000BBBB1111CCCC2222 (南通另一家涂装有限公司)",
    ]
    assert holder.current.device("AAAA0000BBBB1111CCCC2222") is None
    assert holder.current.device("dddd0000bbbb1111cccc2222") is not None
    assert holder.current.enterprises[ENT_ID] is old.enterprises[ENT_ID]  # unchanged file not parsed again

    (tmp_path / "a.yaml").unlink()
    assert holder.reload() == [f"removed enterprise {ENT_ID} 南通测试涂装有限公司",
                               f"removed device {MN} (南通测试涂装有限公司)"]


def test_reload_reports_changed_devices(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", base_doc())
    holder = RegistryHolder(a)
    doc = base_doc()
    doc["devices"][0]["pw"] = "654321"
    write(a, doc)
    assert holder.reload() == [f"changed enterprise {ENT_ID} 南通测试涂装有限公司",
                               f"changed device {MN} (南通测试涂装有限公司)"]
    assert holder.current.device(MN).device.pw == "654321"  # type: ignore[union-attr]


# --- credit codes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["91350100M000100Y43", "9144030071526726XG", "914403001922038216",
                                  "91330100716105852F", ENT_ID])
def test_credit_code_check_digit_of_real_codes(code: str) -> None:
    assert uscc.problem(code) is None
    assert uscc.check_digit(code[:17]) == code[17]
    assert uscc.org_code_check_digit(code[8:16]) == code[16]


def test_credit_code_problems() -> None:
    assert uscc.problem("9144030071526726XA") == "check digit is 'A', expected 'G'"
    assert "18 characters" in (uscc.problem("91440300") or "")
    assert "'I'" in (uscc.problem("9144030071526726XI") or "")


_CODE_CHARS = st.sampled_from(uscc.ALPHABET)


@given(st.text(_CODE_CHARS, min_size=2, max_size=2), st.text(st.sampled_from("0123456789"), min_size=6, max_size=6),
       st.text(_CODE_CHARS, min_size=9, max_size=9), st.integers(0, 17), st.sampled_from(uscc.ALPHABET))
def test_any_single_character_change_is_detected(head: str, division: str, org: str, pos: int, char: str) -> None:
    body = head + division + org
    code = body + uscc.check_digit(body)
    assert uscc.problem(code) is None
    changed = code[:pos] + char + code[pos + 1:]
    assert (uscc.problem(changed) is None) == (changed == code)


# --- demo generator -------------------------------------------------------------------------------------------------


def test_checked_in_demo_is_the_generator_output(tmp_path: Path) -> None:
    demo_registry.write(tmp_path, 24)
    expected = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.yaml")}
    actual = {p.name: p.read_text(encoding="utf-8") for p in DEMO.glob("*.yaml")}
    assert actual == expected, "registry/demo is stale: run python -m gkjk.demo_registry --out registry/demo"


def test_generator_is_deterministic_and_cycles_names() -> None:
    count = len(demo_registry.FIRMS) + 2
    docs = list(demo_registry.generate(count))
    assert docs[:24] == list(demo_registry.generate(24))
    assert docs[len(demo_registry.FIRMS)]["name"] == demo_registry.FIRMS[0][1] + "（2）"
    assert len({d["id"] for d in docs}) == count
    mns = [dev["mn"] for d in docs for dev in d["devices"]]
    assert len(set(mns)) == len(mns)


def test_generator_cli_replaces_only_its_own_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_registry.main(["--out", str(tmp_path), "--count", "3"]) == 0
    assert "wrote 3 enterprises" in capsys.readouterr().out
    write(tmp_path / "mine.yaml", {"hand": "written"})
    demo_registry.main(["--out", str(tmp_path), "--count", "2"])
    names = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert len(names) == 3 and "mine.yaml" in names


_KEYS = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
_SCALARS = (st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=12)
            | st.integers(-10**9, 10**9) | st.floats(-1e6, 1e6).map(lambda x: round(x, 3)))
# The shapes the generator writes: lists hold scalars or non-empty mappings.
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(_SCALARS | st.dictionaries(_KEYS, inner, min_size=1,
                                                                                   max_size=3), max_size=3)
                       | st.dictionaries(_KEYS, inner, max_size=3), max_leaves=12)


@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_yaml_writer_round_trips(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(demo_registry.to_yaml(doc)) == (doc or None)


@pytest.mark.slow
def test_load_test_registry_of_5000(tmp_path: Path) -> None:
    start = time.perf_counter()
    demo_registry.write(tmp_path, 5000)
    generated = time.perf_counter()
    reg = load_registry(tmp_path)
    loaded = time.perf_counter()
    assert len(reg.enterprises) == 5000 and len(reg.devices) > 5000
    assert generated - start < 60 and loaded - generated < 60  # sanity bounds; see docs for measured times
    again = load_registry(tmp_path, previous=reg)
    assert time.perf_counter() - loaded < 20 and again.enterprises.keys() == reg.enterprises.keys()


# --- vocabularies and docs ------------------------------------------------------------------------------------------


def test_vocabularies_are_consistent() -> None:
    assert set(registry.QUANTITY_UNITS) == set(get_args(registry.Quantity))
    assert registry.PHASED_QUANTITIES <= set(registry.QUANTITY_UNITS)
    for kinds in registry.TREATMENT_PARAM_KINDS.values():
        assert kinds <= set(registry.TREATMENT_KINDS)
    for lines in demo_registry.TEMPLATES.values():
        for line in lines:
            assert {kind for _, kind, _ in line.production} <= set(registry.PRODUCTION_KINDS)
            assert {kind for step in line.chain for _, kind in step} <= set(registry.TREATMENT_KINDS)
    assert {industry for _, _, industry, _ in demo_registry.FIRMS} == set(demo_registry.TEMPLATES)
    assert set(demo_registry.TEMPLATES) <= set(registry.INDUSTRIES)
    assert {town for town, _, _, _ in demo_registry.FIRMS} == set(demo_registry.TOWNS)


def test_docs_cover_every_field_and_vocabulary_value() -> None:
    text = DOCS.read_text(encoding="utf-8")
    models = [registry.Enterprise, registry.Location, registry.Contact, registry.Facilities,
              registry.ProductionFacility, registry.TreatmentFacility, registry.Device, registry.Point]
    missing = [f"{m.__name__}.{name}" for m in models for name in m.model_fields if f"`{name}`" not in text]
    assert not missing, f"undocumented fields: {missing}"
    vocab = [*registry.INDUSTRIES, *registry.CONTROL_LISTS, *registry.PRODUCTION_KINDS, *registry.TREATMENT_KINDS,
             *registry.PROTOCOLS, *registry.QUANTITY_UNITS, *get_args(registry.ContactRole),
             *get_args(registry.EmergencyAction)]
    assert not [v for v in vocab if v not in text], "undocumented vocabulary values"


def test_docs_example_is_a_valid_registry_file(tmp_path: Path) -> None:
    example = re.search(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert example is not None
    (tmp_path / "example.yaml").write_text(example.group(1), encoding="utf-8")
    reg = load_registry(tmp_path)
    assert reg.point("010000a8900016f000169dc0", "I33210").point.unit == "A"  # type: ignore[union-attr]


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert registry.main([str(DEMO)]) == 0 and "ok: 24 enterprises" in capsys.readouterr().out
    doc = base_doc()
    doc["industry"] = "造船"
    write(tmp_path / "x.yaml", doc)
    assert registry.main([str(tmp_path)]) == 1 and "x.yaml: industry:" in capsys.readouterr().err
    assert registry.main([]) == 2


def test_bad_quantity_is_reported_alone(tmp_path: Path) -> None:
    doc = base_doc()
    doc["devices"][0]["points"][0]["quantity"] = "amps"  # and no unit: no second, derived error
    file = write(tmp_path / "x.yaml", doc)
    lines = issues_of(tmp_path)
    assert len(lines) == 1 and lines[0].startswith(f"{file}: devices[0].points[0].quantity: unknown value 'amps'")
