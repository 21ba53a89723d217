"""What one delivery attempt came to; the dispatcher decides from it whether to retry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivered:
    """The receiver accepted the message (HTTP 2xx and its own success code)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Transient: connection error, timeout, 5xx, provider rate limit. `after` (s) if the provider says how long;
    `reached` is False when no answer came at all (the attempt does not count toward the rate limit)."""

    reason: str
    after: float | None = None
    reached: bool = True


@dataclass(frozen=True, slots=True)
class Failed:
    """The receiver refused the message for good (bad signature, unknown robot, invalid phone number)."""

    reason: str


Outcome = Delivered | RetryLater | Failed
