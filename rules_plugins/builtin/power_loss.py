"""终端断电: the data logger reports a power-loss event (3020 upload with `Event=PowerLoss`, stored in the `info`
measurement as the text field `Event` on the `fac=unmapped` point; ingest_twisted/field/logger.py).

From the minute of the PowerLoss event the device is violated until a `PowerRestored` event or, failing that,
until it delivers a real-time record again (a logger may come back without saying so); the alarm opens at the
event (`power_loss_minutes`, default 0) and closes `hold_off_minutes` after the restoring minute. Events are
read with the window (`Readings.events`); before the first one of the minutes read, a minute with a record is
clear and a silent one unknown, so an alarm already open stays open through a long outage. The subject is the MN.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, tzinfo
from typing import Literal

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Site

POWER_LOSS, POWER_BACK = "PowerLoss", "PowerRestored"
TEMPLATE = "数采仪 {mn} 报告终端断电（{since} 起）"


class PowerLoss:
    name = "power_loss"
    severity: Literal["high"] = "high"

    def conditions(self, site: Site) -> Iterator[Condition]:
        readings = site.readings
        zone = site.history.zone if site.history else None
        for device in site.enterprise.devices:
            records = readings.records.get(device.mn, {})
            events = [(t - t % 60, e) for t, e in readings.events.get(device.mn, ()) if e in (POWER_LOSS, POWER_BACK)]
            if not events:  # the common case: data flowing clears, silence cannot tell
                if site.quiet(self.name, device.mn):
                    continue  # nothing to clear
                verdicts: dict[int, Verdict] = {m: False for m in records if m >= readings.start}
            else:
                verdicts = self.judge(device.mn, events, records, readings.first, readings.start, readings.end, zone)
            if verdicts:
                yield Condition(device.mn, verdicts, int(site.thresholds["power_loss_minutes"]), TEMPLATE)

    @staticmethod
    def judge(mn: str, events: list[tuple[int, str]], records: Mapping[int, int], first: int, start: int, end: int,
              zone: tzinfo | None) -> dict[int, Verdict]:
        """Walk the minutes read: the last event so far decides, a record after a PowerLoss ends it."""
        verdicts: dict[int, Verdict] = {}
        lost: Verdict = None  # context while lost, False once restored, None before any event
        lost_at, i = 0, 0
        for minute in range(first, end, 60):
            while i < len(events) and events[i][0] <= minute:
                lost_at, event = events[i]
                since = datetime.fromtimestamp(lost_at, zone).strftime("%m-%d %H:%M")
                lost = {"mn": mn, "since": since} if event == POWER_LOSS else False
                i += 1
            if lost and minute in records and minute > lost_at:
                lost = False  # data flows again
            verdict = lost if lost is not None else (False if minute in records else None)
            if verdict is not None and minute >= start:
                verdicts[minute] = verdict
        return verdicts


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [PowerLoss()] if enterprise.devices else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"power_loss_minutes": 0}
