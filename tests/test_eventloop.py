"""The worker's reactor serves TCP like Twisted's epoll reactor does, in a process of its own (as a worker is)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = textwrap.dedent(
    """
    import json, socket, sys, threading
    from ingest_twisted import eventloop
    reactor = eventloop.install()
    from twisted.internet import reactor as global_reactor
    from twisted.internet.protocol import Factory, Protocol

    seen = {"reactor": type(global_reactor).__name__, "lost": []}

    class Echo(Protocol):
        def dataReceived(self, data):
            if data == b"boom":
                raise RuntimeError("a bug in a protocol")
            self.transport.write(data.upper())

        def connectionLost(self, reason):
            seen["lost"].append(reason.type.__name__)

    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")

    def clients():
        address = ("127.0.0.1", port.getHost().port)
        first, second, buggy = (socket.create_connection(address, timeout=10) for _ in range(3))
        buggy.sendall(b"boom")
        seen["buggy_closed"] = buggy.recv(10) == b""
        first.sendall(b"hello")
        second.sendall(b"world")
        seen["answers"] = [first.recv(10).decode(), second.recv(10).decode()]
        first.close()
        second.close()
        reactor.callFromThread(reactor.callLater, 0.2, reactor.stop)

    threading.Thread(target=clients, daemon=True).start()
    reactor.run(installSignalHandlers=False)
    print(json.dumps(seen))
    """
)


def test_worker_reactor_serves_connections_and_drops_only_a_failing_one() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVER], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["reactor"] == "DirectEPollReactor"
    assert seen["buggy_closed"] is True
    assert seen["answers"] == ["HELLO", "WORLD"]
    assert sorted(seen["lost"]) == ["ConnectionDone", "ConnectionDone", "RuntimeError"]
