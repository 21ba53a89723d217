"""Worker CPU per acknowledged upload: the current tree against a git revision, measured in the same run.

The machines are shared and noisy, so wall-clock rates move by tens of percent
between runs; the CPU a worker spends per upload (utime + stime of the `gkjk
serve` process from /proc, over a load run, divided by the uploads it
acknowledged) moves much less, and the ratio between two trees measured
alternately in one run moves least. Each round starts a fresh one-worker `gkjk
serve` from the current tree and one from the baseline revision (exported with
`git archive` into a temporary directory; the working tree and git state are
left alone), plays the same devices at them with bench/loadgen.py (2011
uploads of 10 factors, A=1) and reads the worker's CPU time around the run.

Two loads: "paced" (a fixed rate, few frames per TCP read) and "flat out"
(as fast as acknowledgements come back, many frames per read).

    python bench/cpu_per_upload.py [--baseline REV] [--rounds 2] [--seconds 8] [--rate 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from gkjk.influxd import InfluxServer, free_port  # noqa: E402
from gkjk_process import write_config  # noqa: E402
from procstat import cpu_seconds  # noqa: E402
from report import write_section  # noqa: E402
from throughput import write_registry  # noqa: E402

DATABASE = "bench"


def export_tree(revision: str, directory: Path) -> str:
    """The files of `revision` under `directory` (git archive: no git state changes); returns the commit id."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return commit


class Worker:
    """A one-worker `gkjk serve` run from the source tree `tree`."""

    def __init__(self, tree: Path, workdir: Path, influx_url: str, registry: Path) -> None:
        workdir.mkdir(parents=True)
        self.port = free_port()
        self.tree = tree
        self.log = workdir / "serve.log"
        self.config = write_config(workdir / "gkjk.toml", {
            "ingest": {"listen": f"127.0.0.1:{self.port}", "workers": 1, "max_connections_per_ip": 100000},
            "influx": {"url": influx_url, "database": DATABASE},
            "registry": {"path": str(registry)},
            "spool": {"path": str(workdir / "spool")},
            "metrics": {"interval": 10.0},
            "backfill": {"enabled": False},
        })

    def __enter__(self) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
        env["PYTHONPATH"] = str(self.tree)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gkjk.cli", "serve", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tree, env=env,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gkjk serve from {self.tree} did not start:\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def measure(worker: Worker, devices_file: Path, devices: int, seconds: float, rate: float, start_day: int) -> dict:
    """Run one load generator against `worker`; CPU µs of the worker per acknowledged upload."""
    command = [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(worker.port),
               "--devices", str(devices_file), "--connections", str(devices), "--seconds", str(seconds),
               "--rate", str(rate), "--start-day", str(start_day)]
    loadgen = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    before = cpu_seconds(worker.process.pid)
    result = json.loads(loadgen.communicate()[0])
    used = cpu_seconds(worker.process.pid) - before
    return {"us_per_upload": used / result["acked"] * 1e6, "acked": result["acked"],
            "acked_per_s": result["acked_in_time"] / result["seconds"],
            "p50_ms": result["ack_p50_ms"], "p99_ms": result["ack_p99_ms"]}


#: The last revision before per-read batching and the fast path, the reference of docs/benchmarks.md.
BEFORE_FAST_PATH = "7afe22b"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BEFORE_FAST_PATH,
                        help="git revision to compare with (default: the last one before the fast path and per-read"
                             " batching; HEAD compares uncommitted changes against it)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=3000.0, help="paced load, uploads/s")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--no-report", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gkjk-cpu-") as tmp, InfluxServer(Path(tmp) / "influx") as influx:
        tmp = Path(tmp)
        commit = export_tree(args.baseline, tmp / "baseline")
        trees = {"baseline": tmp / "baseline", "current": ROOT}
        devices_file = tmp / "devices.json"
        devices_file.write_text(json.dumps(write_registry(tmp / "registry", args.devices)))
        influx.query(f'CREATE DATABASE "{DATABASE}"')
        figures: dict[tuple[str, str], list[dict]] = {}
        day = 0
        for r in range(args.rounds):
            for load, rate in (("paced", args.rate), ("flat out", 0.0)):
                for name, tree in trees.items():
                    day += 10
                    with Worker(tree, tmp / f"{name}-{load}-{r}", influx.url, tmp / "registry") as worker:
                        figure = measure(worker, devices_file, args.devices, args.seconds, rate, day)
                    figures.setdefault((load, name), []).append(figure)
                    print(f"round {r + 1} {load:8} {name:8}: {figure['us_per_upload']:6.1f} µs CPU/upload,"
                          f" {figure['acked_per_s']:8,.0f} acked/s, ack p50 {figure['p50_ms']:.1f} ms,"
                          f" p99 {figure['p99_ms']:.1f} ms", flush=True)

    def median(load: str, tree: str, figure: str) -> float:
        return statistics.median(f[figure] for f in figures[(load, tree)])

    rows = []
    for load in ("paced", "flat out"):
        base, now = median(load, "baseline", "us_per_upload"), median(load, "current", "us_per_upload")
        rows.append(
            f"| {load} | {base:.1f} µs | {now:.1f} µs | {now / base:.0%}"
            f" | {median(load, 'baseline', 'acked_per_s'):,.0f} / {median(load, 'current', 'acked_per_s'):,.0f}"
            f" | {median(load, 'baseline', 'p50_ms'):.0f} / {median(load, 'baseline', 'p99_ms'):.0f} ms"
            f" | {median(load, 'current', 'p50_ms'):.0f} / {median(load, 'current', 'p99_ms'):.0f} ms |"
        )
    table = "\n".join(rows)
    print(table)
    if not args.no_report:
        write_section("Worker CPU per upload", f"""\
`python bench/cpu_per_upload.py --baseline {args.baseline} --rounds {args.rounds} --seconds {args.seconds:g} --rate {args.rate:g} --devices {args.devices}`:
one `gkjk serve` worker, {args.devices} devices over real TCP (2011 uploads of 10 factors, A=1), InfluxDB and
one load generator on the same machine; CPU time (user + system) of the worker process during the run divided
by the uploads it acknowledged; median of {args.rounds} rounds, baseline ({commit}) and current tree alternating.
"paced": {args.rate:g} uploads/s offered, about one upload per TCP read, so per-read costs (a send per 9014,
which on loopback also pays the receiver's TCP work) dominate; "flat out": as fast as acknowledgements come
back (window 50 per connection), many uploads per read. Ack latency is from the load generator, which shares
the 2 cores, so it shows queueing more than the server.

| load | baseline CPU per upload | current | current / baseline | acked/s baseline / current | ack p50 / p99 baseline | current |
|---|---|---|---|---|---|---|
{table}
""")


if __name__ == "__main__":
    main()
