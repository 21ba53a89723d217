"""Senders: one per channel, each turning a queued message into one HTTP request and an Outcome.

DingTalk robots are built in. SMS goes through a provider chosen by `[relay] sms_provider`: the built-in ones are
listed in BUILTIN_SMS_PROVIDERS; others are entry points of the group `gkjk.sms_providers`, each a callable
`(relay: RelayConfig, http: HTTPClient, reactor) -> Sender` (see docs/relay.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from gkjk.config import ConfigError, RelayConfig
from gkjk.relay.outbox import Message
from gkjk.relay.outcome import Outcome

SMS_PROVIDER_GROUP = "gkjk.sms_providers"
BUILTIN_SMS_PROVIDERS = {"aliyun": "gkjk.relay.providers.aliyun_sms:AliyunSms"}


class Sender(Protocol):
    """Delivers messages of one channel."""

    def send(self, message: Message) -> Deferred[Outcome]:
        """One attempt; never fails, every problem is an Outcome."""
        ...


SenderFactory = Callable[[RelayConfig, Any, Any], Sender]


def sms_provider(name: str) -> SenderFactory:
    """The factory of the SMS provider `name`: built in, else from the entry-point group."""
    if name in BUILTIN_SMS_PROVIDERS:
        module, _, attribute = BUILTIN_SMS_PROVIDERS[name].partition(":")
        return getattr(importlib.import_module(module), attribute)
    found = [ep for ep in entry_points(group=SMS_PROVIDER_GROUP) if ep.name == name]
    if not found:
        known = sorted({*BUILTIN_SMS_PROVIDERS, *(ep.name for ep in entry_points(group=SMS_PROVIDER_GROUP))})
        raise ConfigError(f"[relay] sms_provider: unknown provider {name!r} (known: {', '.join(known)})")
    return found[0].load()
