"""The ingest server: the factory that holds shared state, and the process that runs it.

One `IngestFactory` per worker process holds what all connections share: the
site registry, the durable writer, counters, device sessions and the
connection caps. `Worker` wires it to InfluxDB, the spool and a listening
port; `ingest_twisted.supervisor` runs one worker or a supervisor with several.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from twisted.internet import defer, threads
from twisted.internet.protocol import ServerFactory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from gkjk.config import Config, IngestConfig
from gkjk.registry import DeviceRef, RegistryError, RegistryHolder
from ingest_twisted import heap
from ingest_twisted.backfill import Backfill
from ingest_twisted.hj212.packet import Packet
from ingest_twisted.hj212.reassembly import Reassembler
from ingest_twisted.influx import InfluxClient
from ingest_twisted.lineprotocol import point
from ingest_twisted.metrics import IngestStats, MetricsReporter
from ingest_twisted.points import PointBuilder
from ingest_twisted.protocol import DataLoggerProtocol
from ingest_twisted.spool import Spool
from ingest_twisted.writer import DurableWriter

log = Logger()

#: Seconds between two log lines of the same error kind; the rest are counted.
LOG_EVERY = 10.0


class IngestFactory(ServerFactory):
    """Shared state of all device connections in one process."""

    def __init__(self, config: IngestConfig, registry: RegistryHolder, writer, clock, backfill: Backfill | None = None) -> None:
        self.config = config
        self.registry = registry
        self.writer = writer
        self.clock = clock
        self.stats = IngestStats()
        self.builder = PointBuilder(config.timezone)
        self.zone = ZoneInfo(config.timezone)
        self.backfill = backfill or Backfill(clock=clock, enabled=False)
        self.protocols: set[DataLoggerProtocol] = set()
        self.sessions: dict[str, DataLoggerProtocol] = {}
        self._per_ip: dict[str, int] = {}
        self._reassembler = Reassembler(config.reassembly_timeout)
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    # -- connections -----------------------------------------------------------

    def buildProtocol(self, addr) -> DataLoggerProtocol | None:
        host = getattr(addr, "host", "")
        if self.stats.connections >= self.config.max_connections:
            self.stats.count_error("max_connections")
            self.log_error("max_connections", "refused {host}: {n} connections open", host=host, n=self.stats.connections)
            return None
        if self._per_ip.get(host, 0) >= self.config.max_connections_per_ip:
            self.stats.count_error("max_connections_per_ip")
            self.log_error("max_connections_per_ip", "refused {host}: too many connections from it", host=host)
            return None
        self._per_ip[host] = self._per_ip.get(host, 0) + 1
        protocol = DataLoggerProtocol(self, host)
        self.protocols.add(protocol)
        return protocol

    def connection_closed(self, protocol: DataLoggerProtocol) -> None:
        self.protocols.discard(protocol)
        host = protocol.host
        left = self._per_ip.get(host, 1) - 1
        if left > 0:
            self._per_ip[host] = left
        else:
            self._per_ip.pop(host, None)
        for mn in protocol.mns:
            if self.sessions.get(mn) is protocol:
                del self.sessions[mn]
                self.stats.devices_online = len(self.sessions)
                self.write_event(mn, "offline", protocol.peer, "connection closed")
                self.backfill.device_offline(mn)

    # -- devices ----------------------------------------------------------------

    def authenticate(self, packet: Packet) -> DeviceRef | None:
        """The registered device whose MN and PW the packet carries, or None."""
        ref = self.registry.current.device(packet.mn)
        if ref is None or ref.device.pw != packet.pw:
            return None
        return ref

    def device_online(self, mn: str, protocol: DataLoggerProtocol) -> None:
        """A device spoke on a new connection; an older connection for it is stale (half-open after a carrier drop)."""
        old = self.sessions.get(mn)
        self.sessions[mn] = protocol
        self.stats.devices_online = len(self.sessions)
        if old is not None and old is not protocol:
            old.mns.discard(mn)
            self.write_event(mn, "offline", old.peer, "replaced by a new connection")
            if not old.mns:
                old.transport.loseConnection()
        self.write_event(mn, "online", protocol.peer, "")

    def write_event(self, mn: str, event: str, peer: str, reason: str) -> None:
        """Connect/disconnect events go through the durable writer like data."""
        tags = {"mn": mn, "event": event}
        ref = self.registry.current.device(mn)
        if ref is not None:
            tags["ent"] = ref.enterprise.id
            tags["county"] = ref.enterprise.county
        stored = self.writer.submit([point("device_event", tags, {"peer": peer, "reason": reason}, time.time_ns())])
        stored.addErrback(lambda failure: log.warn("event {event} of MN {mn} not stored: {why}",
                                                   event=event, mn=mn, why=failure.getErrorMessage()))

    def local_now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), self.zone)

    # -- split packets ------------------------------------------------------------

    def track_fragment(self, packet: Packet) -> None:
        """Fragments are stored as they come (InfluxDB merges them by MN+CN+DataTime); here we only count completeness."""
        if self._reassembler.add(packet, self.clock.seconds()) is not None:
            self.stats.split_complete += 1

    def expire_fragments(self) -> None:
        for merged in self._reassembler.expire(self.clock.seconds()):
            self.stats.count_error("split_incomplete")
            self.log_error("split_incomplete", "MN {mn} CN {cn} DataTime {dt}: split packet incomplete",
                           mn=merged.mn, cn=merged.cn, dt=merged.cp.data_time)

    # -- logging ------------------------------------------------------------------

    def log_error(self, kind: str, format: str, /, **fields) -> None:
        """Log one line per error kind every LOG_EVERY seconds; a flood of garbage must not flood the log."""
        now = self.clock.seconds()
        if now - self._last_logged.get(kind, -LOG_EVERY) < LOG_EVERY:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last_logged[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            format += f" (and {suppressed} more of this kind since the last line)"
        log.warn(format, **fields)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other workers bind too (SO_REUSEPORT): the kernel spreads connections evenly."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listening.bind((host, port))
    listening.listen(4096)
    listening.setblocking(False)
    return listening


def influx_client(config: Config, reactor) -> InfluxClient:
    influx = config.influx
    return InfluxClient(
        url=influx.url,
        database=influx.database,
        api=influx.api,
        retention_policy=influx.retention_policy or None,
        username=influx.username or None,
        password=influx.password or None,
        token=influx.token or None,
        org=influx.org or None,
        timeout=influx.timeout,
        reactor=reactor,
    )


def reload_registry_on_sighup(holder: RegistryHolder, reactor) -> None:
    """SIGHUP re-reads the site registry in a thread (`gkjk rules`, `gkjk relay`); one with errors is refused and
    the old one kept."""
    def reload() -> None:
        d = threads.deferToThread(holder.reload)
        d.addCallbacks(lambda changes: log.info("registry reloaded: {c}", c="; ".join(changes) or "no changes"),
                       lambda f: log.error("registry reload refused: {e}", e=str(f.value)))

    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(reload))


class Worker:
    """One serving process: registry, writer, factory, listening port, metrics."""

    def __init__(self, config: Config, reactor, index: int = 0, reuse_port: bool = False) -> None:
        self.config = config
        self.reactor = reactor
        self.index = index
        self.reuse_port = reuse_port
        self.registry = RegistryHolder(Path(config.registry.path))
        spool_dir = config.spool.worker_directory(index)
        self.status_path = Path(config.spool.path) / f"status-{index}.json"
        self.influx = influx_client(config, reactor)
        self.spool = Spool(spool_dir, segment_size=config.spool.segment_bytes)
        self.writer = DurableWriter(
            self.spool,
            self.influx,
            reactor=reactor,
            batch_max_lines=config.spool.batch_max_lines,
            batch_max_bytes=config.spool.batch_max_bytes,
            flush_interval=config.spool.flush_interval,
            fsync_interval=config.spool.fsync_interval,
        )
        backfill = Backfill(
            clock=reactor,
            enabled=config.backfill.enabled,
            rate=config.backfill.rate,
            retry_seconds=config.backfill.retry_minutes * 60,
            max_age_seconds=config.backfill.max_age_hours * 3600,
            grace_seconds=config.backfill.grace_seconds,
            timezone=config.ingest.timezone,
        )
        self.factory = IngestFactory(config.ingest, self.registry, self.writer, reactor, backfill)
        backfill.stats = self.factory.stats
        self.gc_pauses = heap.CollectorPauses()
        self.metrics = MetricsReporter(
            self.factory.stats, self.writer.stats, self.writer.submit, index, config.metrics.interval, reactor,
            self.gc_pauses,
        )
        self._loops = [
            (LoopingCall(self.factory.expire_fragments), 5.0),
            (LoopingCall(self.write_status), 1.0),
        ]
        self.port = None

    def start(self) -> None:
        ensured = self.influx.ensure_database()
        ensured.addErrback(lambda failure: log.warn(
            "could not create database {db} now ({why}); the writer creates it once InfluxDB answers",
            db=self.config.influx.database, why=failure.getErrorMessage()))
        self.writer.start()
        if self.reuse_port:
            listening = reuse_port_socket(self.config.ingest.host, self.config.ingest.port)
            self.port = self.reactor.adoptStreamPort(listening.fileno(), socket.AF_INET, self.factory)
            listening.close()  # the port holds its own duplicate
        else:
            self.port = self.reactor.listenTCP(
                self.config.ingest.port, self.factory, backlog=4096, interface=self.config.ingest.host
            )
        for loop, interval in self._loops:
            loop.clock = self.reactor
            loop.start(interval, now=False)
        self.gc_pauses.install()
        self.metrics.start()
        self.factory.backfill.start()
        log.info(
            "worker {index} serving HJ 212 on {listen}, {n} enterprises, spool {spool}",
            index=self.index, listen=self.config.ingest.listen,
            n=len(self.registry.current.enterprises), spool=self.config.spool.path,
        )

    @defer.inlineCallbacks
    def reload_registry(self):
        """Parse in a thread (thousands of files take seconds) while devices are served; the swap is atomic."""
        try:
            changes = yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.registry.reload)
        except RegistryError as error:
            log.error("registry reload refused, keeping the old one: {error}", error=str(error))
            return
        heap.freeze_new()
        log.info("registry reloaded: {changes}", changes="; ".join(changes) or "no changes")

    def write_status(self) -> None:
        """A small JSON file per worker, read by the supervisor's status line and `gkjk status`."""
        values = self.metrics.snapshot()
        values["time"] = time.time()
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values), encoding="utf-8")
        os.replace(tmp, self.status_path)

    @defer.inlineCallbacks
    def stop(self):
        """Stop accepting, close connections, and leave nothing undrained but what the spool keeps."""
        for loop, _ in self._loops:
            if loop.running:
                loop.stop()
        self.metrics.stop()
        self.gc_pauses.uninstall()
        self.factory.backfill.stop()
        if self.port is not None:
            yield self.port.stopListening()
        for protocol in list(self.factory.protocols):
            protocol.transport.loseConnection()
        # Let the connections close, so their offline events are written before the writer stops.
        for _ in range(50):
            if not self.factory.protocols:
                break
            yield deferLater(self.reactor, 0.05, lambda: None)
        yield self.writer.stop()
        self.write_status()
