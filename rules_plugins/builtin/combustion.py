"""燃烧温度不足: an RTO/RCO/CO burner below its minimum temperature while the production it serves runs.

Below it, VOCs pass through unburnt; the facility's `min_temperature` wins over the per-kind default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

KINDS = ("rto", "rco", "co")
TEMPLATE = ("生产设施运行期间，治污设施 {treatment} 燃烧温度 {temperature}℃ 低于 {limit}℃，"
            "已持续 {minutes} 分钟")


class CombustionTemperature:
    name = "combustion_temperature"
    severity: Literal["high"] = "high"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for burner in site.enterprise.facilities.treatment:
            thermometers = site.points(burner.id, "temperature")
            served = [p for p in burner.serves if site.metered(p)]
            if burner.kind not in KINDS or not thermometers or not served:
                continue
            limit = burner.min_temperature or site.thresholds[f"{burner.kind}_min_temperature"]
            producing = site.operating(served)
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                on = producing.get(minute)
                temperature = site.mean(thermometers, minute)
                if on and temperature is not None and temperature < limit:
                    verdicts[minute] = {
                        "treatment": burner.name, "temperature": f"{temperature:.0f}", "limit": f"{limit:g}",
                    }
                elif on is False or (temperature is not None and temperature >= limit):
                    verdicts[minute] = False
            yield Condition(burner.id, verdicts, int(site.thresholds["combustion_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [CombustionTemperature()] if any(t.kind in KINDS for t in enterprise.facilities.treatment) else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"rto_min_temperature": 760, "rco_min_temperature": 300, "co_min_temperature": 300,
            "combustion_minutes": 5}
