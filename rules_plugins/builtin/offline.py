"""掉线: a data logger sent no real-time data for `offline_intervals` x its upload interval, at least
`offline_minutes`; the subject (`fac` tag) is the device MN."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = "数采仪 {mn} 掉线，已 {minutes} 分钟无数据"


class Offline:
    name = "offline"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for device in site.enterprise.devices:
            duration = max(site.thresholds["offline_minutes"],
                           site.thresholds["offline_intervals"] * device.rtd_interval / 60)
            context = {"mn": device.mn}
            verdicts: dict[int, Verdict] = {m: False if site.present(device.mn, m) else context for m in site.minutes}
            yield Condition(device.mn, verdicts, math.ceil(duration), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [Offline()] if enterprise.devices else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"offline_minutes": 30, "offline_intervals": 2}
