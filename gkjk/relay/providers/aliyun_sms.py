"""Aliyun SMS (短信服务): SendSms of the RPC API version 2017-05-25, signed with HMAC-SHA1 (signature version 1.0).

The signature, as Aliyun documents it for RPC APIs: sort all parameters but Signature by name, percent-encode
names and values (RFC 3986: only A-Z a-z 0-9 - _ . ~ stay, space is %20), join them as name=value with &, and
sign "<METHOD>&%2F&<percent-encoded canonical query>" with the key "<AccessKeySecret>&". The answer's `Code` is
"OK" on success; flow-control and server-side codes are retried, any other code is a refusal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet.defer import Deferred

from gkjk.config import ConfigError, RelayConfig
from gkjk.relay.outbox import Message
from gkjk.relay.outcome import Delivered, Failed, Outcome, RetryLater
from gkjk.relay.providers.http import exchange, status_outcome

API_VERSION = "2017-05-25"
# Codes that mean "not now" rather than "never": flow control and Aliyun's own trouble.
TRANSIENT_CODES = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "Throttling.Api", "isp.SYSTEM_ERROR",
    "isp.RAM_PERMISSION_DENY_SYSTEM_ERROR", "ServiceUnavailable", "InternalError",
})
FLOW_CONTROL_PAUSE = 600.0  # seconds: Aliyun's per-number limits count per minute, hour and day


def percent_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    digest = hmac.new(f"{access_key_secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


class AliyunSms:
    """Sends the message's template variables to its phone number with SendSms (POST, form-encoded)."""

    def __init__(self, relay: RelayConfig, http: HTTPClient, reactor: Any,
                 clock: Callable[[], float] = time.time, nonce: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        missing = [k for k in ("aliyun_access_key_id", "aliyun_access_key_secret", "aliyun_sign_name",
                               "aliyun_template_code") if not getattr(relay, k)]
        if missing:
            raise ConfigError(f"[relay] {missing[0]}: must be set for sms_provider = \"aliyun\" "
                              f"(or run with --dry-run)")
        self.relay = relay
        self.http, self.reactor, self.clock, self.nonce = http, reactor, clock, nonce

    def params(self, phone: str, template_params: Mapping[str, str]) -> dict[str, str]:
        """Every request parameter, Signature included."""
        params = {
            "AccessKeyId": self.relay.aliyun_access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": phone,
            "RegionId": self.relay.aliyun_region,
            "SignName": self.relay.aliyun_sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self.nonce(),
            "SignatureVersion": "1.0",
            "TemplateCode": self.relay.aliyun_template_code,
            "TemplateParam": json.dumps(template_params, ensure_ascii=False, separators=(",", ":")),
            "Timestamp": datetime.fromtimestamp(self.clock(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
        }
        params["Signature"] = signature("POST", params, self.relay.aliyun_access_key_secret)
        return params

    def send(self, message: Message) -> Deferred[Outcome]:
        return Deferred.fromCoroutine(self._send(message))

    async def _send(self, message: Message) -> Outcome:
        params = self.params(message.address, message.payload["params"])
        body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items()).encode()
        answer = await exchange(self.http, self.reactor, self.relay.timeout, "POST",
                                self.relay.aliyun_endpoint.rstrip("/") + "/", body,
                                {"Content-Type": "application/x-www-form-urlencoded"})
        if isinstance(answer, RetryLater):
            return answer
        status, text = answer
        try:
            reply = json.loads(text)
            code, detail = str(reply["Code"]), str(reply.get("Message", ""))
        except (ValueError, KeyError, TypeError):
            return status_outcome(status, text) or Failed(
                f"HTTP {status}, not an Aliyun answer: {text[:200].decode(errors='replace')}")
        if code == "OK" and 200 <= status < 300:
            return Delivered(str(reply.get("BizId", "")))
        if code == "isv.BUSINESS_LIMIT_CONTROL":
            return RetryLater(f"{code}: {detail}", after=FLOW_CONTROL_PAUSE)
        if code in TRANSIENT_CODES or status >= 500:
            return RetryLater(f"HTTP {status}, {code}: {detail}")
        return Failed(f"HTTP {status}, {code}: {detail}")
