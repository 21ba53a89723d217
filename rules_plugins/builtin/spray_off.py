"""喷淋未开启: a scrubber's fan runs while its spray pump is off, so exhaust passes the tower untreated.

Applies to a treatment facility with a `spray` point (pump on at >= 0.5, or above the point's `on_threshold`) and
a run point of its own (`fan_current`, `current` or `switch`): its own fan, not another facility's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "治污设施 {treatment} 风机运行而喷淋未开启，已持续 {minutes} 分钟"


class SprayOff:
    name = "spray_off"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for tower in site.enterprise.facilities.treatment:
            pumps = site.points(tower.id, "spray")
            if not pumps or not site.metered(tower.id):
                continue
            fans, pump_states = site.run_states(tower.id), [site.point_states(p) for p in pumps]
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                fan = fans.get(minute)
                pump = [states.get(minute) for states in pump_states]
                if True in pump or fan is False:
                    verdicts[minute] = False
                elif fan and False in pump:
                    verdicts[minute] = {"treatment": tower.name}
            yield Condition(tower.id, verdicts, int(site.thresholds["spray_off_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [SprayOff()] if enterprise.facilities.treatment else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"spray_off_minutes": 5}
