"""Grafana Alerting file provisioning (apiVersion 1): alert rules over the `alarm` measurement, webhook contact
points to the notification relay (`gkjk relay`), the routing tree and Chinese notification templates.

The rule engine decides what is an alarm (durations, hold-off, retractions); Grafana only turns each open alarm
episode into an alert instance and routes it to the enterprise, its county branch and the bureau. Contract with
the relay: docs/grafana.md, *Alerting*.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any
from urllib.parse import quote

from grafana_foundation_sdk.builders import expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from gkjk.grafana.alarms import SEVERITY
from gkjk.grafana.alarms import UID as ALARMS_UID
from gkjk.grafana.influxql import DATASOURCE
from gkjk.grafana.provisioning import FOLDER
from gkjk.registry import Registry
from rules_plugins.titles import RULE_TITLES

EXPRESSIONS = {"type": "__expr__", "uid": "__expr__"}
GROUP = "工况告警"
INTERVAL = "1m"  # evaluation; the rule engine itself judges once a minute
BUREAU = "生态环境局"
TEMPLATE = "gkjk"
# The labels of an alert instance: the tags of its `alarm` series (one instance per series).
SERIES = ("ent", "county", "fac", "rule", "severity")
# One notification per alarm series, sent as soon as it fires (latency budget in docs/grafana.md).
TIMING = {"group_by": ["alertname", "ent", "fac", "rule"], "group_wait": "0s", "group_interval": "1m",
          "repeat_interval": "2h"}
TOKEN = "$__env{GKJK_RELAY_TOKEN}"  # Grafana expands it from its environment: no secret in the file


def open_alarm_query(severity: str) -> str:
    """Per alarm series of a severity: 1 while its last non-retracted event is `open`, else 0.

    No time filter: an episode opened a week ago is open until its `closed` event, however old the `open` one is.
    """
    tags = ", ".join(f'"{tag}"' for tag in SERIES)
    return (f'SELECT last("active") AS "active" FROM "alarm" WHERE "severity" = \'{severity}\' '
            f'AND "state" != \'retracted\' GROUP BY {tags}')


def _expression(builder: Any) -> dict[str, Any]:
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    model["datasource"] = dict(EXPRESSIONS)  # a copy each time: no YAML anchors in the output
    return {"refId": model["refId"], "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPRESSIONS["uid"],
            "model": model}


def _choice(variable: str, values: dict[str, str]) -> str:
    """Go template: the Chinese text of a label value (the value itself when unknown, e.g. a rule pack's rule)."""
    branches = "{{ else if ".join(f'eq {variable} "{key}" }}}}{text}' for key, text in values.items())
    return f"{{{{ if {branches}{{{{ else }}}}{{{{ {variable} }}}}{{{{ end }}}}"


def _rule(severity: str) -> dict[str, Any]:
    query = {"refId": "A", "datasource": dict(DATASOURCE), "rawQuery": True, "query": open_alarm_query(severity),
             "resultFormat": "time_series", "intervalMs": 60000, "maxDataPoints": 43200}
    last = expr.TypeReduce().ref_id("B").expression("A").reducer("last").settings(
        expr.ExprTypeReduceSettings().mode("dropNN"))
    firing = expr.TypeThreshold().ref_id("C").expression("B").conditions([
        expr.ExprTypeThresholdConditions().evaluator(expr.ExprTypeThresholdConditionsEvaluator().type("gt")
                                                     .params([0]))])
    level = SEVERITY[severity][0]
    summary = (f"{{{{ $labels.county }}}} 企业 {{{{ $labels.ent }}}} 设施 {{{{ $labels.fac }}}}："
               f"{_choice('$labels.rule', RULE_TITLES)}（{level}级别）")
    return {
        "uid": f"gkjk-alarm-{severity}",
        "title": f"{level}级别工况告警",
        "condition": "C",
        # The range is required but unused: the query has no $timeFilter (see open_alarm_query).
        "data": [{"refId": "A", "relativeTimeRange": {"from": 600, "to": 0}, "datasourceUid": DATASOURCE["uid"],
                  "model": query},
                 _expression(last), _expression(firing)],
        "dashboardUid": ALARMS_UID,
        "panelId": 1,
        # No alarm data at all is the normal state of a quiet fleet, not an alert; a failing query is reported
        # (DatasourceError, routed to the bureau) rather than resolving every open alarm.
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "0s",  # the rule engine already applied the rule's duration
        "annotations": {"summary": summary},
        "labels": {},
        "isPaused": False,
    }


def rules() -> dict[str, Any]:
    """One rule group, one alert rule per severity: every rule of every pack is covered without listing rules,
    and a severity can be paused or given its own routing on its own."""
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": GROUP, "folder": FOLDER, "interval": INTERVAL,
                                         "rules": [_rule(severity) for severity in SEVERITY]}]}


def _short_uid(kind: str, key: str) -> str:
    """A stable uid Grafana accepts (letters, digits, `-`, at most 40 characters) for a Chinese or long key."""
    return f"gkjk-{kind}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


class Recipient:
    """A contact point: one webhook to the relay for one recipient path (contract in docs/grafana.md)."""

    def __init__(self, uid: str, name: str, path: str) -> None:
        self.uid, self.name, self.path = uid, name, path

    def contact_point(self, relay_url: str) -> dict[str, Any]:
        settings = {"url": f"{relay_url.rstrip('/')}/grafana/{self.path}", "httpMethod": "POST",
                    "authorization_scheme": "Bearer", "authorization_credentials": TOKEN,
                    "title": f'{{{{ template "{TEMPLATE}.title" . }}}}',
                    "message": f'{{{{ template "{TEMPLATE}.message" . }}}}'}
        return {"orgId": 1, "name": self.name, "receivers": [
            {"uid": self.uid, "type": "webhook", "settings": settings, "disableResolveMessage": False}]}


def recipients(registry: Registry) -> tuple[Recipient, list[tuple[str, Recipient]], list[tuple[str, Recipient]]]:
    """The bureau, (county, its branch) and (credit code, enterprise), sorted so the output is stable."""
    enterprises = sorted(registry.enterprises.values(), key=lambda e: e.id)
    repeated = {name for name, n in Counter(e.name for e in enterprises).items() if n > 1}
    counties = sorted({e.county for e in enterprises})
    return (Recipient("gkjk-bureau", BUREAU, "bureau"),
            [(c, Recipient(_short_uid("county", c), f"分局 {c}", f"county/{quote(c, safe='')}")) for c in counties],
            [(e.id, Recipient(f"gkjk-ent-{e.id.lower()}", f"企业 {e.name}（{e.id}）" if e.name in repeated
                              else f"企业 {e.name}", f"enterprise/{e.id}")) for e in enterprises])


def contact_points(registry: Registry, relay_url: str) -> dict[str, Any]:
    """Webhook contact points: the bureau, one per county branch, one per enterprise of the registry."""
    bureau, counties, enterprises = recipients(registry)
    return {"apiVersion": 1, "contactPoints": [bureau.contact_point(relay_url),
                                               *(r.contact_point(relay_url) for _, r in counties),
                                               *(r.contact_point(relay_url) for _, r in enterprises)]}


def policies(registry: Registry) -> dict[str, Any]:
    """The routing tree: every alarm goes to its enterprise, its county branch and the bureau. Each route
    continues, so matching one does not stop the others; the bureau's route has no matcher."""
    bureau, counties, enterprises = recipients(registry)
    routes = [*({"receiver": r.name, "object_matchers": [["ent", "=", ent]], "continue": True}
                for ent, r in enterprises),
              *({"receiver": r.name, "object_matchers": [["county", "=", county]], "continue": True}
                for county, r in counties),
              {"receiver": bureau.name, "continue": True}]
    return {"apiVersion": 1, "policies": [{"orgId": 1, "receiver": bureau.name, **TIMING, "routes": routes}]}


def templates() -> dict[str, Any]:
    """Chinese notification templates (Go templates as Grafana documents them), used by the contact points'
    title and message and available to any other Grafana-native contact point."""
    rule = _choice(".Labels.rule", RULE_TITLES)
    severity = _choice(".Labels.severity", {key: text for key, (text, _color) in SEVERITY.items()})
    text = f"""{{{{ define "{TEMPLATE}.alert" }}}}{rule}（{severity}级）：{{{{ .Labels.county }}}} \
企业 {{{{ .Labels.ent }}}} 设施 {{{{ .Labels.fac }}}}，开始于 {{{{ .StartsAt.Local.Format "2006-01-02 15:04" }}}}\
{{{{ end }}}}
{{{{ define "{TEMPLATE}.title" }}}}{{{{ if .Alerts.Firing }}}}【工况告警】{{{{ len .Alerts.Firing }}}} 条告警\
{{{{ if .Alerts.Resolved }}}}，{{{{ len .Alerts.Resolved }}}} 条已恢复{{{{ end }}}}\
{{{{ else }}}}【告警恢复】{{{{ len .Alerts.Resolved }}}} 条告警已恢复{{{{ end }}}}{{{{ end }}}}
{{{{ define "{TEMPLATE}.message" }}}}{{{{ range .Alerts.Firing }}}}告警：{{{{ template "{TEMPLATE}.alert" . }}}}
{{{{ end }}}}{{{{ range .Alerts.Resolved }}}}已恢复：{{{{ template "{TEMPLATE}.alert" . }}}}，\
恢复于 {{{{ .EndsAt.Local.Format "2006-01-02 15:04" }}}}
{{{{ end }}}}详情见平台“告警列表”。{{{{ end }}}}
"""
    return {"apiVersion": 1, "templates": [{"orgId": 1, "name": TEMPLATE, "template": text}]}
