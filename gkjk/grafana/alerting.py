"""Grafana Alerting file provisioning (apiVersion 1): alert rules over the `alarm` measurement and over the
self-metrics of the ingest workers (`gkjk_ingest`) and of the rule engine (`gkjk_rules`), webhook contact points to
the notification relay (`gkjk relay`), the routing tree and Chinese notification templates.

The rule engine decides what is an alarm (durations, hold-off, retractions); Grafana only turns each open alarm
episode into an alert instance and routes it to the enterprise, its county branch and the bureau. The platform
rules watch the ingest service and the rule engine themselves and go to the bureau only. Contract with the relay:
docs/grafana.md, *Alerting*.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any
from urllib.parse import quote

from grafana_foundation_sdk.builders import expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from gkjk.grafana import platform
from gkjk.grafana.alarms import SEVERITY
from gkjk.grafana.alarms import UID as ALARMS_UID
from gkjk.grafana.influxql import DATASOURCE
from gkjk.grafana.provisioning import FOLDER
from gkjk.registry import Registry
from gkjk.relay.grafana import PLATFORM_SCOPE as SCOPE
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

# Platform health: rules over `gkjk_ingest`, `gkjk_rules` and `gkjk_relay`, labelled SCOPE (scope=platform, shared
# with the relay in gkjk/relay/grafana.py) and routed to the bureau only.
PLATFORM_GROUP = "平台告警"
# One notification per check and host (and worker, for dead letters; channel, for the relay's).
PLATFORM_GROUP_BY = ["alertname", "host", "worker", "channel"]
# 采集服务无上报: a worker reports every `[metrics] interval` (10 s by default), so two minutes without a point
# from any worker of a host is a stopped service (or writes that no longer reach InfluxDB), not jitter. Points
# are counted in 30 s buckets: the current bucket and the 4 before it, 2 to 2.5 minutes.
SILENT_SECONDS = 120
SILENT_BUCKET_SECONDS = 30
# A host that has not reported for this long drops out of the query's answer (its alert resolves as a missing
# series): long enough to keep an overnight outage alerting, short enough for a retired host to go away.
SILENT_LOOKBACK_SECONDS = 86400
# 规则引擎无判定: `gkjk rules` writes a `gkjk_rules` point per evaluation (`[rules] interval`, 60 s by default),
# so three minutes without one is a stopped engine (or one whose writes no longer reach InfluxDB). Same query as
# 采集服务无上报 (30 s buckets, the current one and the 6 before it: 3 to 3.5 minutes; the same lookback).
RULES_SILENT_SECONDS = 180
# 规则判定失败: evaluations that raised (`failed` = 1: a query InfluxDB refused, a bug) still write their point, so
# 规则引擎无判定 stays quiet for them. 3 failed of the last 5 minutes (about 5 cycles at the default interval) is an
# engine that no longer judges, not one failed cycle while InfluxDB restarted.
RULES_FAILED = 3
RULES_FAILED_WINDOW_SECONDS = 300
# 通知服务无上报: the relay writes its webhook's point every `[metrics] interval` too; the same query as
# 采集服务无上报 over `gkjk_relay`'s `requests`. While the relay is down no alarm gets out, this alert included:
# it shows in Grafana's alert list.
# 通知投递失败: messages given up (after `[relay] max_attempts`, about two hours of retries by default, or refused
# by the receiver) in the last 10 minutes: an alarm that never reached its recipient.
RELAY_DEAD_WINDOW_SECONDS = 600
# 通知积压: a channel's oldest undelivered message waiting longer than the longest retry interval (`[relay]
# retry_max`, 1800 s): the receiver fails for half an hour, or an alarm storm holds SMS back under
# `sms_per_phone_per_hour`. Either way alarms are late. The latest value of the last 2 minutes.
RELAY_WAIT_SECONDS = 1800
RELAY_WAIT_WINDOW_SECONDS = 120
CHANNELS = {"dingtalk": "钉钉", "sms": "短信"}
# 写入积压增长: records in the spools of a host's workers, not yet in InfluxDB. A healthy writer sends a batch
# as soon as it holds `[spool] batch_max_lines` (5,000) or after `flush_interval` (0.2 s), so a host keeps about a
# batch per worker at most; 20,000 records held for 5 minutes means InfluxDB takes less than arrives.
SPOOL_RECORDS = 20_000
SPOOL_FOR = "5m"
# InfluxDB 写入失败: write retries (connection errors, timeouts, 5xx) in every 5-minute window for 5 minutes, so
# a restart of InfluxDB (a few retries, then success) does not page anyone; an outage stops the metrics too and
# is reported by 采集服务无上报 (and by Grafana's DatasourceError when Grafana cannot read InfluxDB either).
RETRY_WINDOW_SECONDS = 300
RETRY_FOR = "5m"
# InfluxDB 拒收数据: lines dead-lettered (InfluxDB answered 400) in the last 5 minutes: at once, data is missing.
DEAD_LETTER_WINDOW_SECONDS = 300
# 应答延迟过高: the worst worker's 99th percentile of acknowledgement latency over 2 minutes, held for 5 minutes.
# Data loggers wait for the 9014 (typically up to a few seconds) before sending again; 1 s is far above the
# milliseconds measured (docs/benchmarks.md) and well below a logger's timeout.
ACK_P99_MS = 1000
ACK_WINDOW_SECONDS = 120
ACK_FOR = "5m"


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


def silent_hosts_query(measurement: str = platform.MEASUREMENT, field: str = "connections",
                       seconds: int = SILENT_SECONDS) -> str:
    """Per host that reported during the range: its `measurement` points in the last `seconds` (the current
    bucket and the full ones before it), 0 when every process of the host has been silent that long."""
    buckets = seconds // SILENT_BUCKET_SECONDS + 1
    return (f'SELECT moving_average(count("{field}"), {buckets}) * {buckets} AS "reports" '
            f'FROM "{measurement}" WHERE $timeFilter '
            f'GROUP BY time({SILENT_BUCKET_SECONDS}s), "host" fill(0)')


def failed_evaluations_query() -> str:
    """Per host: the rule engine's failed evaluations in the range."""
    return (f'SELECT sum("failed") AS "failed" FROM "{platform.RULES_MEASUREMENT}" WHERE $timeFilter '
            'GROUP BY "host"')


def relay_wait_query() -> str:
    """Per host and channel: how long the oldest undelivered message has waited, as last reported in the range."""
    return (f'SELECT last("oldest_pending_seconds") AS "oldest" FROM "{platform.RELAY_MEASUREMENT}" '
            f'WHERE {platform.RELAY_CHANNELS} AND $timeFilter GROUP BY "host", "channel"')


def spool_query() -> str:
    """Per host: the records in its workers' spools, from each worker's latest point of the range, summed."""
    return (f'SELECT sum("records") AS "records" FROM (SELECT last("writer_spool_records") AS "records" '
            f'FROM "{platform.MEASUREMENT}" WHERE $timeFilter GROUP BY "host", "worker") '
            'WHERE $timeFilter GROUP BY "host"')


def increase_query(field: str, alias: str, tags: tuple[str, ...], measurement: str = platform.MEASUREMENT,
                   series: tuple[str, ...] = ("host", "worker"), where: str = "") -> str:
    """Per `tags`: how much a counter grew during the range. Differences between consecutive points of each of its
    `series` (a worker's by default; a relay channel's), a restart's reset (a negative step) dropped, summed."""
    group, per = (", ".join(f'"{tag}"' for tag in names) for names in (tags, series))
    return (f'SELECT sum("{alias}") AS "{alias}" FROM (SELECT non_negative_difference("{field}") AS "{alias}" '
            f'FROM "{measurement}" WHERE {where + " AND " if where else ""}$timeFilter GROUP BY {per}) '
            f'WHERE $timeFilter GROUP BY {group}')


def ack_latency_query() -> str:
    """Per host: the worst worker's acknowledgement latency p99 (ms) of the range."""
    return (f'SELECT max("ack_latency_p99_ms") AS "p99" FROM "{platform.MEASUREMENT}" WHERE $timeFilter '
            'GROUP BY "host"')


def _choice(variable: str, values: dict[str, str]) -> str:
    """Go template: the Chinese text of a label value (the value itself when unknown, e.g. a rule pack's rule)."""
    branches = "{{ else if ".join(f'eq {variable} "{key}" }}}}{text}' for key, text in values.items())
    return f"{{{{ if {branches}{{{{ else }}}}{{{{ {variable} }}}}{{{{ end }}}}"


def _data(query: str, window: int, evaluator: str, threshold: float) -> list[dict[str, Any]]:
    """A: the InfluxQL query over the last `window` seconds; B: reduce `last` (nulls dropped); C: the condition,
    B `evaluator` (gt, lt) `threshold`."""
    model = {"refId": "A", "datasource": dict(DATASOURCE), "rawQuery": True, "query": query,
             "resultFormat": "time_series", "intervalMs": 60000, "maxDataPoints": 43200}
    last = expr.TypeReduce().ref_id("B").expression("A").reducer("last").settings(
        expr.ExprTypeReduceSettings().mode("dropNN"))
    condition = expr.TypeThreshold().ref_id("C").expression("B").conditions([
        expr.ExprTypeThresholdConditions().evaluator(expr.ExprTypeThresholdConditionsEvaluator().type(evaluator)
                                                     .params([threshold]))])
    return [{"refId": "A", "relativeTimeRange": {"from": window, "to": 0}, "datasourceUid": DATASOURCE["uid"],
             "model": model},
            _expression(last), _expression(condition)]


def _rule(severity: str) -> dict[str, Any]:
    level = SEVERITY[severity][0]
    summary = (f"{{{{ $labels.county }}}} 企业 {{{{ $labels.ent }}}} 设施 {{{{ $labels.fac }}}}："
               f"{_choice('$labels.rule', RULE_TITLES)}（{level}级别）")
    return {
        "uid": f"gkjk-alarm-{severity}",
        "title": f"{level}级别工况告警",
        "condition": "C",
        # The range is required but unused: the query has no $timeFilter (see open_alarm_query).
        "data": _data(open_alarm_query(severity), 600, "gt", 0),
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


HOST = "{{ if $labels.host }}主机 {{ $labels.host }}{{ else }}全部主机{{ end }}"
VALUE = "{{ humanize $values.B.Value }}"


def _platform_rule(check: str, title: str, severity: str, data: list[dict[str, Any]], panel: str | None,
                   wait: str, summary: str, description: str, no_data: str = "OK") -> dict[str, Any]:
    """`panel`: the title of the 平台运行状态 panel the alert links to (None: no panel shows the data)."""
    link = {"dashboardUid": platform.UID, "panelId": platform.panel_id(panel)} if panel else {}
    return {
        "uid": f"gkjk-platform-{check}",
        "title": title,
        "condition": "C",
        "data": data,
        **link,
        "noDataState": no_data,
        "execErrState": "Error",  # Grafana's DatasourceError alert, which goes to the bureau as well
        "for": wait,
        "annotations": {"summary": summary, "description": description},
        "labels": {SCOPE[0]: SCOPE[1], "severity": severity},
        "isPaused": False,
    }


def platform_rules(spool_records: int = SPOOL_RECORDS, ack_p99_ms: float = ACK_P99_MS,
                   relay_wait_seconds: float = RELAY_WAIT_SECONDS) -> list[dict[str, Any]]:
    """The health of the ingest service, per host, from `gkjk_ingest`; the rule engine's liveness and failures
    from `gkjk_rules`; the notification relay's liveness and deliveries from `gkjk_relay` (docs/grafana.md,
    *Alerting*)."""
    channel = _choice("$labels.channel", CHANNELS)
    minutes = SILENT_SECONDS // 60
    return [
        _platform_rule(
            "silent", "采集服务无上报", "high",
            _data(silent_hosts_query(), SILENT_LOOKBACK_SECONDS, "lt", 1), "各工作进程最新状态", "0s",
            f"{HOST} 的采集服务 {minutes} 分钟无自监控上报",
            f"{HOST} 的接入服务（gkjk serve）已超过 {minutes} 分钟没有任何工作进程写入自监控数据 gkjk_ingest："
            "服务可能已停止，或它的写入到不了 InfluxDB（数采仪的数据此时留在本地缓存）。请检查该主机上的 gkjk serve "
            "进程和它到 InfluxDB 的连接。",
            # No host at all reported during the lookback: every ingest service is down (or never ran).
            no_data="Alerting"),
        _platform_rule(
            "rules-silent", "规则引擎无判定", "high",
            _data(silent_hosts_query(platform.RULES_MEASUREMENT, "duration_seconds", RULES_SILENT_SECONDS),
                  SILENT_LOOKBACK_SECONDS, "lt", 1), "规则引擎最新判定", "0s",
            f"{HOST} 的规则引擎 {RULES_SILENT_SECONDS // 60} 分钟无判定",
            f"{HOST} 的规则引擎（gkjk rules）已超过 {RULES_SILENT_SECONDS // 60} 分钟没有写入自监控数据 gkjk_rules："
            "它可能已停止、卡住，或它的写入到不了 InfluxDB。此时不会产生新的工况告警，也不会关闭已有的告警。"
            "请检查该主机上的 gkjk rules 进程、它的日志和它到 InfluxDB 的连接。",
            # No host at all evaluated during the lookback: every rule engine is down (or never ran).
            no_data="Alerting"),
        _platform_rule(
            "rules-failing", "规则判定失败", "high",
            _data(failed_evaluations_query(), RULES_FAILED_WINDOW_SECONDS, "gt", RULES_FAILED - 1),
            "告警事件与判定失败", "0s",
            f"{HOST} 的规则引擎近 {RULES_FAILED_WINDOW_SECONDS // 60} 分钟有 {VALUE} 轮判定失败",
            f"规则引擎（gkjk rules）近 {RULES_FAILED_WINDOW_SECONDS // 60} 分钟至少 {RULES_FAILED} 轮判定失败："
            "此时不会产生新的工况告警，也不会关闭已有的告警。请查看该主机 gkjk rules 日志中的“rules evaluation "
            "failed”（查询出错或规则插件异常）和 InfluxDB 的状态。"),
        _platform_rule(
            "relay-silent", "通知服务无上报", "high",
            _data(silent_hosts_query(platform.RELAY_MEASUREMENT, "requests"), SILENT_LOOKBACK_SECONDS, "lt", 1),
            "通知发送", "0s",
            f"{HOST} 的通知服务 {minutes} 分钟无自监控上报",
            f"{HOST} 的通知服务（gkjk relay）已超过 {minutes} 分钟没有写入自监控数据 gkjk_relay：它可能已停止，"
            "工况告警此时发不出钉钉消息和短信（这条告警也可能无法经它送达，请在 Grafana 的告警页面查看）。"
            "请检查该主机上的 gkjk relay 进程和它到 InfluxDB 的连接。",
            # No relay at all reported during the lookback: no notification can go out.
            no_data="Alerting"),
        _platform_rule(
            "relay-dead-letters", "通知投递失败", "high",
            _data(increase_query("dead_lettered", "dead", ("host", "channel"), platform.RELAY_MEASUREMENT,
                                 ("host", "channel"), platform.RELAY_CHANNELS), RELAY_DEAD_WINDOW_SECONDS, "gt", 0),
            "通知发送", "0s",
            f"{HOST} 有 {VALUE} 条{channel}通知多次发送失败后已放弃",
            f"通知服务近 {RELAY_DEAD_WINDOW_SECONDS // 60} 分钟放弃了{channel}通知（多次重试仍失败，或被接收方拒绝），"
            "这些工况告警没有送达接收人。原因在该主机 gkjk relay 的日志和死信文件（[relay] dead_letters）中："
            "常见为钉钉机器人密钥或关键词不符、短信签名或模板未通过、账户欠费、号码错误。"),
        _platform_rule(
            "relay-backlog", "通知积压", "medium",
            _data(relay_wait_query(), RELAY_WAIT_WINDOW_SECONDS, "gt", relay_wait_seconds), "通知待发", "0s",
            f"{HOST} 的{channel}通知已等待 {VALUE} 秒未送达",
            f"通知服务发件箱中最早的一条{channel}通知已等待超过 {relay_wait_seconds:g} 秒：接收方持续失败（服务仍在"
            "重试），或告警过多受到每个号码每小时短信条数的限制。工况告警因此迟到；请查看“平台运行状态”的通知发送"
            "与该主机 gkjk relay 的日志。"),
        _platform_rule(
            "spool", "写入积压增长", "medium",
            _data(spool_query(), 600, "gt", spool_records), "写入积压", SPOOL_FOR,
            f"{HOST} 写入积压 {VALUE} 条",
            f"本地缓存中尚未写入 InfluxDB 的记录超过 {spool_records} 条已持续 {SPOOL_FOR.removesuffix('m')} 分钟："
            "InfluxDB 写入跟不上或写入失败。数据在本地缓存中不会丢失，InfluxDB 恢复后自动补写；"
            "请检查 InfluxDB 的负载、磁盘和日志。"),
        _platform_rule(
            "retries", "InfluxDB 写入失败", "medium",
            _data(increase_query("writer_retries", "retries", ("host",)), RETRY_WINDOW_SECONDS, "gt", 0),
            "写入重试与死信", RETRY_FOR,
            f"{HOST} 写入 InfluxDB 反复失败（近 {RETRY_WINDOW_SECONDS // 60} 分钟重试 {VALUE} 次）",
            f"接入服务写入 InfluxDB 失败并重试（连接失败、超时或 5xx）已持续 {RETRY_FOR.removesuffix('m')} 分钟。"
            "数据在本地缓存中，恢复后自动补写；请检查 InfluxDB 服务、网络和日志。"),
        _platform_rule(
            "dead-letters", "InfluxDB 拒收数据", "high",
            _data(increase_query("writer_dead_lettered_lines", "lines", ("host", "worker")),
                  DEAD_LETTER_WINDOW_SECONDS, "gt", 0),
            "写入重试与死信", "0s",
            f"{HOST} 工作进程 {{{{ $labels.worker }}}} 有 {VALUE} 行数据被 InfluxDB 拒收",
            "InfluxDB 拒收了写入（HTTP 400，例如字段类型冲突），这些数据没有入库，已转入死信文件。请在该主机上用 "
            "`gkjk dead-letters list` 查看原因，排除后用 `gkjk dead-letters replay` 重新写入。"),
        _platform_rule(
            "ack-latency", "应答延迟过高", "low",
            _data(ack_latency_query(), ACK_WINDOW_SECONDS, "gt", ack_p99_ms), "应答延迟", ACK_FOR,
            f"{HOST} 应答延迟 P99 {VALUE} ms",
            f"数采仪等待 9014 应答的时间（P99，最慢的工作进程）超过 {ack_p99_ms:g} ms 已持续 "
            f"{ACK_FOR.removesuffix('m')} 分钟：接入服务过载、本地缓存 fsync 慢或垃圾回收停顿。"
            "请查看“平台运行状态”的应答延迟、写入延迟和垃圾回收停顿。"),
    ]


def rules() -> dict[str, Any]:
    """Two rule groups. 工况告警: one alert rule per severity, so every rule of every pack is covered without
    listing rules, and a severity can be paused or given its own routing on its own. 平台告警: the health of the
    ingest service, the rule engine and the notification relay."""
    return {"apiVersion": 1, "groups": [
        {"orgId": 1, "name": GROUP, "folder": FOLDER, "interval": INTERVAL,
         "rules": [_rule(severity) for severity in SEVERITY]},
        {"orgId": 1, "name": PLATFORM_GROUP, "folder": FOLDER, "interval": INTERVAL, "rules": platform_rules()},
    ]}


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
    """The routing tree: platform alerts go to the bureau only (first route, stops there); every alarm goes to
    its enterprise, its county branch and the bureau. Those routes continue, so matching one does not stop the
    others; the bureau's route has no matcher."""
    bureau, counties, enterprises = recipients(registry)
    routes = [{"receiver": bureau.name, "object_matchers": [[SCOPE[0], "=", SCOPE[1]]],
               "group_by": PLATFORM_GROUP_BY, "continue": False},
              *({"receiver": r.name, "object_matchers": [["ent", "=", ent]], "continue": True}
                for ent, r in enterprises),
              *({"receiver": r.name, "object_matchers": [["county", "=", county]], "continue": True}
                for county, r in counties),
              {"receiver": bureau.name, "continue": True}]
    return {"apiVersion": 1, "policies": [{"orgId": 1, "receiver": bureau.name, **TIMING, "routes": routes}]}


def templates() -> dict[str, Any]:
    """Chinese notification templates (Go templates as Grafana documents them), used by the contact points'
    title and message and available to any other Grafana-native contact point. An alert labelled scope=platform
    is worded from its rule title, host and annotations, with a link to 平台运行状态."""
    rule = _choice(".Labels.rule", RULE_TITLES)
    severity = _choice(".Labels.severity", {key: text for key, (text, _color) in SEVERITY.items()})
    platform_alert = f'eq .Labels.{SCOPE[0]} "{SCOPE[1]}"'
    platform_group = f'eq .CommonLabels.{SCOPE[0]} "{SCOPE[1]}"'
    started = '{{ .StartsAt.Local.Format "2006-01-02 15:04" }}'
    text = f"""{{{{ define "{TEMPLATE}.alert" }}}}{{{{ if {platform_alert} }}}}{{{{ .Labels.alertname }}}}：\
{{{{ .Annotations.summary }}}}，开始于 {started}{{{{ else }}}}{rule}（{severity}级）：{{{{ .Labels.county }}}} \
企业 {{{{ .Labels.ent }}}} 设施 {{{{ .Labels.fac }}}}，开始于 {started}{{{{ end }}}}{{{{ end }}}}
{{{{ define "{TEMPLATE}.detail" }}}}{{{{ if {platform_alert} }}}}{{{{ with .Annotations.description }}}}  {{{{ . }}}}
{{{{ end }}}}{{{{ with .DashboardURL }}}}  平台运行状态：{{{{ . }}}}
{{{{ end }}}}{{{{ end }}}}{{{{ end }}}}
{{{{ define "{TEMPLATE}.title" }}}}{{{{ if {platform_group} }}}}【平台告警】{{{{ .CommonLabels.alertname }}}}\
{{{{ with .CommonLabels.host }}}} 主机 {{{{ . }}}}{{{{ end }}}}{{{{ if not .Alerts.Firing }}}}（已恢复）{{{{ end }}}}\
{{{{ else if .Alerts.Firing }}}}【工况告警】{{{{ len .Alerts.Firing }}}} 条告警\
{{{{ if .Alerts.Resolved }}}}，{{{{ len .Alerts.Resolved }}}} 条已恢复{{{{ end }}}}\
{{{{ else }}}}【告警恢复】{{{{ len .Alerts.Resolved }}}} 条告警已恢复{{{{ end }}}}{{{{ end }}}}
{{{{ define "{TEMPLATE}.message" }}}}{{{{ range .Alerts.Firing }}}}告警：{{{{ template "{TEMPLATE}.alert" . }}}}
{{{{ template "{TEMPLATE}.detail" . }}}}{{{{ end }}}}{{{{ range .Alerts.Resolved }}}}已恢复：\
{{{{ template "{TEMPLATE}.alert" . }}}}，恢复于 {{{{ .EndsAt.Local.Format "2006-01-02 15:04" }}}}
{{{{ template "{TEMPLATE}.detail" . }}}}{{{{ end }}}}详情见平台“{{{{ if {platform_group} }}}}平台运行状态\
{{{{ else }}}}告警列表{{{{ end }}}}”。{{{{ end }}}}
"""
    return {"apiVersion": 1, "templates": [{"orgId": 1, "name": TEMPLATE, "template": text}]}
