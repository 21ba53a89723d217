"""Grafana's webhook notification (payload version 1): the alerts it carries, checked field by field."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


#: The label of the platform's own health alerts (gkjk/grafana/alerting.py sets it, routes on it and words its
#: templates by it; the relay words its messages by it): they concern a host of the platform, not an enterprise.
PLATFORM_SCOPE = ("scope", "platform")


class PayloadError(ValueError):
    """The body is not a Grafana webhook notification; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class GrafanaAlert:
    """One alert of a notification: `status` is "firing" or "resolved"; labels as the alert rule set them."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str
    fingerprint: str


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PayloadError(f"{what}: expected an object of strings")
    return dict(value)


def parse_notification(body: bytes) -> list[GrafanaAlert]:
    """The alerts of a webhook body; raises PayloadError for anything that is not one."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise PayloadError("expected an object with an 'alerts' list")
    alerts = []
    for i, item in enumerate(data["alerts"]):
        if not isinstance(item, dict):
            raise PayloadError(f"alerts[{i}]: expected an object")
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"alerts[{i}].status: expected firing or resolved, got {status!r}")
        labels = _strings(item.get("labels"), f"alerts[{i}].labels")
        fingerprint = item.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            # Grafana always sends one; without it, the labels identify the alert just as well.
            fingerprint = hashlib.sha1(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        alerts.append(GrafanaAlert(
            status=status,
            labels=labels,
            annotations=_strings(item.get("annotations"), f"alerts[{i}].annotations"),
            starts_at=str(item.get("startsAt") or ""),
            ends_at=str(item.get("endsAt") or ""),
            fingerprint=fingerprint,
        ))
    return alerts
