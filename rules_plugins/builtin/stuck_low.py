"""数据异常 (stuck low): a current that reads near zero while the facility it measures demonstrably runs.

A `current` or `fan_current` point with a `rated` (else `normal`) value is stuck low at a minute when it reads at
most `stuck_low_fraction` (0.02) of that value while another run point of the same facility says the facility runs
(another phase, a second motor's current, its `switch`): a broken current transformer, a disconnected loop, or a
logger pinned at the bottom of its input range. The facility's other points are the only independent witness: a
facility whose only current reads zero is simply off, never stuck (and treatment_off speaks for a fan that is
off while production runs). Clear when the point reads above the limit or no other point says running.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.builtin.quality import facilities, label, merge, run_points
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "{point} 在设施运行时读数为 {value}，接近零（不高于 {limit}），数据异常，已持续 {minutes} 分钟"


class StuckLow:
    name = "stuck_low"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        fraction = site.thresholds["stuck_low_fraction"]
        for facility in facilities(site):
            witnesses = run_points(site, facility.id)
            judged = []  # (point, near-zero limit, the other run points)
            for ref in site.points(facility.id, "current", "fan_current"):
                base, others = ref.rated or ref.normal, [w for w in witnesses if w is not ref]
                if base and others and site.series(ref):
                    judged.append((ref, fraction * base, others))
            if site.quiet(self.name, facility.id) and not any(
                    value <= limit for ref, limit, _ in judged for value in site.series(ref).values()):
                continue  # never near zero and nothing stored: the engine would write nothing
            per_point = []
            for ref, limit, others in judged:
                series = site.series(ref)
                witnessed = [site.point_states(other) for other in others]
                verdicts: dict[int, Verdict] = {}
                for minute in site.minutes:
                    value = series.get(minute)
                    if value is None:
                        continue
                    if value > limit:
                        verdicts[minute] = False
                        continue
                    states = [state.get(minute) for state in witnessed]
                    if any(states):
                        verdicts[minute] = {"point": label(facility, ref), "value": f"{value:g}",
                                            "limit": f"{limit:g}"}
                    elif all(state is False for state in states):
                        verdicts[minute] = False
                per_point.append(verdicts)
            if per_point:
                yield Condition(facility.id, merge(per_point),
                                int(site.thresholds["stuck_low_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [StuckLow()] if enterprise.devices else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"stuck_low_fraction": 0.02, "stuck_low_minutes": 30}
