"""FrameDecoder finds every frame whatever the chunking, skips garbage, and never holds much."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_twisted.hj212.crc import format_crc, hj212_crc
from ingest_twisted.hj212.frame import Frame, FrameDecoder, Garbage, encode_frame

EXAMPLE = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"
EXAMPLE_FRAME = b"##0101" + EXAMPLE.encode() + b"1C80\r\n"
DATA = ("QN=20160801085857223;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
        "CP=&&DataTime=20160801085857;w01018-Rtd=36.91,w01018-Flag=N;w21003-Rtd=1.803,w21003-Flag=N&&")
CHINESE = ("QN=20160801085857334;ST=32;CN=3020;PW=123456;MN=010000A8900016F000169DC0;Flag=4;"
           "CP=&&DataTime=20160801062035;PolId=w01018;i11001-Info=//清洗管路//&&")


def feed_in_chunks(decoder: FrameDecoder, data: bytes, size: int) -> list:
    events = []
    for at in range(0, len(data), size):
        events.extend(decoder.feed(data[at:at + size]))
    return events


def frames(events) -> list[Frame]:
    return [event for event in events if isinstance(event, Frame)]


def garbage(events) -> list[Garbage]:
    return [event for event in events if isinstance(event, Garbage)]


def frame_with_length(segment: bytes, length: int, crc: int | None = None) -> bytes:
    value = hj212_crc(segment) if crc is None else crc
    return b"##%04d" % length + segment + format_crc(value).encode() + b"\r\n"


# -- encoding ----------------------------------------------------------------


def test_encode_worked_example():
    assert encode_frame(EXAMPLE) == EXAMPLE_FRAME
    assert encode_frame(EXAMPLE.encode()) == EXAMPLE_FRAME


def test_length_counts_utf8_bytes():
    frame = encode_frame(CHINESE)
    assert int(frame[2:6]) == len(CHINESE.encode("utf-8")) == len(CHINESE) + 8
    [decoded] = FrameDecoder().feed(frame)
    assert decoded.crc_ok and decoded.length_ok
    assert decoded.segment.decode("utf-8") == CHINESE


def test_encode_refuses_what_the_length_field_cannot_hold():
    encode_frame("x" * 9999)
    with pytest.raises(ValueError):
        encode_frame("x" * 10000)


# -- one stream, every chunking --------------------------------------------------

STREAM = (
    b"\x00\xffjunk before"
    + EXAMPLE_FRAME
    + b"noise between frames"
    + encode_frame(CHINESE)
    + encode_frame(DATA)
    + b"##12ab broken length"
    + EXAMPLE_FRAME
)


@pytest.mark.parametrize("size", range(1, 10))
def test_every_chunk_size_from_1_to_9(size):
    whole = FrameDecoder().feed(STREAM)
    decoder = FrameDecoder()
    chunked = feed_in_chunks(decoder, STREAM, size)
    expected = [EXAMPLE.encode(), CHINESE.encode(), DATA.encode(), EXAMPLE.encode()]
    assert [f.segment for f in frames(whole)] == expected
    # A frame whose CRC matches is emitted before its trailer arrives, so only raw may differ.
    assert [(f.segment, f.crc_ok) for f in frames(chunked)] == [(s, True) for s in expected]
    # Garbage may come in pieces as it arrives, but the same bytes are skipped.
    assert sum(len(g.data) for g in garbage(chunked)) == sum(len(g.data) for g in garbage(whole))
    assert {g.reason for g in garbage(whole)} == {"no_header", "bad_length"}
    assert decoder.buffered == 0


def test_several_frames_in_one_chunk():
    events = FrameDecoder().feed(EXAMPLE_FRAME * 5)
    assert len(events) == 5
    assert all(isinstance(e, Frame) and e.raw == EXAMPLE_FRAME for e in events)


def test_garbage_before_and_between_frames():
    events = FrameDecoder().feed(b"hello" + EXAMPLE_FRAME + b"world" + EXAMPLE_FRAME)
    assert [type(e) for e in events] == [Garbage, Frame, Garbage, Frame]
    assert events[0] == Garbage(b"hello", "no_header")
    assert events[2] == Garbage(b"world", "no_header")


def test_cr_lf_between_frames_is_not_garbage():
    events = FrameDecoder().feed(b"\r\n\r\n" + EXAMPLE_FRAME + b"\n\r\n" + EXAMPLE_FRAME)
    assert len(events) == 2 and not garbage(events)


# -- CRC and trailer ---------------------------------------------------------------


def test_crc_mismatch_is_emitted_and_does_not_resync():
    bad = frame_with_length(EXAMPLE.encode(), 101, crc=0x1C81)
    events = FrameDecoder().feed(bad + EXAMPLE_FRAME)
    assert [type(e) for e in events] == [Frame, Frame]
    assert events[0].crc_ok is False and events[0].segment == EXAMPLE.encode()
    assert events[0].received_crc == 0x1C81
    assert events[1].crc_ok is True


def test_lower_case_crc():
    [frame] = FrameDecoder().feed(EXAMPLE_FRAME.replace(b"1C80", b"1c80"))
    assert frame.crc_ok


def test_lf_only_trailer():
    only_lf = EXAMPLE_FRAME[:-2] + b"\n"
    events = FrameDecoder().feed(only_lf + only_lf)
    assert [e.raw for e in events] == [only_lf, only_lf]


def test_good_frame_without_trailer_is_emitted_at_once():
    decoder = FrameDecoder()
    [frame] = decoder.feed(EXAMPLE_FRAME[:-2])
    assert frame.crc_ok and frame.raw == EXAMPLE_FRAME[:-2]
    assert decoder.feed(b"\r\n") == []  # the late trailer is not garbage
    assert decoder.feed(EXAMPLE_FRAME[:-2] + EXAMPLE_FRAME) == [frame, Frame(frame.segment, True, EXAMPLE_FRAME)]


def test_bad_crc_waits_for_the_trailer():
    bad = frame_with_length(EXAMPLE.encode(), 101, crc=0x0000)
    decoder = FrameDecoder()
    assert decoder.feed(bad[:-2]) == []
    assert decoder.feed(b"\r") == []
    [frame] = decoder.feed(b"\n")
    assert frame.crc_ok is False and frame.raw == bad


def test_bad_crc_without_trailer_is_garbage():
    bad = frame_with_length(EXAMPLE.encode(), 101, crc=0x0000)[:-2]
    events = FrameDecoder().feed(bad + b"XY" + EXAMPLE_FRAME)
    assert events[0] == Garbage(bad + b"XY", "bad_trailer")
    assert events[1].raw == EXAMPLE_FRAME


def test_junk_after_a_good_crc_is_garbage_of_its_own():
    events = FrameDecoder().feed(EXAMPLE_FRAME[:-2] + b"XY" + EXAMPLE_FRAME)
    assert [type(e) for e in events] == [Frame, Garbage, Frame]
    assert events[1] == Garbage(b"XY", "no_header")


# -- resynchronisation -------------------------------------------------------------


def test_bad_length_digits():
    events = FrameDecoder().feed(b"##01a1" + EXAMPLE.encode() + b"1C80\r\n" + EXAMPLE_FRAME)
    assert garbage(events)[0].reason == "bad_length"
    assert [f.raw for f in frames(events)] == [EXAMPLE_FRAME]


def test_length_over_cap():
    decoder = FrameDecoder(max_segment=100)
    events = decoder.feed(EXAMPLE_FRAME + encode_frame("CN=1;MN=1;CP=&&&&"))
    assert events[0] == Garbage(EXAMPLE_FRAME, "length_over_cap")
    assert frames(events)[0].segment == b"CN=1;MN=1;CP=&&&&"


def test_extra_hash_before_a_frame():
    events = FrameDecoder().feed(b"#" + EXAMPLE_FRAME)
    assert frames(events) == [Frame(EXAMPLE.encode(), True, EXAMPLE_FRAME)]
    assert events[0] == Garbage(b"#", "bad_length")


def test_truncated_frame_followed_by_a_good_one():
    events = FrameDecoder().feed(EXAMPLE_FRAME[:60] + EXAMPLE_FRAME)
    assert events == [Garbage(EXAMPLE_FRAME[:60], "bad_trailer"), Frame(EXAMPLE.encode(), True, EXAMPLE_FRAME)]


def test_truncated_frame_waits_only_until_the_next_header():
    decoder = FrameDecoder()
    assert decoder.feed(EXAMPLE_FRAME[:60]) == []
    assert decoder.feed(b"##01") == []  # "##" alone could be data
    assert decoder.feed(b"01") == [Garbage(EXAMPLE_FRAME[:60], "bad_trailer")]
    assert frames(decoder.feed(EXAMPLE_FRAME[6:])) == [Frame(EXAMPLE.encode(), True, EXAMPLE_FRAME)]


# -- length repair -----------------------------------------------------------------


def test_length_counted_in_characters_is_repaired_when_the_crc_matches():
    segment = CHINESE.encode("utf-8")
    wrong = frame_with_length(segment, len(CHINESE))  # devices that count characters
    [frame] = FrameDecoder().feed(wrong)
    assert frame.crc_ok and frame.segment == segment
    assert frame.length_ok is False and frame.declared_length == len(CHINESE)


def test_length_too_long_is_repaired_without_waiting():
    wrong = frame_with_length(EXAMPLE.encode(), 150)
    [frame] = FrameDecoder().feed(wrong)
    assert frame.crc_ok and frame.segment == EXAMPLE.encode() and not frame.length_ok


def test_wrong_length_and_wrong_crc_is_garbage():
    wrong = frame_with_length(EXAMPLE.encode(), 90, crc=0x0000)
    events = FrameDecoder().feed(wrong + EXAMPLE_FRAME)
    assert events == [Garbage(wrong, "bad_trailer"), Frame(EXAMPLE.encode(), True, EXAMPLE_FRAME)]


# -- bounded memory ------------------------------------------------------------------


def test_garbage_without_header_is_dropped_as_it_arrives():
    decoder = FrameDecoder()
    assert decoder.feed(b"abc") == [Garbage(b"abc", "no_header")]
    assert decoder.buffered == 0
    assert decoder.feed(b"x" * 100_000 + b"#") == [Garbage(b"x" * 100_000, "no_header")]
    assert decoder.buffered == 1
    assert frames(decoder.feed(EXAMPLE_FRAME[1:])) == [Frame(EXAMPLE.encode(), True, EXAMPLE_FRAME)]


def test_a_frame_that_never_ends_is_dropped_at_the_cap():
    stream = b"##0100" + b"y" * 1000
    assert FrameDecoder(max_segment=200).feed(stream) == [Garbage(stream, "bad_trailer")]
    decoder = FrameDecoder(max_segment=200)
    skipped = 0
    for at in range(0, len(stream), 7):
        skipped += sum(len(g.data) for g in decoder.feed(stream[at:at + 7]))
        assert decoder.buffered <= 6 + 200 + 6
    assert skipped == len(stream)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=64))
def test_any_bytes_any_chunking_never_raise_and_stay_bounded(data, size):
    decoder = FrameDecoder(max_segment=256)
    for at in range(0, len(data), size):
        for event in decoder.feed(data[at:at + size]):
            assert isinstance(event, (Frame, Garbage))
        assert decoder.buffered <= 6 + 256 + 6


SEGMENT_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="#\r\n"), max_size=300
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=20).map(lambda b: b.replace(b"#", b"")), SEGMENT_TEXT), max_size=6),
    st.integers(min_value=1, max_value=50),
)
def test_frames_survive_junk_and_chunking(items, size):
    stream = b"".join(junk + encode_frame(text) for junk, text in items)
    decoded = frames(feed_in_chunks(FrameDecoder(), stream, size))
    assert [f.segment for f in decoded] == [text.encode("utf-8") for _, text in items]
    assert all(f.crc_ok and f.length_ok for f in decoded)
