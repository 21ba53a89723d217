"""掉线 and 未上报数据: a data logger's silence, judged against when it was first heard and first watched.

A minute without a standing reading is only silence the platform can vouch for once it knows the device:
- `offline` (掉线): silent after the device's first reading (rules_plugins.watch `seen`); that is real data
  even when it lies before the engine's first evaluation, so a restart gives the same alarm;
- `no_data` (未上报数据): never heard, counted from the minute the engine started watching the MN (`watched`:
  its first evaluation with the MN in the registry), so a fresh database or a newly registered logger raises
  nothing for the time before, and a logger that never sends is reported once the duration has passed since then.
Before both, a silent minute is unknown (None). Both last `offline_intervals` x `rtd_interval`, at least
`offline_minutes`; the subject (`fac` tag) is the device MN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Literal

from gkjk.registry import Device, Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

OFFLINE = "数采仪 {mn} 掉线，已 {minutes} 分钟无数据"
NO_DATA = "数采仪 {mn} 纳入监控后从未上报数据，已 {minutes} 分钟"


def duration(site: Site, device: Device) -> int:
    return math.ceil(max(site.thresholds["offline_minutes"],
                         site.thresholds["offline_intervals"] * device.rtd_interval / 60))


class Offline:
    name = "offline"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for device in site.enterprise.devices:
            seen, context = site.first_seen(device.mn), {"mn": device.mn}
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                if site.present(device.mn, minute):
                    verdicts[minute] = False
                elif seen is not None and seen < minute:
                    verdicts[minute] = context
            yield Condition(device.mn, verdicts, duration(site, device), OFFLINE)


class NoData:
    name = "no_data"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        for device in site.enterprise.devices:
            seen, watched, context = site.first_seen(device.mn), site.watched(device.mn), {"mn": device.mn}
            verdicts: dict[int, Verdict] = {}
            for minute in site.minutes:
                if seen is not None and seen <= minute:
                    verdicts[minute] = False
                elif watched is not None and watched <= minute:
                    verdicts[minute] = context
            yield Condition(device.mn, verdicts, duration(site, device), NO_DATA)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [Offline(), NoData()] if enterprise.devices else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"offline_minutes": 30, "offline_intervals": 2}
