"""Who gets a notification: the recipient in the webhook path, resolved to DingTalk robots and phone numbers.

`enterprise/<credit code>`: that enterprise's contacts with role `enterprise`; `county/<name>`: the contacts with
role `county` of the alert's enterprise (its officer in charge), or of every enterprise in that county when the
alert names no enterprise of the county or its enterprise has no county contact; `bureau`: the robots and phones of
`[relay] bureau_*`. Each contact gets an SMS to `phone` (mobile numbers only) and, when set, a DingTalk message to
`dingtalk_webhook`; duplicates are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from gkjk.config import RelayConfig
from gkjk.registry import Contact, Registry

Channel = Literal["dingtalk", "sms"]
_MOBILE = re.compile(r"(?:\+86)?1\d{10}").fullmatch


class UnknownRecipient(LookupError):
    """The webhook path names no recipient this relay knows."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """Parsed from /grafana/<kind>[/<name>]; `name` is a county name or a credit code ("" for the bureau)."""

    kind: Literal["bureau", "county", "enterprise"]
    name: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "bureau" else f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class Target:
    """One address on one channel: a robot webhook URL or a phone number."""

    channel: Channel
    address: str


def parse_recipient(segments: Sequence[str]) -> Recipient:
    """The recipient of the path segments after /grafana/ (already URL-decoded)."""
    match list(segments):
        case ["bureau"]:
            return Recipient("bureau")
        case ["county", name] if name:
            return Recipient("county", name)
        case ["enterprise", code] if code:
            return Recipient("enterprise", code.upper())
    raise UnknownRecipient(f"no recipient /grafana/{'/'.join(segments)}: expected bureau, county/<name> or "
                           "enterprise/<credit code>")


def split_list(text: str) -> list[str]:
    """A comma-separated setting as a list, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def is_mobile(phone: str) -> bool:
    """Only mobile numbers get SMS; the registry also allows landlines."""
    return _MOBILE(phone) is not None


def _contact_targets(contacts: Iterable[Contact]) -> Iterable[Target]:
    for contact in contacts:
        if contact.dingtalk_webhook:
            yield Target("dingtalk", contact.dingtalk_webhook)
        if is_mobile(contact.phone):
            yield Target("sms", contact.phone)


def targets(recipient: Recipient, registry: Registry, relay: RelayConfig,
            enterprise_id: str = "") -> tuple[Target, ...]:
    """Every address the recipient stands for about an alert of `enterprise_id`, DingTalk first, each once;
    no phone numbers when SMS is off (`[relay] sms_provider = ""`).

    UnknownRecipient if the recipient does not exist.
    """
    if recipient.kind == "bureau":
        found: Iterable[Target] = [
            *(Target("dingtalk", url) for url in split_list(relay.bureau_dingtalk)),
            *(Target("sms", phone) for phone in split_list(relay.bureau_phones) if is_mobile(phone)),
        ]
    elif recipient.kind == "enterprise":
        enterprise = registry.enterprises.get(recipient.name)
        if enterprise is None:
            raise UnknownRecipient(f"enterprise {recipient.name} is not in the registry")
        found = _contact_targets(c for c in enterprise.contacts if c.role == "enterprise")
    else:
        in_county = [e for e in registry.enterprises.values() if e.county == recipient.name]
        if not in_county:
            raise UnknownRecipient(f"no enterprise of the registry is in county {recipient.name}")
        in_charge = [c for e in in_county if e.id == enterprise_id.upper() for c in e.contacts if c.role == "county"]
        found = _contact_targets(in_charge or [c for e in in_county for c in e.contacts if c.role == "county"])
    unique = dict.fromkeys(t for t in found if t.channel != "sms" or relay.sms_provider)  # "": SMS off
    return tuple(sorted(unique, key=lambda t: t.channel))
