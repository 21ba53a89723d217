"""Split uploads merge by MN + CN + DataTime, tolerate repeats and losses, and stay bounded."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest_twisted.hj212.frame import FrameDecoder, encode_frame
from ingest_twisted.hj212.packet import CP, Packet, build_segment, parse_segment
from ingest_twisted.hj212.reassembly import Reassembler

MN = "010000A8900016F000169DC0"


def fragment(pno: int, pnum: int, factors: dict, data_time: str = "20260101080000", mn: str = MN,
             cn: str = "2051") -> Packet:
    return Packet(qn=f"2026010108000{pno:04d}", st="32", cn=cn, pw="123456", mn=mn, flag=7, pnum=pnum, pno=pno,
                  cp=CP(data_time=data_time, factors=factors))


def test_fragments_with_their_own_qn_merge_when_all_arrived():
    reassembler = Reassembler(timeout=60)
    parts = [fragment(1, 3, {"w01018": {"Avg": "1"}}), fragment(2, 3, {"w21003": {"Avg": "2"}}),
             fragment(3, 3, {"w21011": {"Avg": "3"}, "w01018": {"Flag": "N"}})]
    assert reassembler.add(parts[0], 0) is None
    assert reassembler.add(parts[1], 1) is None
    merged = reassembler.add(parts[2], 2)
    assert merged is not None and len(reassembler) == 0
    assert merged.cp == CP(data_time="20260101080000", factors={
        "w01018": {"Avg": "1", "Flag": "N"}, "w21003": {"Avg": "2"}, "w21011": {"Avg": "3"}})
    assert (merged.qn, merged.pnum, merged.pno, merged.flag) == (parts[0].qn, None, None, 5)
    assert not merged.split and merged.ack_required
    assert [p.qn for p in merged.fragments] == [p.qn for p in parts]
    assert parts[0].cp.factors == {"w01018": {"Avg": "1"}}  # fragments are not modified


def test_out_of_order_and_repeated_fragments():
    reassembler = Reassembler(timeout=60)
    first, second = fragment(1, 2, {"a": {"Rtd": "1"}}), fragment(2, 2, {"b": {"Rtd": "2"}})
    assert reassembler.add(second, 0) is None
    assert reassembler.add(second, 1) is None
    merged = reassembler.add(first, 2)
    assert merged is not None and set(merged.cp.factors) == {"a", "b"} and len(merged.fragments) == 2
    assert reassembler.expire(1000) == []


def test_sets_are_keyed_by_mn_cn_and_data_time():
    reassembler = Reassembler(timeout=60)
    assert reassembler.add(fragment(1, 2, {"a": {"Rtd": "1"}}), 0) is None
    assert reassembler.add(fragment(2, 2, {"b": {"Rtd": "1"}}, data_time="20260101080100"), 0) is None
    assert reassembler.add(fragment(2, 2, {"b": {"Rtd": "1"}}, mn="other"), 0) is None
    assert reassembler.add(fragment(2, 2, {"b": {"Rtd": "1"}}, cn="2061"), 0) is None
    assert len(reassembler) == 4
    assert reassembler.add(fragment(2, 2, {"b": {"Rtd": "1"}}), 0) is not None


def test_packets_that_are_not_split_pass_through():
    packet = Packet(qn="1", st="32", cn="2011", pw="p", mn=MN, flag=5)
    assert Reassembler(timeout=1).add(packet, 0) is packet


def test_incomplete_sets_expire_merged():
    reassembler = Reassembler(timeout=30)
    reassembler.add(fragment(1, 3, {"a": {"Rtd": "1"}}), 100)
    reassembler.add(fragment(3, 3, {"c": {"Rtd": "3"}}), 110)
    assert reassembler.expire(129) == []
    [merged] = reassembler.expire(130)
    assert set(merged.cp.factors) == {"a", "c"}
    assert (merged.pnum, merged.pno, len(merged.fragments)) == (3, None, 2)
    assert len(reassembler) == 0 and reassembler.expire(1000) == []


def test_the_oldest_set_is_evicted_not_lost():
    reassembler = Reassembler(timeout=3600, max_open=2)
    for minute in range(3):
        reassembler.add(fragment(1, 2, {"a": {"Rtd": str(minute)}}, data_time=f"2026010108{minute:02d}00"), minute)
    assert len(reassembler) == 2
    [evicted] = reassembler.expire(3)
    assert evicted.cp.data_time == "20260101080000" and evicted.cp.factors == {"a": {"Rtd": "0"}}
    assert reassembler.expire(4) == []


def test_split_upload_end_to_end():
    """A device splits one record over frames; the platform decodes and merges it back."""
    factors = {f"w{index:05d}": {"Rtd": f"{index}.5", "Flag": "N"} for index in range(30)}
    codes = list(factors)
    chunks = [codes[:12], codes[12:24], codes[24:]]
    stream = b"".join(
        encode_frame(build_segment(fragment(pno, 3, {c: factors[c] for c in chunk}, cn="2011")))
        for pno, chunk in enumerate(chunks, 1)
    )
    reassembler = Reassembler(timeout=60)
    results = [reassembler.add(parse_segment(frame.segment), 0) for frame in FrameDecoder().feed(stream)]
    assert results[:2] == [None, None]
    assert results[2].cp.factors == factors


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.from_regex(r"[aw][0-9]{5}", fullmatch=True), st.just({"Avg": "1"}), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=8),
    st.randoms(use_true_random=False),
)
def test_any_split_and_order_merges_back(factors, pieces, rnd: random.Random):
    codes = list(factors)
    pnum = min(pieces, len(codes))
    parts = [fragment(pno + 1, pnum, {c: factors[c] for c in codes[pno::pnum]}) for pno in range(pnum)]
    arrivals = parts + rnd.sample(parts, k=rnd.randint(0, pnum))  # with repeats
    rnd.shuffle(arrivals)
    reassembler = Reassembler(timeout=60)
    merged = [m for m in (reassembler.add(p, 0) for p in arrivals) if m is not None]
    leftovers = reassembler.expire(60)
    assert sum(len(m.fragments) for m in merged) >= pnum
    assert merged[0].cp.factors == factors
    # repeats arriving after completion open a new set that expires: still no data lost
    assert all(set(m.cp.factors) <= set(factors) for m in leftovers)
