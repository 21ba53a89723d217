"""Self-metrics of the relay (measurement `gkjk_relay`, docs/schema.md): are alarm notifications getting out?

Counters are incremented where the events happen (the webhook's answers, the dispatcher's outcomes) and count from
the process's start, like `gkjk_ingest`'s; the outbox gauges are read from the outbox when a point is made. Every
`[metrics] interval` seconds one point per channel and one for the webhook intake go to InfluxDB. A write that fails
is logged and the next interval writes the counters again: delivery never waits for InfluxDB nor depends on it.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gkjk.relay.outbox import Outbox
from ingest_twisted.influx import InfluxClient, InfluxError
from ingest_twisted.lineprotocol import point

log = Logger()

MEASUREMENT = "gkjk_relay"
#: The webhook's refusals (docs/relay.md); each is written as `refused_<status>` even while 0, so a panel or an
#: alert on one of them finds the field from the first point on.
REFUSALS = (400, 401, 404, 413, 503)


@dataclass
class ChannelCounters:
    """What the dispatcher did with one channel's messages since start."""

    delivered: int = 0  # the receiver confirmed the message (in a dry run: recorded in dry_run_log)
    failed_attempts: int = 0  # attempts that did not deliver, whether retried or given up
    dead_lettered: int = 0  # messages given up and appended to the dead letters
    rate_limit_postponed: int = 0  # a message held back by a rate limit, no attempt made (each time it is)


@dataclass
class IntakeCounters:
    """What the webhook answered Grafana since start."""

    requests: int = 0  # POST /grafana/... received
    accepted: int = 0  # answered 200
    refused: Counter[int] = field(default_factory=Counter)  # answered otherwise, by status
    queued: int = 0  # new messages committed to the outbox by accepted requests
    duplicates: int = 0  # messages of accepted requests the outbox already knew

    def fields(self) -> dict[str, int]:
        refused = {f"refused_{status}": self.refused[status] for status in sorted({*REFUSALS, *self.refused})}
        return {"requests": self.requests, "accepted": self.accepted, "refused": sum(self.refused.values()),
                **refused, "queued": self.queued, "duplicates": self.duplicates}


class RelayStats:
    """The counters one relay process shares between its webhook and its dispatcher."""

    def __init__(self) -> None:
        self.intake = IntakeCounters()
        self.channels: dict[str, ChannelCounters] = {}

    def channel(self, name: str) -> ChannelCounters:
        return self.channels.setdefault(name, ChannelCounters())


class MetricsReporter:
    """Writes the relay's points every `interval` seconds with the InfluxDB client the relay already has."""

    def __init__(self, stats: RelayStats, outbox: Outbox, channels: Iterable[str], client: InfluxClient,
                 interval: float, reactor: Any, dry_run: bool = False) -> None:
        self.stats = stats
        self.outbox = outbox
        self.channels = tuple(channels)
        self.client = client
        self.interval = interval
        self.reactor = reactor
        self.host = socket.gethostname()
        self.dry_run = int(dry_run)
        self._loop = LoopingCall(lambda: Deferred.fromCoroutine(self.report()))
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def lines(self, now: float) -> bytes:
        """The points of this moment: one per channel (the configured ones, and any with messages or events),
        then the intake's, without a channel tag. Time in milliseconds."""
        backlog = self.outbox.backlog()
        at = int(now * 1000)
        lines = []
        for name in sorted({*self.channels, *backlog, *self.stats.channels}):
            pending, oldest = backlog.get(name, (0, now))
            fields = {**asdict(self.stats.channel(name)), "pending": pending,
                      "oldest_pending_seconds": round(max(0.0, float(now - oldest)), 3), "dry_run": self.dry_run}
            lines.append(point(MEASUREMENT, {"host": self.host, "channel": name}, fields, at))
        fields = {**self.stats.intake.fields(), "dry_run": self.dry_run}
        lines.append(point(MEASUREMENT, {"host": self.host}, fields, at))
        return b"\n".join(lines)

    async def report(self) -> None:
        """Write the points of now; a failure is logged, never raised (it would stop the loop)."""
        try:
            await self.client.write(self.lines(self.reactor.seconds()), precision="ms")
        except InfluxError as exc:
            log.warn("relay self-metrics ({m}) not written: {error}", m=MEASUREMENT, error=str(exc))
        except Exception:
            log.failure("cannot write the relay's self-metrics ({m})", m=MEASUREMENT)
