"""One HTTP exchange with a provider, bounded in time; transport trouble becomes RetryLater."""

from __future__ import annotations

from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectError, ConnectionClosed, TimeoutError as ConnectTimeout
from twisted.web.client import RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived

from gkjk.relay.outcome import RetryLater

_TRANSPORT_ERRORS = (ConnectError, ConnectionClosed, ConnectTimeout, ResponseFailed, ResponseNeverReceived,
                     RequestTransmissionFailed, TimeoutError, CancelledError)


async def exchange(http: HTTPClient, reactor: Any, timeout: float, method: str, url: str, body: bytes,
                   headers: dict[str, str]) -> tuple[int, bytes] | RetryLater:
    """(status, body) of the response, or RetryLater when there was none within `timeout` seconds."""

    async def round_trip() -> tuple[int, bytes]:
        response = await http.request(method, url, data=body, headers=headers)
        return response.code, await treq.content(response)

    attempt = Deferred.fromCoroutine(round_trip())
    attempt.addTimeout(timeout, reactor)
    try:
        return await attempt
    except _TRANSPORT_ERRORS as exc:
        reasons = getattr(exc, "reasons", None)
        detail = "; ".join(str(r.value) for r in reasons) if reasons else (str(exc) or type(exc).__name__)
        return RetryLater(f"{method} {url.split('?')[0]}: {detail}", reached=False)


def status_outcome(status: int, body: bytes) -> RetryLater | None:
    """RetryLater for 5xx and 429 (the provider is in trouble or busy), else None: look at the body."""
    if status >= 500 or status == 429:
        return RetryLater(f"HTTP {status}: {body[:200].decode(errors='replace')}")
    return None
