"""The HJ 212 CRC equals the standard's bit loop, on its published examples and on any bytes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_twisted.hj212.crc import TABLE, crc_matches, format_crc, hj212_crc


def reference_crc(data: bytes) -> int:
    """Appendix A of HJ 212-2017, transcribed literally."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            carry = crc & 1
            crc >>= 1
            if carry:
                crc ^= 0xA001
    return crc


PUBLISHED = [
    # HJ 212-2017 appendix A worked example.
    (b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&",
     "1C80"),
    # HJ 212-2025 appendix A.1 example.
    (b"QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&&&", "2200"),
    # HJ 212-2025 appendix A.2 plaintext examples.
    (b"QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&"
     b"DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;"
     b"a01012-Min=9.3,a01012-Avg=9.3,a01012-Max=9.3,a01012-Flag=N;"
     b"a01014-Min=3.20,a01014-Avg=3.211,a01014-Max=3.212,a01014-Flag=N&&", "2200"),
    (b"QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&"
     b"DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;"
     b"a01014-Min=3.20,a01014-Avg=3.20,a01014-Max=3.20,a01014-Flag=N&&", "B541"),
    # A field frame (2005 style, lower-case CRC "a9c1").
    (b"ST=32;CN=2011;PW=123456;MN=0873HHMZWSLH02;CP=&&DataTime=20160103133030;060-Rtd=3.0943,060-Flag=N;"
     b"011-Rtd=18.0412,011-Flag=N;001-Rtd=8.2137,001-Flag=N;B01-Rtd=10.9890,B01-Flag=N&&", "A9C1"),
]


@pytest.mark.parametrize(("segment", "crc"), PUBLISHED)
def test_published_examples(segment, crc):
    assert format_crc(hj212_crc(segment)) == crc
    assert reference_crc(segment) == hj212_crc(segment)


def test_worked_example_gives_1c80():
    assert hj212_crc(PUBLISHED[0][0]) == 0x1C80


def test_edge_lengths():
    assert hj212_crc(b"") == 0xFFFF
    for size in range(0, 40):
        data = bytes(range(size))
        assert hj212_crc(data) == reference_crc(data), size


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000))
def test_equals_the_standard_loop(data):
    assert hj212_crc(data) == reference_crc(data)
    assert hj212_crc(bytearray(data)) == hj212_crc(memoryview(data)) == hj212_crc(data)


def test_only_256_values_are_possible():
    assert len(set(TABLE)) == 256
    assert hj212_crc(b"any data at all") in TABLE


def test_format_crc_is_four_upper_case_digits():
    assert format_crc(0x1C80) == "1C80"
    assert format_crc(0xAB) == "00AB"
    assert format_crc(0xFFFF) == "FFFF"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1C80", True), ("1c80", True), (b"1c80", True), ("1C81", False), ("1C8", False),
     (" 1C8", False), ("+1c8", False), ("1_C8", False), ("1C800", False)],
)
def test_crc_matches_any_case_but_nothing_else(text, expected):
    assert crc_matches(PUBLISHED[0][0], text) is expected
