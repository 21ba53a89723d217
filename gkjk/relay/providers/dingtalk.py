"""DingTalk custom group robots (自定义机器人) with the signed security mode (加签).

A signed request appends `&timestamp=<ms>&sign=<s>` to the robot's webhook, where s is the URL-encoded Base64 of
HMAC-SHA256 over "<timestamp>\\n<secret>" keyed with the secret (DingTalk allows one hour of clock skew, so each
attempt is signed anew). The answer is JSON with `errcode`: 0 is success, 130101 the robot's rate limit (20
messages a minute), -1 "system busy"; anything else is a refusal (310000: bad signature, 300001: bad token).

Secrets: `[relay] dingtalk_secrets` ("ACCESS_TOKEN=SEC...,...") per robot, else `[relay] dingtalk_secret`, else
the robot is called unsigned (keyword or IP security mode). Scheme and host come from `[relay] dingtalk_base_url`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from treq.client import HTTPClient
from twisted.internet.defer import Deferred

from gkjk.config import ConfigError, RelayConfig
from gkjk.relay.outbox import Message
from gkjk.relay.outcome import Delivered, Failed, Outcome, RetryLater
from gkjk.relay.providers.http import exchange, status_outcome

RATE_LIMITED = 130101
SYSTEM_BUSY = -1
RATE_LIMIT_PAUSE = 60.0  # seconds: DingTalk's window is a minute


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` parameter, URL-encoded, as DingTalk documents it."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote(base64.b64encode(digest).decode(), safe="")


def parse_secrets(text: str) -> dict[str, str]:
    """"TOKEN=SECRET,TOKEN=SECRET" as a dict; ConfigError names the setting for a malformed entry."""
    secrets: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        token, sep, secret = item.partition("=")
        if not sep or not token.strip() or not secret.strip():
            raise ConfigError("[relay] dingtalk_secrets: expected ACCESS_TOKEN=SECRET pairs separated by commas")
        secrets[token.strip()] = secret.strip()
    return secrets


def access_token(webhook: str) -> str:
    return parse_qs(urlsplit(webhook).query).get("access_token", [""])[0]


class DingTalkRobots:
    """Sends the stored JSON body to the robot webhook that is the message's address."""

    def __init__(self, relay: RelayConfig, http: HTTPClient, reactor: Any,
                 clock: Callable[[], float] = time.time) -> None:
        self.base = urlsplit(relay.dingtalk_base_url)
        self.default_secret = relay.dingtalk_secret
        self.secrets: Mapping[str, str] = parse_secrets(relay.dingtalk_secrets)
        self.timeout = relay.timeout
        self.http, self.reactor, self.clock = http, reactor, clock

    def url(self, webhook: str) -> str:
        """The webhook on the configured base, signed if the robot has a secret."""
        parts = urlsplit(webhook)
        url = urlunsplit((self.base.scheme, self.base.netloc, self.base.path.rstrip("/") + parts.path,
                          parts.query, ""))
        secret = self.secrets.get(access_token(webhook), self.default_secret)
        if not secret:
            return url
        timestamp = int(self.clock() * 1000)
        return f"{url}{'&' if parts.query else '?'}timestamp={timestamp}&sign={sign(secret, timestamp)}"

    def send(self, message: Message) -> Deferred[Outcome]:
        return Deferred.fromCoroutine(self._send(message))

    async def _send(self, message: Message) -> Outcome:
        body = json.dumps(message.payload, ensure_ascii=False).encode()
        answer = await exchange(self.http, self.reactor, self.timeout, "POST", self.url(message.address), body,
                                {"Content-Type": "application/json; charset=utf-8"})
        if isinstance(answer, RetryLater):
            return answer
        status, text = answer
        if (retry := status_outcome(status, text)) is not None:
            return retry
        try:
            reply = json.loads(text)
            code, errmsg = int(reply["errcode"]), str(reply.get("errmsg", ""))
        except (ValueError, KeyError, TypeError):
            return Failed(f"HTTP {status}, not a DingTalk answer: {text[:200].decode(errors='replace')}")
        if code == 0 and 200 <= status < 300:
            return Delivered()
        if code == RATE_LIMITED:
            return RetryLater(f"errcode {code}: {errmsg}", after=RATE_LIMIT_PAUSE)
        if code == SYSTEM_BUSY:
            return RetryLater(f"errcode {code}: {errmsg}")
        return Failed(f"HTTP {status}, errcode {code}: {errmsg}")
