"""The upload fast path (read_plain_upload + PointBuilder.convert_plain) against the general path.

The fast path must give byte-identical lines, the same counters and the same
acknowledgement as parse_segment + convert, or decline (None) and leave the
upload to them; and through a real server, a read carrying many frames must
be answered in order with every upload stored.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gkjk.registry import load_registry
from gkjk_process import COATING_MN, FOUNDRY_MN, FOUNDRY_PW, TEST_REGISTRY, Logger, ServerProcess
from ingest_twisted.hj212 import replies
from ingest_twisted.hj212.frame import encode_frame
from ingest_twisted.hj212.packet import CP, Packet, PacketError, build_segment, parse_segment, read_plain_upload
from ingest_twisted.points import PointBuilder
from test_ingest_e2e import wait_rows

REGISTRY = load_registry(TEST_REGISTRY)
HEAD = "QN={qn};ST=32;CN={cn};PW={pw};MN={mn};Flag={flag};CP=&&DataTime={dt}{sep}{rest}&&"

codes = st.sampled_from(["i33200", "i33201", "g10201", "g10101", "da0001", "w01018", "SB1", "a-b", "x{0}"])
suffixes = st.sampled_from(
    ["Rtd", "RTD", "rtd", "Avg", "Min", "Cou", "ZsRtd", "Flag", "EFlag", "Info", "SampleTime", ""]
)
values = st.one_of(
    st.sampled_from([
        "1", "-0.5", "512.50", "007", "12345678901234567890", "123456789012345678901", "1e3", "+7", "nan", "inf",
        "--", "", "N", "D", 'a"b', "x\\y", "中文", " 5", "1=2", "{0}", "{", "}",
    ]),
    st.text(alphabet="0123456789.-NDa {}\"\\=", max_size=6),
)
items = st.one_of(
    st.tuples(codes, suffixes, values).map(lambda t: f"{t[0]}-{t[1]}={t[2]}"),
    st.tuples(st.sampled_from(["PolId", "DataTime", "datatime", "x y", ""]), values).map(lambda t: f"{t[0]}={t[1]}"),
    st.sampled_from(["", "i33200-Rtd", "=5"]),
)


@st.composite
def segments(draw) -> str:
    rest = ""
    for item in draw(st.lists(items, min_size=1, max_size=12)):
        rest += (draw(st.sampled_from([";", ","])) if rest else "") + item
    return HEAD.format(
        qn=draw(st.sampled_from(["20261123100000000", "2026112310000000", "abc"])),
        cn=draw(st.sampled_from(["2011", "2051", "2061", "2031", "2041"])),
        pw=draw(st.sampled_from([FOUNDRY_PW, "123456", "p@ss(1)"])),
        mn=draw(st.sampled_from([FOUNDRY_MN, FOUNDRY_MN.lower(), COATING_MN, "UNREGISTERED9"])),
        flag=draw(st.sampled_from(["5", "4", "9", "0", "05", "255", "256"])),
        dt=draw(st.sampled_from(["20261123100000", "20261323100000", "2026112310000"])),
        sep=draw(st.sampled_from([";", ","])),
        rest=rest,
    )


# One builder for every example, as in the server: plans made for earlier examples stay cached.
FAST = PointBuilder("Asia/Shanghai")


@settings(max_examples=1500, deadline=None)
@given(segments())
def test_fast_path_gives_the_general_paths_packet_ack_and_lines_or_declines(segment):
    plain = read_plain_upload(segment.encode())
    try:
        general = parse_segment(segment)
    except PacketError:
        assert plain is None
        return
    if plain is None:
        return
    packet, rest = plain
    assert packet == replace(general, cp=CP(data_time=general.cp.data_time))
    assert replies.data_ack_frame(packet) == replies.data_ack_frame(general)
    conversion = FAST.convert_plain(packet, rest, REGISTRY)
    if conversion is not None:
        assert conversion == PointBuilder("Asia/Shanghai").convert(general, REGISTRY, 123)


def canonical_upload(i: int, mn: str = FOUNDRY_MN, cn: str = "2011") -> bytes:
    """A segment as build_segment writes it: two mapped factors and an unmapped one."""
    factors = {
        "i33200": {"Rtd": f"{i}.5", "Flag": "N"},
        "g10201": {"Rtd": str(-i), "Flag": "D"},
        "w01018": {"Avg": f"0.{i}", "Flag": "N"},
    }
    packet = Packet(qn="20261123100000000", st="32", cn=cn, pw=FOUNDRY_PW, mn=mn, flag=5,
                    cp=CP(data_time=f"202611231000{i % 60:02d}", factors=factors))
    return build_segment(packet).encode()


@pytest.mark.parametrize("cn", ["2011", "2051", "2061", "2031"])
def test_canonical_uploads_take_the_fast_path(cn):
    builder = PointBuilder("Asia/Shanghai")
    for i in range(50):
        segment = canonical_upload(i, cn=cn)
        plain = read_plain_upload(segment)
        assert plain is not None
        conversion = builder.convert_plain(plain[0], plain[1], REGISTRY)
        assert conversion is not None, segment
        assert conversion == builder.convert(parse_segment(segment), REGISTRY, 123)
        assert conversion.unmapped_factors == 1 and len(conversion.lines) == 3


@pytest.mark.parametrize("segment", [
    canonical_upload(1).replace(b"i33200-Rtd=1.5", b"i33200-Rtd=1e3"),  # a value convert re-prints
    canonical_upload(1).replace(b"Flag=N", b'Flag=a"b', 1),  # text convert escapes
    canonical_upload(1).replace(b"DataTime=20261123100001", b"DataTime=20261323100001"),  # no such month
])
def test_values_convert_would_change_are_left_to_it(segment):
    builder = PointBuilder("Asia/Shanghai")
    plain = read_plain_upload(canonical_upload(2))
    assert builder.convert_plain(*plain, REGISTRY) is not None  # the device's plan exists
    plain = read_plain_upload(segment)
    assert plain is not None and builder.convert_plain(*plain, REGISTRY) is None


@pytest.mark.parametrize("segment", [
    canonical_upload(1).replace(b";ST=32", b";st=32"),
    canonical_upload(1).replace(b";", b",", 2),
    canonical_upload(1).replace(b"Flag=5", b"Flag=7;PNUM=2;PNO=1"),
    canonical_upload(1).replace(b"CN=2011", b"CN=3020"),
    canonical_upload(1).replace(b"CP=&&DataTime=20261123100001;", b"CP=&&i33201-Rtd=1;DataTime=20261123100001;"),
    b"\xff" + canonical_upload(1),
])
def test_other_shapes_are_not_read_as_plain(segment):
    assert read_plain_upload(segment) is None


def test_a_reloaded_registry_changes_the_lines(tmp_path):
    builder = PointBuilder("Asia/Shanghai")
    plain = read_plain_upload(canonical_upload(3))
    assert b",fac=P1," in builder.convert_plain(*plain, REGISTRY).lines[0]
    shutil.copytree(TEST_REGISTRY, tmp_path / "registry")
    foundry = tmp_path / "registry" / "foundry.yaml"
    foundry.write_text(foundry.read_text().replace("{factor: i33200, facility: P1", "{factor: i33200, facility: T1"))
    reloaded = builder.convert_plain(*plain, load_registry(tmp_path / "registry"))
    assert reloaded == builder.convert(parse_segment(canonical_upload(3)), load_registry(tmp_path / "registry"), 0)
    assert b",fac=T1," in reloaded.lines[0] and b"i33200-Rtd=3.5" in reloaded.lines[0]


@pytest.fixture
def server(tmp_path, influx_db):
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, spool={"flush_interval": 0.05}) as process:
        yield process


def test_many_frames_in_one_read_are_answered_in_order_and_all_stored(server, influx, db):
    logger = Logger(server.port)
    moment = datetime(2026, 11, 23, 10, 0, 0)
    expected_acks, stream = [], b""
    for i in range(40):
        value = "1e3" if i == 7 else f"{i}.25"  # one upload the fast path leaves to the general one
        packet = logger.packet("2011", moment.replace(minute=i), {"i33200": {"Rtd": value, "Flag": "N"}},
                               flag=4 if i % 10 == 3 else 5)  # some without A: stored, not answered
        if packet.ack_required:
            expected_acks.append(packet.qn)
        stream += encode_frame(build_segment(packet))
    heartbeat = logger.packet("9015", None, {})
    refused = replace(logger.packet("2011", moment, {"i33200": {"Rtd": "1"}}), mn="UNREGISTERED9")
    stream += encode_frame(build_segment(heartbeat)) + encode_frame(build_segment(refused))
    logger.sock.sendall(stream)
    answers = logger.read(len(expected_acks) + 2)
    assert [a.qn for a in answers if a.cn == "9014"] == expected_acks
    assert [(a.cn, a.qn) for a in answers if a.cn == "9013"] == [("9013", heartbeat.qn)]
    assert [(a.cn, a.qn, a.cp.params) for a in answers if a.cn == "9011"] == [("9011", refused.qn, {"QnRtn": "4"})]
    stored = wait_rows(influx, db, f"SELECT \"i33200-Rtd\" FROM rtd WHERE mn = '{FOUNDRY_MN}'", count=40)
    assert [row["i33200-Rtd"] for row in stored] == [1000.0 if i == 7 else i + 0.25 for i in range(40)]
    fresh = Logger(server.port)  # the server still serves, the fast way
    fresh.send_raw(encode_frame(canonical_upload(5)))
    assert [(a.cn, a.qn) for a in fresh.read(1)] == [("9014", "20261123100000000")]
