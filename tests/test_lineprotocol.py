"""Line protocol formatting, checked by hand and by a round trip through a real InfluxDB."""

from __future__ import annotations

import enum
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from gkjk.influxd import InfluxServer

from ingest_twisted.lineprotocol import (
    escape_key,
    escape_measurement,
    escape_string,
    format_value,
    point,
)


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("cpu", "cpu"),
        ("my measurement", "my\\ measurement"),
        ("a,b", "a\\,b"),
        ("a=b", "a=b"),  # '=' needs no escape in a measurement
        ("新能源", "新能源"),
        ("line\nbreak", "line\\nbreak"),
        ("trailing\\", "trailing"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_escape_measurement(name: str, escaped: str) -> None:
    assert escape_measurement(name) == escaped


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("host", "host"),
        ("server 01", "server\\ 01"),
        ("a,b=c", "a\\,b\\=c"),
        ("tab\there", "tab\\there"),
        ("cr\rlf\n", "cr\\rlf\\n"),
        ("end\\", "end"),
        ("x\\ y", "x\\ y"),  # the backslash before an escaped space cannot be stored: dropped
        ("C:\\path", "C:\\path"),
    ],
)
def test_escape_key_and_tag_value(name: str, escaped: str) -> None:
    assert escape_key(name) == escaped


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("end\\", '"end\\\\"'),
        ("a, b=c", '"a, b=c"'),
        ("", '""'),
    ],
)
def test_escape_string(value: str, quoted: str) -> None:
    assert escape_string(value) == quoted


def test_format_value() -> None:
    assert format_value(1.0) == "1.0"
    assert format_value(0.1) == "0.1"
    assert format_value(-1.5e-07) == "-1.5e-07"
    assert format_value(1e300) == "1e+300"
    assert format_value(42) == "42i"
    assert format_value(-(2**63)) == f"{-(2**63)}i"
    assert format_value(True) == "true"
    assert format_value(False) == "false"
    assert format_value(Level.HIGH) == "3i"
    assert format_value("N") == '"N"'
    assert format_value(float("nan")) is None
    assert format_value(float("inf")) is None
    with pytest.raises(ValueError, match="int64"):
        format_value(2**63)
    with pytest.raises(TypeError):
        format_value(None)


def test_point_layout() -> None:
    line = point(
        "hj212",
        {"mn": "010000A8900016F000169DC0", "cn": "2011", "facility": "fan 1", "empty": ""},
        {"w01018_rtd": 36.91, "w01018_flag": "N", "count": 3, "on": True, "bad": float("nan")},
        1_472_000_000_000_000_000,
    )
    assert line == (
        b"hj212,cn=2011,facility=fan\\ 1,mn=010000A8900016F000169DC0 "
        b'w01018_rtd=36.91,w01018_flag="N",count=3i,on=true 1472000000000000000'
    )


def test_point_utf8() -> None:
    assert point("用电", {"企业": "温州 A"}, {"说明": "正常"}, 1) == '用电,企业=温州\\ A 说明="正常" 1'.encode()


def test_point_without_storable_field() -> None:
    with pytest.raises(ValueError, match="no storable field"):
        point("m", {"t": "x"}, {"v": float("nan")}, 1)
    with pytest.raises(ValueError):
        point("m", {}, {}, 1)


def _select(server: InfluxServer, db: str, measurement: str) -> list[dict[str, object]]:
    result = server.query(f'SELECT * FROM "{measurement}"', db=db, epoch="ns")
    series = result["results"][0].get("series") or []
    rows = []
    for s in series:
        for values in s["values"]:
            rows.append(dict(zip(s["columns"], values)))
    return rows


def test_round_trip_special_names(influx_db: tuple[InfluxServer, str]) -> None:
    server, db = influx_db
    cases = [
        ("m one,two", {"tag key=1": "v a,l=ue"}, {"field, key=": 1.5, "s": 'q"u\\ote'}),
        ("m", {"t": "trailing\\"}, {"s": "multi\nline", "i": -7, "b": False}),
        ("m", {"t": "C:\\dir", "u": "tab\there"}, {"s": "end\\"}),
    ]
    body = b"\n".join(point(m, tags, fields, i + 1) for i, (m, tags, fields) in enumerate(cases))
    server.write(body, db)
    rows = {r["time"]: r for r in _select(server, db, "m")}
    assert rows[2]["t"] == "trailing"
    assert rows[2]["s"] == "multi\nline"
    assert rows[2]["i"] == -7 and rows[2]["b"] is False
    assert rows[3]["t"] == "C:\\dir" and rows[3]["u"] == "tab\\there"
    assert rows[3]["s"] == "end\\"
    [special] = _select(server, db, "m one,two")
    assert special["tag key=1"] == "v a,l=ue"
    assert special["field, key="] == 1.5
    assert special["s"] == 'q"u\\ote'


TAG_TEXT = st.text(alphabet=st.sampled_from(list("ab ,=\"'#é温Z0_-.")), min_size=1, max_size=12)
FIELD_TEXT = st.text(alphabet=st.sampled_from(list("ab ,=\"\\\n'#é温")), max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            TAG_TEXT,
            FIELD_TEXT,
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**63), 2**63 - 1),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_round_trip_property(influx_db: tuple[InfluxServer, str], rows: list[tuple[str, str, float, int]]) -> None:
    server, db = influx_db
    measurement = "p" + uuid.uuid4().hex[:8]
    lines = [
        point(measurement, {"t": tag}, {"s": text, "f": value, "i": number}, ts + 1)
        for ts, (tag, text, value, number) in enumerate(rows)
    ]
    server.write(b"\n".join(lines), db)
    got = {r["time"]: r for r in _select(server, db, measurement)}
    assert len(got) == len(rows)
    for ts, (tag, text, value, number) in enumerate(rows):
        row = got[ts + 1]
        assert (row["t"], row["s"], row["i"]) == (tag, text, number)
        assert float(row["f"]) == value  # Go's JSON writes big floats as integers
