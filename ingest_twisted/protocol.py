"""Twisted protocols for HJ 212: framing in one class, meaning in another.

`HJ212Receiver` owns the byte stream (buffering, splitting, resynchronising,
limits) and hands whole frames to `frameReceived`. `DataLoggerProtocol` gives
them meaning: authenticate the device, store its data durably, and answer as
the standard says (9014 once the record is durable, 9011 refusals, time
calibration, heartbeat acknowledgements).

Per upload the CPU is the limit, so: uploads in the common shape skip the
general parser (`read_plain_upload` + `PointBuilder.convert_plain`, which give
the same packet header and the same lines), and the uploads of one TCP read
go to the writer in one submit, their 9014s out in one write once durable.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from ingest_twisted.hj212 import replies, sm4
from ingest_twisted.hj212.frame import Frame, FrameDecoder, Garbage, encode_frame
from ingest_twisted.hj212.packet import Packet, PacketError, build_segment, parse_segment, read_plain_upload
from ingest_twisted.points import Conversion

if TYPE_CHECKING:
    from ingest_twisted.server import IngestFactory

_MN = re.compile(rb"MN=([0-9A-Za-z]{1,32})")

#: QnRtn codes of the standard's request-answer table.
QNRTN_REFUSED = 2
QNRTN_BAD_PW = 3
QNRTN_BAD_MN = 4
QNRTN_BAD_CRC = 9

#: Answers a device gives to the platform's own requests (backfill, time set).
DEVICE_REPLIES = frozenset({"9011", "9012", "9013", "9014"})
HEARTBEATS = frozenset({"9015", "9021"})
TIME_CALIBRATION_REQUEST = "1013"
#: Commands that carry measurement data to store.
DATA_COMMANDS = frozenset({"2011", "2051", "2061", "2031", "2041", "3020", "2081", "3019", "3021"})


class HJ212Receiver(Protocol):
    """Splits a TCP stream into HJ 212 frames; subclasses give the frames meaning."""

    max_segment_bytes = 4096

    def connectionMade(self) -> None:
        """HJ 212 is request and answer in small packets: Nagle's algorithm would hold an answer (up to the
        peer's 40 ms delayed ACK) while an earlier one is unacknowledged, so it is turned off."""
        self._decoder = FrameDecoder(self.max_segment_bytes)
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if self.transport is None or getattr(self.transport, "disconnecting", False):
                return
            if isinstance(event, Frame):
                self.frameReceived(event)
            else:
                self.garbageReceived(event)

    def frameReceived(self, frame: Frame) -> None:
        raise NotImplementedError

    def garbageReceived(self, garbage: Garbage) -> None:
        """Bytes that are no frame; the decoder has already skipped them."""

    def sendPacket(self, packet: Packet) -> None:
        self.send(encode_frame(build_segment(packet)))

    def send(self, data: bytes) -> None:
        """Write now when nothing is queued before ``data``; otherwise (or for what the socket did not take) queue.

        Twisted's ``transport.write`` always queues and waits for the reactor to
        report the socket writable, which costs each answer a second reactor
        event and two epoll_ctl calls. Devices send about one upload per TCP
        read, so that was about a tenth of a worker's CPU (docs/benchmarks.md).
        Transports without a plain socket (TLS, test transports) just queue.
        """
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if sock is not None and not transport.dataBuffer and not transport._tempDataBuffer:
            try:
                sent = sock.send(data)
            except OSError:  # full (EAGAIN) or broken: the queued write retries or reports it
                sent = 0
            data = data[sent:]
        if data:
            transport.write(data)


class DataLoggerProtocol(HJ212Receiver, TimeoutMixin):
    """One TCP connection from a data logger (which may speak for several MNs)."""

    log = Logger()

    def __init__(self, factory: IngestFactory, host: str) -> None:
        self.factory = factory
        self.host = host
        self.max_segment_bytes = factory.config.max_segment_bytes
        self.mns: set[str] = set()
        self.peer = ""
        self._pending = 0
        self._paused = False
        self._auth_failures = 0
        # Uploads of the read being handled, submitted together at its end.
        self._read_uploads: list[Packet] = []
        self._read_at = 0.0  # time.monotonic() of the read being handled
        self._read_lines: list[bytes] = []

    # -- connection life -------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"
        self.setTimeout(self.factory.config.idle_timeout)
        self.factory.stats.connections += 1

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.setTimeout(None)
        self.factory.stats.connections -= 1
        self.factory.connection_closed(self)

    def timeoutConnection(self) -> None:
        self.factory.stats.count_error("idle_timeout")
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.factory.stats.bytes_in += len(data)
        self._read_at = time.monotonic()
        try:
            super().dataReceived(data)
        finally:
            if self._read_uploads:
                self._submit_read()

    # -- frames ------------------------------------------------------------

    def garbageReceived(self, garbage: Garbage) -> None:
        self.factory.stats.count_error(f"frame_{garbage.reason}")
        self.factory.log_error(
            f"frame_{garbage.reason}", "{peer}: skipped {n} bytes ({reason})",
            peer=self.peer, n=len(garbage.data), reason=garbage.reason,
        )

    def frameReceived(self, frame: Frame) -> None:
        """A bug while handling one frame is logged and counted; the connection and its other frames go on."""
        try:
            self.handle_frame(frame)
        except Exception:
            self.factory.stats.count_error("internal")
            self.log.failure("{peer}: error while handling {raw!r}", peer=self.peer, raw=frame.raw[:200])

    def handle_frame(self, frame: Frame) -> None:
        factory = self.factory
        stats = factory.stats
        stats.frames_in += 1
        plain = read_plain_upload(frame.segment) if frame.crc_ok else None
        if plain is not None:
            packet = plain[0]
        else:
            try:
                packet, crc_ok = self.read_packet(frame)
            except PacketError as error:
                stats.count_error(f"packet_{error.kind}")
                factory.log_error(
                    f"packet_{error.kind}", "{peer}: unreadable packet ({kind}: {message}): {raw!r}",
                    peer=self.peer, kind=error.kind, message=error.message, raw=frame.raw[:200],
                )
                return
            if not crc_ok:
                stats.count_error("crc")
                factory.log_error("crc", "{peer}: CRC mismatch, MN {mn} QN {qn}",
                                  peer=self.peer, mn=packet.mn, qn=packet.qn)
                self.refuse(packet, QNRTN_BAD_CRC)
                return
        stats.count_cn(packet.cn)
        device = factory.authenticate(packet)
        if device is None:
            return self.authentication_failed(packet)
        self._auth_failures = 0
        mn = packet.mn.upper()
        if mn not in self.mns:
            self.mns.add(mn)
            factory.device_online(mn, self)
        if plain is not None:
            conversion = factory.builder.convert_plain(packet, plain[1], factory.registry.current)
            if conversion is not None:
                return self.store(packet, conversion)
            packet = parse_segment(frame.segment)  # a value the fast path leaves to the general one
        self.dispatch(packet)

    def read_packet(self, frame: Frame) -> tuple[Packet, bool]:
        """The frame's packet and whether its CRC holds; an encrypted CP is decrypted first."""
        try:
            return parse_segment(frame.segment), frame.crc_ok
        except PacketError as error:
            if error.kind != "encrypted_cp":
                raise
        segment, crc_ok = self.decrypt(frame)
        return parse_segment(segment), crc_ok

    def decrypt(self, frame: Frame) -> tuple[bytes, bool]:
        """HJ 212-2025 SM4: decrypt CP with the key the registry holds for the packet's MN."""
        match = _MN.search(frame.segment)
        ref = self.factory.registry.current.device(match.group(1).decode("ascii", "replace")) if match else None
        if ref is None or not ref.device.sm4_key:
            raise PacketError("encrypted_cp", "CP is SM4-encrypted and the registry has no key for this MN")
        try:
            return sm4.decrypt_frame(frame, ref.device.sm4_key)
        except sm4.SM4Error as error:
            raise PacketError("sm4", str(error)) from None

    def dispatch(self, packet: Packet) -> None:
        cn = packet.cn
        if cn in DEVICE_REPLIES:
            self.factory.backfill.device_replied(packet)
        elif cn in HEARTBEATS:
            if packet.ack_required:
                self.sendPacket(replies.heartbeat_ack(packet))
        elif cn == TIME_CALIBRATION_REQUEST:
            if packet.ack_required:
                self.sendPacket(replies.notify_ack(packet))
            self.sendPacket(replies.system_time(packet, self.factory.local_now()))
        elif cn in DATA_COMMANDS or packet.cp.factors or packet.cp.devices:
            factory = self.factory
            self.store(packet, factory.builder.convert(packet, factory.registry.current, time.time_ns()))
        else:
            self.factory.stats.count_error("unhandled_cn")
            if packet.ack_required:
                self.sendPacket(replies.qn_rtn(packet, QNRTN_REFUSED))

    def authentication_failed(self, packet: Packet) -> None:
        known = self.factory.registry.current.device(packet.mn) is not None
        kind = "bad_pw" if known else "unknown_mn"
        self.factory.stats.count_error(kind)
        self.factory.log_error(kind, "{peer}: refused MN {mn} ({kind})", peer=self.peer, mn=packet.mn, kind=kind)
        self.refuse(packet, QNRTN_BAD_PW if known else QNRTN_BAD_MN)
        self._auth_failures += 1
        if self._auth_failures >= self.factory.config.max_auth_failures:
            self.transport.loseConnection()

    def refuse(self, packet: Packet, code: int) -> None:
        if packet.qn:
            self.sendPacket(replies.qn_rtn(packet, code))

    # -- storing -------------------------------------------------------------

    def store(self, packet: Packet, conversion: Conversion) -> None:
        """Queue the upload's lines for the writer (submitted at the end of this read); acknowledged once on disk."""
        factory = self.factory
        factory.stats.record_conversion(conversion)
        if packet.split:
            factory.track_fragment(packet)
        self._pending += 1
        if self._pending >= factory.config.max_pending_per_connection and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        self._read_uploads.append(packet)
        self._read_lines += conversion.lines
        if packet.cn in ("2051", "2061", "2031"):
            factory.backfill.record_seen(packet, self)

    def _submit_read(self) -> None:
        """One submit (one fsync wait) for all uploads of a read; their 9014s go out in order, in one write."""
        packets, lines = self._read_uploads, self._read_lines
        self._read_uploads, self._read_lines = [], []
        try:
            durable = self.factory.writer.submit(lines)
        except Exception:
            self._settle(len(packets))
            self.factory.stats.count_error("internal")
            self.log.failure("{peer}: error while submitting {n} uploads", peer=self.peer, n=len(packets))
            return
        durable.addCallbacks(self._stored, self._not_stored, callbackArgs=(packets, self._read_at),
                             errbackArgs=(packets,))

    def _stored(self, _: object, packets: list[Packet], read_at: float) -> None:
        self._settle(len(packets))
        stats = self.factory.stats
        stats.stored += len(packets)
        if self.connected:
            acks = [replies.data_ack_frame(packet) for packet in packets if packet.ack_required]
            if acks:
                self.send(b"".join(acks))
                stats.acks_out += len(acks)
                stats.ack_latency.record(time.monotonic() - read_at, len(acks))

    def _not_stored(self, failure: Failure, packets: list[Packet]) -> None:
        """The spool refused the records (disk full, I/O error): no ack, so the devices keep them and resend."""
        self._settle(len(packets))
        for packet in packets:
            self.factory.stats.count_error("spool_write")
            self.log.failure("could not make QN {qn} of MN {mn} durable", failure, qn=packet.qn, mn=packet.mn)

    def _settle(self, uploads: int) -> None:
        self._pending -= uploads
        if self._paused and self._pending < self.factory.config.max_pending_per_connection // 2:
            self._paused = False
            if self.connected:
                self.transport.resumeProducing()
