"""Dry run: record what would be sent (JSON Lines file and the log) and send nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from gkjk.relay.outbox import Message
from gkjk.relay.outcome import Delivered, Outcome

log = Logger()


class DryRunRecorder:
    """Stands in for every channel's sender; each attempt appends one line and succeeds."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock

    def send(self, message: Message) -> Deferred[Outcome]:
        record = {"time": self.clock(), "key": message.key, "channel": message.channel,
                  "address": message.address, "payload": message.payload}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        log.info("dry run: would send {channel} to {address}: {payload}", channel=message.channel,
                 address=message.address, payload=json.dumps(message.payload, ensure_ascii=False))
        return succeed(Delivered("dry run"))
