"""Delivery: take due messages from the outbox, respect rate limits, send, and record the outcome.

At least once: a message is marked sent only after the receiver said so, so a crash between the two sends it again
after the restart. Failed attempts wait `retry_initial` x 2^(n-1) seconds (at most `retry_max`, or what the provider
asked for); after `max_attempts`, or at once when the receiver refuses the message, it goes to the dead letters.
Rate limits postpone a message without counting an attempt. One timer wakes the dispatcher when the next message
is due; new messages wake it at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from gkjk.config import RelayConfig
from gkjk.relay.metrics import RelayStats
from gkjk.relay.outbox import Message, Outbox
from gkjk.relay.outcome import Delivered, Failed, Outcome, RetryLater
from gkjk.relay.providers import Sender
from gkjk.relay.ratelimit import SlidingWindow

log = Logger()

BATCH = 100  # messages taken from the outbox per pass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with a ceiling, and when to give up."""

    max_attempts: int
    initial: float
    maximum: float

    @classmethod
    def of(cls, relay: RelayConfig) -> RetryPolicy:
        return cls(relay.max_attempts, relay.retry_initial, relay.retry_max)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return min(self.maximum, self.initial * 2 ** min(attempts - 1, 60))


def masked(address: str) -> str:
    """A phone number with its middle digits hidden, for logs; webhooks without their access token."""
    if address.startswith("http"):
        return address.split("?")[0]
    return address[:3] + "****" + address[-4:] if len(address) >= 11 else address


class Dispatcher:
    """Delivers the outbox's messages through one sender per channel."""

    def __init__(self, outbox: Outbox, senders: Mapping[str, Sender], limits: Mapping[str, SlidingWindow],
                 policy: RetryPolicy, dead_letters: Path, reactor: Any, stats: RelayStats | None = None) -> None:
        self.outbox = outbox
        self.senders = senders
        self.limits = limits
        self.policy = policy
        self.dead_letters = Path(dead_letters)
        self.reactor = reactor
        self.stats = stats if stats is not None else RelayStats()  # counted here, reported by metrics.py
        self._in_flight: dict[str, Deferred[None]] = {}
        self._timer: Any = None
        self._stopped = False

    def start(self) -> None:
        """Restore the rate limits from what the outbox sent recently, then deliver."""
        now = self.reactor.seconds()
        for channel, limit in self.limits.items():
            for address, at in self.outbox.sent_since(channel, now - limit.window):
                limit.record(address, at)
        self.wake()

    def stop(self) -> Deferred[Any]:
        """Stop taking messages; fires when the attempts under way have settled."""
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        return DeferredList(list(self._in_flight.values()))

    def wake(self) -> None:
        """Look for due messages now (called when messages were queued)."""
        self._schedule(0.0)

    def _schedule(self, delay: float) -> None:
        if self._stopped:
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.reactor.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self.reactor.callLater(max(0.0, delay), self._pass)

    def _pass(self) -> None:
        self._timer = None
        now = self.reactor.seconds()
        for message in self.outbox.due(now, BATCH + len(self._in_flight)):
            if message.key in self._in_flight:
                continue
            limit = self.limits.get(message.channel)
            if limit is not None:
                free = limit.next_free(message.address, now)
                if free > now:
                    self.outbox.postpone(message.key, free)
                    self.stats.channel(message.channel).rate_limit_postponed += 1
                    log.info("rate limit: {channel} to {address} postponed {s:.0f} s", channel=message.channel,
                             address=masked(message.address), s=free - now)
                    continue
                limit.record(message.address, now)
            attempt = self.senders[message.channel].send(message)
            attempt.addErrback(self._crashed, message)
            settled = attempt.addCallback(self._settle, message, now)
            settled.addErrback(lambda failure: log.failure("delivery bookkeeping failed", failure))
            if not settled.called:
                self._in_flight[message.key] = settled
        self._schedule_next()

    def _schedule_next(self) -> None:
        due = self.outbox.next_due(self._in_flight)
        if due is not None:
            self._schedule(due - self.reactor.seconds())

    @staticmethod
    def _crashed(failure: Failure, message: Message) -> RetryLater:
        """A sender bug must not strand the message: log it and try again later."""
        log.failure("sender of {channel} failed unexpectedly", failure, channel=message.channel)
        return RetryLater(f"{failure.type.__name__}: {failure.value}")

    def _settle(self, outcome: Outcome, message: Message, started: float) -> None:
        self._in_flight.pop(message.key, None)
        now = self.reactor.seconds()
        if isinstance(outcome, RetryLater) and not outcome.reached and message.channel in self.limits:
            self.limits[message.channel].release(message.address, started)
        attempts = message.attempts + 1
        where = f"{message.channel} to {masked(message.address)}"
        counters = self.stats.channel(message.channel)
        match outcome:
            case Delivered():
                self.outbox.sent(message.key, attempts, now)
                counters.delivered += 1
                log.info("delivered {where} (attempt {n}) {detail}", where=where, n=attempts, detail=outcome.detail)
            case RetryLater() if attempts < self.policy.max_attempts:
                delay = outcome.after if outcome.after is not None else self.policy.delay(attempts)
                self.outbox.failed_attempt(message.key, attempts, now + delay, outcome.reason)
                counters.failed_attempts += 1
                log.warn("{where}: attempt {n} failed ({reason}); next in {delay:.1f} s", where=where, n=attempts,
                         reason=outcome.reason, delay=delay)
            case RetryLater() | Failed():
                counters.failed_attempts += 1
                self._bury(message, attempts, now, outcome.reason)
        self._schedule_next()

    def _bury(self, message: Message, attempts: int, now: float, reason: str) -> None:
        record = {"time": now, "queued": message.created, "key": message.key, "channel": message.channel,
                  "address": message.address, "payload": message.payload, "attempts": attempts, "error": reason}
        self.dead_letters.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letters, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.outbox.dead(message.key, attempts, now, reason)
        self.stats.channel(message.channel).dead_lettered += 1
        log.error("gave up {channel} to {address} after {n} attempt(s): {reason}; see {file}",
                  channel=message.channel, address=masked(message.address), n=attempts, reason=reason,
                  file=str(self.dead_letters))
