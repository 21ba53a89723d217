"""Failure tests: what the platform acknowledged survives InfluxDB outages and crashes, and garbage harms nobody."""

from __future__ import annotations

import random
import socket
import threading
import time
from datetime import datetime, timedelta

from gkjk_process import COATING_MN, COATING_PW, Logger, ResendingLogger, ServerProcess
from ingest_twisted.hj212.frame import encode_frame
from ingest_twisted.hj212.packet import build_segment

BASE = datetime(2026, 11, 1, 0, 0, 0)


def stored_times(influx, db: str, mn: str) -> list[str]:
    result = influx.query(f"SELECT \"i33200-Rtd\" FROM rtd WHERE mn = '{mn}' AND fac = 'P1'", db=db)["results"][0]
    return [row[0] for series in result.get("series", []) for row in series["values"]]


def utc_of(data_time: str) -> str:
    local = datetime.strptime(data_time, "%Y%m%d%H%M%S")
    return (local - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_acked_stored_exactly_once(influx, db: str, devices: list[ResendingLogger]) -> None:
    for device in devices:
        expected = {utc_of(device.sent_times[qn]) for qn in device.acked}
        deadline = time.monotonic() + 60
        while True:
            times = stored_times(influx, db, device.mn)
            if expected <= set(times) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(times) == len(set(times)), "a record is stored twice"
        missing = expected - set(times)
        assert not missing, f"{len(missing)} acknowledged records of {device.mn} are not in InfluxDB"
        sent = {utc_of(t) for t in device.sent_times.values()}
        assert set(times) <= sent


def play(devices: list[ResendingLogger], records: int, during=None, at: int | None = None) -> None:
    """Each device uploads `records` records (one second of DataTime apart); `during()` runs at record `at`."""
    for i in range(records):
        if during is not None and i == at:
            during()
        for device in devices:
            device.upload(BASE + timedelta(seconds=i), {"i33200": {"Rtd": f"{i}.5", "Flag": "N"}})
        if i % 50 == 49:
            for device in devices:
                device.collect()
    for device in devices:
        device.drain()


def test_influxdb_outage_under_load_loses_nothing(tmp_path, influx_db):
    influx, db = influx_db
    with ServerProcess(tmp_path / "s", influx.url, db, spool={"flush_interval": 0.05}) as server:
        device = ResendingLogger(server.port)
        restart = threading.Timer(3.0, influx.start)

        def outage():
            influx.stop()
            restart.start()

        play([device], 3000, during=outage, at=500)
        restart.join()
        assert len(device.acked) == 3000
        assert_acked_stored_exactly_once(influx, db, [device])


def test_kill_9_of_the_server_under_load_loses_nothing(tmp_path, influx_db):
    influx, db = influx_db
    server = ServerProcess(tmp_path / "s", influx.url, db, spool={"flush_interval": 0.05})
    server.start()
    try:
        device = ResendingLogger(server.port)

        def crash_and_restart():
            server.stop(kill=True)
            server.start()

        play([device], 3000, during=crash_and_restart, at=1200)
        assert device.reconnects >= 2
        assert_acked_stored_exactly_once(influx, db, [device])
    finally:
        server.stop()


def mutate(frame: bytes, rng: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.randrange(5)
        position = rng.randrange(len(data)) if data else 0
        if choice == 0 and data:
            data[position] ^= 1 << rng.randrange(8)
        elif choice == 1:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif choice == 2 and data:
            del data[position:position + rng.randrange(1, 16)]
        elif choice == 3:
            data[position:position] = rng.choice([b"##", b"\r\n", b"&&", b";", b"=", b",", b"##9999", b"\xe4\xb8"])
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)


def test_fuzzed_frames_leave_the_server_serving_other_devices(tmp_path, influx_db):
    influx, db = influx_db
    rng = random.Random(212)
    with ServerProcess(tmp_path / "s", influx.url, db, ingest={"max_auth_failures": 1_000_000}) as server:
        template = Logger(server.port)
        seeds = [
            template.packet(cn, BASE, {"i33200": {"Rtd": "1.5", "Flag": "N"}, "g10201": {"Avg": "2", "Max": "3"}})
            for cn in ("2011", "2051", "2061", "9015", "1013", "3020")
        ]
        frames = [encode_frame(build_segment(p)) for p in seeds]
        template.close()

        fuzzed = 0
        stop = threading.Event()

        def fuzz():
            nonlocal fuzzed
            sock = socket.create_connection(("127.0.0.1", server.port))
            while fuzzed < 100_000 and not stop.is_set():
                burst = b"".join(mutate(rng.choice(frames), rng) for _ in range(100))
                try:
                    sock.sendall(burst)
                except OSError:
                    sock = socket.create_connection(("127.0.0.1", server.port))
                    continue
                fuzzed += 100
            sock.close()

        fuzzer = threading.Thread(target=fuzz)
        fuzzer.start()
        good = Logger(server.port, COATING_MN, COATING_PW)
        sent = []
        try:
            while fuzzer.is_alive():
                packet = good.send(good.packet("2011", BASE + timedelta(seconds=len(sent)), {"a01012": {"Rtd": "800"}}))
                sent.append(packet.qn)
                assert [a.qn for a in good.read(1, timeout=10)] == [packet.qn]
        finally:
            stop.set()
            fuzzer.join()
        assert fuzzed >= 100_000
        assert server.process.poll() is None
        assert len(sent) > 10
