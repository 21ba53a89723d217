"""Self-metrics: counters of the ingest server, written to InfluxDB every few seconds.

Operators watch these in Grafana (measurement ``gkjk_ingest``) and on the
console status line: frames in by CN, errors by kind, acknowledgements,
connections, spool depth and write latency.
"""

from __future__ import annotations

import math
import socket
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from twisted.internet.task import LoopingCall

from ingest_twisted.heap import CollectorPauses
from ingest_twisted.lineprotocol import point
from ingest_twisted.points import Conversion


class AckLatency:
    """Seconds from a TCP read to the write of its 9014s (the spool's fsync wait included), per reporting interval.

    One sample per read, weighted by the acknowledgements it carried; the server's own share of the latency a
    device sees (network and the device's stack come on top). Kept as a histogram of logarithmic buckets 2 %
    wide, so memory and the cost of a sample stay the same at any rate; a percentile is reported as its bucket's
    upper bound (at most 2 % high), the maximum exactly.
    """

    FLOOR = 1e-4  # seconds: faster acknowledgements count in the first bucket
    RATIO = 1.02  # upper bound / lower bound of a bucket
    _LOG_RATIO = math.log(RATIO)

    def __init__(self) -> None:
        self._weights: dict[int, int] = {}
        self._max = 0.0

    def record(self, seconds: float, acks: int) -> None:
        bucket = int(math.log(max(seconds, self.FLOOR) / self.FLOOR) / self._LOG_RATIO)
        self._weights[bucket] = self._weights.get(bucket, 0) + acks
        self._max = max(self._max, seconds)

    def percentiles_ms(self) -> dict[str, float]:
        """``ack_latency_p50_ms``, ``ack_latency_p99_ms``, ``ack_latency_max_ms`` of the interval (none if empty)."""
        if not self._weights:
            return {}
        total = sum(self._weights.values())
        found: dict[str, float] = {}
        seen = 0
        for bucket in sorted(self._weights):
            seen += self._weights[bucket]
            upper = min(self.FLOOR * self.RATIO ** (bucket + 1), self._max)
            for name, share in (("ack_latency_p50_ms", 0.5), ("ack_latency_p99_ms", 0.99)):
                if name not in found and seen >= share * total:
                    found[name] = round(upper * 1000, 3)
        found["ack_latency_max_ms"] = round(self._max * 1000, 3)
        return found

    def reset(self) -> None:
        self._weights = {}
        self._max = 0.0


@dataclass
class IngestStats:
    """Counters since start (monotonic); gauges are set as they change."""

    connections: int = 0
    devices_online: int = 0
    bytes_in: int = 0
    frames_in: int = 0
    stored: int = 0
    acks_out: int = 0
    lines_out: int = 0
    unmapped_factors: int = 0
    bad_values: int = 0
    missing_data_time: int = 0
    backfill_requests: int = 0
    split_complete: int = 0
    by_cn: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    ack_latency: AckLatency = field(default_factory=AckLatency)

    def count_cn(self, cn: str) -> None:
        self.by_cn[cn] += 1

    def count_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def record_conversion(self, conversion: Conversion) -> None:
        self.lines_out += len(conversion.lines)
        self.unmapped_factors += conversion.unmapped_factors
        self.bad_values += conversion.bad_values
        self.missing_data_time += conversion.missing_data_time

    def fields(self) -> dict[str, int | float]:
        values: dict[str, int | float] = {
            name: getattr(self, name)
            for name in (
                "connections", "devices_online", "bytes_in", "frames_in", "stored", "acks_out",
                "lines_out", "unmapped_factors", "bad_values", "missing_data_time", "backfill_requests",
                "split_complete",
            )
        }
        values["errors"] = sum(self.errors.values())
        values.update({f"cn_{cn}": n for cn, n in self.by_cn.items() if cn.isdigit()})
        values.update({f"error_{kind}": n for kind, n in self.errors.items()})
        values.update(self.ack_latency.percentiles_ms())
        return values


class MetricsReporter:
    """Writes the counters (and the writer's) as one point every `interval` seconds."""

    def __init__(
        self,
        stats: IngestStats,
        writer_stats: Callable[[], Any],
        submit: Callable[[list[bytes]], object],
        worker: int,
        interval: float,
        clock,
        gc_pauses: CollectorPauses | None = None,
    ) -> None:
        self._stats = stats
        self._gc_pauses = gc_pauses
        self._writer_stats = writer_stats
        self._submit = submit
        self._tags = {"host": socket.gethostname(), "worker": str(worker)}
        self._loop = LoopingCall(self.report)
        self._loop.clock = clock
        self._interval = interval

    def start(self) -> None:
        self._loop.start(self._interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def snapshot(self) -> dict[str, int | float]:
        values = self._stats.fields()
        writer = asdict(self._writer_stats())
        values.update({f"writer_{k}": v for k, v in writer.items() if isinstance(v, (int, float))})
        if self._gc_pauses is not None:
            values.update(self._gc_pauses.fields())
        return values

    def report(self) -> None:
        self._submit([point("gkjk_ingest", self._tags, self.snapshot(), time.time_ns())])
        self._stats.ack_latency.reset()  # latency percentiles are per interval, the counters since start
        if self._gc_pauses is not None:
            self._gc_pauses.reset_interval()
