"""A rule pack as a third party would write one (docs/plugins.md): foundries get a longer grace for fans."""

from __future__ import annotations

from collections.abc import Mapping

from rules_plugins import hookimpl


@hookimpl
def gkjk_rule_defaults(industry: str) -> Mapping[str, float] | None:
    return {"treatment_off_minutes": 10} if industry == "铸造" else None
