"""pH 异常: scrubber liquor or waste water outside its allowed pH range (the facility's ph_min/ph_max win)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "治污设施 {facility} pH 值 {ph} 超出 {low}-{high} 范围，已持续 {minutes} 分钟"


class PhOutOfRange:
    name = "ph"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for facility in site.enterprise.facilities.treatment:
            meters = site.points(facility.id, "ph")
            if not meters:
                continue
            low = site.thresholds["ph_min"] if facility.ph_min is None else facility.ph_min
            high = site.thresholds["ph_max"] if facility.ph_max is None else facility.ph_max
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                ph = site.mean(meters, minute)
                if ph is None:
                    continue
                if low <= ph <= high:
                    verdicts[minute] = False
                else:
                    verdicts[minute] = {
                        "facility": facility.name, "ph": f"{ph:.1f}", "low": f"{low:g}", "high": f"{high:g}",
                    }
            yield Condition(facility.id, verdicts, int(site.thresholds["ph_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [PhOutOfRange()] if enterprise.facilities.treatment else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"ph_min": 6, "ph_max": 9, "ph_minutes": 5}
