"""Memory of one `gkjk serve` worker holding many concurrent device connections.

Opens `--connections` TCP connections to one worker (each a different
registered device that authenticates with one acknowledged 2011 upload, so
every connection has a full device session), holds them, and reads the
worker's resident memory from /proc. The baseline is the same worker's RSS
with the registry loaded and no connection.

    python bench/connections.py [--connections 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import socket
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from gkjk_process import ServerProcess  # noqa: E402
from gkjk.influxd import InfluxServer  # noqa: E402
from loadgen import build_frames  # noqa: E402
from report import write_section  # noqa: E402
from throughput import write_registry  # noqa: E402


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def hold(port: int, devices: list[dict], timeout: float = 300.0) -> list[socket.socket]:
    """Connect every device and wait for its first 9014; returns the open sockets."""
    selector = selectors.DefaultSelector()
    sockets = []
    pending = {}
    for device in devices:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        [(qn, frame)] = build_frames(device["mn"], device["pw"], 1, datetime(2026, 2, 1), datetime.now())
        pending[sock] = frame
        selector.register(sock, selectors.EVENT_WRITE)
        sockets.append(sock)
    acked = 0
    deadline = time.monotonic() + timeout
    while acked < len(devices) and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1.0):
            sock = key.fileobj
            if events & selectors.EVENT_WRITE:
                sock.send(pending.pop(sock))
                selector.modify(sock, selectors.EVENT_READ)
            elif sock.recv(4096):
                acked += 1
                selector.unregister(sock)
    if acked < len(devices):
        raise RuntimeError(f"only {acked} of {len(devices)} connections were acknowledged")
    return sockets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        sys.exit(f"the open-file limit ({hard}) is too low for {args.connections} connections")

    with tempfile.TemporaryDirectory(prefix="gkjk-bench-") as tmp, InfluxServer(Path(tmp) / "influx") as influx:
        tmp = Path(tmp)
        devices = write_registry(tmp / "registry", args.connections)
        server = ServerProcess(
            tmp / "server", influx.url, "bench", registry=tmp / "registry",
            ingest={"max_connections_per_ip": 100000, "max_connections": args.connections + 100},
            backfill={"enabled": False},
        )
        server.start(timeout=120)
        try:
            time.sleep(2)
            baseline, _ = rss_mib(server.process.pid)
            started = time.monotonic()
            sockets = hold(server.port, devices)
            connected_in = time.monotonic() - started
            time.sleep(5)
            status = json.loads((server.spool / "status-0.json").read_text())
            held, peak = rss_mib(server.process.pid)
            for sock in sockets:
                sock.close()
        finally:
            server.stop()

    per_connection_kib = (held - baseline) * 1024 / args.connections
    print(f"{args.connections} connections ({status['devices_online']} devices online) in {connected_in:.1f} s;"
          f" worker RSS {baseline:.0f} MiB idle -> {held:.0f} MiB held (peak {peak:.0f} MiB),"
          f" {per_connection_kib:.1f} KiB per connection")
    if not args.no_report:
        write_section("Concurrent connections", f"""\
`python bench/connections.py --connections {args.connections}`: one worker process, every connection
a registered device that authenticated with one acknowledged upload and stays connected.

| figure | value |
|---|---|
| connections held (devices online per the worker) | {args.connections:,} ({status['devices_online']:,}) |
| time to connect and acknowledge all | {connected_in:.1f} s |
| worker RSS, registry loaded, no connection | {baseline:.0f} MiB |
| worker RSS holding all connections (peak) | {held:.0f} MiB ({peak:.0f} MiB) |
| memory per connection | {per_connection_kib:.1f} KiB |
| target | under 1024 MiB |
""")


if __name__ == "__main__":
    main()
