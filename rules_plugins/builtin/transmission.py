"""传输率不达标: a data logger delivered less than `transmission_min_rate` (90 %) of the real-time records its
`rtd_interval` promises over a local day (`[ingest] timezone`).

Per device and day: expected = 3600 / `rtd_interval` records per hour, received = the records stored for the hour
(rules_plugins.history; one record per DataTime, at most the expected number, so a logger uploading too often
does not make up for its gaps), summed over the day's hours that start at or after the minute the engine began
watching the device (`state.watched`): a device added in the afternoon is judged on the afternoon. Late records
(replays after an outage) count once stored. The verdict of a day is spread over every minute of the following
day, so the alarm opens at the next local midnight (plus `transmission_minutes`, default 0), stays open while each
following day falls short too, and closes `hold_off_minutes` after the first midnight that follows a good day.
A day the statistics do not cover (before `history_hours`, or before watching) is not judged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Literal

from gkjk.registry import Device, Enterprise
from rules_plugins import hookimpl
from rules_plugins.history import HOUR, History
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

TEMPLATE = ("数采仪 {mn} {date} 实时数据传输率 {rate}%，低于 {limit}%"
            "（应传 {expected} 条，实传 {received} 条）")


def judge(site: Site, history: History, device: Device, day: int) -> Verdict:
    """The verdict on one local day (epoch s of its midnight), None if it cannot be judged."""
    watched = site.watched(device.mn)
    if watched is None:
        return None
    per_hour = HOUR / device.rtd_interval
    expected = received = 0.0
    for hour in history.day_hours(day):
        if hour < watched:
            continue
        records = history.records(device.mn, hour)
        if records is None:
            return None
        expected += per_hour
        received += min(records, per_hour)
    if not expected:
        return None
    limit = site.thresholds["transmission_min_rate"]
    if received >= limit * expected:
        return False
    return {"mn": device.mn, "date": datetime.fromtimestamp(day, history.zone).strftime("%Y-%m-%d"),
            "rate": f"{100 * received / expected:.1f}", "limit": f"{100 * limit:g}",
            "expected": math.floor(expected), "received": math.floor(received)}


class TransmissionRate:
    name = "transmission_rate"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        history = site.history
        if history is None:
            return
        minutes = site.minutes  # shorter than a day: it touches at most two local days
        days = sorted({history.day_start(minutes[0]), history.day_start(minutes[-1])})
        for device in site.enterprise.devices:
            judged = {day: judge(site, history, device, history.day_start(day - 1)) for day in days}
            if site.quiet(self.name, device.mn) and not any(judged.values()):
                continue  # short on no day and nothing stored: the engine would write nothing
            verdicts: dict[int, Verdict] = {}
            for minute in minutes:
                verdict = judged[days[-1] if minute >= days[-1] else days[0]]
                if verdict is not None:
                    verdicts[minute] = verdict
            yield Condition(device.mn, verdicts, int(site.thresholds["transmission_minutes"]), TEMPLATE)


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [TransmissionRate()] if enterprise.devices else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"transmission_min_rate": 0.9, "transmission_minutes": 0}
