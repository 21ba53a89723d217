"""The data-logger emulator (`gkjk logger`): a 数采仪 that polls Modbus instruments and uploads HJ 212.

It reads one registry device's points where `layout.instruments` puts them (the same layout `gkjk modbus-sim`
serves), sends real-time data (2011) every RtdInterval and minute, hour and day aggregates (2051, 2061, 2031:
Avg/Min/Max/Flag) to up to three platforms, each over its own connection with its own durable queue (`store.UploadQueue`), and answers the
platforms' commands. When the Modbus gateway cannot be reached it reports a power-loss event (3020) and sends no
data until the gateway answers again; a change of its parameters (set by a platform, or its configuration changed
between runs) is reported as an event too. HJ 212-2025 loggers send heartbeats (9015). An upload whose data
segment would exceed the standard's 1,024 bytes goes as fragments (PNUM/PNO). `carbon_hours` and `run_time`
points are counted by the logger itself (`counters.py`), and so is each facility's daily run time (2041).
A clock or interval a platform sets is kept in the store (`settings.json`) and holds across restarts.

Modbus polling runs pymodbus' blocking client in Twisted's thread pool, one poll at a time: the rest of the
logger stays on the default reactor (no asyncio reactor to install before anything imports Twisted), a hung
gateway blocks only that thread for the client's timeout, and the platform links never wait on Modbus.

Time can be compressed (`--speed`, simulated seconds per real second): every DataTime is simulated time, so an
outage of hours piles up its records in seconds. Records due between two polls share the latest reading.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException
from twisted.internet import threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from gkjk.registry import Device, Enterprise, Registry
from ingest_twisted.field import layout
from ingest_twisted.field.counters import RunCounters
from ingest_twisted.field.registers import BYTE_ORDERS
from ingest_twisted.field.store import DEFAULT_LIMIT, History, UploadQueue, write_json
from ingest_twisted.hj212 import replies, sm4
from ingest_twisted.hj212.frame import Frame, encode_frame
from ingest_twisted.hj212.packet import CP, FLAG_SPLIT, Packet, PacketError, build_cp, build_segment, parse_cp
from ingest_twisted.hj212.packet import parse_segment, parse_time
from ingest_twisted.protocol import HJ212Receiver
from ingest_twisted.simulator import MINUTE_PERIOD, TIME_FORMAT, VERSION_FLAG, Window, period_start, qn_of

log = Logger()

#: Seed 002: a terminal talks to at least three platforms independently.
MAX_PLATFORMS = 3
#: Event reported in a 3020 upload when the Modbus side goes away and when it is back (not a code of the
#: standard, which has no SOE command; the platform stores it in `info` as the text field `Event`).
POWER_LOSS, POWER_BACK = "PowerLoss", "PowerRestored"
#: Event of a 3020 upload reporting a parameter change (seed 002: SOE records of 参数修改), see `parameter_changed`.
PARAMETER_CHANGED = "ParameterChanged"
#: HJ 212: a data segment holds at most 1,024 bytes; longer uploads are split (Flag bit D, PNUM/PNO).
MAX_SEGMENT = 1024
#: Bytes of a frame around its data segment: ``##``, four length digits, four CRC digits, CRLF.
_FRAME_OVERHEAD = 12
#: HJ 212-2025's heartbeat (table 12: "judge whether the link is online"); 2017 and 2005 have none.
HEARTBEAT_CN = "9015"
#: Aggregates the logger sends, each when its period closes (DataTime is the period's start): CN -> length.
AGGREGATES = {"2051": timedelta(minutes=MINUTE_PERIOD), "2061": timedelta(hours=1), "2031": timedelta(days=1)}
#: HJ 212-2017 设备运行时间日历史数据: ``SB<n>-RT``, run hours of each facility per day, sent when the day closes.
RUN_TIME_CN = "2041"
#: Records the logger keeps for backfill requests (`History`), by CN.
HISTORY_CNS = (*AGGREGATES, RUN_TIME_CN)


class ModbusUnreachable(Exception):
    """The gateway refused or dropped the connection: the instruments (or the logger's line) have no power."""


def float32_value(words: list[int], byte_order: str) -> float:
    """The float32 carried by two registers in `byte_order` (inverse of `registers.float32_words`)."""
    wire = struct.pack(">HH", *words)
    big = bytearray(4)
    for position, letter in enumerate(byte_order):
        big["ABCD".index(letter)] = wire[position]
    return struct.unpack(">f", bytes(big))[0]


def decimal_text(value: float) -> str:
    """The shortest plain decimal that reads back as the same float32: exact, and no exponent on the wire."""
    single = struct.unpack(">f", struct.pack(">f", value))[0]
    for digits in range(1, 10):
        text = f"{single:.{digits}g}"
        if struct.unpack(">f", struct.pack(">f", float(text)))[0] == single:
            break
    return format(Decimal(text), "f")


#: Most registers (function code 03) and bits (02) one Modbus request may read.
MAX_REGISTERS, MAX_BITS = 125, 2000


def _spans(bindings: list[layout.Binding], limit: int) -> list[tuple[int, int, list[layout.Binding]]]:
    """Requests reading `bindings`: (first address, count, bindings), each at most `limit` long; neighbours share
    one request, registers an override put far away get their own."""
    spans: list[tuple[int, int, list[layout.Binding]]] = []
    for binding in sorted(bindings, key=lambda b: b.register.address):
        start, end = binding.register.address, binding.register.address + binding.register.words
        if spans and end - spans[-1][0] <= limit:
            first, _, members = spans[-1]
            spans[-1] = (first, max(spans[-1][0] + spans[-1][1], end) - first, [*members, binding])
        else:
            spans.append((start, end - start, [binding]))
    return spans


class ModbusReader:
    """Reads a device's points from its gateway (Modbus TCP, or RTU over TCP). Blocking: call it from a thread."""

    def __init__(self, device: Device, wiring: layout.Connection, timeout: float = 1.0) -> None:
        self.instruments = layout.instruments(device, wiring.byte_order)
        self.wiring = wiring
        self.address = f"{wiring.host}:{wiring.port}"
        self.client = ModbusTcpClient(wiring.host, port=wiring.port, framer=layout.PYMODBUS_FRAMERS[wiring.framer],
                                      timeout=timeout, retries=0)

    def read(self) -> dict[str, float]:
        """Values by factor code; a slave that answers with an exception is left out (its points are missing)."""
        if not self.client.connected and not self.client.connect():
            raise ModbusUnreachable(f"cannot connect to {self.address}")
        try:
            return self._read_all()
        except ModbusException as error:
            self.client.close()
            raise ModbusUnreachable(str(error)) from error

    def _read_all(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for instrument in self.instruments:
            holding = [b for b in instrument.bindings if b.register.table == "holding"]
            bits = [b for b in instrument.bindings if b.register.table != "holding"]
            for first, count, span in _spans(holding, MAX_REGISTERS):
                response = self.client.read_holding_registers(first, count=count, device_id=instrument.slave_id)
                if not response.isError():
                    for b in span:
                        offset = b.register.address - first
                        values[b.point.factor] = float32_value(response.registers[offset:offset + 2],
                                                               instrument.byte_order)
            for first, count, span in _spans(bits, MAX_BITS):
                response = self.client.read_discrete_inputs(first, count=count, device_id=instrument.slave_id)
                if not response.isError():
                    for b in span:
                        values[b.point.factor] = float(response.bits[b.register.address - first])
        return values

    def close(self) -> None:
        self.client.close()


class Clock:
    """Simulated local wall time: `speed` simulated seconds per real second; 1012 sets it."""

    def __init__(self, reactor: IReactorTime, start: datetime, speed: float = 1.0) -> None:
        self.reactor = reactor
        self.speed = speed
        self.set(start)

    def set(self, moment: datetime) -> None:
        self._start, self._real_start = moment, self.reactor.seconds()

    def restart(self) -> None:
        """Let the simulated time run from its start as of now (at high speed set-up time would skip records)."""
        self._real_start = self.reactor.seconds()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(self.reactor.seconds() - self._real_start) * self.speed)


class PlatformProtocol(HJ212Receiver):
    """The logger's side of one platform connection."""

    def __init__(self, link: PlatformLink) -> None:
        self.link = link

    def connectionMade(self) -> None:
        super().connectionMade()
        self.link.factory.resetDelay()
        self.link.connected(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.link.disconnected()

    def frameReceived(self, frame: Frame) -> None:
        key = self.link.logger.device.sm4_key
        try:
            try:
                packet = parse_segment(frame.segment)
            except PacketError as error:
                if error.kind != "encrypted_cp" or not key:
                    raise
                packet = parse_segment(sm4.decrypt_frame(frame, key)[0])
        except (PacketError, ValueError) as error:
            log.warn("platform {platform}: unreadable frame: {error}", platform=self.link.name, error=error)
            return
        self.link.logger.command(self.link, packet)


class PlatformFactory(ReconnectingClientFactory):
    initialDelay = 0.5

    def __init__(self, link: PlatformLink, max_delay: float) -> None:
        self.link = link
        self.maxDelay = max_delay

    def buildProtocol(self, addr: object) -> PlatformProtocol:
        return PlatformProtocol(self.link)


class PlatformLink:
    """One platform: its own connection, reconnect schedule and durable queue, independent of the others."""

    def __init__(self, logger: DataLogger, host: str, port: int, queue: UploadQueue, retry_max: float) -> None:
        self.logger = logger
        self.host, self.port = host, port
        self.name = f"{host}:{port}"
        self.queue = queue
        self.connection: PlatformProtocol | None = None
        self.factory = PlatformFactory(self, retry_max)
        #: QNs of heartbeats sent and not yet answered.
        self.heartbeats: set[str] = set()
        self._heartbeat = LoopingCall(self.heartbeat)
        self._heartbeat.clock = logger.reactor

    def start(self) -> None:
        self.logger.reactor.connectTCP(self.host, self.port, self.factory, timeout=10)

    def stop(self) -> None:
        self.factory.stopTrying()
        if self.connection is not None:
            self.connection.transport.loseConnection()
        self.queue.close()

    def connected(self, connection: PlatformProtocol) -> None:
        """Replay everything unacknowledged, oldest first, before anything new; heartbeats from now on."""
        self.connection = connection
        log.info("platform {platform}: connected, replaying {n} stored records", platform=self.name,
                 n=len(self.queue))
        for frame in list(self.queue.records.values()):
            connection.transport.write(frame)
        if self.logger.heartbeat_interval and not self._heartbeat.running:
            self._heartbeat.start(self.logger.heartbeat_interval, now=False)

    def disconnected(self) -> None:
        self.connection = None
        self.heartbeats.clear()
        if self._heartbeat.running:
            self._heartbeat.stop()

    def heartbeat(self) -> None:
        """9015 with Flag A: the platform answers it (9013), which tells both sides the link is alive. Not queued:
        a heartbeat that cannot be sent has nothing to deliver later."""
        if self.connection is None:
            return
        packet = self.logger.packet(HEARTBEAT_CN, CP(), self.logger.clock.now())
        self.heartbeats.add(packet.qn)
        self.connection.transport.write(encode_frame(build_segment(packet)))

    def acknowledged(self, packet: Packet) -> None:
        """A 9013 notification answer: the link is alive if it answers one of our heartbeats."""
        if packet.qn in self.heartbeats:
            self.heartbeats.discard(packet.qn)
            log.debug("platform {platform}: heartbeat {qn} acknowledged", platform=self.name, qn=packet.qn)

    def upload(self, qn: str, frame: bytes) -> None:
        self.queue.append(qn, frame)
        if self.connection is not None:
            self.connection.transport.write(frame)

    def answer(self, packet: Packet) -> None:
        if self.connection is not None:
            self.connection.sendPacket(packet)


class DataLogger:
    """One device: polls its instruments, keeps minute/hour/day windows and history, feeds every platform link."""

    def __init__(self, device: Device, enterprise: Enterprise, reader: ModbusReader, platforms: list[tuple[str, int]],
                 store: Path, clock: Clock, rtd_interval: int | None = None, poll_every: float = 0.05,
                 queue_limit: int = DEFAULT_LIMIT, retry_max: float = 10.0, heartbeat: float = 60.0) -> None:
        if not 1 <= len(platforms) <= MAX_PLATFORMS:
            raise ValueError(f"a logger talks to 1 to {MAX_PLATFORMS} platforms, not {len(platforms)}")
        self.device = device
        self.reader = reader
        self.clock = clock
        self.reactor = clock.reactor
        self.version = device.protocol.rsplit("-", 1)[-1]
        #: The interval of the command line or the registry; `rtd_interval` is the one in force (a platform's 1062).
        self.local_rtd_interval = self.rtd_interval = rtd_interval or device.rtd_interval
        self.poll_every = poll_every
        self.heartbeat_interval = heartbeat if self.version == "2025" else 0.0
        self.store = store
        self.counters = RunCounters(device, enterprise, store / "counters.json")
        self.links = [PlatformLink(self, host, port, UploadQueue(store / f"{host}_{port}" / "queue.log", queue_limit),
                                   retry_max) for host, port in platforms]
        self.history = {cn: History(store / f"history-{cn}.log", queue_limit) for cn in HISTORY_CNS}
        self.windows: dict[str, Window] = {}
        self.next_tick = clock.now()  # set again by start()
        self.power_lost = False
        self.sequence = 0
        self._polling = False
        self._loop = LoopingCall(self.step)
        self._loop.clock = self.reactor

    def start(self) -> None:
        remote = self.platform_settings()
        self.clock.restart()
        if offset := remote.get("clock_offset", 0.0):
            self.clock.set(self.clock.now() + timedelta(seconds=offset))
        # The first record is due at the start, before the configuration check's file I/O lets the clock run on.
        self.next_tick = self.clock.now().replace(microsecond=0)
        changed = self.check_configuration()
        if "rtd_interval" in changed and remote.pop("rtd_interval", None) is not None:  # the installer's is newer
            write_json(self.store / "settings.json", remote)
        self.rtd_interval = remote.get("rtd_interval", self.local_rtd_interval)
        for link in self.links:
            link.start()
        self._loop.start(self.poll_every, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        for link in self.links:
            link.stop()
        for history in self.history.values():
            history.close()
        self.reader.close()

    # records

    def packet(self, cn: str, cp: CP, moment: datetime, ack: bool = True) -> Packet:
        self.sequence += 1
        return Packet(qn=qn_of(moment, self.sequence), st="44" if self.version == "2025" else "32", cn=cn,
                      pw=self.device.pw, mn=self.device.mn, flag=VERSION_FLAG[self.version] | int(ack), cp=cp)

    def frame(self, packet: Packet) -> bytes:
        segment = build_segment(packet)
        key = self.device.sm4_key
        return sm4.encode_encrypted_frame(segment, key) if key else encode_frame(segment)

    def record(self, cn: str, cp: CP, moment: datetime, links: list[PlatformLink] | None = None) -> None:
        """Queue a data upload (acknowledgement required) on every platform, or on `links` only; split into
        fragments if its data segment would exceed `MAX_SEGMENT`."""
        for frame, packet in self.fragments(cn, cp, moment):
            for link in links or self.links:
                link.upload(packet.qn, frame)

    def fragments(self, cn: str, cp: CP, moment: datetime) -> list[tuple[bytes, Packet]]:
        """The frames of one upload: itself, or fragments of its factors that each fit `MAX_SEGMENT`, sharing
        DataTime, each with its own QN, Flag bit D, PNUM and PNO (params, e.g. an event, ride in the first)."""
        probe = self.packet(cn, cp, moment)
        if len(build_segment(probe)) <= MAX_SEGMENT or len(cp.factors) < 2:  # encrypted, it may still be too long
            whole = self.frame(probe)
            if len(whole) - _FRAME_OVERHEAD <= MAX_SEGMENT or len(cp.factors) < 2:
                return [(whole, probe)]
        # Pack factors by their plain CP length; SM4 makes the sent segment longer, so shrink the budget until
        # every fragment as sent fits.
        sizes = {code: len(build_cp(CP(factors={code: items}))) + 1 for code, items in cp.factors.items()}
        header = len(build_segment(replace(probe, pnum=9999, pno=9999, flag=probe.flag | FLAG_SPLIT,
                                           cp=CP(data_time=cp.data_time, params=cp.params))))
        budget = MAX_SEGMENT
        while True:
            groups: list[dict[str, dict[str, str]]] = [{}]
            used = header
            for code, items in cp.factors.items():
                if groups[-1] and used + sizes[code] > budget:
                    groups.append({})
                    used = header
                groups[-1][code] = items
                used += sizes[code]
            frames = []
            for number, group in enumerate(groups, start=1):
                part = CP(data_time=cp.data_time, factors=group, params=cp.params if number == 1 else {})
                packet = replace(self.packet(cn, part, moment), pnum=len(groups), pno=number)
                packet.flag |= FLAG_SPLIT
                frames.append((self.frame(packet), packet))
            longest = max(len(frame) - _FRAME_OVERHEAD for frame, _ in frames)
            if longest <= MAX_SEGMENT or all(len(g) == 1 for g in groups):
                return frames
            budget = header + int((budget - header) * MAX_SEGMENT / longest * 0.95)

    # polling

    def step(self) -> None:
        if self._polling or self.clock.now() < self.next_tick:
            return
        self._polling = True
        d = threads.deferToThread(self.reader.read)
        d.addCallbacks(self._read, self._unreachable)
        d.addErrback(lambda failure: log.failure("logger step failed", failure))
        d.addBoth(self._polled)

    def _polled(self, _: object) -> None:
        self._polling = False
        if self._loop.running:  # a poll may end after stop() closed the queues
            for link in self.links:
                link.queue.sync()
            self.counters.save()

    def _read(self, values: dict[str, float]) -> None:
        now = self.clock.now()
        if self.power_lost:
            self.power_lost = False
            log.info("MN {mn}: Modbus back", mn=self.device.mn)
            self.record("3020", CP(data_time=now.strftime(TIME_FORMAT), params={"Event": POWER_BACK}), now)
        while self.next_tick <= now:
            self.tick(self.next_tick, values)
            self.next_tick += timedelta(seconds=self.rtd_interval)

    def _unreachable(self, failure: Failure) -> None:
        failure.trap(ModbusUnreachable)
        now = self.clock.now()
        if not self.power_lost:
            self.power_lost = True
            log.warn("MN {mn}: Modbus unreachable ({error}): power loss", mn=self.device.mn,
                     error=failure.getErrorMessage())
            self.record("3020", CP(data_time=now.strftime(TIME_FORMAT), params={"Event": POWER_LOSS}), now)
        self.counters.pause()
        while self.next_tick <= now:  # nothing was measured: no records for these intervals
            self.next_tick += timedelta(seconds=self.rtd_interval)

    def tick(self, moment: datetime, values: dict[str, float]) -> None:
        """One real-time record, and the minute, hour or day records (and the day's run time) of the windows it
        closes."""
        if not values:  # the gateway answered but no slave did: nothing was measured
            return
        if self.counters:
            values = {**values, **self.counters.advance(moment, values, self.rtd_interval)}
        day = self.windows.get("2031")
        if day is not None and day.start != period_start(moment, AGGREGATES["2031"]):
            self.run_time(day.start, moment)
        data_time = moment.strftime(TIME_FORMAT)
        factors = {code: {"Rtd": decimal_text(v), "Flag": "N"} for code, v in values.items()}
        self.record("2011", CP(data_time=data_time, factors=factors), moment)
        for cn, length in AGGREGATES.items():
            start = period_start(moment, length)
            window = self.windows.get(cn)
            if window is not None and window.start != start:
                aggregate = window.cp()
                if aggregate.factors:
                    self.history[cn].add(aggregate.data_time, build_cp(aggregate))
                    self.record(cn, aggregate, moment)
                window = None
            if window is None:
                window = self.windows[cn] = Window(start)
            window.add(values)

    def run_time(self, day: datetime, moment: datetime) -> None:
        """2041 of the day that just closed: the run hours of each facility whose run state the device reads."""
        hours = self.counters.close_day()
        if not hours:
            return
        cp = CP(data_time=day.strftime(TIME_FORMAT),
                devices={f"SB{number}": {"RT": decimal_text(value)} for number, value in hours.items()})
        self.history[RUN_TIME_CN].add(cp.data_time, build_cp(cp))
        self.record(RUN_TIME_CN, cp, moment)

    # platform commands

    def command(self, link: PlatformLink, packet: Packet) -> None:
        params = packet.cp.params
        if packet.cn == "9014":
            link.queue.remove(packet.qn or "")
        elif packet.cn == "9013":
            link.acknowledged(packet)
        elif packet.cn in HISTORY_CNS and "BeginTime" in params:
            self.backfill(link, packet)
        elif packet.cn in ("1011", "1061"):
            link.answer(replies.qn_rtn(packet))
            now = self.clock.now()
            value = {"1011": ("SystemTime", now.strftime(TIME_FORMAT)),
                     "1061": ("RtdInterval", str(self.rtd_interval))}[packet.cn]
            link.answer(self.packet(packet.cn, CP(params=dict([value])), now, ack=False))
            link.answer(replies.exe_rtn(packet))
        elif packet.cn in ("1012", "1062"):
            link.answer(replies.qn_rtn(packet))
            link.answer(replies.exe_rtn(packet, self.configure(link, packet)))
        elif packet.cn not in ("9011", "9012", "9013"):
            link.answer(replies.qn_rtn(packet, replies.QnRtn.BAD_CN))

    def configure(self, link: PlatformLink, packet: Packet) -> replies.ExeRtn:
        """Apply a set-time (1012) or set-interval (1062) command and report the change as an event; the 9012
        code says whether it took."""
        before = self.clock.now()
        try:
            if packet.cn == "1012":
                moment = parse_time(packet.cp.params["SystemTime"])
                change = ("SystemTime", before.strftime(TIME_FORMAT), moment.strftime(TIME_FORMAT))
                self.clock.set(moment)
                self.next_tick = self.clock.now().replace(microsecond=0)
                setting = {"clock_offset": self.platform_settings().get("clock_offset", 0.0)
                           + (moment - before).total_seconds()}
            else:
                interval = int(packet.cp.params["RtdInterval"])
                if not 1 <= interval <= 86400:
                    raise ValueError(interval)
                change = ("RtdInterval", str(self.rtd_interval), str(interval))
                self.rtd_interval = interval
                setting = {"rtd_interval": interval}
        except (KeyError, ValueError):
            return replies.ExeRtn.BAD_CONDITION
        write_json(self.store / "settings.json", {**self.platform_settings(), **setting})
        log.info("MN {mn}: {cn} {params}", mn=self.device.mn, cn=packet.cn, params=packet.cp.params)
        self.parameter_changed(*change, link.name, before)
        return replies.ExeRtn.SUCCESS

    def parameter_changed(self, parameter: str, old: str, new: str, source: str, moment: datetime,
                          **more: str) -> None:
        """3020 ``Event=ParameterChanged`` with Parameter, OldValue, NewValue, Source and the millisecond EventTime
        (DataTime: the logger's clock when it changed, before a new time took effect)."""
        params = {"Event": PARAMETER_CHANGED, "Parameter": parameter, "OldValue": old, "NewValue": new,
                  "Source": source, **more,
                  "EventTime": moment.strftime(TIME_FORMAT) + f"{moment.microsecond // 1000:03d}"}
        self.record("3020", CP(data_time=moment.strftime(TIME_FORMAT), params=params), moment)

    def check_configuration(self) -> list[str]:
        """Report a configuration that differs from the previous run's (`config.json` in the store): Parameter
        Config, the fingerprints of both and the names of the changed settings in `Changed` (``|``-separated).
        Returns those names."""
        path = self.store / "config.json"
        settings = self.settings()
        previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        changed: list[str] = []
        if previous is not None and previous != settings:
            changed = sorted(k for k in settings.keys() | previous.keys() if settings.get(k) != previous.get(k))
            log.info("MN {mn}: configuration changed: {changed}", mn=self.device.mn, changed=changed)
            self.parameter_changed("Config", _fingerprint(previous), _fingerprint(settings), "local",
                                   self.clock.now(), Changed="|".join(changed))
        if previous != settings:
            write_json(path, settings)
        return changed

    def settings(self) -> dict:
        """What configures this logger locally, as plain data: the registry device, the wiring, the interval of the
        command line or registry, and the platforms."""
        return {
            "device": self.device.model_dump(mode="json"),
            "modbus": asdict(self.reader.wiring),
            "rtd_interval": self.local_rtd_interval,
            "platforms": [link.name for link in self.links],
        }

    def platform_settings(self) -> dict:
        """What platforms set and a restart keeps (`settings.json` in the store): ``rtd_interval`` (1062) and
        ``clock_offset``, the seconds 1012 commands moved the clock by in total."""
        path = self.store / "settings.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def backfill(self, link: PlatformLink, request: Packet) -> None:
        """9011, each stored record of the requested CN (2051, 2061, 2031 or 2041) in the range (new QN each,
        acknowledged like any upload), 9012."""
        link.answer(replies.qn_rtn(request))
        found = self.history[request.cn].between(request.cp.params.get("BeginTime", ""), request.cp.params.get("EndTime", ""))
        now = self.clock.now()
        for _, body in found:
            self.record(request.cn, parse_cp(body), now, [link])
        link.answer(replies.exe_rtn(request, replies.ExeRtn.SUCCESS if found else replies.ExeRtn.NO_DATA))


def _fingerprint(settings: dict) -> str:
    """A short name of a configuration: the first 12 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def address(text: str) -> tuple[str, int]:
    """HOST:PORT for argparse."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="registry to read (default: [registry] path of the config)")
    parser.add_argument("--mn", required=True, help="MN of the registry device to play")
    parser.add_argument("--modbus", type=address, metavar="HOST:PORT",
                        help="the device's gateway (default: the registry's modbus block; "
                             "gkjk modbus-sim: --port-base + device index)")
    parser.add_argument("--platform", type=address, action="append", required=True, metavar="HOST:PORT",
                        help=f"platform to upload to; repeat for up to {MAX_PLATFORMS}")
    parser.add_argument("--store", help="directory of the durable queues and history (default var/logger/<MN>)")
    parser.add_argument("--byte-order", choices=BYTE_ORDERS, default="ABCD",
                        help="byte order of float32 values where the registry names none (default ABCD)")
    parser.add_argument("--framer", choices=layout.FRAMERS, default="tcp",
                        help="Modbus TCP or RTU over TCP, where the registry names none (default tcp)")
    parser.add_argument("--heartbeat", type=float, default=60.0,
                        help="real seconds between heartbeats (9015) of hj212-2025 devices; 0: none (default 60)")
    parser.add_argument("--rtd-interval", type=int, help="seconds between 2011 records (default: the registry's)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    parser.add_argument("--start", type=datetime.fromisoformat,
                        help="simulated local start time, e.g. 2024-05-06T07:30:00 (default now)")
    parser.add_argument("--queue-limit", type=int, default=DEFAULT_LIMIT,
                        help=f"records kept per platform while it is unreachable (default {DEFAULT_LIMIT})")
    parser.add_argument("--retry-max", type=float, default=10.0,
                        help="longest wait between reconnect attempts, real seconds (default 10)")


def main(args: argparse.Namespace, registry: Registry, timezone: str) -> None:
    from twisted.internet import reactor

    ref = registry.device(args.mn)
    if ref is None:
        raise ValueError(f"device {args.mn} is not in the registry")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    start = args.start or datetime.now(ZoneInfo(timezone)).replace(tzinfo=None, microsecond=0)
    wiring = layout.connection(ref.device, layout.Connection("", 0, args.framer, args.byte_order))
    if args.modbus is not None:  # e.g. the simulator standing in for the site's gateway
        wiring = replace(wiring, host=args.modbus[0], port=args.modbus[1])
    if not wiring.host:
        raise ValueError(f"device {ref.device.mn} has no modbus block in the registry: give --modbus HOST:PORT")
    reader = ModbusReader(ref.device, wiring)
    logger = DataLogger(ref.device, ref.enterprise, reader, args.platform,
                        Path(args.store or f"var/logger/{ref.device.mn}"), Clock(reactor, start, args.speed),
                        args.rtd_interval, queue_limit=args.queue_limit, retry_max=args.retry_max,
                        heartbeat=args.heartbeat)
    points = sum(len(i.bindings) for i in reader.instruments)
    print(f"logger {ref.device.mn}: {points} points on {len(reader.instruments)} slaves at "
          f"{wiring.host}:{wiring.port} ({wiring.framer}, {wiring.byte_order}) -> "
          f"{', '.join(link.name for link in logger.links)}", flush=True)
    logger.start()
    reactor.addSystemEventTrigger("before", "shutdown", logger.stop)
    reactor.run()
