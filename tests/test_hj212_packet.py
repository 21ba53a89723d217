"""Data segments: lenient parse, strict build, round trip, and the platform's replies."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingest_twisted.hj212 import replies
from ingest_twisted.hj212.frame import Frame, FrameDecoder, encode_frame
from ingest_twisted.hj212.packet import (
    CP,
    Packet,
    PacketError,
    build_cp,
    build_segment,
    flag_for,
    format_time,
    make_qn,
    parse_segment,
    parse_time,
)

WORKED = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"
MN = "010000A8900016F000169DC0"


def segment(cp: str = "DataTime=20160801085857;w01018-Rtd=36.91,w01018-Flag=N", **fields: str) -> str:
    header = {"QN": "20160801085857223", "ST": "32", "CN": "2011", "PW": "123456", "MN": MN, "Flag": "5"}
    header.update(fields)
    return ";".join(f"{k}={v}" for k, v in header.items() if v is not None) + f";CP=&&{cp}&&"


# -- published examples ------------------------------------------------------------


def test_worked_example():
    packet = parse_segment(WORKED.encode())
    assert packet == Packet("20160801085857223", "32", "1062", "100000", MN, 5, cp=CP(params={"RtdInterval": "30"}))
    assert packet.version == "2017" and packet.ack_required and not packet.split and packet.qn_valid
    assert build_segment(packet) == WORKED


def test_hj212_2025_examples():
    packet = parse_segment("QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&&&")
    assert packet.version == "2025" and packet.ack_required and packet.cp == CP()
    packet = parse_segment(
        "QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&"
        "DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;"
        "a01014-Min=3.20,a01014-Avg=3.20,a01014-Max=3.20,a01014-Flag=N&&"
    )
    assert packet.cp.data_time == "20240520210600"
    assert packet.cp.factors == {
        "a01011": {"Min": "1.35", "Avg": "1.35", "Max": "1.35", "Flag": "N"},
        "a01014": {"Min": "3.20", "Avg": "3.20", "Max": "3.20", "Flag": "N"},
    }


def test_field_frame_without_qn_and_flag():
    raw = (b"##0178ST=32;CN=2011;PW=123456;MN=0873HHMZWSLH02;CP=&&DataTime=20160103133030;060-Rtd=3.0943,"
           b"060-Flag=N;011-Rtd=18.0412,011-Flag=N;001-Rtd=8.2137,001-Flag=N;B01-Rtd=10.9890,B01-Flag=N&&a9c1\r\n")
    [frame] = FrameDecoder().feed(raw)
    packet = parse_segment(frame.segment)
    assert frame.crc_ok and packet.qn is None and packet.flag is None
    assert packet.version == "2005" and not packet.ack_required
    assert packet.cp.factors["B01"] == {"Rtd": "10.9890", "Flag": "N"}


# -- leniency -------------------------------------------------------------------------


def test_commas_between_top_level_fields():
    text = "QN=20160801085857223,ST=32,CN=2011,PW=123456,MN=ABC,Flag=5,CP=&&DataTime=20160801085857,w01018-Rtd=1&&"
    packet = parse_segment(text)
    assert (packet.qn, packet.st, packet.cn, packet.pw, packet.mn, packet.flag) == (
        "20160801085857223", "32", "2011", "123456", "ABC", 5)
    assert packet.cp.factors == {"w01018": {"Rtd": "1"}}


def test_names_in_any_case_and_whitespace():
    text = " qn = 20160801085857223 ; st=32;cn=2011; PW=123456 ;mn=ABC;FLAG=4; CP= && DataTime=20160801085857 ;" \
           " w01018-rtd = 36.91 , w01018-Flag=N && "
    packet = parse_segment(text)
    assert (packet.qn, packet.cn, packet.pw, packet.mn, packet.flag) == ("20160801085857223", "2011", "123456", "ABC", 4)
    assert packet.cp == CP(data_time="20160801085857", factors={"w01018": {"Rtd": "36.91", "Flag": "N"}})


def test_optional_fields_may_be_missing():
    packet = parse_segment("CN=9021;MN=12345;CP=&&&&")
    assert (packet.qn, packet.st, packet.pw, packet.flag) == (None, None, None, None)
    assert not packet.ack_required
    assert parse_segment("QN=;ST=;CN=8051;PW=;MN=X;Flag=;CP=&&&&").flag is None


def test_mn_of_any_length_and_vendor_cns():
    for mn in ("1", "88888880000001", "A" * 40):
        assert parse_segment(segment(MN=mn, CN="8051")).mn == mn


def test_unknown_fields_are_kept_in_extra():
    packet = parse_segment(segment(RF="1", Vendor="x"))
    assert packet.extra == {"RF": "1", "Vendor": "x"}
    assert packet.resend
    assert build_segment(packet).endswith(";RF=1;Vendor=x;CP=&&DataTime=20160801085857;w01018-Rtd=36.91,w01018-Flag=N&&")


def test_cp_markers_are_forgiven():
    assert parse_segment("CN=2011;MN=A;CP=&&DataTime=1;w01018-Rtd=2").cp.factors == {"w01018": {"Rtd": "2"}}
    assert parse_segment("CN=2011;MN=A;CP=DataTime=1;w01018-Rtd=2&&").cp.data_time == "1"
    assert parse_segment("CN=2011;MN=A;CP=&&&&\x00\x00").cn == "2011"
    assert parse_segment("CN=2011;CP=&&a=1&&;MN=A").mn == "A"  # fields after the CP


def test_qn_is_kept_as_sent_and_flagged():
    packet = parse_segment(segment(QN="123"))
    assert packet.qn == "123" and not packet.qn_valid
    assert replies.data_ack(packet).qn == "123"


# -- CP contents --------------------------------------------------------------------


def test_cp_items():
    cp = parse_segment(segment(
        "DataTime=20160801084000;w01018-Avg=40.1,w01018-Min=30.2,w01018-Max=50.3,w01018-Cou=12.5,w01018-Flag=N;"
        "a21026-ZsRtd=3.1,a21026-ZsAvg=3.2,a21026-ZsMin=3.0,a21026-ZsMax=3.3,a21026-EFlag=D,"
        "a21026-SampleTime=20160801083000;i11001-Info=//清洗管路//;g10201-Custom=7;"
        "SB1-RS=1;SB1-RT=0.5;SB2-RS=0;RtdInterval=30;PolId=w01018"
    )).cp
    assert cp.data_time == "20160801084000"
    assert cp.factors == {
        "w01018": {"Avg": "40.1", "Min": "30.2", "Max": "50.3", "Cou": "12.5", "Flag": "N"},
        "a21026": {"ZsRtd": "3.1", "ZsAvg": "3.2", "ZsMin": "3.0", "ZsMax": "3.3", "EFlag": "D",
                   "SampleTime": "20160801083000"},
        "i11001": {"Info": "//清洗管路//"},
        "g10201": {"Custom": "7"},
    }
    assert cp.devices == {"SB1": {"RS": "1", "RT": "0.5"}, "SB2": {"RS": "0"}}
    assert cp.params == {"RtdInterval": "30", "PolId": "w01018"}


def test_several_data_time_groups():
    cp = parse_segment(segment("DataTime=20250101000000;d10001-Avg=1;DataTime=20250101000100;d10001-Avg=2")).cp
    assert cp.data_time == "20250101000000" and cp.factors == {"d10001": {"Avg": "1"}}
    assert cp.more == [CP(data_time="20250101000100", factors={"d10001": {"Avg": "2"}})]
    assert build_cp(cp) == "DataTime=20250101000000;d10001-Avg=1;DataTime=20250101000100;d10001-Avg=2"


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"CN=2011;MN=A;CP=&&Info=\xff&&", "not_utf8"),
        (12, "bad_type"),
        ("QN=1;CN=2011;MN=A", "no_cp"),
        ("MN=A;CP=&&&&", "missing_cn"),
        ("CN=;MN=A;CP=&&&&", "missing_cn"),
        ("CN=20x1;MN=A;CP=&&&&", "bad_cn"),
        ("CN=2011;CP=&&&&", "missing_mn"),
        ("CN=2011;MN=A=B;CP=&&&&", "bad_mn"),
        ("QN=2016\x01;CN=2011;MN=A;CP=&&&&", "bad_qn"),
        ("CN=2011;MN=A;PW=1&2;CP=&&&&", "bad_pw"),
        ("CN=2011;MN=A;Flag=abc;CP=&&&&", "bad_flag"),
        ("CN=2011;MN=A;Flag=256;CP=&&&&", "bad_flag"),
        ("CN=2011;MN=A;Flag=0005;CP=&&&&", "bad_flag"),
        ("CN=2011;MN=A;Flag=7;PNUM=0;PNO=1;CP=&&&&", "bad_pnum"),
        ("CN=2011;MN=A;Flag=7;PNUM=2;PNO=3;CP=&&&&", "bad_pno"),
        ("CN=2011;MN=A;Flag=7;PNUM=2;CP=&&&&", "bad_pno"),
        ("CN=2011;MN=A;garbage;CP=&&&&", "bad_field"),
        ("CN=2011;MN=A;=5;CP=&&&&", "bad_field"),
        ("CN=2011;MN=A;CP=&&{0xE4,0x3E}&&", "encrypted_cp"),
    ],
)
def test_error_kinds(data, kind):
    with pytest.raises(PacketError) as caught:
        parse_segment(data)
    assert caught.value.kind == kind
    assert caught.value.message and str(caught.value).startswith(kind)


# -- flags and versions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "version", "ack"),
    [(0, "2005", False), (1, "2005", True), (3, "2005", True), (4, "2017", False), (5, "2017", True),
     (7, "2017", True), (8, "2025", False), (9, "2025", True), (11, "2025", True), (13, "2025", True)],
)
def test_flag_bits(flag, version, ack):
    packet = parse_segment(segment(Flag=str(flag)))
    assert packet.version == version and packet.ack_required is ack


@pytest.mark.parametrize(
    ("fields", "version"),
    [({"ST": "44"}, "2025"), ({"ST": "45"}, "2025"), ({"QN": None}, "2005"),
     ({"MN": "88888880000001"}, "2005"), ({}, "2017")],
)
def test_version_without_flag(fields, version):
    assert parse_segment(segment(Flag=None, **fields)).version == version


def test_split_packets():
    packet = parse_segment(segment(Flag="7", PNUM="3", PNO="2"))
    assert packet.split and (packet.pnum, packet.pno) == (3, 2)
    assert "Flag=7;PNUM=3;PNO=2;CP=" in build_segment(packet)
    assert flag_for("2017", ack=True, split=True) == 7 and flag_for("2025") == 8


# -- strict build ----------------------------------------------------------------------


def test_build_canonical_order():
    packet = Packet(qn="1", st="32", cn="2011", pw="p", mn="m", flag=6, pnum=2, pno=1,
                    cp=CP(data_time="t", params={"k": "v"}, factors={"w1": {"Rtd": "1", "Flag": "N"}},
                          devices={"SB1": {"RS": "1"}}),
                    extra={"RF": "1"})
    assert build_segment(packet) == (
        "QN=1;ST=32;CN=2011;PW=p;MN=m;Flag=6;PNUM=2;PNO=1;RF=1;CP=&&DataTime=t;k=v;w1-Rtd=1,w1-Flag=N;SB1-RS=1&&")


@pytest.mark.parametrize(
    "change",
    [
        {"cn": "20a1"}, {"mn": ""}, {"mn": "a;b"}, {"qn": "1,2"}, {"pw": " x"}, {"flag": 256},
        {"pnum": 2, "pno": 1}, {"flag": 7, "pnum": 2}, {"flag": 7, "pnum": 2, "pno": 3},
        {"extra": {"flag": "1"}}, {"extra": {"a b": "1"}}, {"extra": {"CP": "1"}},
        {"cp": CP(factors={"w1": {}})}, {"cp": CP(factors={"SB1": {"RS": "1"}})},
        {"cp": CP(devices={"w1": {"RS": "1"}})}, {"cp": CP(factors={"w1": {"rtd": "1"}})},
        {"cp": CP(params={"a-b": "1"})}, {"cp": CP(params={"datatime": "1"})}, {"cp": CP(params={"k": "a;b"})},
        {"cp": CP(params={"{0x1": "1"})}, {"cp": CP(more=[CP(data_time="1")])},
        {"cp": CP(data_time="1", more=[CP()])},
    ],
)
def test_build_refuses_what_would_not_read_back(change):
    fields = {"qn": "1", "st": "32", "cn": "2011", "pw": "p", "mn": "m", "flag": 4}
    fields.update(change)
    with pytest.raises(ValueError):
        build_segment(Packet(**fields))


# -- round trip and fuzzing ---------------------------------------------------------

SAFE = st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=";,=&{") | st.sampled_from("清洗管路中文")
TOKEN = st.text(SAFE | st.just(" "), min_size=1, max_size=12).filter(lambda s: s == s.strip())
VALUE = st.text(SAFE | st.sampled_from(" ="), max_size=12).filter(lambda s: s == s.strip())
NAME = st.text(SAFE, min_size=1, max_size=8)
SUFFIX = st.sampled_from(["Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "Flag", "EFlag", "SampleTime", "Info", "Data"])
CODE = st.from_regex(r"[a-z][0-9]{5}", fullmatch=True) | NAME.filter(lambda s: not s.startswith("SB") and s[-1] != "-")
DEVICE = st.from_regex(r"SB[0-9]{1,3}", fullmatch=True)
PARAM = NAME.filter(lambda s: "-" not in s and s.lower() != "datatime")
EXTRA_KEY = NAME.filter(lambda s: s.upper() not in ("QN", "ST", "CN", "PW", "MN", "FLAG", "PNUM", "PNO", "CP"))


@st.composite
def groups(draw, data_time):
    return CP(
        data_time=data_time,
        params=draw(st.dictionaries(PARAM, VALUE, max_size=3)),
        factors=draw(st.dictionaries(CODE, st.dictionaries(SUFFIX, VALUE, min_size=1, max_size=4), max_size=5)),
        devices=draw(st.dictionaries(DEVICE, st.dictionaries(st.sampled_from(["RS", "RT"]), VALUE, min_size=1),
                                     max_size=2)),
    )


@st.composite
def packets(draw):
    more = draw(st.lists(VALUE.flatmap(groups), max_size=2))
    cp = draw(groups(draw(VALUE) if more else draw(st.none() | VALUE)))
    cp.more = more
    pnum = draw(st.none() | st.integers(1, 9999))
    pno = None if pnum is None else draw(st.integers(1, pnum))
    flag = draw(st.integers(0, 255)) if pnum is None else draw(st.integers(0, 255)) | 2
    if pnum is None and draw(st.booleans()):
        flag = None
    return Packet(
        qn=draw(st.none() | st.from_regex(r"[0-9]{17}", fullmatch=True) | TOKEN),
        st=draw(st.none() | st.sampled_from(["21", "31", "32", "44", "91"]) | TOKEN),
        cn=draw(st.sampled_from(["2011", "2051", "2061", "2031", "9015", "9021", "8051"]) | st.from_regex(r"[0-9]{1,8}", fullmatch=True)),
        pw=draw(st.none() | TOKEN),
        mn=draw(TOKEN),
        flag=flag, pnum=pnum, pno=pno, cp=cp,
        extra=draw(st.dictionaries(EXTRA_KEY, VALUE.filter(lambda v: "=" not in v), max_size=2)),
    )


@settings(max_examples=400, deadline=None)
@given(packets(), st.integers(min_value=1, max_value=97))
def test_round_trip_build_frame_decode_parse(packet, chunk):
    raw = encode_frame(build_segment(packet))
    decoder = FrameDecoder(max_segment=9999)
    events = []
    for at in range(0, len(raw), chunk):
        events.extend(decoder.feed(raw[at:at + chunk]))
    [frame] = events
    assert isinstance(frame, Frame) and frame.crc_ok
    assert parse_segment(frame.segment) == packet


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, byte in edits:
        at = where % (len(out) + 1)
        if kind == 0:
            out.insert(at, byte)
        elif kind == 1 and out:
            del out[at % len(out)]
        elif out:
            out[at % len(out)] = byte
    return bytes(out)


def parse_or_error(data):
    try:
        packet = parse_segment(data)
    except PacketError as error:
        assert error.kind and error.kind.replace("_", "").isalnum()
        return None
    # Whatever parses can be answered.
    build_segment(replies.data_ack(packet))
    build_segment(replies.system_time(packet, datetime(2026, 1, 1)))
    return packet


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_raise_only_packet_error(data):
    parse_or_error(data)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_raises_only_packet_error(text):
    parse_or_error(text)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(packets(), st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), max_size=8))
def test_mutated_segments_raise_only_packet_error(packet, edits):
    data = mutate(build_segment(packet).encode("utf-8"), edits)
    parse_or_error(data)
    for event in FrameDecoder().feed(mutate(encode_frame(build_segment(packet)), edits)):
        if isinstance(event, Frame):
            parse_or_error(event.segment)


# -- times ------------------------------------------------------------------------------


def test_times():
    moment = datetime(2016, 8, 1, 8, 58, 57, 223456)
    assert format_time(moment) == "20160801085857"
    assert make_qn(moment) == "20160801085857223"
    assert format_time(moment.replace(tzinfo=timezone(timedelta(hours=8)))) == "20160801085857"
    assert parse_time("20160801085857") == moment.replace(microsecond=0)
    assert parse_time("20160824003817000") == datetime(2016, 8, 24, 0, 38, 17)
    for bad in ("2016080108585", "2016080108585x", "20161301085857"):
        with pytest.raises(ValueError):
            parse_time(bad)


# -- replies ----------------------------------------------------------------------------


def test_data_ack_of_the_worked_example():
    ack = replies.data_ack(parse_segment(WORKED))
    assert build_segment(ack) == f"QN=20160801085857223;ST=91;CN=9014;PW=100000;MN={MN};Flag=4;CP=&&&&"
    frame = encode_frame(build_segment(ack))
    assert frame == b"##0087" + build_segment(ack).encode() + b"71C0\r\n"


@pytest.mark.parametrize(("flag", "reply_flag"), [("5", 4), ("4", 4), ("9", 8), ("11", 8), ("1", 0), (None, 4)])
def test_replies_carry_the_request_version(flag, reply_flag):
    request = parse_segment(segment(Flag=flag))
    for reply in (replies.data_ack(request), replies.qn_rtn(request), replies.exe_rtn(request),
                  replies.notify_ack(request), replies.heartbeat_ack(request)):
        assert reply.flag == reply_flag and reply.qn == request.qn and reply.st == "91"


def test_reply_commands():
    request = parse_segment(segment(cp="", CN="9015", Flag="9"))
    assert build_segment(replies.qn_rtn(request, replies.QnRtn.BAD_PW)).endswith("CN=9011;PW=123456;MN=" + MN + ";Flag=8;CP=&&QnRtn=3&&")
    assert build_segment(replies.exe_rtn(request)).endswith("CN=9012;PW=123456;MN=" + MN + ";Flag=8;CP=&&ExeRtn=1&&")
    assert replies.notify_ack(request).cn == "9013"
    assert replies.heartbeat_ack(request).cn == "9013"
    assert replies.heartbeat_ack(request, cn="9014").cn == "9014"


def test_system_time_answers_a_calibration_request():
    request = parse_segment(segment(cp="PolId=w01018", CN="1013", Flag="5"))
    now = datetime(2026, 1, 2, 3, 4, 5, 678000)
    assert build_segment(replies.system_time(request, now)) == (
        f"QN=20260102030405678;ST=32;CN=1012;PW=123456;MN={MN};Flag=5;CP=&&PolId=w01018;SystemTime=20260102030405&&")
    request_2025 = parse_segment(segment(cp="", CN="1013", Flag="9"))
    assert replies.system_time(request_2025, now).flag == 9


def test_backfill_request():
    packet = replies.backfill_request(
        MN, "123456", "2061", datetime(2026, 1, 1, 0), datetime(2026, 1, 1, 5), datetime(2026, 1, 2, 8, 0, 0, 1000),
        "2025", st="31",
    )
    assert build_segment(packet) == (
        f"QN=20260102080000001;ST=31;CN=2061;PW=123456;MN={MN};Flag=9;"
        "CP=&&BeginTime=20260101000000;EndTime=20260101050000&&")
    assert packet.ack_required
    assert replies.backfill_request(MN, "1", "2051", datetime(2026, 1, 1), datetime(2026, 1, 1),
                                    datetime(2026, 1, 1)).flag == 5
    with pytest.raises(ValueError):
        replies.backfill_request(MN, "1", "2011", datetime(2026, 1, 1), datetime(2026, 1, 2), datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        replies.backfill_request(MN, "1", "2051", datetime(2026, 1, 2), datetime(2026, 1, 1), datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        replies.backfill_request(MN, "1", "2051", datetime(2026, 1, 1), datetime(2026, 1, 1), datetime(2026, 1, 1),
                                 "2019")


@settings(deadline=None)
@given(packets())
def test_replies_of_any_packet_build(packet):
    assume(packet.mn)
    for reply in (replies.data_ack(packet), replies.qn_rtn(packet, 2), replies.heartbeat_ack(packet),
                  replies.system_time(packet, datetime(2026, 1, 1))):
        assert parse_segment(build_segment(reply)) == reply


def test_cached_data_ack_frame_equals_the_built_one():
    for segment in (
        "QN=20160801085857223;ST=32;CN=2011;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&DataTime=20160801085857;w01018-Rtd=1&&",
        "QN=20260101000000001;ST=44;CN=2011;PW=123456;MN=ABC;Flag=9;CP=&&&&",
        "ST=32;CN=2011;PW=123456;MN=ABC;Flag=1;CP=&&&&",
        "QN=1;ST=32;CN=2051;MN=ABC;Flag=1;CP=&&&&",
    ):
        request = parse_segment(segment)
        built = encode_frame(build_segment(replies.data_ack(request)))
        assert replies.data_ack_frame(request) == built
        assert replies.data_ack_frame(request) == built  # from the cache
