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
    furnace, fan = lines("DataTime=20261123100000;i33200-Rtd=512.5,i33200-Flag=N;g10201-Rtd=41;SB1-RS=1")[:2]
    assert furnace == (
        'rtd,county=如皋市,ent=91320682MA1WX0001W,fac=P1,mn=010000A8900016F000169DC0 '
        'i33200-Rtd=512.5,i33200-Flag="N" 1795399200000000000'
    )
    assert fan.startswith("rtd,county=如皋市,ent=91320682MA1WX0001W,fac=T1,") and " g10201-Rtd=41 " in fan


@pytest.mark.parametrize("cn, measurement", [("2051", "minute"), ("2061", "hour"), ("2031", "day"), ("3019", "cn3019")])
def test_measurement_per_command(cn, measurement):
    assert lines("DataTime=20261123100000;i33200-Avg=1", cn=cn)[0].startswith(measurement + ",")


def test_unmapped_factors_device_states_and_parameters_are_kept():
    [line] = lines("DataTime=20261123100000;w01018-Rtd=36.91;SB1-RS=1;PolId=w01018")
    assert ",fac=unmapped," in line
    assert 'w01018-Rtd=36.91,SB1-RS=1,PolId="w01018"' in line


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
