"""Every hook of the rule engine, declared once. docs/plugins.md documents each; a test keeps them in step."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from gkjk.registry import Enterprise
    from rules_plugins.model import Alarm, Rule
    from rules_plugins.packs.template import Template

hookspec = pluggy.HookspecMarker("gkjk")


@hookspec
def gkjk_rules(enterprise: Enterprise) -> Iterable[Rule] | None:
    """Rule instances that apply to this enterprise's facilities (empty or None when the plugin has none for it)."""


@hookspec
def gkjk_rule_defaults(industry: str) -> Mapping[str, float] | None:
    """Default thresholds for an industry (`通用` included); later plugins override earlier ones key by key."""


@hookspec(firstresult=True)
def gkjk_alarm_message(alarm: Alarm, enterprise: Enterprise) -> str | None:
    """The Chinese text sent for an alarm event (open or closed); None leaves it to the next plugin."""


@hookspec(firstresult=True)
def gkjk_facility_template(industry: str) -> Template | None:
    """The facilities an enterprise of this industry usually has, how they are linked and metered (the skeleton of
    `gkjk registry template`); None leaves it to the next plugin."""
