"""Run state from current: the threshold every rule uses to tell whether a facility runs (see site.Site.running).

A point is on above its `on_threshold`, else above `on_fraction` of its `rated` value; a switch point at 1.
"""

from __future__ import annotations

from collections.abc import Mapping

from rules_plugins import hookimpl


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"on_fraction": 0.1}
