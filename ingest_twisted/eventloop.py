"""The ingest worker's reactor: Twisted's epoll reactor, minus the legacy log context per socket event.

Twisted's ``EPollReactor`` hands every ready socket to ``log.callWithLogger``,
which copies a context dictionary so that messages of the old
``twisted.python.log`` API carry the protocol's ``logPrefix``. The platform
logs with ``twisted.logger`` and names the peer in its messages, so it has no
use for that context, and a worker pays for it on every TCP read: devices send
about one upload per read, and the context was about 8 % of a paced worker's
CPU (docs/benchmarks.md). This reactor dispatches the events straight to
Twisted's own ``_doReadOrWrite``, which still turns any exception of a read or
write into a lost connection.

What changes for the old log API: a message logged while handling a socket
event names the system ``-`` instead of the protocol's prefix.
"""

from __future__ import annotations

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.main import installReactor

__all__ = ["DirectEPollReactor", "install"]


class DirectEPollReactor(EPollReactor):
    """EPollReactor whose socket events skip ``log.callWithLogger``."""

    def doPoll(self, timeout: float | None) -> None:
        # Python retries an epoll_wait that a signal interrupts (PEP 475).
        events = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                handle(selectable, fd, event)

    doIteration = doPoll


def install() -> DirectEPollReactor:
    """Make it the process's reactor; call before anything imports ``twisted.internet.reactor``."""
    reactor = DirectEPollReactor()
    installReactor(reactor)
    return reactor
