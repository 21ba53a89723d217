"""A local InfluxDB 1.x server run by the platform: for the demo, the tests and the bench scripts.

Runs the real ``influxd`` at nice 10 with a generated config: every directory under one
temporary directory, HTTP on 127.0.0.1 and a free port, no other listeners
(the RPC bind address gets a free port too, so parallel servers do not
collide on 8088). ``stop()`` and ``start()`` keep port and data, so tests can
kill InfluxDB under load and bring it back. No pytest or Twisted import here:
bench scripts use it as well::

    with InfluxServer() as server:
        server.query('CREATE DATABASE "bench"')

or from a shell: ``gkjk influxd --dir var/influxdb --port 8186`` (runs until
SIGTERM or Ctrl-C; the data stays in the directory).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

INFLUXD = os.environ.get("INFLUXD", shutil.which("influxd") or "/usr/bin/influxd")
NICE = shutil.which("nice") or "/usr/bin/nice"  # coreutils; it execs influxd, so the pid stays influxd's
#: Go's garbage collector in influxd runs about once a second at 10,000 points/s with the default GOGC=100, and
#: its bursts take the cores the ingest workers need on a small machine. GOGC=400 cut InfluxDB's CPU by about a
#: fifth and, in five interleaved pairs of runs, the ingest's p99 ack latency at 10,000/s from 61 - 102 ms to
#: 52 - 67 ms (docs/benchmarks.md), for about 250 MiB more memory in those runs. The heap may grow to five times
#: what is live, so GOMEMLIMIT (a quarter of the machine's memory) makes the collector work harder before that
#: happens. Values already in the environment win.
GO_RUNTIME_GOGC = "400"
GO_RUNTIME_MEMORY_SHARE = 4  # GOMEMLIMIT = physical memory / this
#: influxd's nice value: a lower CPU priority than the ingest workers. Devices wait for the workers' 9014s;
#: nobody waits for InfluxDB's writes, which the spool buffers. On a 2-core machine at 10,000 uploads/s, InfluxDB's
#: bursts (cache snapshots, compactions, the parse of each batch) otherwise take the cores the workers need to
#: answer: in six interleaved runs the p99 ack latency was 34 - 80 ms at nice 0 and 25 - 31 ms at nice 10
#: (docs/benchmarks.md). When the machine has CPU to spare, the nice value changes nothing.
INFLUXD_NICE = 10


def go_runtime_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to start influxd with: ``environ`` (default: this process's) plus the Go runtime settings
    above where it has none."""
    result = dict(os.environ if environ is None else environ)
    result.setdefault("GOGC", GO_RUNTIME_GOGC)
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    result.setdefault("GOMEMLIMIT", f"{memory // GO_RUNTIME_MEMORY_SHARE}B")
    return result

CONFIG_TEMPLATE = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{base}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{base}/data"
  wal-dir = "{base}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


def free_port() -> int:
    """A port nobody listens on right now (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class InfluxServerError(RuntimeError):
    """influxd did not start, or answered a query with an error."""


class InfluxServer:
    """One influxd process with its own config, data and port."""

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        http_port: int | None = None,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="influxd-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port or free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.startup_timeout = startup_timeout
        self.config_path = self.base_dir / "influxdb.conf"
        self.log_path = self.base_dir / "influxd.log"
        self.config_path.write_text(
            CONFIG_TEMPLATE.format(base=self.base_dir, http_port=self.http_port, rpc_port=self.rpc_port)
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running influxd (benchmarks read its CPU time)."""
        return self._proc.pid if self.running else None

    def start(self) -> None:
        """Start influxd (same port, same data) and wait until /ping answers 204."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [NICE, "-n", str(INFLUXD_NICE), INFLUXD, "run", "-config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=go_runtime_environment(),
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise InfluxServerError(f"influxd exited with {self._proc.returncode}; see {self.log_path}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise InfluxServerError(f"influxd did not answer /ping within {self.startup_timeout} s; see {self.log_path}")

    def stop(self, kill: bool = False) -> None:
        """Stop influxd (SIGTERM, or SIGKILL to simulate a crash); data stays."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop and, if the directory was ours, remove it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> InfluxServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as resp:
                return resp.status == 204
        except OSError:
            return False

    def query(self, q: str, db: str | None = None, epoch: str | None = None) -> dict[str, Any]:
        """POST /query (works for SELECT and for CREATE/DROP); raises on any error."""
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        body = self._request("/query", urllib.parse.urlencode(params).encode(), "application/x-www-form-urlencoded")
        result = json.loads(body)
        for statement in result.get("results", []):
            if "error" in statement:
                raise InfluxServerError(f"{q!r}: {statement['error']}")
        if "error" in result:
            raise InfluxServerError(f"{q!r}: {result['error']}")
        return result

    def write(self, lines: bytes, db: str, precision: str = "ns") -> None:
        """POST /write; raises InfluxServerError with InfluxDB's message on failure."""
        qs = urllib.parse.urlencode({"db": db, "precision": precision})
        self._request(f"/write?{qs}", lines, "text/plain; charset=utf-8")

    def count(self, db: str, measurement: str, field: str = "*") -> int:
        """Number of points in a measurement (the largest per-field count)."""
        result = self.query(f'SELECT count({field}) FROM "{measurement}"', db=db)
        series = result["results"][0].get("series")
        if not series:
            return 0
        return max(v for v in series[0]["values"][0][1:] if v is not None)

    def _request(self, path: str, data: bytes, content_type: str) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise InfluxServerError(f"HTTP {exc.code}: {exc.read().decode(errors='replace')}") from exc


def serve(base_dir: Path, http_port: int) -> None:
    """Run influxd in the foreground until SIGTERM/SIGINT (`gkjk influxd`)."""
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _: stopping.append(signum))
    server = InfluxServer(base_dir, http_port=http_port)
    server.start()
    print(f"InfluxDB {server.url}, data in {server.base_dir}", flush=True)
    try:
        while not stopping:
            signal.pause()
    finally:
        server.stop()
