"""End-to-end ingest throughput and ack latency, against the raw InfluxDB ceiling measured in the same run.

Everything runs on this machine: a fresh InfluxDB (Debian's influxd), `gkjk serve`,
and load generators (bench/loadgen.py) playing devices over real TCP. Each upload
is a 2011 packet of 10 factors with A=1; the server acknowledges after the spool
fsync and writes one point per packet to InfluxDB.

1. Ceiling: bulk line-protocol POSTs of the same points straight to InfluxDB.
2. Full load: load generators as fast as acknowledgements come back; the
   sustained rate counts until every acknowledged record is in InfluxDB.
3. Half load: the same at half the sustained rate, for the ack latency.
4. Half the target: the same at half of `--target` (issue 2 asks for p99 < 50 ms at half of 20,000/s),
   `--repeats` times; the run with the median p99 is reported, with every run's p99 beside it, because one
   20 s run on a shared machine can catch a slow spell of its neighbours.

    python bench/throughput.py [--seconds 20] [--workers 2] [--devices 1000]

Prints the figures and writes them to docs/benchmarks.md (section "Ingest throughput").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from gkjk import uscc  # noqa: E402
from gkjk_process import ServerProcess  # noqa: E402
from gkjk.influxd import InfluxServer  # noqa: E402
from loadgen import FACTORS  # noqa: E402
from procstat import cpu_seconds, process_tree  # noqa: E402
from report import write_section  # noqa: E402

DATABASE = "bench"
QUIET_CORES = 0.1  # a paced run starts once InfluxDB uses less CPU than this (done compacting earlier runs)
QUIET_TIMEOUT = 300.0
METRICS_INTERVAL = 5.0  # seconds between the workers' gkjk_ingest points
WARMUP = 2.0  # seconds of a paced run whose uploads count for the rate but not the latency: first contact of each device


def write_registry(directory: Path, devices: int, per_enterprise: int = 20) -> list[dict]:
    """Enterprises with `per_enterprise` meters each; every meter's 10 factors measure one facility."""
    directory.mkdir(parents=True, exist_ok=True)
    listed = []
    for e in range(devices // per_enterprise):
        body = f"91320682MA{e:07d}"
        lines = [
            f"id: {body}{uscc.check_digit(body)}",
            f"name: 如皋市压测企业{e}有限公司",
            "county: 如皋市", "town: 如城街道", "industry: 通用",
            "location: {lat: 32.38, lon: 120.56}",
            "facilities:", "  production:",
        ]
        lines += [f"    - {{id: P{d}, name: 生产线{d}, kind: other}}" for d in range(per_enterprise)]
        lines.append("devices:")
        for d in range(per_enterprise):
            mn = f"BE{e:010d}{d:012d}"
            listed.append({"mn": mn, "pw": "123456"})
            lines += [f"  - mn: {mn}", '    pw: "123456"', "    protocol: hj212-2017", "    points:"]
            lines += [f"      - {{factor: {code}, facility: P{d}, quantity: current}}" for code in FACTORS]
        (directory / f"bench-{e:05d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listed


def influx_ceiling(influx: InfluxServer, seconds: float, threads: int = 2, batch: int = 5000) -> float:
    """Points/s that InfluxDB takes from bulk POSTs of points shaped like the server's."""
    influx.query('CREATE DATABASE "ceiling"')
    fields = ",".join(f"{code}-Rtd={n}.5,{code}-Flag=\"N\"" for n, code in enumerate(FACTORS))
    base = 1_767_225_600 * 10**9
    bodies = []
    for b in range(threads * 40):
        lines = [
            f"rtd,county=如皋市,ent=91320682MA000000{b % 10},fac=P{i % 20},mn=BE{b:010d}{i % 20:012d} {fields} "
            f"{base + (b * batch + i) * 10**9}"
            for i in range(batch)
        ]
        bodies.append("\n".join(lines).encode())
    written = [0] * threads
    deadline = time.monotonic() + seconds

    def post(index: int) -> None:
        i = index
        while time.monotonic() < deadline:
            influx.write(bodies[i % len(bodies)], db="ceiling")
            written[index] += batch
            i += threads

    started = time.monotonic()
    workers = [threading.Thread(target=post, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(written) / (time.monotonic() - started)


def run_load(port: int, devices_file: Path, processes: int, connections: int, seconds: float, rate: float,
             start_day: int = 0, warmup: float = 0.0) -> list[dict]:
    commands = [
        [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--port", str(port), "--devices", str(devices_file),
         "--offset", str(p * connections), "--connections", str(connections), "--seconds", str(seconds),
         "--rate", str(rate / processes), "--start-day", str(start_day), "--warmup", str(warmup)]
        for p in range(processes)
    ]
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    return [json.loads(p.communicate()[0]) for p in running]


def wait_stored(influx: InfluxServer, expected: int, timeout: float = 300.0) -> float:
    """Seconds until InfluxDB holds `expected` points in rtd."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if influx.count(DATABASE, "rtd", '"i33200-Rtd"') >= expected:
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"InfluxDB did not reach {expected} points in {timeout} s")


def server_p99(influx: InfluxServer, since_ns: int) -> float:
    """The worst per-interval p99 the workers reported (gkjk_ingest: read -> 9014 written) since a moment."""
    time.sleep(METRICS_INTERVAL + 1)  # the interval that holds the run's end is reported
    result = influx.query(f'SELECT max("ack_latency_p99_ms") FROM "gkjk_ingest" WHERE time >= {since_ns}',
                          db=DATABASE)
    series = result["results"][0].get("series")
    return series[0]["values"][0][1] if series else float("nan")


@dataclass
class Paced:
    """A paced run: acknowledged rate, ack latency p50/p99 seen by the load generators after the warm-up and p99
    over the whole run, the servers' own p99 (ms), and the CPU (cores) the server, InfluxDB and the load generators
    used meanwhile."""

    acked: float
    p50: float
    p99: float
    p99_all: float
    server_p99: float
    server_cores: float
    influx_cores: float
    loadgen_cores: float


def wait_quiet(pid: int) -> float:
    """Seconds until a process uses under QUIET_CORES of CPU over 5 s: InfluxDB compacts a burst for a while after
    it, and a paced run measures the steady state at its own rate, not that aftermath."""
    started = time.monotonic()
    while time.monotonic() - started < QUIET_TIMEOUT:
        before = cpu_seconds(pid)
        time.sleep(5)
        if cpu_seconds(pid) - before < QUIET_CORES * 5:
            break
    return time.monotonic() - started


def paced(influx: InfluxServer, server: ServerProcess, devices_file: Path, processes: int, connections: int,
          seconds: float, rate: float, start_day: int) -> Paced:
    """Play new records at `rate` and measure them."""
    settle = wait_quiet(influx.pid)
    began = time.time_ns()
    serving = process_tree(server.process.pid)
    server_cpu, influx_cpu = sum(map(cpu_seconds, serving)), cpu_seconds(influx.pid)
    results = run_load(server.port, devices_file, processes, connections, seconds, rate=rate, start_day=start_day,
                       warmup=WARMUP)
    elapsed = max(r["seconds"] for r in results)
    run = Paced(
        acked=sum(r["acked_in_time"] for r in results) / elapsed,
        p50=max(r["ack_p50_ms"] for r in results),
        p99=max(r["ack_p99_ms"] for r in results),
        p99_all=max(r["ack_p99_all_ms"] for r in results),
        server_p99=server_p99(influx, began),
        server_cores=(sum(map(cpu_seconds, serving)) - server_cpu) / elapsed,
        influx_cores=(cpu_seconds(influx.pid) - influx_cpu) / elapsed,
        loadgen_cores=sum(r["cpu_cores"] for r in results),
    )
    print(f"paced (after {settle:.0f} s for InfluxDB to settle): offered {rate:,.0f}/s, acked {run.acked:,.0f}/s, ack p50 {run.p50:.1f} ms, p99 {run.p99:.1f} ms"
          f" ({run.p99_all:.1f} ms with the first {WARMUP:g} s);"
          f" server p99 {run.server_p99:.1f} ms; CPU cores: server {run.server_cores:.2f}, InfluxDB"
          f" {run.influx_cores:.2f}, load generators {run.loadgen_cores:.2f}", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--loadgens", type=int, default=2)
    parser.add_argument("--target", type=float, default=20000.0, help="target packets/s; latency is also measured at half")
    parser.add_argument("--repeats", type=int, default=3, help="paced runs at half the target (median reported)")
    parser.add_argument("--no-report", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gkjk-bench-") as tmp, InfluxServer(Path(tmp) / "influx") as influx:
        tmp = Path(tmp)
        ceiling = influx_ceiling(influx, seconds=10)
        print(f"InfluxDB ceiling: {ceiling:,.0f} points/s", flush=True)
        devices = write_registry(tmp / "registry", args.devices)
        devices_file = tmp / "devices.json"
        devices_file.write_text(json.dumps(devices))
        influx.query(f'CREATE DATABASE "{DATABASE}"')
        server = ServerProcess(
            tmp / "server", influx.url, DATABASE, registry=tmp / "registry",
            ingest={"workers": args.workers, "max_connections_per_ip": 100000},
            metrics={"interval": METRICS_INTERVAL}, backfill={"enabled": False},
        )
        server.start()
        try:
            per_process = args.devices // (2 * args.loadgens)
            full = run_load(server.port, devices_file, args.loadgens, per_process, args.seconds, rate=0)
            acked = sum(r["acked"] for r in full)
            acked_rate = sum(r["acked_in_time"] for r in full) / max(r["seconds"] for r in full)
            drain = wait_stored(influx, acked)
            sustained = acked / (max(r["seconds"] for r in full) + drain)
            print(f"full load: acked {acked_rate:,.0f}/s; all {acked:,} in InfluxDB after a further {drain:.1f} s:"
                  f" sustained {sustained:,.0f} packets/s", flush=True)
            half_rate, target_half = sustained / 2, args.target / 2
            half = paced(influx, server, devices_file, args.loadgens, per_process, args.seconds, half_rate,
                         start_day=1000)
            runs = sorted((paced(influx, server, devices_file, args.loadgens, per_process, args.seconds, target_half,
                                 start_day=2000 + 1000 * i) for i in range(args.repeats)), key=lambda run: run.p99)
            target = runs[len(runs) // 2]
        finally:
            server.stop()

    ratio = sustained / ceiling
    print(f"ratio to the InfluxDB ceiling: {ratio:.0%}")
    if not args.no_report:
        write_section("Ingest throughput", f"""\
`python bench/throughput.py --seconds {args.seconds:g} --workers {args.workers} --devices {args.devices} --target {args.target:g}`:
{args.devices} devices over real TCP, 2011 packets of 10 factors with A=1, `gkjk serve` with
{args.workers} worker(s), InfluxDB 1.6 and {args.loadgens} load-generator processes all on this 2-core machine.

| figure | value |
|---|---|
| InfluxDB ceiling (bulk POSTs of 5,000 equal points, 2 threads) | {ceiling:,.0f} points/s |
| full load: acknowledged while sending | {acked_rate:,.0f} packets/s |
| full load: sustained until every acknowledged record was in InfluxDB | {sustained:,.0f} packets/s |
| ratio sustained / ceiling | {ratio:.0%} |
| half load ({half_rate:,.0f}/s offered, new records, once InfluxDB is done with the full-load run): acknowledged | {half.acked:,.0f} packets/s |
| half load: ack latency p50 / p99 seen by the load generators (after the first {WARMUP:g} s) | {half.p50:.1f} ms / {half.p99:.1f} ms |
| half load: ack latency p99 over the whole run (first contact of every device included) | {half.p99_all:.1f} ms |
| half load: ack latency p99 inside the server (read -> 9014 written, worst 5 s interval) | {half.server_p99:.1f} ms |
| half load: CPU cores used by server / InfluxDB / load generators (of 2) | {half.server_cores:.2f} / {half.influx_cores:.2f} / {half.loadgen_cores:.2f} |
| half the target ({target_half:,.0f}/s offered, new records): acknowledged | {target.acked:,.0f} packets/s |
| half the target: ack latency p50 / p99 seen by the load generators (after the first {WARMUP:g} s), run with the median p99 of {args.repeats} | {target.p50:.1f} ms / {target.p99:.1f} ms |
| half the target: p99 of each run, in ascending order | {" / ".join(f"{run.p99:.1f}" for run in runs)} ms |
| half the target: ack latency p99 over the whole run | {target.p99_all:.1f} ms |
| half the target: ack latency p99 inside the server | {target.server_p99:.1f} ms |
| half the target: CPU cores used by server / InfluxDB / load generators (of 2) | {target.server_cores:.2f} / {target.influx_cores:.2f} / {target.loadgen_cores:.2f} |

Ack latency seen by the load generators runs from just before the upload's `send()` to the kernel's receive
timestamp of its 9014 (SO_TIMESTAMPNS), so the generators' own scheduling on the shared cores is not counted;
the time an upload waits in the server's socket for a worker to get a core is. The load generators connect
every device before the clock starts; the first {WARMUP:g} s of a paced run still hold the server's first contact
with each device (authentication, session, conversion plan: about 0.2 ms of CPU per device), so the steady-state
figures leave them out and the whole-run p99 is given beside them.
""")


if __name__ == "__main__":
    main()
