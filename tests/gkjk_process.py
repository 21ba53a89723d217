"""Run the real `gkjk serve` as a process and talk to it as a data logger would, over real TCP.

Used by the end-to-end and failure tests and by bench scripts: no Twisted or
pytest import here, only sockets, subprocesses and the codec.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from ingest_twisted.hj212.frame import Frame, FrameDecoder, encode_frame
from ingest_twisted.hj212.packet import CP, Packet, build_segment, parse_segment

ROOT = Path(__file__).resolve().parent.parent
TEST_REGISTRY = ROOT / "tests" / "data" / "registry"
FOUNDRY_MN, FOUNDRY_PW = "010000A8900016F000169DC0", "100000"
COATING_MN, COATING_PW = "020000A8900016F000169DC1", "123456"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        lines = []
        for name, values in settings.items():
            lines.append(f"[{name}]")
            for key, value in values.items():
                lines.append(f"{key} = {toml_value(value)}")
        self.config = self.workdir / "gkjk.toml"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log = self.workdir / "serve.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gkjk.cli", "serve", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
            )
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

    def close(self) -> None:
        self.sock.close()

    def packet(self, cn: str = "2011", data_time: datetime | str | None = None, factors: dict | None = None,
               flag: int = 5, st: str = "32", **params: str) -> Packet:
        self.sequence += 1
        if isinstance(data_time, datetime):
            data_time = data_time.strftime("%Y%m%d%H%M%S")
        qn = datetime.now().strftime("%Y%m%d%H%M%S") + f"{self.sequence % 1000:03d}"
        return Packet(qn=qn, st=st, cn=cn, pw=self.pw, mn=self.mn, flag=flag, pnum=None, pno=None,
                      cp=CP(data_time=data_time, factors=factors or {}, params=params), extra={})

    def send(self, packet: Packet) -> Packet:
        self.sock.sendall(encode_frame(build_segment(packet)))
        return packet

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

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
