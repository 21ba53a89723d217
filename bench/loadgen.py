"""HJ 212 load generator: many device connections from one process, pipelined uploads with A=1.

Frames are built before the clock starts (each device's DataTime advances one
second per record, so every record is a distinct point), then sent over
non-blocking sockets with at most `window` unacknowledged uploads per
connection, at a target rate or as fast as the server acknowledges. Prints one
JSON object: packets sent and acknowledged, elapsed seconds, ack latency
percentiles (from each upload's send time to its 9014) of the uploads sent after
the first `--warmup` seconds, and of all uploads (`_all`): the first seconds
carry the server's first contact with every device (authentication, session,
conversion plan), which is a reconnect storm, not the steady state.

    python bench/loadgen.py --port 9212 --devices devices.json --seconds 20 [--rate 5000]
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import struct
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest_twisted.hj212.frame import encode_frame  # noqa: E402
from ingest_twisted.hj212.packet import CP, Packet, build_segment  # noqa: E402

#: Linux SO_TIMESTAMPNS (asm-generic value; Python's socket module does not name it).
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")

FACTORS = ("i33200", "i33201", "i33202", "i33203", "i33210", "i33211", "i33212", "i33220", "i33230", "i33240")


def build_frames(mn: str, pw: str, count: int, start: datetime, qn_base: datetime) -> list[tuple[bytes, bytes]]:
    """(QN, frame) for `count` 2011 uploads of 10 factors."""
    frames = []
    for i in range(count):
        moment = start + timedelta(seconds=i)
        qn_moment = qn_base + timedelta(milliseconds=i)
        qn = qn_moment.strftime("%Y%m%d%H%M%S") + f"{qn_moment.microsecond // 1000:03d}"
        factors = {code: {"Rtd": f"{(i * 7 + n) % 997 / 10:.1f}", "Flag": "N"} for n, code in enumerate(FACTORS)}
        packet = Packet(qn=qn, st="32", cn="2011", pw=pw, mn=mn, flag=5,
                        cp=CP(data_time=moment.strftime("%Y%m%d%H%M%S"), factors=factors))
        frames.append((qn.encode(), encode_frame(build_segment(packet))))
    return frames


class Connection:
    def __init__(self, host: str, port: int, frames: list[tuple[bytes, bytes]], window: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.frames = frames
        self.window = window
        self.next = 0
        self.in_flight: dict[bytes, float] = {}  # QN -> wall-clock time its send() began
        self.unsent: list[bytes] = []  # QNs in `out` whose send() has not begun
        self.out = bytearray()
        self.inbuf = b""
        self.acked = 0

    def can_send(self) -> bool:
        return self.next < len(self.frames) and len(self.in_flight) < self.window

    def queue_one(self) -> None:
        qn, frame = self.frames[self.next]
        self.next += 1
        self.in_flight[qn] = 0.0
        self.unsent.append(qn)
        self.out += frame

    def flush(self) -> bool:
        """Send what the socket takes; True if output is left over.

        An upload's latency starts here, just before the send() that hands it to the kernel, in wall-clock time as
        the kernel's receive timestamps are: time this process spent before getting to it (its turn on a core,
        the sends to other connections) is the load generator's, not the server's.
        """
        if self.unsent:
            now = time.time()
            for qn in self.unsent:
                self.in_flight[qn] = now
            self.unsent.clear()
        if self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return True
            del self.out[:sent]
        return bool(self.out)

    def read(self, latencies: list[tuple[float, float]]) -> None:
        """Take the 9014s that arrived; ``latencies`` gets (send time, seconds to the 9014) of each."""
        try:
            data, ancillary, _, _ = self.sock.recvmsg(262144, socket.CMSG_SPACE(_TIMESPEC.size))
        except BlockingIOError:
            return
        now = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                now = seconds + nanoseconds / 1e9
        if not data:
            raise ConnectionError("server closed the connection")
        buf = self.inbuf + data
        end = buf.rfind(b"\r\n")
        if end < 0:
            self.inbuf = buf
            return
        complete, self.inbuf = buf[: end + 2], buf[end + 2:]
        position = complete.find(b"QN=")
        while position >= 0:
            qn = complete[position + 3: position + 20]
            sent_at = self.in_flight.pop(qn, None)
            if sent_at is not None:
                self.acked += 1
                latencies.append((sent_at, now - sent_at))
            position = complete.find(b"QN=", position + 20)


def run(args: argparse.Namespace) -> dict:
    devices = json.loads(Path(args.devices).read_text())[args.offset: args.offset + args.connections]
    per_device = int(args.seconds * (args.rate or args.max_rate) / len(devices)) + args.window
    start = datetime(2026, 1, 1) + timedelta(days=args.offset + args.start_day)
    qn_base = datetime.now().replace(microsecond=0)
    frame_sets = [build_frames(d["mn"], d["pw"], per_device, start, qn_base) for d in devices]
    connections = [Connection(args.host, args.port, frames, args.window) for frames in frame_sets]
    selector = selectors.DefaultSelector()
    for connection in connections:
        selector.register(connection.sock, selectors.EVENT_READ, connection)
    latencies: list[tuple[float, float]] = []
    dirty: set[Connection] = set()
    sent = 0
    began = time.monotonic()
    steady_from = time.time() + args.warmup
    cpu_began = time.process_time()
    deadline = began + args.seconds
    turn = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        allowed = int((now - began) * args.rate) - sent if args.rate else 1 << 30
        while allowed > 0:
            progressed = False
            for _ in range(len(connections)):
                connection = connections[turn % len(connections)]
                turn += 1
                if connection.can_send():
                    connection.queue_one()
                    dirty.add(connection)
                    sent += 1
                    allowed -= 1
                    progressed = True
                    if allowed <= 0:
                        break
            if not progressed:
                break
        dirty = {connection for connection in dirty if connection.flush()}
        for key, _ in selector.select(timeout=0.002):
            key.data.read(latencies)
    elapsed = time.monotonic() - began
    cpu_cores = (time.process_time() - cpu_began) / elapsed
    # Collect the acknowledgements still in flight (they count for latency, not for the rate).
    acked_in_time = sum(c.acked for c in connections)
    settle = time.monotonic() + 10
    while any(c.in_flight for c in connections) and time.monotonic() < settle:
        for connection in connections:
            connection.flush()
        for key, _ in selector.select(timeout=0.05):
            key.data.read(latencies)
    everything = sorted(latency for _, latency in latencies)
    steady = sorted(latency for sent_at, latency in latencies if sent_at >= steady_from)

    def percentile(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else float("nan")

    return {
        "connections": len(connections),
        "sent": sent,
        "acked": sum(c.acked for c in connections),
        "acked_in_time": acked_in_time,
        "seconds": elapsed,
        "warmup_seconds": args.warmup,
        "ack_p50_ms": percentile(steady, 0.50),
        "ack_p99_ms": percentile(steady, 0.99),
        "ack_max_ms": percentile(steady, 1.0),
        "ack_p99_all_ms": percentile(everything, 0.99),
        "ack_max_all_ms": percentile(everything, 1.0),
        "cpu_cores": cpu_cores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", required=True, help="JSON list of {mn, pw}")
    parser.add_argument("--offset", type=int, default=0, help="first device of the list to play")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=0.0, help="packets/s target; 0: as fast as acknowledged")
    parser.add_argument("--max-rate", type=float, default=30000.0, help="frames to pre-build per second when --rate 0")
    parser.add_argument("--start-day", type=int, default=0,
                        help="days after 2026-01-01 where DataTimes start (another run's records stay distinct)")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds at the start whose uploads count for the rate but not for the latency figures")
    parser.add_argument("--window", type=int, default=50, help="unacknowledged uploads per connection")
    print(json.dumps(run(parser.parse_args())), flush=True)


if __name__ == "__main__":
    main()
