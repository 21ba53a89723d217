"""应急管控不落实: during a heavy-pollution alert period, a line on 停产 still runs or a line on 限产 runs above its cap.

What each line must do and whether it did is judged in rules_plugins.control (the same judgement the `control`
measurement stores). Minutes outside every period are clear, so an alarm closes when the period ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.control import DEFAULT_LOAD_CAP, Judgement, controlled, judge
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "{period}（{level}预警）期间，生产设施 {line} 应急管控要求{required}，实际{found}，已持续 {minutes} 分钟"


def _values(line: str, j: Judgement) -> dict[str, str]:
    """The message values of a violating minute."""
    if j.action == "停产":
        required = "停产"
        found = "仍在运行" + (f"（负荷 {j.load:g}%）" if j.load is not None else "")
    else:
        required = f"限产（负荷不超过 {j.cap:g}%）"
        found = f"负荷 {j.load:g}%"
    return {"period": j.period.name, "level": j.period.level, "line": line, "required": required, "found": found}


class Emergency:
    name = "emergency"
    severity: Literal["high"] = "high"

    def conditions(self, site: Site) -> Iterator[Condition]:
        judgements = judge(site)
        duration = int(site.thresholds["emergency_minutes"])
        for line in controlled(site.enterprise):
            judged = judgements.get(line.id, {})
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                j = judged.get(minute)
                if j is None:
                    verdicts[minute] = False  # no period in force: nothing to comply with
                elif j.compliant is not None:
                    verdicts[minute] = False if j.compliant else _values(line.name, j)
            yield Condition(line.id, verdicts, duration, TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [Emergency()] if controlled(enterprise) else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"emergency_minutes": 10, "emergency_load_cap": DEFAULT_LOAD_CAP}
