"""From an authenticated notification to messages in the outbox: route, enrich, render, queue durably.

Grafana gets its 200 only after `accept` returns, that is after the outbox committed the messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from gkjk.config import RelayConfig
from gkjk.registry import Registry
from gkjk.relay import alarm_text, rendering
from gkjk.relay.grafana import GrafanaAlert
from gkjk.relay.outbox import NewMessage, Outbox
from gkjk.relay.routing import Recipient, Target, targets
from ingest_twisted.influx import InfluxClient

log = Logger()


@dataclass(frozen=True, slots=True)
class Accepted:
    queued: int
    duplicates: int


def message_key(alert: GrafanaAlert, target: Target) -> str:
    """Same alert event to the same address, same key: a notification posted twice is queued once.

    Grafana's repeat notifications of a still-firing alert carry the same fingerprint, status and start, so an
    episode is announced once when it fires and once when it resolves.
    """
    text = "|".join((alert.fingerprint, alert.status, alert.starts_at, target.channel, target.address))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Intake:
    def __init__(self, registry: Callable[[], Registry], influx: InfluxClient, outbox: Outbox, relay: RelayConfig,
                 timezone: str, reactor: Any, queued: Callable[[], None]) -> None:
        self.registry = registry
        self.influx = influx
        self.outbox = outbox
        self.relay = relay
        self.timezone = timezone
        self.reactor = reactor
        self.queued = queued

    async def accept(self, recipient: Recipient, alerts: Sequence[GrafanaAlert]) -> Accepted:
        """Queue one message per alert and address; UnknownRecipient if the recipient does not exist."""
        registry = self.registry()
        addressed = [(alert, targets(recipient, registry, self.relay, alert.labels.get("ent", ""))) for alert in alerts]
        if any(not found for _, found in addressed):
            log.warn("{recipient}: no DingTalk robot or phone number to notify", recipient=str(recipient))
        texts = await alarm_text.latest_messages(self.influx, [alert.labels if found else {}
                                                               for alert, found in addressed])
        messages = []
        for (alert, found), stored in zip(addressed, texts):
            values = rendering.context(alert, registry, stored, self.timezone)
            payloads: dict[str, dict[str, Any]] = {}  # channel -> payload, rendered once for all its addresses
            for target in found:
                payload = payloads.get(target.channel)
                if payload is None:
                    payload = payloads[target.channel] = (
                        rendering.dingtalk_body(values, self.relay.dingtalk_msgtype) if target.channel == "dingtalk"
                        else {"params": rendering.sms_params(values)})
                messages.append(NewMessage(message_key(alert, target), target.channel, target.address, payload))
        queued = self.outbox.add(messages, self.reactor.seconds())
        log.info("{recipient}: {alerts} alert(s), {queued} message(s) queued, {dup} already known",
                 recipient=str(recipient), alerts=len(alerts), queued=queued, dup=len(messages) - queued)
        if queued:
            self.queued()
        return Accepted(queued, len(messages) - queued)
