"""Packets to line protocol: tags from the registry, fields as on the wire, nothing dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from gkjk.registry import load_registry
from ingest_twisted.hj212.packet import parse_segment
from ingest_twisted.points import PointBuilder

REGISTRY = load_registry(Path(__file__).parent / "data" / "registry")
HEAD = "QN=20261123100000000;ST=32;CN={cn};PW=100000;MN=010000a8900016f000169dc0;Flag=5;"


def lines(cp: str, cn: str = "2011") -> list[str]:
    packet = parse_segment(HEAD.format(cn=cn) + f"CP=&&{cp}&&")
    return [line.decode() for line in PointBuilder("Asia/Shanghai").convert(packet, REGISTRY, 123).lines]


def test_factors_group_by_facility_with_registry_tags():
    furnace, fan = lines("DataTime=20261123100000;i33200-Rtd=512.5,i33200-Flag=N;g10201-Rtd=41")
    assert furnace == (
        'rtd,county=如皋市,ent=91320682MA1WX0001W,fac=P1,mn=010000A8900016F000169DC0 '
        'i33200-Rtd=512.5,i33200-Flag="N" 1795399200000000000'
    )
    assert fan.startswith("rtd,county=如皋市,ent=91320682MA1WX0001W,fac=T1,") and " g10201-Rtd=41 " in fan


@pytest.mark.parametrize("cn, measurement", [("2051", "minute"), ("2061", "hour"), ("2031", "day"), ("3019", "cn3019")])
def test_measurement_per_command(cn, measurement):
    assert lines("DataTime=20261123100000;i33200-Avg=1", cn=cn)[0].startswith(measurement + ",")


def test_unmapped_factors_device_states_and_parameters_are_kept():
    [line] = lines("DataTime=20261123100000;w01018-Rtd=36.91;SB3-RS=1;PolId=w01018")
    assert ",fac=unmapped," in line
    assert 'w01018-Rtd=36.91,SB3-RS=1,PolId="w01018"' in line  # the device measures two facilities, not three


def test_equipment_codes_are_the_devices_facilities_in_point_order():
    """SB<n> (run state -RS, 2041 run time -RT) is the n-th facility of the device's points: P1, then T1."""
    stored = {line.split(",fac=")[1].split(",")[0]: line for line in
              lines("DataTime=20261123000000;SB1-RT=20.5;SB2-RT=23", cn="2041")}
    assert stored["P1"].startswith("runtime,county=如皋市,ent=91320682MA1WX0001W,fac=P1,")
    assert " SB1-RT=20.5 " in stored["P1"] and " SB2-RT=23 " in stored["T1"] and len(stored) == 2


def test_a_registry_point_of_an_equipment_code_wins(tmp_path):
    """A point named SB<n> maps that code to its own facility, whatever the point order says."""
    for source in (Path(__file__).parent / "data" / "registry").glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        (tmp_path / source.name).write_text(text.replace(
            "      - {factor: g10101, facility: T1, quantity: switch}",
            "      - {factor: g10101, facility: T1, quantity: switch}\n"
            "      - {factor: SB1, facility: T1, quantity: run_time}"), encoding="utf-8")
    registry = load_registry(tmp_path)
    assert registry.facility_of("010000a8900016f000169dc0", "sb1").id == "T1"
    assert registry.facility_of("010000A8900016F000169DC0", "SB2").id == "T1"  # by order: P1, T1
    assert registry.facility_of("010000A8900016F000169DC0", "SB3") is None
    assert REGISTRY.facility_of("010000A8900016F000169DC0", "SB1").id == "P1"


@pytest.mark.parametrize("raw, field", [
    ("1e3", "i33200-Rtd=1000.0"),
    ("+7", "i33200-Rtd=7.0"),
    ("nan", 'i33200-Rtd_text="nan"'),
    ("inf", 'i33200-Rtd_text="inf"'),
    ("--", 'i33200-Rtd_text="--"'),
    ('a"b', 'i33200-Rtd_text="a\\"b"'),
])
def test_numbers_that_are_not_plain_decimals(raw, field):
    [line] = lines(f"DataTime=20261123100000;i33200-Rtd={raw}")
    assert f" {field} " in line


def test_missing_or_bad_data_time_uses_arrival_time():
    packet = parse_segment(HEAD.format(cn="2011") + "CP=&&DataTime=2026;i33200-Rtd=1&&")
    conversion = PointBuilder("Asia/Shanghai").convert(packet, REGISTRY, 123)
    assert conversion.missing_data_time and conversion.lines[0].endswith(b" 123")


def test_every_record_of_a_cp_with_several_data_times_is_stored():
    first, second = lines("DataTime=20261123100000;i33200-Rtd=1;DataTime=20261123100100;i33200-Rtd=2")
    assert first.endswith(" i33200-Rtd=1 1795399200000000000")
    assert second.endswith(" i33200-Rtd=2 1795399260000000000")
