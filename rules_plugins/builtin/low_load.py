"""低负荷运行: a treatment fan runs well below its normal current while the production it serves runs.

A fan idling at low speed looks "on" to the treatment_off rule but moves too little air to capture the exhaust.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = ("生产设施运行期间，治污设施 {treatment} 低负荷运行（风机电流为正常值的 {load}%，低于 {limit}%），"
            "已持续 {minutes} 分钟")


class LowLoad:
    name = "low_load"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        limit = 100.0 * site.thresholds["low_load_fraction"]
        for treatment in site.enterprise.facilities.treatment:
            served = [p for p in treatment.serves if site.metered(p)]
            if not served or not any(p.normal or p.rated for p in site.points(treatment.id, "fan_current")):
                continue
            producing, treating_states = site.operating(served), site.run_states(treatment.id)
            loads = site.loads(treatment.id)
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                on, treating, load = producing.get(minute), treating_states.get(minute), loads.get(minute)
                if on and treating and load is not None and load < limit:
                    verdicts[minute] = {"treatment": treatment.name, "load": f"{load:.0f}", "limit": f"{limit:g}"}
                elif on is False or treating is False or (load is not None and load >= limit):
                    verdicts[minute] = False
            yield Condition(treatment.id, verdicts, int(site.thresholds["low_load_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [LowLoad()] if enterprise.facilities.treatment else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"low_load_fraction": 0.5, "low_load_minutes": 5}
