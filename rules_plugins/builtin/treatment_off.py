"""治污设施未开启/停运: a production facility runs while a treatment facility serving it is off."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "生产设施 {production} 运行中，治污设施 {treatment} 已停运 {minutes} 分钟"


class TreatmentOff:
    name = "treatment_off"
    severity: Literal["high"] = "high"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for treatment in site.enterprise.facilities.treatment:
            served = [p for p in treatment.serves if site.metered(p)]
            if not served or not site.metered(treatment.id):
                continue
            producing, treating_states = site.operating(served), site.run_states(treatment.id)
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                on, treating = producing.get(minute), treating_states.get(minute)
                if on and treating is False:
                    names = "、".join(site.enterprise.facility(p).name for p in served if site.running(p, minute))
                    verdicts[minute] = {"production": names, "treatment": treatment.name}
                elif treating or on is False:
                    verdicts[minute] = False
            yield Condition(treatment.id, verdicts, int(site.thresholds["treatment_off_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [TreatmentOff()] if enterprise.facilities.treatment else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"treatment_off_minutes": 5}
