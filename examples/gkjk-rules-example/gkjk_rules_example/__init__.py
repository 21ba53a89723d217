"""光氧灯管损坏: a UV photolysis unit draws well below its rated lamp current while the production it serves runs.

Burnt-out tubes leave the VOCs untreated, yet the unit still draws current, so `treatment_off` sees it running.
Shoemaking and printing shops use UV photolysis before activated carbon; the lamp current is metered as a
`current` point with `rated` (all tubes lit) on the `uv_photolysis` facility (docs/registry.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

INDUSTRIES = ("制鞋", "包装印刷")
TEMPLATE = ("生产设施运行期间，治污设施 {unit} 灯管电流仅为额定值的 {share}%（低于 {limit}%），疑似灯管损坏，"
            "已持续 {minutes} 分钟")


class UvLampFailure:
    name = "uv_lamp"
    severity: Literal["low"] = "low"

    def conditions(self, site: Site) -> Iterator[Condition]:
        fraction = site.thresholds["uv_lamp_min_fraction"]
        for unit in site.enterprise.facilities.treatment:
            lamps = [p for p in site.points(unit.id, "current") if p.rated]
            served = [p for p in unit.serves if site.metered(p)]
            if unit.kind != "uv_photolysis" or not lamps or not served:
                continue
            rated = sum(p.rated for p in lamps) / len(lamps)
            producing = site.operating(served)  # minute -> any served line runs (missing: cannot tell)
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                on = producing.get(minute)
                lit, current = site.running(unit.id, minute), site.mean(lamps, minute)
                if on and lit and current is not None and current < fraction * rated:
                    verdicts[minute] = {"unit": unit.name, "share": f"{100 * current / rated:.0f}",
                                        "limit": f"{100 * fraction:g}"}
                elif on is False or lit is False or (current is not None and current >= fraction * rated):
                    verdicts[minute] = False
            yield Condition(unit.id, verdicts, int(site.thresholds["uv_lamp_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule] | None:
    applies = enterprise.industry in INDUSTRIES and any(
        t.kind == "uv_photolysis" for t in enterprise.facilities.treatment)
    return [UvLampFailure()] if applies else None


@hookimpl
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    """For every industry, so that a bureau may set them in [rules.thresholds] for all at once."""
    return {"uv_lamp_min_fraction": 0.8, "uv_lamp_minutes": 10}
