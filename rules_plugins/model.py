"""What rules hand to the engine (conditions) and what the engine hands to message plugins (alarms)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from rules_plugins.site import Site

# Per minute (epoch seconds of its start): a mapping of message values while the condition is violated,
# False while it is clear, None (or no key) while the data cannot tell.
Verdict = Mapping[str, Any] | Literal[False] | None


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing a rule watches on one subject (a facility id, or a device MN for device rules)."""

    subject: str
    minutes: Mapping[int, Verdict]
    duration: int  # minutes the violation must hold before the alarm opens
    template: str  # Chinese message, str.format'ed with `minutes` and the verdict's values


class Rule(Protocol):
    """A rule instance returned by `gkjk_rules`; `name` is the `rule` tag of its alarms."""

    name: str
    severity: Literal["high", "medium", "low"]

    def conditions(self, site: Site) -> Iterable[Condition]:
        """Per-minute verdicts for every subject of the enterprise the rule watches."""
        ...


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm event as stored in the `alarm` measurement (see docs/schema.md)."""

    id: str
    rule: str
    enterprise: str
    county: str
    facility: str
    severity: str
    state: Literal["open", "closed"]
    started: int  # epoch s of the first violating minute
    ended: int | None  # epoch s of the first clear minute (closed events only)
    minutes: int  # how long the violation had held at this event
    template: str
    context: Mapping[str, Any]
