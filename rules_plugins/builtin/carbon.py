"""活性炭需更换: an activated-carbon adsorber has run more adsorption hours since its last replacement than its
design cycle (the facility's `design_hours`, else `carbon_design_hours`); saturated carbon adsorbs nothing.

The hours come from the facility's `carbon_hours` point: the data logger's counter of adsorption running hours,
which it resets when the carbon is replaced (so the alarm closes after a replacement). An adsorber without
such a point is not judged: integrating its fan's run state needs the replacement date, which the registry does
not record yet.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "治污设施 {treatment} 活性炭累计吸附运行 {hours} 小时，超过设计更换周期 {limit} 小时，需更换"


class CarbonReplacement:
    name = "carbon"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for adsorber in site.enterprise.facilities.treatment:
            counters = site.points(adsorber.id, "carbon_hours")
            if adsorber.kind != "activated_carbon" or not counters:
                continue
            limit = adsorber.design_hours or site.thresholds["carbon_design_hours"]
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                hours = site.mean(counters, minute)
                if hours is not None:
                    verdicts[minute] = hours > limit and {
                        "treatment": adsorber.name, "hours": f"{hours:.1f}", "limit": f"{limit:g}"}
            yield Condition(adsorber.id, verdicts, int(site.thresholds["carbon_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [CarbonReplacement()] if any(t.kind == "activated_carbon" for t in enterprise.facilities.treatment) else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"carbon_design_hours": 500, "carbon_minutes": 5}
