"""Run the real `gkjk serve` as a process and talk to it as a data logger would, over real TCP.

Used by the end-to-end and failure tests and by bench scripts: no Twisted or
pytest import here, only sockets, subprocesses and the codec.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from gkjk.influxd import free_port
from ingest_twisted.hj212.frame import Frame, FrameDecoder, encode_frame
from ingest_twisted.hj212.packet import CP, Packet, build_segment, parse_segment

ROOT = Path(__file__).resolve().parent.parent
TEST_REGISTRY = ROOT / "tests" / "data" / "registry"
FOUNDRY_MN, FOUNDRY_PW = "010000A8900016F000169DC0", "100000"
COATING_MN, COATING_PW = "020000A8900016F000169DC1", "123456"


class ServerProcess:
    """`gkjk serve` in a subprocess with its own config, spool and port."""

    def __init__(self, workdir: Path, influx_url: str, database: str, registry: Path = TEST_REGISTRY,
                 **sections: dict) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.spool = self.workdir / "spool"
        settings = {
            "ingest": {"listen": f"127.0.0.1:{self.port}"},
            "influx": {"url": influx_url, "database": database},
            "registry": {"path": str(registry)},
            "spool": {"path": str(self.spool)},
            "metrics": {"interval": 1.0},
        }
        for name, values in sections.items():
            settings.setdefault(name, {}).update(values)
        self.config = write_config(self.workdir / "gkjk.toml", settings)
        self.log = self.workdir / "serve.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.process = start_gkjk("serve", self.config, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gkjk serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gkjk serve did not listen within {timeout} s:\n{self.log.read_text()}")

    def stop(self, kill: bool = False, timeout: float = 30.0) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def write_config(path: Path, settings: dict[str, dict]) -> Path:
    """A gkjk TOML file from {section: {key: value}}."""
    lines = []
    for name, values in settings.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_gkjk(command: str, config: Path, log: Path) -> subprocess.Popen:
    """`gkjk COMMAND --config CONFIG` as a process, output appended to `log`, untouched by the caller's GKJK_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gkjk.cli", command, "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
        )


def play_simulator(server: ServerProcess, registry: Path, start: datetime, end: datetime, speed: float,
                   log_path: Path, *options: str) -> str:
    """Run `gkjk simulate` against the server from `start` until its status lines report `end` (simulated local
    time), then stop it; returns its log. Fails if it never gets there."""
    command = [sys.executable, "-m", "gkjk.cli", "simulate", "--config", str(server.config), "--registry",
               str(registry), "--port", str(server.port), "--speed", str(speed),
               "--start", start.strftime("%Y-%m-%dT%H:%M"), "--status-every", "0.5", *options]
    with open(log_path, "w") as log_file:  # a file, not a pipe: a full pipe would stall the fleet
        simulate = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True)
    try:
        last = None
        deadline = time.monotonic() + (end - start).total_seconds() / speed + 30
        for line in simulate.stdout:
            if match := re.match(r"simulated (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line):
                last = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            if last is not None and last >= end or time.monotonic() > deadline:
                break
    finally:
        simulate.send_signal(signal.SIGINT)
        simulate.communicate(timeout=30)
    log = log_path.read_text()
    assert last is not None and last >= end, f"the simulator did not reach {end}:\n{log[-3000:]}"
    return log


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Logger:
    """A blocking data-logger client: sends frames, collects the platform's answers."""

    def __init__(self, port: int, mn: str = FOUNDRY_MN, pw: str = FOUNDRY_PW, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.mn, self.pw = mn, pw
        self.decoder = FrameDecoder()
        self.received: list[Packet] = []
        self.sequence = 0
        self.started = datetime.now().replace(microsecond=0)

    def close(self) -> None:
        self.sock.close()

    def packet(self, cn: str = "2011", data_time: datetime | str | None = None, factors: dict | None = None,
               flag: int = 5, st: str = "32", **params: str) -> Packet:
        self.sequence += 1
        if isinstance(data_time, datetime):
            data_time = data_time.strftime("%Y%m%d%H%M%S")
        # QN is YYYYMMDDhhmmsszzz; one millisecond per packet keeps it unique at any rate.
        moment = self.started + timedelta(milliseconds=self.sequence)
        qn = moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"
        return Packet(qn=qn, st=st, cn=cn, pw=self.pw, mn=self.mn, flag=flag, pnum=None, pno=None,
                      cp=CP(data_time=data_time, factors=factors or {}, params=params), extra={})

    def send(self, packet: Packet) -> Packet:
        self.sock.sendall(encode_frame(build_segment(packet)))
        return packet

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def upload_minutes(self, until: datetime, minutes: int, factors: dict) -> None:
        """One 2011 a minute from `minutes` before `until` up to `until`, and wait until each is acknowledged."""
        for minute in range(minutes, -1, -1):
            self.send(self.packet("2011", until - timedelta(minutes=minute), factors))
        assert len(self.read(minutes + 1)) == minutes + 1

    def read(self, count: int = 1, timeout: float = 10.0) -> list[Packet]:
        """Wait for `count` more answers (or the timeout) and return all not yet taken."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            for event in self.decoder.feed(data):
                if isinstance(event, Frame):
                    self.received.append(parse_segment(event.segment))
        taken, self.received = self.received, []
        return taken


class ResendingLogger:
    """A data logger that keeps every upload until acknowledged and re-sends after reconnecting, as real ones do."""

    def __init__(self, port: int, mn: str = FOUNDRY_MN, pw: str = FOUNDRY_PW) -> None:
        self.port, self.mn, self.pw = port, mn, pw
        self.unacked: dict[str, bytes] = {}
        self.acked: set[str] = set()
        self.sent_times: dict[str, str] = {}
        self.logger: Logger | None = None
        self.reconnects = 0
        self.sequence = 0
        self.started = datetime.now().replace(microsecond=0)

    def _connection(self, timeout: float = 60.0) -> Logger:
        deadline = time.monotonic() + timeout
        while self.logger is None:
            try:
                self.logger = Logger(self.port, self.mn, self.pw)
                # QNs stay unique across connections, as on a real logger.
                self.logger.sequence, self.logger.started = self.sequence, self.started
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            self.reconnects += 1
            for frame in list(self.unacked.values()):
                self.logger.send_raw(frame)
        return self.logger

    def _drop(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self.logger = None

    def upload(self, data_time: datetime, factors: dict) -> None:
        logger = self._connection()
        packet = logger.packet("2011", data_time, factors)
        self.sequence = logger.sequence
        frame = encode_frame(build_segment(packet))
        self.unacked[packet.qn] = frame
        self.sent_times[packet.qn] = packet.cp.data_time
        try:
            logger.send_raw(frame)
        except OSError:
            self._drop()

    def collect(self, timeout: float = 0.0) -> None:
        """Take the acknowledgements that have arrived (waiting up to `timeout`)."""
        if self.logger is None:
            return
        try:
            answers = self.logger.read(count=len(self.unacked), timeout=timeout) if self.unacked else []
        except OSError:
            answers = []
            self._drop()
        else:
            if timeout and len(answers) < len(self.unacked) and not self._alive():
                self._drop()
        for answer in answers:
            if answer.cn == "9014" and answer.qn in self.unacked:
                del self.unacked[answer.qn]
                self.acked.add(answer.qn)

    def _alive(self) -> bool:
        try:
            self.logger.sock.setblocking(False)
            try:
                return self.logger.sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                return True
        except OSError:
            return False
        finally:
            if self.logger is not None:
                self.logger.sock.setblocking(True)

    def drain(self, timeout: float = 60.0) -> None:
        """Keep reconnecting and re-sending until everything is acknowledged."""
        deadline = time.monotonic() + timeout
        while self.unacked and time.monotonic() < deadline:
            self._connection()
            self.collect(timeout=1.0)
            if self.unacked and self.logger is not None and not self._alive():
                self._drop()
        if self.unacked:
            raise AssertionError(f"{len(self.unacked)} uploads never acknowledged")
