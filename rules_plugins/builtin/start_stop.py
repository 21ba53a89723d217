"""启停不同步: a treatment facility must start `sync_minutes` before the production it serves and stop no earlier
than `sync_minutes` after it, or the first and last exhaust of a run goes untreated.

A minute violates when the treatment is off, the production is off too, and the production runs within
`sync_minutes` after it (started late) or ran within `sync_minutes` before it (stopped early). Minutes with both
off and running are treatment_off's, so this rule leaves them undecided. The look back reaches into the
`[rules] context_minutes` read before the window; the look ahead is undecided until the data arrives. The alarm
opens one minute after the first such minute (possibly before the production started: the time is the data's).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise, TreatmentFacility
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

LATE = "治污设施 {treatment} 未在生产设施 {production} 启动前 {n} 分钟开启（启停不同步）"
EARLY = "治污设施 {treatment} 在生产设施 {production} 停止后不足 {n} 分钟即停运（启停不同步）"
TEMPLATE = "{what}，已持续 {minutes} 分钟"


class StartStop:
    name = "start_stop"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        n = int(site.thresholds["sync_minutes"])
        for treatment in site.enterprise.facilities.treatment:
            served = [p for p in treatment.serves if site.metered(p)]
            if not served or not site.metered(treatment.id) or n < 1:
                continue
            treating_states, producing = site.run_states(treatment.id), site.operating(served)
            verdicts = {m: self.verdict(site, treatment, served, treating_states.get(m), producing, m, n)
                        for m in site.minutes}
            yield Condition(treatment.id, verdicts, 1, TEMPLATE)

    @staticmethod
    def verdict(site: Site, treatment: TreatmentFacility, served: list[str], treating: bool | None,
                producing: Mapping[int, bool], minute: int, n: int) -> Verdict:
        """`treating`: the treatment's run state this minute; `producing`: Site.operating of `served`."""
        if treating or treating is None or producing.get(minute) is not False:
            return False if treating else None
        complete = True
        for when, what, offsets in (("late", LATE, range(1, n + 1)), ("early", EARLY, range(-1, -n - 1, -1))):
            for offset in offsets:
                other = minute + 60 * offset
                if not site.readings.first <= other < site.readings.end:
                    complete = False
                    continue
                running = producing.get(other)
                if running:
                    names = "、".join(site.enterprise.facility(p).name for p in served if site.running(p, other))
                    values = {"treatment": treatment.name, "production": names, "n": n}
                    return {"what": what.format(**values), "when": when, **values}
                complete &= running is False
        return False if complete else None


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [StartStop()] if enterprise.facilities.treatment else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"sync_minutes": 5}
