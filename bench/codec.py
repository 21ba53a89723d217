"""HJ 212 codec speed on one core: frames decoded + CRC-checked + parsed per second, and each stage alone.

The frame is a realistic 2011 upload of 10 factors (Rtd + Flag each, about 440
bytes). Each figure is the best of several rounds (the machines are noisy), and
the stages are also given as a share of the whole, which is steadier than the
absolute rate.

    python bench/codec.py [--frames 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest_twisted.hj212 import replies  # noqa: E402
from ingest_twisted.hj212.crc import hj212_crc  # noqa: E402
from ingest_twisted.hj212.frame import FrameDecoder  # noqa: E402
from ingest_twisted.hj212.packet import parse_segment  # noqa: E402
from loadgen import build_frames  # noqa: E402
from report import write_section  # noqa: E402


def best(rounds: int, work) -> float:
    """Fastest wall time of `rounds` runs of `work()`."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def each(function, items) -> None:
    """Call `function` on every item, keeping no result (as the server does; kept results would time the GC)."""
    for item in items:
        function(item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()

    frames = [f for _, f in build_frames("010000A8900016F000169DC0", "100000", args.frames,
                                          datetime(2026, 1, 1), datetime(2026, 1, 1))]
    stream = b"".join(frames)
    chunks = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]
    decoded = [event for chunk in chunks for event in FrameDecoder().feed(chunk)]
    segments = [event.segment for event in FrameDecoder().feed(stream)]
    packets = [parse_segment(s) for s in segments]
    assert len(segments) == args.frames and all(e.crc_ok for e in decoded[:10])

    def decode_all() -> None:
        decoder = FrameDecoder()
        for chunk in chunks:
            decoder.feed(chunk)

    def full() -> None:
        decoder = FrameDecoder()
        for chunk in chunks:
            for event in decoder.feed(chunk):
                parse_segment(event.segment)

    n = args.frames
    t_full = best(args.rounds, full)
    t_decode = best(args.rounds, decode_all)
    t_crc = best(args.rounds, lambda: each(hj212_crc, segments))
    t_parse = best(args.rounds, lambda: each(parse_segment, segments))
    t_ack = best(args.rounds, lambda: each(replies.data_ack_frame, packets))
    size = len(frames[0])
    rows = [
        ("decode + CRC + parse (what the server does per upload)", t_full),
        ("framing + CRC (FrameDecoder.feed)", t_decode),
        ("CRC alone", t_crc),
        ("parse alone (parse_segment)", t_parse),
        ("9014 acknowledgement frame", t_ack),
    ]
    lines = [f"| {name} | {n / t:,.0f} frames/s | {t / n * 1e6:.1f} µs | {t / t_full:.0%} |" for name, t in rows]
    for line in lines:
        print(line)
    if not args.no_report:
        write_section("Codec", f"""\
`python bench/codec.py --frames {n} --rounds {args.rounds}`: one core, a {size}-byte 2011 frame of 10 factors,
best of {args.rounds} rounds.

| stage | rate | per frame | share of decode + CRC + parse |
|---|---|---|---|
""" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
