"""HJ212Receiver.send: written at once while the socket takes it, queued in order once it is full; no Nagle."""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol

from ingest_twisted.protocol import HJ212Receiver

CHUNKS = [b"%06d" % i + b"x" * 1018 for i in range(400)]  # 400 KiB, numbered


class Sender(HJ212Receiver):
    """Sends the chunks in rounds, one per reactor turn, into a deliberately small socket buffer.

    Between rounds the reader drains some of the socket while Twisted still
    holds queued bytes: a send that skipped that queue would overtake it.
    """

    ROUND = 40

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.nodelay = self.transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        self.next = 0
        self.send_round()

    def send_round(self) -> None:
        for chunk in CHUNKS[self.next : self.next + self.ROUND]:
            self.send(chunk)
        self.next += self.ROUND
        queued = len(self.transport.dataBuffer) - self.transport.offset + self.transport._tempDataLen
        self.factory.most_queued = max(self.factory.most_queued, queued)
        if self.next < len(CHUNKS):
            reactor.callLater(0, self.send_round)
        else:
            self.transport.loseConnection()


class Collector(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.data = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.done.callback(bytes(self.data))


@pytest_twisted.ensureDeferred
async def test_what_the_socket_does_not_take_is_queued_and_everything_arrives_in_order() -> None:
    server_factory = Factory.forProtocol(Sender)
    server_factory.most_queued = 0
    server_factory.nodelay = 0
    port = reactor.listenTCP(0, server_factory, interface="127.0.0.1")
    done: Deferred[bytes] = Deferred()
    client_factory = ClientFactory()
    client_factory.buildProtocol = lambda addr: Collector(done)
    reactor.connectTCP("127.0.0.1", port.getHost().port, client_factory)
    try:
        received = await done
    finally:
        await port.stopListening()
    assert server_factory.most_queued > 0  # the socket was full: the queued path was taken
    assert received == b"".join(CHUNKS)
    assert server_factory.nodelay  # answers are not held back by Nagle's algorithm
