"""Per-recipient rate limits: at most `limit` messages to one address in any `window` seconds."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Remembers when each address was sent to; says when the next message may go."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._sent: dict[str, deque[float]] = {}

    def record(self, address: str, at: float) -> None:
        self._sent.setdefault(address, deque()).append(at)

    def release(self, address: str, at: float) -> None:
        """Take back a recorded send that never reached the receiver."""
        sent = self._sent.get(address)
        if sent is not None and at in sent:
            sent.remove(at)

    def next_free(self, address: str, now: float) -> float:
        """`now` if a message may go now, else the moment the oldest one in the window leaves it."""
        sent = self._sent.get(address)
        if sent is None:
            return now
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if not sent:
            del self._sent[address]
            return now
        return now if len(sent) < self.limit else sent[-self.limit] + self.window
