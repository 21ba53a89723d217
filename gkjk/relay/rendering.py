"""The Chinese texts of a message, from jinja2 templates over the alert, the registry and the stored alarm text.

The alarm's own `message` (written by the rule engine, read from InfluxDB) is the heart of every text; when
InfluxDB has none, the alert's `description` annotation is (the platform rules have one), else `fallback` words
one from the labels and the registry's names. Platform alerts (label scope=platform: the ingest service's health,
no enterprise) are titled by their rule and name their host.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import DictLoader, Environment, StrictUndefined

from gkjk.registry import Registry
from gkjk.relay.grafana import PLATFORM_SCOPE, GrafanaAlert
from rules_plugins.titles import RULE_TITLES

# Grafana's own alerts about the alert rules (no enterprise), which reach the bureau.
GRAFANA_ALERT_TITLES: Mapping[str, str] = {
    "DatasourceError": "数据源异常（告警规则无法查询 InfluxDB）",
    "DatasourceNoData": "数据源无数据",
}
SEVERITIES: Mapping[str, str] = {"high": "高", "medium": "中", "low": "低"}
# Aliyun allows at most 35 characters in one variable of a notification template.
SMS_PARAM_LENGTH = 35

TEMPLATES: Mapping[str, str] = {
    "fallback": ("{% if enterprise %}{{ enterprise }}：{{ facility }}{% endif %}{{ rule_title }}"
                 "{{ '，已恢复' if resolved else '' }}"),
    "dingtalk_title": "工况告警：{{ rule_title }}（{{ state }}）",
    "dingtalk_markdown": (
        "#### 工况告警：{{ rule_title }}（{{ state }}）\n\n"
        "{{ message }}\n\n"
        "{% if enterprise %}- 企业：{{ enterprise }}\n{% endif %}"
        "{% if facility %}- 设施：{{ facility }}\n{% endif %}"
        "{% if county %}- 区县：{{ county }}\n{% endif %}"
        "{% if host %}- 主机：{{ host }}{% if worker %}（工作进程 {{ worker }}）{% endif %}\n{% endif %}"
        "- 级别：{{ severity }}\n"
        "- 开始：{{ started }}\n"
        "{% if resolved and ended %}- 恢复：{{ ended }}\n{% endif %}"
    ),
    "dingtalk_text": (
        "【工况告警·{{ state }}】{{ message }}（{% if county %}{{ county }}，{% endif %}"
        "{% if host %}主机 {{ host }}，{% endif %}级别：{{ severity }}，开始：{{ started }}"
        "{% if resolved and ended %}，恢复：{{ ended }}{% endif %}）"
    ),
}

_environment = Environment(loader=DictLoader(dict(TEMPLATES)), undefined=StrictUndefined, autoescape=False,
                           keep_trailing_newline=True)


def _local_time(iso: str, zone: ZoneInfo) -> str:
    """Grafana's RFC 3339 time as local "YYYY-MM-DD HH:MM"; "" for Grafana's zero time or nothing."""
    if not iso or iso.startswith("0001-"):
        return ""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _facility_name(registry: Registry, enterprise_id: str, facility: str) -> str:
    enterprise = registry.enterprises.get(enterprise_id)
    if enterprise is not None and (found := enterprise.facility(facility)) is not None:
        return found.name
    device = registry.device(facility) if facility else None
    if device is not None:
        return f"数采仪 {device.device.mn}"
    return facility


def context(alert: GrafanaAlert, registry: Registry, stored_message: str | None, timezone: str) -> dict[str, Any]:
    """The values every template may use."""
    labels, zone = alert.labels, ZoneInfo(timezone)
    enterprise_id = labels.get("ent", "").upper()
    enterprise = registry.enterprises.get(enterprise_id)
    rule = labels.get("rule", "")
    platform = labels.get(PLATFORM_SCOPE[0]) == PLATFORM_SCOPE[1]
    values: dict[str, Any] = {
        "enterprise": enterprise.name if enterprise else enterprise_id,
        "county": labels.get("county") or (enterprise.county if enterprise else ""),
        "facility": _facility_name(registry, enterprise_id, labels.get("fac", "")),
        "host": labels.get("host", ""),
        "worker": labels.get("worker", ""),
        "rule_title": (RULE_TITLES.get(rule) or GRAFANA_ALERT_TITLES.get(labels.get("alertname", ""))
                       or (platform and labels.get("alertname")) or alert.annotations.get("summary")
                       or labels.get("alertname") or "工况异常"),
        "severity": SEVERITIES.get(labels.get("severity", ""), labels.get("severity", "") or "未分级"),
        "resolved": alert.status == "resolved",
        "state": "已恢复" if alert.status == "resolved" else "告警",
        "started": _local_time(alert.starts_at, zone),
        "ended": _local_time(alert.ends_at, zone),
    }
    values["message"] = (stored_message or alert.annotations.get("description")
                         or _environment.get_template("fallback").render(values))
    return values


def dingtalk_body(values: Mapping[str, Any], msgtype: str) -> dict[str, Any]:
    """The JSON body of a DingTalk robot message (msgtype "markdown" or "text")."""
    if msgtype == "markdown":
        return {"msgtype": "markdown", "markdown": {
            "title": _environment.get_template("dingtalk_title").render(values),
            "text": _environment.get_template("dingtalk_markdown").render(values),
        }}
    return {"msgtype": "text", "text": {"content": _environment.get_template("dingtalk_text").render(values)}}


def sms_params(values: Mapping[str, Any]) -> dict[str, str]:
    """The variables of the SMS template (docs/relay.md): enterprise, facility, alarm, state (never empty)."""
    host = f"主机 {values['host']}" if values["host"] else ""
    params = {"enterprise": values["enterprise"] or "工况监控平台", "facility": values["facility"] or host or "—",
              "alarm": values["rule_title"], "state": values["state"]}
    return {k: v if len(v) <= SMS_PARAM_LENGTH else v[:SMS_PARAM_LENGTH - 1] + "…" for k, v in params.items()}
