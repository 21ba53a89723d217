"""平台运行状态: is the platform itself healthy? Built from the ingest workers' self-metrics (`gkjk_ingest`, one
point per worker every `[metrics] interval` seconds; docs/schema.md): connections, packet rates, errors by kind,
acknowledgement latency, the durable writer's spool backlog and InfluxDB writes, garbage-collection pauses; and from
the rule engine's (`gkjk_rules`, one point per evaluation): how long a cycle takes, whether it failed, and the alarm
events it wrote; and from the notification relay's (`gkjk_relay`, per channel and for its webhook): messages
delivered, failed and given up, and what waits in its outbox.

Counters count from the worker's start: rates are `non_negative_derivative` per worker (a restart's reset is
dropped, not a negative spike), summed over the workers in an outer query; gauges are the last value per worker and
time bucket, summed; latencies are the worst worker's.
"""

from __future__ import annotations

import functools
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db, table, timeseries
from grafana_foundation_sdk.models import dashboard as model

from gkjk.grafana.common import (
    ALL_VALUE, COLORED, DATASOURCE_REF, mapped, new_dashboard, place, render, shown, unit, value_texts,
)
from gkjk.grafana.influxql import InfluxQL
from gkjk.registry import Registry

UID = "gkjk-platform"
MEASUREMENT = "gkjk_ingest"
RULES_MEASUREMENT = "gkjk_rules"
RELAY_MEASUREMENT = "gkjk_relay"
HOST = '"host" =~ /^$host$/'
WHERE = f"{HOST} AND $timeFilter"
PER_WORKER = 'GROUP BY time($__interval), "host", "worker" fill(none)'
OVER_TIME = "GROUP BY time($__interval) fill(none)"
# Chinese names of the error kinds (docs/schema.md, `error_<kind>`), applied to the columns of the errors panel
# in this order: the first pattern that matches a column renames it. packet_* and frame_* carry the parser's reason.
ERROR_NAMES = (
    ("errors", "错误合计"),
    ("error_crc", "CRC 校验失败"),
    ("error_unknown_mn", "未登记设备"),
    ("error_bad_pw", "密码错误"),
    ("error_idle_timeout", "空闲超时断开"),
    ("error_max_connections", "超出连接总数上限"),
    ("error_max_connections_per_ip", "超出单 IP 连接数上限"),
    ("error_unhandled_cn", "不支持的命令"),
    ("error_split_incomplete", "分包不完整"),
    ("error_spool_write", "落盘失败"),
    ("error_packet_(.+)", "数据段解析错误 $1"),
    ("error_frame_(.+)", "帧格式错误 $1"),
    ("error_(.+)", "$1"),
)
ERROR_COLUMN = "sum_non_negative_derivative_"


def host_variable() -> db.QueryVariable:
    """主机: every host whose ingest workers, rule engine or notification relay have reported."""
    return (db.QueryVariable("host").label("主机").datasource(DATASOURCE_REF)
            .query('SHOW TAG VALUES FROM /^gkjk_/ WITH KEY = "host"')
            .multi(True).include_all(True).all_value(ALL_VALUE).refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(model.VariableSort.ALPHABETICAL_ASC))


def summed(inner: dict[str, str], outer: str | dict[str, str] = "sum", measurement: str = MEASUREMENT,
           series: str = '"host", "worker"', where: str = "") -> str:
    """`outer` (one function, or one per column) over the series of a per-series, per-bucket selection
    {column: expression}: a worker's by default, a relay channel's or webhook's with `series` and `where`."""
    columns = ", ".join(f'{expression} AS "{name}"' for name, expression in inner.items())
    result = ", ".join(f'{outer if isinstance(outer, str) else outer[name]}("{name}") AS "{name}"' for name in inner)
    return (f'SELECT {result} FROM (SELECT {columns} FROM "{measurement}" WHERE {where + " AND " if where else ""}'
            f'{WHERE} GROUP BY time($__interval), {series} fill(none)) WHERE $timeFilter {OVER_TIME}')


def rate(field: str) -> str:
    """Per second, from a counter (a worker's restart resets it: the negative step is dropped)."""
    return f'non_negative_derivative(last("{field}"), 1s)'


def increase(field: str) -> str:
    """New counts per time bucket, from a counter."""
    return f'non_negative_difference(last("{field}"))'


def last(field: str) -> str:
    return f'last("{field}")'


# The latest point of every worker in the range: one selector, so the other fields are of the same point and the
# time is when the worker last reported (a stopped worker keeps its old time).
WORKERS = ('SELECT last("connections") AS "连接数", "devices_online" AS "在线设备", "frames_in" AS "接收报文", '
           '"stored" AS "已存储", "acks_out" AS "已应答", "errors" AS "错误", '
           '"writer_spool_records" AS "积压条数", "writer_spool_bytes" AS "积压字节", '
           '"writer_retries" AS "写入重试", "writer_dead_lettered_lines" AS "死信行数", '
           '"writer_last_write_latency" AS "写入延迟", "gc_pause_max_ms" AS "GC 最长停顿" '
           f'FROM "{MEASUREMENT}" WHERE {WHERE} GROUP BY "host", "worker"')
# `errors` and every `error_<kind>`, per second, summed over the workers; InfluxDB names the columns
# sum_non_negative_derivative_<field> (a regex selection cannot be renamed with AS).
ERRORS = ('SELECT sum(/^non_negative_derivative_error/) FROM (SELECT non_negative_derivative(last(/^error/), 1s) '
          f'FROM "{MEASUREMENT}" WHERE {WHERE} {PER_WORKER}) WHERE $timeFilter {OVER_TIME}')
LATENCY = ('SELECT max("ack_latency_p50_ms") AS "P50", max("ack_latency_p99_ms") AS "P99", '
           f'max("ack_latency_max_ms") AS "最大值" FROM "{MEASUREMENT}" WHERE {WHERE} {OVER_TIME}')
WRITE_LATENCY = ('SELECT max("writer_last_write_latency") AS "InfluxDB 写入", '
                 f'max("writer_last_fsync_latency") AS "缓存落盘（fsync）" FROM "{MEASUREMENT}" WHERE {WHERE} '
                 f"{OVER_TIME}")
GC_PAUSE = f'SELECT max("gc_pause_max_ms") AS "最长停顿" FROM "{MEASUREMENT}" WHERE {WHERE} {OVER_TIME}'
# The latest evaluation of each host's rule engine; a failed one has no event counts.
RULES_LATEST = ('SELECT last("duration_seconds") AS "判定耗时", "enterprises" AS "企业数", "failed" AS "结果", '
                '"opened" AS "新开告警", "closed" AS "恢复告警", "retracted" AS "撤回告警" '
                f'FROM "{RULES_MEASUREMENT}" WHERE {WHERE} GROUP BY "host"')
RULES_DURATION = (f'SELECT max("duration_seconds") AS "判定耗时" FROM "{RULES_MEASUREMENT}" WHERE {WHERE} '
                  f"{OVER_TIME}")
RULES_EVENTS = ('SELECT sum("opened") AS "新开告警", sum("closed") AS "恢复告警", sum("retracted") AS "撤回告警", '
                f'sum("failed") AS "判定失败" FROM "{RULES_MEASUREMENT}" WHERE {WHERE} {OVER_TIME}')
# The relay's points: one per channel, and its webhook's without a channel tag.
RELAY_CHANNELS = "\"channel\" != ''"
RELAY_WEBHOOK = "\"channel\" = ''"
OUTCOME = value_texts({"0": ("正常", "green"), "1": ("失败", "red")})


def _unit(name: str, unit_name: str, right: bool = False) -> tuple[str, list[model.DynamicConfigValue]]:
    values = [unit(unit_name)]
    if right:
        values.append(model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"))
    return name, values


def _chart(title: str, description: str, *queries: str, unit: str,
           overrides: tuple[tuple[str, list[model.DynamicConfigValue]], ...] = ()) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).unit(unit).min(0)
    for ref, query in zip("ABCD", queries):
        panel = panel.with_target(InfluxQL(query, ref_id=ref, alias="$col"))
    for name, values in overrides:
        panel = panel.override_by_name(name, values)
    return panel


def panel_id(title: str) -> int:
    """The id of the panel titled `title` (the platform alert rules link to their panel)."""
    [number] = [number for panel_title, number in _panels() if panel_title == title]
    return number


@functools.cache
def _panels() -> tuple[tuple[str, int], ...]:
    """(title, id) of every panel: the dashboard is built once however many rules link to it."""
    return tuple((panel["title"], panel["id"]) for panel in build()["panels"])


def build(registry: Registry | None = None) -> dict[str, Any]:
    """The dashboard JSON (the registry is not used: the platform's own metrics have no enterprise)."""
    del registry
    workers = (table.Panel().title("各工作进程最新状态")
               .description("每个接入工作进程在所选时间范围内最后一次上报的自监控数据；计数为进程启动以来的累计值")
               .with_target(InfluxQL(WORKERS, result_format="table"))
               .override_by_name("Time", shown("最后上报"))
               .override_by_name("host", shown("主机"))
               .override_by_name("worker", shown("工作进程"))
               .override_by_name("积压字节", shown("积压字节", unit("bytes")))
               .override_by_name("写入延迟", shown("写入延迟", unit("s")))
               .override_by_name("GC 最长停顿", shown("GC 最长停顿", unit("ms"))))
    connections = _chart(
        "连接数与在线设备", "全部工作进程合计：当前 TCP 连接数，已登录（MN 与密码正确）的数采仪台数",
        summed({"连接数": last("connections"), "在线设备": last("devices_online")}), unit="suffix: 个")
    packets = _chart(
        "报文速率", "全部工作进程合计，每秒：收到的报文、已写入本地缓存（可应答）的报文、发出的应答（9014）",
        summed({"接收报文": rate("frames_in"), "已存储": rate("stored"), "已应答": rate("acks_out")}),
        unit="suffix: 条/秒")
    errors = _chart("错误速率（按类型）", "全部工作进程合计，每秒各类错误数（CRC、未登记设备、密码、帧与数据段格式、超时等）",
                    ERRORS, unit="suffix: 次/秒").transformations(
        [model.DataTransformerConfig(id_val="renameByRegex",
                                     options={"regex": f"^{ERROR_COLUMN}{pattern}$", "renamePattern": name})
         for pattern, name in ERROR_NAMES])
    latency = _chart("应答延迟", "从读到报文到发出其应答的时间（含本地缓存 fsync），各时间段内最慢工作进程的值",
                     LATENCY, unit="ms")
    backlog = _chart("写入积压", "全部工作进程合计：本地缓存中尚未写入 InfluxDB 的记录条数与字节数；持续增长说明 InfluxDB 写入跟不上",
                     summed({"积压条数": last("writer_spool_records"), "积压字节": last("writer_spool_bytes")}),
                     unit="suffix: 条", overrides=(_unit("积压字节", "bytes", right=True),))
    write_latency = _chart("写入延迟", "最近一次成功写入 InfluxDB 的耗时与本地缓存 fsync 的耗时，最慢工作进程的值",
                           WRITE_LATENCY, unit="s")
    failures = _chart("写入重试与死信",
                      "全部工作进程合计，每个时间段新增：InfluxDB 写入失败后的重试次数；被 InfluxDB 拒绝（400）"
                      "而转入死信文件的行数（这些数据未入库，需人工处理）",
                      summed({"写入重试": increase("writer_retries"), "死信行数": increase("writer_dead_lettered_lines")}),
                      unit="suffix: 次", overrides=(_unit("死信行数", "suffix: 行", right=True),))
    gc = _chart("垃圾回收停顿", "Python 垃圾回收：各时间段内最长的一次停顿（最慢工作进程），及回收耗时占进程时间的比例",
                GC_PAUSE, summed({"回收耗时占比": rate("gc_seconds")}, outer="max"), unit="ms",
                overrides=(_unit("回收耗时占比", "percentunit", right=True),))
    engines = (table.Panel().title("规则引擎最新判定")
               .description("每台主机的规则引擎（gkjk rules）在所选时间范围内最后一次判定：耗时、覆盖企业数、"
                            "是否失败，以及这一轮写入的告警事件数")
               .with_target(InfluxQL(RULES_LATEST, result_format="table"))
               .override_by_name("Time", shown("最后判定"))
               .override_by_name("host", shown("主机"))
               .override_by_name("判定耗时", shown("判定耗时", unit("s")))
               .override_by_name("结果", shown("结果", mapped(OUTCOME), COLORED)))
    duration = _chart("规则判定耗时", "每轮判定（读取数据、逐条规则判定、写入告警与状态）的耗时，最慢主机的值；"
                      "判定每分钟一轮，接近 60 秒说明规则引擎跟不上", RULES_DURATION, unit="s")
    events = _chart("告警事件与判定失败",
                    "全部主机合计，每个时间段内：规则引擎新开、恢复、撤回（数据不再支持）的告警事件数，以及失败的判定轮数"
                    "（失败时不会产生新告警，也不会关闭已有告警）",
                    RULES_EVENTS, unit="suffix: 次")
    relay = {"measurement": RELAY_MEASUREMENT, "series": '"host", "channel"', "where": RELAY_CHANNELS}
    sent = _chart("通知发送",
                  "全部主机与渠道（钉钉、短信）合计，每个时间段内：通知服务（gkjk relay）送达的消息、失败的发送尝试"
                  "（稍后重试）、多次失败后放弃而转入死信的消息；以及收到和拒收的 Grafana 告警推送",
                  summed({"已送达": increase("delivered"), "发送失败": increase("failed_attempts"),
                          "放弃（转入死信）": increase("dead_lettered")}, **relay),
                  summed({"收到告警推送": increase("accepted"), "拒收告警推送": increase("refused")},
                         measurement=RELAY_MEASUREMENT, series='"host"', where=RELAY_WEBHOOK),
                  unit="suffix: 条")
    waiting = _chart("通知待发", "通知服务发件箱中尚未送达的消息条数（全部主机与渠道合计），及其中等待最久的一条已等待的时间"
                     "（最慢的渠道）；重试间隔最长 30 分钟，短信还受每个号码每小时条数的限制",
                     summed({"待发条数": last("pending"), "最久等待": last("oldest_pending_seconds")},
                            {"待发条数": "sum", "最久等待": "max"}, **relay),
                     unit="suffix: 条", overrides=(_unit("最久等待", "s", right=True),))
    panels = [(workers, 0, 0, 24, 7), (connections, 0, 7, 12, 8), (packets, 12, 7, 12, 8), (errors, 0, 15, 12, 8),
              (latency, 12, 15, 12, 8), (backlog, 0, 23, 8, 8), (write_latency, 8, 23, 8, 8), (failures, 16, 23, 8, 8),
              (gc, 0, 31, 24, 8), (engines, 0, 39, 24, 5), (duration, 0, 44, 12, 8), (events, 12, 44, 12, 8),
              (sent, 0, 52, 12, 8), (waiting, 12, 52, 12, 8)]
    dashboard = new_dashboard("平台运行状态", UID, since="now-6h").with_variable(host_variable())
    for panel, x, y, w, h in panels:
        dashboard.with_panel(place(panel, x, y, w, h))
    return render(dashboard)
