"""The default alarm text: enterprise name, then the rule's template; a pack may word it differently."""

from __future__ import annotations

from gkjk.registry import Enterprise
from rules_plugins import hookimpl
from rules_plugins.model import Alarm


@hookimpl(trylast=True)
def gkjk_alarm_message(alarm: Alarm, enterprise: Enterprise) -> str:
    text = alarm.template.format(minutes=alarm.minutes, **alarm.context)
    return f"{enterprise.name}：{text}" + ("，已恢复" if alarm.state == "closed" else "")
