"""The data-logger emulator end to end: Modbus simulator -> `gkjk logger` process -> `gkjk serve` -> InfluxDB.

The Modbus simulator runs in a thread on its own asyncio loop and is stepped once, so the registers hold fixed
values the tests compare with. The logger runs as the real `gkjk logger` process on a compressed clock; a TCP
proxy in front of the platform plays the outage and records what crosses the wire.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gkjk.influxd import free_port
from gkjk.registry import load_registry
from ingest_twisted.field.logger import decimal_text, float32_value
from ingest_twisted.field.modbus_sim import Gateway, SiteSimulator
from ingest_twisted.field.registers import BYTE_ORDERS, float32_words
from ingest_twisted.field.scenario import Scenario
from ingest_twisted.field.store import UploadQueue
from ingest_twisted.hj212 import replies, sm4
from ingest_twisted.hj212.frame import Frame, FrameDecoder, encode_frame
from ingest_twisted.hj212.packet import CP, Packet, build_segment, flag_for, make_qn, parse_segment
from gkjk_process import COATING_MN, ROOT, TEST_REGISTRY, ServerProcess

SITE = ROOT / "tests" / "data" / "field" / "site.yaml"
ENT = "91320682MA1FLD000G"
MN = "0A0000A8900016F0001F1E01"
START = datetime(2024, 5, 6, 9, 0)  # production runs: every current and power point reads well above 0
UTC_START = START - timedelta(hours=8)  # DataTime is Beijing time


def float32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


class Site:
    """`SiteSimulator` in a thread with its own event loop, stepped once: its registers hold still."""

    def __init__(self, registry: Path = SITE, enterprise: str = ENT, mn: str = MN,
                 registry_ports: bool = False) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        scenario = Scenario(start=START, shifts=((8.0, 12.0), (13.0, 17.0)))
        self.simulator = SiteSimulator(load_registry(registry), enterprise, scenario, registry_ports=registry_ports)
        self.run(self.simulator.step(START))
        self.gateway: Gateway = next(g for g in self.simulator.gateways if g.device.mn == mn)

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def close(self) -> None:
        self.run(self.simulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class LoggerProcess:
    """`gkjk logger` in a subprocess."""

    def __init__(self, workdir: Path, modbus_port: int | None, platforms: list[int], *options: str,
                 registry: Path = SITE, mn: str = MN) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.store = workdir / "store"
        self.log = workdir / "logger.log"
        command = [sys.executable, "-m", "gkjk.cli", "logger", "--registry", str(registry), "--mn", mn,
                   "--store", str(self.store), "--start", START.isoformat(), *options]
        if modbus_port is not None:  # else the registry's modbus block says where the gateway is
            command += ["--modbus", f"127.0.0.1:{modbus_port}"]
        for port in platforms:
            command += ["--platform", f"127.0.0.1:{port}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=ROOT, env=env)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def queue(self, port: int) -> UploadQueue:
        """The logger's queue for a platform, as the file on disk holds it (read after `stop`)."""
        queue = UploadQueue(self.store / f"127.0.0.1_{port}" / "queue.log")
        queue.close()
        return queue


class Proxy:
    """A TCP proxy to the platform that can go down (refusing connections) and logs every packet it forwards."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.uploads: list[tuple[int, str, str]] = []  # (connection number, CN, DataTime)
        self.sent: list[tuple[Packet, int]] = []  # every packet to the platform, with its data segment's length
        self.answers: list[Packet] = []  # every packet from the platform
        self._connections = 0
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not (Linux)
            listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the platform is gone (end of a test): so is this connection
                client.close()
                continue
            with self._lock:
                self._connections += 1
                number = self._connections
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, number), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, number: int | None) -> None:
        decoder = FrameDecoder()
        try:
            while data := source.recv(65536):
                for event in decoder.feed(data):
                    if not isinstance(event, Frame):
                        continue
                    packet = parse_segment(event.segment)
                    if number is None:
                        self.answers.append(packet)
                    else:
                        self.uploads.append((number, packet.cn, packet.cp.data_time or ""))
                        self.sent.append((packet, len(event.segment)))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class FakePlatform:
    """A platform played by the test: one accepted connection, every packet the logger sends, commands to send."""

    def __init__(self, key: str | None = None, port: int = 0) -> None:
        self.key = key
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.packets: list[Packet] = []
        self.everything: list[Packet] = []  # never cleared
        self.sock: socket.socket | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            self.sock, _ = self.listener.accept()
            decoder = FrameDecoder()
            while data := self.sock.recv(65536):
                for event in decoder.feed(data):
                    if isinstance(event, Frame):
                        segment = sm4.decrypt_frame(event, self.key)[0] if self.key else event.segment
                        packet = parse_segment(segment)
                        self.packets.append(packet)
                        self.everything.append(packet)
                        if packet.ack_required:
                            self.sock.sendall(replies.data_ack_frame(packet))
        except OSError:  # closed by the test
            return

    def send(self, packet: Packet) -> None:
        self.sock.sendall(encode_frame(build_segment(packet)))

    def wait(self, condition, what: str, timeout: float = 15.0) -> list[Packet]:
        """The packets received so far once `condition(packets)` holds."""
        wait_for(lambda: condition(list(self.packets)), timeout, what)
        return list(self.packets)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.listener.close()


def command(cn: str, version: str = "2017", **params: str) -> Packet:
    return Packet(qn=make_qn(datetime.now()), st="32", cn=cn, pw="123456", mn=MN,
                  flag=flag_for(version, ack=True), cp=CP(params=params))


def rows(influx, db: str, query: str) -> list[dict]:
    result = influx.query(query, db=db)["results"][0]
    return [dict(zip(s["columns"], v)) for s in result.get("series", []) for v in s["values"]]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def rtd_count(influx, db: str) -> int:
    found = rows(influx, db, f"SELECT COUNT(\"i33200-Rtd\") FROM rtd WHERE mn = '{MN}'")
    return found[0]["count"] if found else 0


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


@pytest.fixture
def logger_processes() -> Iterator[list[LoggerProcess]]:
    started: list[LoggerProcess] = []
    yield started
    for process in started:
        process.stop()


# --- codec helpers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
def test_float32_value_inverts_the_simulators_encoding(byte_order: str) -> None:
    for value in (0.0, 1.0, -2.5, 512.53, 1e-5, 123456.789):
        assert float32_value(list(float32_words(value, byte_order)), byte_order) == float32(value)


def test_decimal_text_is_plain_and_exact_in_float32() -> None:
    for value in (float32(512.53), float32(1e-5), float32(0.1), 0.0, float32(98765.4321)):
        text = decimal_text(value)
        assert "e" not in text.lower()
        assert float32(float(text)) == value


def test_queue_survives_a_restart_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "queue.log"
    queue = UploadQueue(path, limit=3)
    for n in range(5):
        queue.append(f"qn{n}", b"##frame%d\r\n" % n)
    queue.remove("qn3")
    queue.close()
    with open(path, "ab") as torn:
        torn.write(b"+ qn9 ##half")
    again = UploadQueue(path, limit=3)
    assert list(again.records) == ["qn2", "qn4"] and again.records["qn4"] == b"##frame4\r\n"
    again.append("qn5", b"##frame5\r\n")  # does not continue the torn line
    again.close()
    final = UploadQueue(path, limit=3)
    assert list(final.records) == ["qn2", "qn4", "qn5"]
    final.close()


# --- end to end -----------------------------------------------------------------------------------------------------


def test_stored_values_equal_what_the_instruments_served(tmp_path, influx_db, site, logger_processes) -> None:
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, registry=SITE, spool={"flush_interval": 0.05}) as server:
        # 10 s records at 600x: the 10-minute windows close every second, so 2051 arrives too.
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [server.port],
                                              "--rtd-interval", "10", "--speed", "600"))
        wait_for(lambda: rows(influx, db, f"SELECT * FROM minute WHERE mn = '{MN}' AND fac = 'P1'"), 30,
                 "a minute record")
        expected = {b.point.factor: float(site.gateway.values[b.point.factor] >= 0.5)
                    if b.register.table == "discrete" else float32(site.gateway.values[b.point.factor])
                    for i in site.gateway.instruments for b in i.bindings}
        assert len(expected) == 12  # every point but carbon hours, which no instrument measures
        records = rows(influx, db, f"SELECT * FROM rtd WHERE mn = '{MN}'")
        seen: dict[str, list[float]] = {}
        for record in records:
            for key, value in record.items():
                if key.endswith("-Rtd") and value is not None:
                    seen.setdefault(key[:-4], []).append(value)
        assert set(seen) == set(expected) | {"g10401"}  # and the carbon hours the logger counts itself
        del seen["g10401"]
        for factor, values in seen.items():
            # The logger sends the shortest decimal of the float32 it read: equal within float32 precision.
            assert all(float32(value) == expected[factor] for value in values), (factor, values[:3])
        first = rows(influx, db, f"SELECT * FROM rtd WHERE mn = '{MN}' AND fac = 'P1' ORDER BY time LIMIT 1")[0]
        assert first["time"] == UTC_START.strftime("%Y-%m-%dT%H:%M:%SZ")
        minute = rows(influx, db, f"SELECT * FROM minute WHERE mn = '{MN}' AND fac = 'P1' LIMIT 1")[0]
        assert minute["time"] == UTC_START.strftime("%Y-%m-%dT%H:%M:%SZ")
        for suffix in ("Avg", "Min", "Max"):
            assert abs(minute[f"i33200-{suffix}"] - expected["i33200"]) <= 0.0005
        assert minute["i33200-Flag"] == "N"


def test_outage_replays_every_record_in_order_exactly_once(tmp_path, influx_db, site, logger_processes) -> None:
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, registry=SITE, spool={"flush_interval": 0.05}) as server:
        proxy = Proxy(server.port)
        proxy.up()
        logger = LoggerProcess(tmp_path, site.gateway.port, [proxy.port], "--rtd-interval", "1", "--speed", "500",
                               "--retry-max", "1")
        logger_processes.append(logger)
        wait_for(lambda: rtd_count(influx, db) > 100, 30, "records before the outage")
        proxy.down()
        time.sleep(1)  # what the platform had received is written
        before = rtd_count(influx, db)
        time.sleep(9)  # about 5,000 simulated seconds: 5,000 records pile up in the logger's queue
        assert rtd_count(influx, db) == before
        proxy.up()
        wait_for(lambda: len({n for n, _, _ in proxy.uploads}) >= 2, 30, "the reconnect")
        time.sleep(2)
        site.run(site.gateway.stop())  # no more records (only the power-loss event): let the acks catch up
        time.sleep(2)
        logger.stop()
        sent = sorted({t for _, cn, t in proxy.uploads if cn == "2011"})
        wait_for(lambda: rtd_count(influx, db) == len(sent), 60, f"{len(sent)} records in InfluxDB")

        # Every record the logger made is there once: one point per simulated second, from START on, no gap.
        times = [r["time"] for r in rows(influx, db, f"SELECT \"i33200-Rtd\" FROM rtd WHERE mn = '{MN}'")]
        expected = [(UTC_START + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ") for n in range(len(times))]
        assert times == expected
        assert sent[0] == START.strftime("%Y%m%d%H%M%S") and len(sent) == len(times)

        # The reconnect replayed the whole backlog in order, then the new records.
        last_connection = max(n for n, _, _ in proxy.uploads)
        replay = [t for n, cn, t in proxy.uploads if n == last_connection and cn == "2011"]
        assert len(replay) > 4000
        assert replay == sorted(replay) and len(set(replay)) == len(replay)
        assert len(logger.queue(proxy.port)) == 0  # every record was acknowledged and removed


def test_a_down_platform_does_not_hold_up_the_others(tmp_path, influx_db, site, logger_processes) -> None:
    influx, db = influx_db
    other = db + "_2"
    influx.query(f'CREATE DATABASE "{other}"')
    dead = free_port()
    try:
        with ServerProcess(tmp_path / "one", influx.url, db, registry=SITE, spool={"flush_interval": 0.05}) as one, \
                ServerProcess(tmp_path / "two", influx.url, other, registry=SITE,
                              spool={"flush_interval": 0.05}) as two:
            logger = LoggerProcess(tmp_path, site.gateway.port, [dead, one.port, two.port],
                                   "--rtd-interval", "1", "--speed", "10", "--retry-max", "1")
            logger_processes.append(logger)
            began = time.monotonic()
            wait_for(lambda: rtd_count(influx, db) >= 30 and rtd_count(influx, other) >= 30, 15,
                     "30 records on each live platform")
            # 30 simulated seconds take 3 real seconds: allow the start-up, not a reconnect back-off.
            assert time.monotonic() - began < 8
            # The third platform comes up: it gets its backlog, in order, then the new records.
            late = FakePlatform(port=dead)
            try:
                def received(ps: list[Packet]) -> list[str]:
                    return [p.cp.data_time for p in ps if p.cn == "2011"]

                live = rtd_count(influx, db)
                got = received(late.wait(lambda ps: len(received(ps)) > live, "the backlog on the third platform"))
                assert got == sorted(got) and len(set(got)) == len(got) and got[0] == START.strftime("%Y%m%d%H%M%S")
            finally:
                late.close()
            logger.stop()
            wait_for(lambda: rtd_count(influx, db) == rtd_count(influx, other), 10, "both platforms complete")
            # The live platforms acknowledged all but what was in flight when the logger stopped.
            assert len(logger.queue(one.port)) <= 2 and len(logger.queue(two.port)) <= 2
    finally:
        influx.query(f'DROP DATABASE "{other}"')


# --- commands and events (the platform played by the test) ----------------------------------------------------------


def test_commands_are_answered_and_take_effect(tmp_path, site, logger_processes) -> None:
    platform = FakePlatform()
    try:
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [platform.port],
                                              "--rtd-interval", "10", "--speed", "600"))
        platform.wait(lambda ps: any(p.cn == "2051" for p in ps), "a minute record")

        platform.send(request := command("1061"))
        answers = platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), "1061 answers")
        assert [(p.cn, p.cp.params) for p in answers if p.cn in ("9011", "1061", "9012")] == [
            ("9011", {"QnRtn": "1"}), ("1061", {"RtdInterval": "10"}), ("9012", {"ExeRtn": "1"})]

        platform.packets.clear()
        platform.send(request := command("1062", RtdInterval="30"))
        platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), "1062 answers")

        def after_answer(ps: list[Packet]) -> list[datetime]:
            done = next(i for i, p in enumerate(ps) if p.cn == "9012" and p.qn == request.qn)
            return [datetime.strptime(p.cp.data_time, "%Y%m%d%H%M%S") for p in ps[done:] if p.cn == "2011"]

        times = after_answer(platform.wait(lambda ps: len(after_answer(ps)) >= 4, "records at the new interval"))
        assert {b - a for a, b in zip(times, times[1:])} == {timedelta(seconds=30)}

        platform.packets.clear()
        platform.send(request := command("1012", SystemTime="20250101000000"))
        ps = platform.wait(lambda ps: any(p.cn == "2011" and p.cp.data_time.startswith("2025") for p in ps),
                           "records on the new clock")
        assert any(p.cn == "9012" and p.qn == request.qn and p.cp.params == {"ExeRtn": "1"} for p in ps)
        platform.send(request := command("1011"))
        ps = platform.wait(lambda ps: any(p.cn == "1011" for p in ps), "the time")
        assert next(p for p in ps if p.cn == "1011").cp.params["SystemTime"].startswith("2025")

        # Backfill of the first hour: the minute records sent live before the clock was set, again.
        begin, end = START.strftime("%Y%m%d%H%M%S"), (START + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
        live = {p.cp.data_time: p for p in platform.everything if p.cn == "2051" and begin <= p.cp.data_time <= end}
        assert len(live) >= 2
        platform.packets.clear()
        platform.send(request := command("2051", BeginTime=begin, EndTime=end))
        ps = platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), "backfill answers")
        answer = [p for p in ps if p.qn == request.qn or (p.cn == "2051" and p.cp.data_time < "2025")]
        assert [p.cn for p in answer] == ["9011", *["2051"] * len(live), "9012"]
        assert [p.cp for p in answer[1:-1]] == [live[t].cp for t in sorted(live)]
        assert not {p.qn for p in answer[1:-1]} & {p.qn for p in live.values()}  # each with a new QN
    finally:
        platform.close()


def test_power_loss_is_reported_and_data_resumes(tmp_path, site, logger_processes) -> None:
    platform = FakePlatform()
    try:
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [platform.port],
                                              "--rtd-interval", "1", "--speed", "20"))
        platform.wait(lambda ps: sum(p.cn == "2011" for p in ps) >= 5, "records")
        site.run(site.gateway.stop())
        ps = platform.wait(lambda ps: any(p.cn == "3020" for p in ps), "the power-loss event")
        lost = next(p for p in ps if p.cn == "3020")
        assert lost.cp.params == {"Event": "PowerLoss"} and lost.cp.data_time
        time.sleep(1)
        count = sum(p.cn == "2011" for p in platform.packets)
        time.sleep(1)
        assert sum(p.cn == "2011" for p in platform.packets) == count  # nothing measured, nothing sent
        site.run(site.gateway.start())
        ps = platform.wait(lambda ps: any(p.cp.params.get("Event") == "PowerRestored" for p in ps), "the return")
        platform.wait(lambda ps: sum(p.cn == "2011" for p in ps) > count + 3, "records again")
    finally:
        platform.close()


def test_2025_logger_encrypts_cp_with_the_devices_key(tmp_path, logger_processes) -> None:
    site = Site(TEST_REGISTRY / "coating.yaml", "91320682MA1WX00020", COATING_MN)
    platform = FakePlatform(key="30303030303030303030303030303030")
    try:
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [platform.port], "--rtd-interval", "1",
                                              "--speed", "10", registry=TEST_REGISTRY / "coating.yaml",
                                              mn=COATING_MN))
        ps = platform.wait(lambda ps: any(p.cn == "2011" for p in ps), "a record")
        record = next(p for p in ps if p.cn == "2011")
        assert (record.st, record.flag, record.mn) == ("44", 9, COATING_MN)
        assert float32(float(record.cp.factors["da0001"]["Rtd"])) == float32(site.gateway.values["da0001"])
    finally:
        platform.close()
        site.close()


def test_stored_records_survive_a_logger_restart(tmp_path, site, logger_processes) -> None:
    port = free_port()
    first = LoggerProcess(tmp_path, site.gateway.port, [port], "--rtd-interval", "1", "--speed", "50")
    logger_processes.append(first)
    queue_file = first.store / f"127.0.0.1_{port}" / "queue.log"
    wait_for(lambda: queue_file.exists() and queue_file.read_bytes().count(b"\n+ ") > 60, 20, "60 queued records")
    first.stop()
    stored = [parse_segment(frame[6:-6]).cp.data_time for frame in first.queue(port).records.values()]
    assert len(stored) > 50
    platform = FakePlatform(port=port)
    try:
        # Started later on the clock than where the first run stopped, so new records sort after the stored ones.
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [port], "--rtd-interval", "1",
                                              "--speed", "50", "--start", (START + timedelta(hours=1)).isoformat()))
        ps = platform.wait(lambda ps: len(ps) > len(stored) + 5, "the replay and new records")
        assert [p.cp.data_time for p in ps[:len(stored)]] == stored  # oldest first, before anything new
        assert ps[len(stored)].cp.data_time >= (START + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    finally:
        platform.close()


def test_hour_and_day_records_reach_influxdb(tmp_path, influx_db, site, logger_processes) -> None:
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, registry=SITE, spool={"flush_interval": 0.05}) as server:
        # 5-minute records at 36000x: an hour passes in 0.1 s, the day of START closes (at midnight) in 1.5 s.
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [server.port],
                                              "--rtd-interval", "300", "--speed", "36000"))
        wait_for(lambda: rows(influx, db, f"SELECT * FROM day WHERE mn = '{MN}' AND fac = 'P1'"), 30,
                 "a day record")
        wait_for(lambda: len(rows(influx, db, f"SELECT * FROM hour WHERE mn = '{MN}' AND fac = 'P1'")) >= 15, 30,
                 "the hour records of the first day")
        expected = float32(site.gateway.values["i33200"])
        day = rows(influx, db, f"SELECT * FROM day WHERE mn = '{MN}' AND fac = 'P1'")[0]
        # DataTime is the start of the period: midnight Beijing time, though the logger started at 09:00.
        assert day["time"] == (datetime(2024, 5, 6) - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
        hours = rows(influx, db, f"SELECT * FROM hour WHERE mn = '{MN}' AND fac = 'P1' ORDER BY time LIMIT 15")
        assert [h["time"] for h in hours] == [(UTC_START + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
                                              for n in range(15)]
        for record in [day, *hours]:
            assert record["i33200-Min"] <= record["i33200-Avg"] <= record["i33200-Max"]
            assert abs(record["i33200-Avg"] - expected) <= 0.0005
            assert record["i33200-Flag"] == "N"


def test_hour_and_day_backfill_answers_from_history(tmp_path, site, logger_processes) -> None:
    platform = FakePlatform()
    try:
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [platform.port],
                                              "--rtd-interval", "300", "--speed", "36000"))
        # Once the first day has closed, every hour from 09:00 to 23:00 has been sent live.
        platform.wait(lambda ps: any(p.cn == "2031" for p in ps), "a day record", timeout=30)
        for cn, begin, end, count in (("2061", START, START + timedelta(hours=3), 4),
                                      ("2031", START - timedelta(days=1), START + timedelta(hours=1), 1)):
            begin_text, end_text = begin.strftime("%Y%m%d%H%M%S"), end.strftime("%Y%m%d%H%M%S")
            live = {p.cp.data_time: p for p in platform.everything
                    if p.cn == cn and begin_text <= p.cp.data_time <= end_text}
            assert len(live) == count, (cn, sorted(live))
            platform.packets.clear()
            platform.send(request := command(cn, BeginTime=begin_text, EndTime=end_text))
            ps = platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), f"{cn} backfill")
            answer = [p for p in ps if p.qn == request.qn
                      or (p.cn == cn and begin_text <= p.cp.data_time <= end_text)]
            assert [p.cn for p in answer] == ["9011", *[cn] * count, "9012"]
            assert answer[-1].cp.params == {"ExeRtn": "1"}
            assert [p.cp for p in answer[1:-1]] == [live[t].cp for t in sorted(live)]
            assert not {p.qn for p in answer[1:-1]} & {p.qn for p in live.values()}  # each with a new QN
            for p in answer[1:-1]:
                factor = p.cp.factors["i33200"]
                assert float(factor["Min"]) <= float(factor["Avg"]) <= float(factor["Max"])
    finally:
        platform.close()


# --- heartbeats, split packets, events, counters, real-site wiring -------------------------------------------------

MN_2025 = "0B0000A8900016F0001F1E02"
SITE_TEXT = SITE.read_text(encoding="utf-8")


def gateway_of(site: Site, mn: str) -> Gateway:
    return next(g for g in site.simulator.gateways if g.device.mn == mn)


def test_heartbeats_of_a_2025_logger_are_acknowledged_by_the_server(tmp_path, influx_db, site,
                                                                     logger_processes) -> None:
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, registry=SITE) as server:
        proxy_2025, proxy_2017 = Proxy(server.port), Proxy(server.port)
        proxy_2025.up()
        proxy_2017.up()
        logger_processes.append(LoggerProcess(tmp_path / "2025", gateway_of(site, MN_2025).port, [proxy_2025.port],
                                              "--heartbeat", "0.2", "--rtd-interval", "3600", mn=MN_2025))
        logger_processes.append(LoggerProcess(tmp_path / "2017", site.gateway.port, [proxy_2017.port],
                                              "--heartbeat", "0.2", "--rtd-interval", "3600"))

        def answered() -> list[Packet]:
            beats = {p.qn for p, _ in proxy_2025.sent if p.cn == "9015"}
            return [p for p in proxy_2025.answers if p.cn == "9013" and p.qn in beats]

        wait_for(lambda: len(answered()) >= 3, 15, "three acknowledged heartbeats")
        beats = [p for p, _ in proxy_2025.sent if p.cn == "9015"]
        assert {(p.st, p.flag, p.mn, p.pw) for p in beats} == {("44", 9, MN_2025, "654321")}  # 2025, Flag A
        assert len({p.qn for p in beats}) == len(beats)
        assert {p.mn for p in answered()} == {MN_2025}
        # HJ 212-2017 has no heartbeat: the 2017 logger keeps its link with its uploads only.
        assert any(cn == "2011" for _, cn, _ in proxy_2017.uploads)
        assert not [p for p, _ in proxy_2017.sent if p.cn in ("9015", "9021")]


def meters_registry(tmp_path: Path) -> Path:
    """The test site with a third logger reading two full power meters: 2011 and 2051 need several fragments."""
    quantities = ["voltage", "current", "active_power", "reactive_power", "apparent_power", "power_factor"]
    points = []
    for facility in ("P1", "T1"):
        for quantity in quantities:
            for phase in ("a", "b", "c", None):
                points.append({"facility": facility, "quantity": quantity, "phase": phase})
        points += [{"facility": facility, "quantity": q, "phase": None}
                   for q in ("frequency", "energy", "reactive_energy", "demand")]
    lines = ["  - mn: 0C0000A8900016F0001F1E03", '    pw: "777777"', "    protocol: hj212-2017", "    points:"]
    for n, point in enumerate(points):
        phase = f", phase: {point['phase']}" if point["phase"] else ""
        rated = ", rated: 80" if point["quantity"] == "current" else ""
        lines.append(f"      - {{factor: e{n:05d}, facility: {point['facility']}, "
                     f"quantity: {point['quantity']}{phase}{rated}}}")
    path = tmp_path / "meters.yaml"
    path.write_text(SITE_TEXT + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_split_upload_is_stored_as_one_point_with_every_factor(tmp_path, influx_db, logger_processes) -> None:
    influx, db = influx_db
    registry = meters_registry(tmp_path)
    mn = "0C0000A8900016F0001F1E03"
    site = Site(registry, ENT, mn)
    try:
        with ServerProcess(tmp_path / "server", influx.url, db, registry=registry,
                           spool={"flush_interval": 0.05}) as server:
            proxy = Proxy(server.port)
            proxy.up()
            logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [proxy.port], "--rtd-interval", "10",
                                                  "--speed", "600", registry=registry, mn=mn))
            # Two minute records: every fragment of the first ones has been stored and acknowledged.
            wait_for(lambda: len(rows(influx, db, f"SELECT * FROM minute WHERE mn = '{mn}' AND fac = 'T1'")) >= 2,
                     30, "two minute records")
            logger_processes[-1].stop()
            # The server counts the split packets it saw whole (self-metric split_complete).
            status = server.spool / "status-0.json"
            wait_for(lambda: status.exists() and json.loads(status.read_text())["split_complete"] >= 2, 10,
                     "split packets counted complete")
            factors = {p.facility: set() for p in site.gateway.device.points}
            for point in site.gateway.device.points:
                factors[point.facility].add(point.factor)
            assert sum(map(len, factors.values())) == 56

            for cn, measurement, suffix in (("2011", "rtd", "Rtd"), ("2051", "minute", "Avg")):
                sent = [(p, size) for p, size in proxy.sent if p.cn == cn]
                data_time = sent[0][0].cp.data_time
                fragments = [(p, size) for p, size in sent if p.cp.data_time == data_time]
                # Each fragment fits the standard's 1,024 bytes, carries its own QN and Flag bit D, and together
                # they are the whole record.
                assert len(fragments) >= 2
                assert {p.pnum for p, _ in fragments} == {len(fragments)}
                assert sorted(p.pno for p, _ in fragments) == list(range(1, len(fragments) + 1))
                assert all(size <= 1024 and p.flag == 4 | 2 | 1 for p, size in fragments)
                assert len({p.qn for p, _ in fragments}) == len(fragments)
                acknowledged = {p.qn for p in proxy.answers if p.cn == "9014"}
                assert {p.qn for p, _ in fragments} <= acknowledged  # each fragment on its own
                sent_factors = [code for p, _ in fragments for code in p.cp.factors]
                assert sorted(sent_factors) == sorted(set().union(*factors.values()))
                when = (datetime.strptime(data_time, "%Y%m%d%H%M%S") - timedelta(hours=8)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
                for facility, codes in factors.items():
                    stored = rows(influx, db, f"SELECT * FROM {measurement} WHERE mn = '{mn}' AND fac = '{facility}'"
                                              f" AND time = '{when}'")
                    assert len(stored) == 1, (cn, facility)
                    assert {k[:-len(suffix) - 1] for k, v in stored[0].items()
                            if k.endswith(f"-{suffix}") and v is not None} == codes, (cn, facility)
    finally:
        site.close()


def info_rows(influx, db: str, mn: str = MN) -> list[dict]:
    return rows(influx, db, f"SELECT * FROM info WHERE mn = '{mn}' AND \"Event\" = 'ParameterChanged'")


def test_parameter_changes_are_reported_as_events_and_stored(tmp_path, influx_db, site, logger_processes) -> None:
    influx, db = influx_db
    platform = FakePlatform()
    try:
        with ServerProcess(tmp_path / "server", influx.url, db, registry=SITE,
                           spool={"flush_interval": 0.05}) as server:
            first = LoggerProcess(tmp_path, site.gateway.port, [platform.port, server.port],
                                  "--rtd-interval", "10", "--speed", "60")
            logger_processes.append(first)
            platform.wait(lambda ps: any(p.cn == "2011" for p in ps), "a record")
            # One platform sets the interval: the logger reports the change to every platform.
            platform.send(request := command("1062", RtdInterval="30"))
            platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), "1062 answers")
            event = next(p for p in platform.wait(lambda ps: any(p.cn == "3020" for p in ps), "the event")
                         if p.cn == "3020")
            assert event.cp.params["Event"] == "ParameterChanged"
            assert {k: event.cp.params[k] for k in ("Parameter", "OldValue", "NewValue", "Source")} == {
                "Parameter": "RtdInterval", "OldValue": "10", "NewValue": "30",
                "Source": f"127.0.0.1:{platform.port}"}
            event_time = event.cp.params["EventTime"]
            assert event_time[:14] == event.cp.data_time and len(event_time) == 17
            wait_for(lambda: info_rows(influx, db), 10, "the event in InfluxDB")
            stored = info_rows(influx, db)[0]
            assert (stored["Parameter"], stored["OldValue"], stored["NewValue"]) == ("RtdInterval", "10", "30")
            assert stored["time"] == (datetime.strptime(event.cp.data_time, "%Y%m%d%H%M%S")
                                      - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
            first.stop()

            # Restarted with another interval and one platform less: the configuration change is reported once.
            second = LoggerProcess(tmp_path, site.gateway.port, [server.port], "--rtd-interval", "20",
                                   "--speed", "60", "--start", (START + timedelta(hours=2)).isoformat())
            logger_processes.append(second)
            wait_for(lambda: len(info_rows(influx, db)) == 2, 10, "the configuration event in InfluxDB")
            config = next(r for r in info_rows(influx, db) if r["Parameter"] == "Config")
            assert config["Changed"] == "platforms|rtd_interval" and config["Source"] == "local"
            assert config["OldValue"] != config["NewValue"] and len(config["NewValue"]) == 12
            second.stop()
            third = LoggerProcess(tmp_path, site.gateway.port, [server.port], "--rtd-interval", "20",
                                  "--speed", "60", "--start", (START + timedelta(hours=4)).isoformat())
            logger_processes.append(third)
            wait_for(lambda: rtd_count(influx, db) > 0 and
                     rows(influx, db, f"SELECT * FROM rtd WHERE mn = '{MN}' AND time > '2024-05-06T04:00:00Z'"),
                     10, "records of the third run")
            assert len(info_rows(influx, db)) == 2  # same configuration: no event
    finally:
        platform.close()


def carbon_hours(influx, db: str) -> list[tuple[str, float]]:
    return [(r["time"], r["g10401-Rtd"]) for r in
            rows(influx, db, f"SELECT \"g10401-Rtd\" FROM rtd WHERE mn = '{MN}' AND fac = 'T4'")]


def test_carbon_hours_count_running_time_across_a_restart(tmp_path, influx_db, site, logger_processes) -> None:
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, registry=SITE, spool={"flush_interval": 0.05}) as server:
        # The adsorber T4 has no meter: it runs while its fan T1 (g10201 above on_threshold) runs, all day here.
        first = LoggerProcess(tmp_path, site.gateway.port, [server.port], "--rtd-interval", "60", "--speed", "3600")
        logger_processes.append(first)
        wait_for(lambda: len(carbon_hours(influx, db)) >= 60, 20, "an hour of records")
        first.stop()
        counted = json.loads((first.store / "counters.json").read_text())["g10401"] / 3600
        assert counted >= 59 / 60
        before = len(carbon_hours(influx, db))

        # A day later (the logger was off: nothing to count), the counter goes on from where it stopped.
        restart = START + timedelta(days=1)
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [server.port], "--rtd-interval", "60",
                                              "--speed", "3600", "--start", restart.isoformat()))
        wait_for(lambda: len(carbon_hours(influx, db)) >= before + 30, 20, "half an hour after the restart")
        logger_processes[-1].stop()
        hours = carbon_hours(influx, db)
        restart_utc = (restart - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
        first_run = [v for t, v in hours if t < restart_utc]
        second_run = [v for t, v in hours if t >= restart_utc]
        assert first_run[0] == 0.0 and second_run[0] == pytest.approx(counted, abs=1e-3)
        for run in (first_run, second_run):
            # One minute of running per record, at 1/60 h each (float32 on the wire).
            assert all(b - a == pytest.approx(1 / 60, abs=1e-3) for a, b in zip(run, run[1:]))
        assert second_run[-1] == pytest.approx(counted + (len(second_run) - 1) / 60, abs=2e-3)


def test_a_real_site_wiring_rtu_over_tcp_and_byte_orders_end_to_end(tmp_path, influx_db, logger_processes) -> None:
    influx, db = influx_db
    port = free_port()
    block = (f"    modbus:\n      host: 127.0.0.1\n      port: {port}\n      framer: rtu_over_tcp\n"
             "      byte_order: CDAB\n      points:\n"
             "        - {factor: i33200, unit_id: 17, address: 200}\n"
             "        - {factor: a01012, byte_order: DCBA}\n")
    registry = tmp_path / "wired.yaml"
    registry.write_text(SITE_TEXT.replace("    rtd_interval: 30\n", "    rtd_interval: 30\n" + block, 1),
                        encoding="utf-8")
    site = Site(registry, registry_ports=True)
    try:
        assert site.gateway.port == port and site.gateway.framer == "rtu_over_tcp"
        meter = next(i for i in site.gateway.instruments if i.bound("I"))
        assert (meter.slave_id, meter.byte_order, meter.bound("I").register.address) == (17, "CDAB", 200)
        with ServerProcess(tmp_path / "server", influx.url, db, registry=registry,
                           spool={"flush_interval": 0.05}) as server:
            # No --modbus: the logger reads the gateway the registry names, with its framer and byte orders.
            logger_processes.append(LoggerProcess(tmp_path, None, [server.port], "--rtd-interval", "10",
                                                  "--speed", "600", registry=registry))
            wait_for(lambda: rtd_count(influx, db) >= 5, 30, "records")
            expected = {b.point.factor: float(site.gateway.values[b.point.factor] >= 0.5)
                        if b.register.table == "discrete" else float32(site.gateway.values[b.point.factor])
                        for i in site.gateway.instruments for b in i.bindings}
            record = rows(influx, db, f"SELECT * FROM rtd WHERE mn = '{MN}'")
            seen = {k[:-4]: v for r in record for k, v in r.items() if k.endswith("-Rtd") and v is not None}
            assert set(seen) == set(expected) | {"g10401"}
            for factor, value in expected.items():
                assert float32(seen[factor]) == value, factor
            assert expected["a01012"] > 700 and expected["i33200"] > 10  # read right, not merely read
    finally:
        site.close()


# --- settings a platform makes, daily run time (2041) ---------------------------------------------------------------


def data_times(packets: list[Packet], cn: str = "2011", since: str = "") -> list[datetime]:
    return sorted({datetime.strptime(p.cp.data_time, "%Y%m%d%H%M%S") for p in packets
                   if p.cn == cn and p.cp.data_time >= since})


def test_interval_and_clock_set_by_a_platform_survive_a_restart(tmp_path, site, logger_processes) -> None:
    platform = FakePlatform()
    port = platform.port
    try:
        first = LoggerProcess(tmp_path, site.gateway.port, [port], "--rtd-interval", "10", "--speed", "600")
        logger_processes.append(first)
        platform.wait(lambda ps: any(p.cn == "2011" for p in ps), "a record")
        for request in (command("1062", RtdInterval="30"), command("1012", SystemTime="20250101000000")):
            platform.send(request)
            platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), f"{request.cn} answers")
        platform.wait(lambda ps: any(p.cn == "2011" and p.cp.data_time >= "2025" for p in ps), "the new clock")
        first.stop()
    finally:
        platform.close()
    settings = json.loads((first.store / "settings.json").read_text())
    assert settings["rtd_interval"] == 30
    # The seconds the 1012 moved the clock by: from the first run's clock (a few simulated minutes after START).
    offset = timedelta(seconds=settings["clock_offset"])
    assert timedelta(0) < datetime(2025, 1, 1) - START - offset < timedelta(hours=1)

    def run_records(ps: list[Packet], start: datetime) -> list[datetime]:
        """Real-time records of a run that started at `start` on the logger's clock (not replays of the first)."""
        return data_times(ps, since=(start - timedelta(seconds=1)).strftime("%Y%m%d%H%M%S"))

    # Restarted with the same command line, two simulated hours later: the platform's interval and clock hold.
    platform = FakePlatform(port=port)
    second_start = START + timedelta(hours=2) + offset
    try:
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [port], "--rtd-interval", "10",
                                              "--speed", "600", "--start", (START + timedelta(hours=2)).isoformat()))
        ps = platform.wait(lambda ps: len(run_records(ps, second_start)) >= 5, "records of the second run")
        times = run_records(ps, second_start)
        assert times[0] - second_start < timedelta(seconds=5)
        assert {b - a for a, b in zip(times, times[1:])} == {timedelta(seconds=30)}
        assert not [p for p in ps if p.cn == "3020"]  # the same configuration: nothing changed
        logger_processes[-1].stop()
    finally:
        platform.close()

    # The installer changes the interval locally: the change is reported and the local interval wins; the clock
    # offset is no part of the configuration and holds.
    platform = FakePlatform(port=port)
    third_start = START + timedelta(hours=4) + offset
    try:
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [port], "--rtd-interval", "20",
                                              "--speed", "600", "--start", (START + timedelta(hours=4)).isoformat()))
        ps = platform.wait(lambda ps: len(run_records(ps, third_start)) >= 5 and any(p.cn == "3020" for p in ps),
                           "records and the configuration event")
        event = next(p for p in ps if p.cn == "3020").cp.params
        assert (event["Parameter"], event["Changed"], event["Source"]) == ("Config", "rtd_interval", "local")
        times = run_records(ps, third_start)
        assert times[0] - third_start < timedelta(seconds=5)
        assert {b - a for a, b in zip(times, times[1:])} == {timedelta(seconds=20)}
    finally:
        platform.close()
    assert "rtd_interval" not in json.loads((first.store / "settings.json").read_text())


def run_time_registry(tmp_path: Path) -> Path:
    """The test site with P1 never running (its current stays below a threshold of 1,000 A)."""
    path = tmp_path / "run-time.yaml"
    path.write_text(SITE_TEXT.replace("rated: 80, on_threshold: 12", "rated: 2000, on_threshold: 1000", 1),
                    encoding="utf-8")
    return path


#: Equipment numbers of the test device: its facilities in the order of its points (docs/field.md).
SB_OF = {"P1": "SB1", "T1": "SB2", "T2": "SB3", "T3": "SB4", "T4": "SB5"}


def test_daily_run_time_reaches_influxdb(tmp_path, influx_db, site, logger_processes) -> None:
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, registry=SITE, spool={"flush_interval": 0.05}) as server:
        # 5-minute records at 36000x: a day passes in 2.4 s. The first day runs from 09:00, the second whole.
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [server.port], "--rtd-interval", "300",
                                              "--speed", "36000", registry=run_time_registry(tmp_path)))
        query = f"SELECT * FROM runtime WHERE mn = '{MN}' ORDER BY time"
        # The platform stores each SB<n> with the device's n-th facility (docs/registry.md): a point per facility.
        wait_for(lambda: len(rows(influx, db, query)) >= 2 * len(SB_OF), 30, "two days of run time")
        stored = rows(influx, db, query)[:2 * len(SB_OF)]
    days = sorted({row["time"] for row in stored})
    assert days == [(datetime(2024, 5, day) - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ") for day in (6, 7)]
    # P1 never runs; the fan T1 runs all the time, and so do the treatment facilities it serves (T2-T4).
    for day, hours in zip(days, (15.0, 24.0)):
        assert {row["fac"]: row[f"{SB_OF[row['fac']]}-RT"] for row in stored if row["time"] == day} == {
            "P1": 0.0, "T1": hours, "T2": hours, "T3": hours, "T4": hours}


def test_run_time_backfill_answers_from_history(tmp_path, site, logger_processes) -> None:
    platform = FakePlatform()
    try:
        logger_processes.append(LoggerProcess(tmp_path, site.gateway.port, [platform.port], "--rtd-interval", "300",
                                              "--speed", "36000", registry=run_time_registry(tmp_path)))
        platform.wait(lambda ps: len([p for p in ps if p.cn == "2041"]) >= 2, "two days of run time", timeout=30)
        live = {p.cp.data_time: p for p in platform.everything if p.cn == "2041"}
        begin, end = (START - timedelta(days=1)).strftime("%Y%m%d%H%M%S"), (START + timedelta(days=1)).strftime(
            "%Y%m%d%H%M%S")
        expected = sorted(t for t in live if begin <= t <= end)
        assert expected == ["20240506000000", "20240507000000"]
        platform.packets.clear()
        platform.send(request := command("2041", BeginTime=begin, EndTime=end))
        ps = platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), "2041 backfill")
        answer = [p for p in ps if p.qn == request.qn or (p.cn == "2041" and begin <= p.cp.data_time <= end)]
        assert [p.cn for p in answer] == ["9011", "2041", "2041", "9012"]
        assert answer[-1].cp.params == {"ExeRtn": "1"}
        assert [p.cp for p in answer[1:-1]] == [live[t].cp for t in expected]
        assert answer[1].cp.devices["SB2"] == {"RT": "15"} and answer[1].cp.devices["SB1"] == {"RT": "0"}
        assert not {p.qn for p in answer[1:-1]} & {p.qn for p in live.values()}  # each with a new QN

        platform.packets.clear()  # a range without records: ExeRtn 100
        platform.send(request := command("2041", BeginTime="20200101000000", EndTime="20200102000000"))
        ps = platform.wait(lambda ps: any(p.cn == "9012" and p.qn == request.qn for p in ps), "empty backfill")
        assert [p.cp.params for p in ps if p.qn == request.qn] == [{"QnRtn": "1"}, {"ExeRtn": "100"}]
    finally:
        platform.close()
