"""Gap-driven backfill: ask online devices for the minute/hour/day records we are missing.

Each (MN, CN) stream of period data has an expected step (learned for minute
data, fixed for hour and day data). When a record arrives more than one step
after the previous newest one, the records in between form a hole. After a
grace period (devices often re-send stored records by themselves after an
outage, in order, which shrinks the hole from its start) the remaining hole is
requested with CN 2051/2061/2031 and BeginTime/EndTime, one request per device
at a time, at most `rate` requests per second in all.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ingest_twisted.hj212 import replies
from ingest_twisted.hj212.packet import Packet

if TYPE_CHECKING:
    from ingest_twisted.protocol import DataLoggerProtocol

log = Logger()

FIXED_STEPS = {"2061": timedelta(hours=1), "2031": timedelta(days=1)}
#: Seconds a hole waits before it is requested, so the device's own replay can fill it first.
GRACE_SECONDS = 120.0
MAX_ATTEMPTS = 3


@dataclass
class Hole:
    mn: str
    cn: str
    begin: datetime
    end: datetime
    not_before: float
    attempts: int = 0


@dataclass
class Stream:
    newest: datetime
    step: timedelta | None = None
    holes: list[Hole] = field(default_factory=list)


class Backfill:
    """Finds holes in period data and requests them from the devices, rate-limited."""

    def __init__(
        self,
        clock,
        enabled: bool = True,
        rate: float = 5.0,
        retry_seconds: float = 1800.0,
        max_age_seconds: float = 48 * 3600.0,
        timezone: str = "Asia/Shanghai",
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self.clock = clock
        self.enabled = enabled
        self.rate = rate
        self.retry_seconds = retry_seconds
        self.max_age = timedelta(seconds=max_age_seconds)
        self.grace_seconds = grace_seconds
        self.zone = ZoneInfo(timezone)
        self.stats = None
        self._streams: dict[tuple[str, str], Stream] = {}
        self._queue: deque[Hole] = deque()
        self._outstanding: dict[str, tuple[str, Hole, float]] = {}
        self._connections: dict[str, DataLoggerProtocol] = {}
        self._loop = LoopingCall(self.send_next)
        self._loop.clock = clock

    def start(self) -> None:
        if self.enabled:
            self._loop.start(1.0 / self.rate, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _parse(self, text: str | None) -> datetime | None:
        if not text or len(text) < 14 or not text[:14].isdigit():
            return None
        try:
            return datetime.strptime(text[:14], "%Y%m%d%H%M%S")
        except ValueError:
            return None

    def record_seen(self, packet: Packet, protocol: DataLoggerProtocol) -> None:
        """Note a stored period record; open a hole if it jumped past missing ones."""
        if not self.enabled:
            return
        moment = self._parse(packet.cp.data_time)
        if moment is None:
            return
        mn = packet.mn.upper()
        self._connections[mn] = protocol
        key = (mn, packet.cn)
        stream = self._streams.get(key)
        if stream is None:
            self._streams[key] = Stream(newest=moment, step=FIXED_STEPS.get(packet.cn))
            return
        self._fill(stream, moment)
        if moment <= stream.newest:
            return
        gap = moment - stream.newest
        if packet.cn == "2051" and (stream.step is None or gap < stream.step):
            stream.step = gap
        step = stream.step
        if step is not None and gap >= 2 * step:
            begin = max(stream.newest + step, moment - self.max_age)
            hole = Hole(mn, packet.cn, begin, moment - step, self.clock.seconds() + self.grace_seconds)
            stream.holes.append(hole)
            self._queue.append(hole)
        stream.newest = moment

    def _fill(self, stream: Stream, moment: datetime) -> None:
        """A record arrived inside a hole: shrink the hole from whichever edge it fills."""
        for hole in stream.holes:
            if hole.begin <= moment <= hole.end and stream.step is not None:
                if moment == hole.begin:
                    hole.begin += stream.step
                elif moment == hole.end:
                    hole.end -= stream.step
        stream.holes = [h for h in stream.holes if h.begin <= h.end]

    def send_next(self) -> None:
        """Send at most one request per tick (the tick is 1/rate seconds)."""
        now = self.clock.seconds()
        for mn, (qn, hole, sent_at) in list(self._outstanding.items()):
            if now - sent_at > self.retry_seconds:
                del self._outstanding[mn]
                if hole.attempts < MAX_ATTEMPTS:
                    hole.not_before = now
                    self._queue.append(hole)
        for _ in range(len(self._queue)):
            hole = self._queue.popleft()
            if hole.begin > hole.end:
                continue
            stream = self._streams.get((hole.mn, hole.cn))
            if stream is None or hole not in stream.holes:
                continue
            protocol = self._connections.get(hole.mn)
            if hole.not_before > now or hole.mn in self._outstanding or protocol is None:
                self._queue.append(hole)
                continue
            self._request(protocol, hole, now)
            return

    def _request(self, protocol: DataLoggerProtocol, hole: Hole, now: float) -> None:
        ref = protocol.factory.registry.current.device(hole.mn)
        if ref is None:
            return
        request = replies.backfill_request(
            mn=ref.device.mn, pw=ref.device.pw, cn=hole.cn, begin=hole.begin, end=hole.end,
            qn_time=datetime.fromtimestamp(now, self.zone).replace(tzinfo=None),
            version=protocol_version(ref.device.protocol),
        )
        hole.attempts += 1
        self._outstanding[hole.mn] = (request.qn, hole, now)
        protocol.sendPacket(request)
        if self.stats is not None:
            self.stats.backfill_requests += 1
        log.info("backfill: asked MN {mn} for CN {cn} {begin} .. {end}", mn=hole.mn, cn=hole.cn,
                 begin=hole.begin.isoformat(), end=hole.end.isoformat())

    def device_replied(self, packet: Packet) -> None:
        """9012 (executed) closes the request with the same QN; the records came as ordinary uploads."""
        mn = packet.mn.upper()
        outstanding = self._outstanding.get(mn)
        if outstanding is None or outstanding[0] != packet.qn:
            return
        if packet.cn == "9012":
            del self._outstanding[mn]
            _, hole, _ = outstanding
            stream = self._streams.get((mn, hole.cn))
            if stream is not None and hole in stream.holes:
                stream.holes.remove(hole)
        elif packet.cn == "9011" and packet.cp.params.get("QnRtn", "1") != "1":
            del self._outstanding[mn]

    def device_offline(self, mn: str) -> None:
        self._connections.pop(mn, None)
        self._outstanding.pop(mn, None)


def protocol_version(name: str) -> str:
    """Registry protocol name (``hj212-2017``) to codec version (``2017``)."""
    return name.rsplit("-", 1)[-1]
