"""The relay's pieces on their own: provider signatures against the documented examples, payload parsing, routing,
rendering, the outbox, the dispatcher's timing (retries, backoff, rate limits, dead letters) on a fake clock, and
the alarm texts read from a real InfluxDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from gkjk.config import ConfigError, RelayConfig, load_config
from gkjk.registry import load_registry
from gkjk.relay import alarm_text
from gkjk.relay.dispatcher import Dispatcher, RetryPolicy
from gkjk.relay.grafana import PayloadError, parse_notification
from gkjk.relay.intake import message_key
from gkjk.relay.outbox import Message, NewMessage, Outbox
from gkjk.relay.outcome import Delivered, Failed, Outcome, RetryLater
from gkjk.relay.providers import sms_provider
from gkjk.relay.providers.aliyun_sms import AliyunSms, percent_encode, signature, string_to_sign
from gkjk.relay.providers.dingtalk import DingTalkRobots, parse_secrets, sign
from gkjk.relay.ratelimit import SlidingWindow
from gkjk.relay.rendering import context, dingtalk_body, sms_params
from gkjk.relay.routing import Recipient, Target, UnknownRecipient, parse_recipient, targets
from ingest_twisted.influx import InfluxClient
from test_relay_e2e import COATING, write_registry

ROOT = Path(__file__).resolve().parent.parent
TEST_REGISTRY = ROOT / "tests" / "data" / "registry"
FOUNDRY = "91320682MA1WX0001W"

# --- provider signatures ------------------------------------------------------------------------------------------

# Aliyun's worked example of the RPC signature (DescribeRegions, AccessKeyId testid, secret testsecret).
ALIYUN_DOC_PARAMS = {
    "AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML", "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "SignatureVersion": "1.0",
    "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26",
}


def test_aliyun_signature_reproduces_the_documented_example():
    assert string_to_sign("GET", ALIYUN_DOC_PARAMS) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26")
    assert signature("GET", ALIYUN_DOC_PARAMS, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_percent_encoding_rules():
    assert percent_encode("a b*c~d-_.") == "a%20b%2Ac~d-_."
    assert percent_encode("如皋") == "%E5%A6%82%E7%9A%8B"
    assert percent_encode('{"a":"/"}') == "%7B%22a%22%3A%22%2F%22%7D"


def test_aliyun_sendsms_parameters():
    relay = RelayConfig(aliyun_access_key_id="testid", aliyun_access_key_secret="testsecret",
                        aliyun_sign_name="如皋环保", aliyun_template_code="SMS_123")
    sms = AliyunSms(relay, None, None, clock=lambda: 1456231584.0, nonce=lambda: "n1")
    params = sms.params("13800000001", {"enterprise": "某厂", "state": "告警"})
    assert params["Timestamp"] == "2016-02-23T12:46:24Z"
    assert params["Action"] == "SendSms" and params["Version"] == "2017-05-25"
    assert json.loads(params["TemplateParam"]) == {"enterprise": "某厂", "state": "告警"}
    unsigned = {k: v for k, v in params.items() if k != "Signature"}
    assert params["Signature"] == signature("POST", unsigned, "testsecret")
    assert params["Signature"] != signature("GET", unsigned, "testsecret")


def test_aliyun_without_credentials_names_the_setting():
    with pytest.raises(ConfigError, match=r"\[relay\] aliyun_access_key_id"):
        AliyunSms(RelayConfig(), None, None)


# DingTalk's documentation gives the algorithm and the secret "this is secret" but no fixed timestamp; the expected
# value for timestamp 1577262236757 was computed independently with OpenSSL:
#   printf '1577262236757\nthis is secret' | openssl dgst -sha256 -hmac 'this is secret' -binary | base64
DINGTALK_DOC_SIGN = "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"


def test_dingtalk_signature_matches_the_documented_algorithm():
    assert sign("this is secret", 1577262236757) == DINGTALK_DOC_SIGN


def test_dingtalk_url_signed_on_the_configured_base_with_per_robot_secrets():
    relay = RelayConfig(dingtalk_base_url="http://127.0.0.1:8080/prefix", dingtalk_secret="this is secret",
                        dingtalk_secrets="tok2=SECother")
    robots = DingTalkRobots(relay, None, None, clock=lambda: 1577262236.757)
    assert robots.url("https://oapi.dingtalk.com/robot/send?access_token=tok1") == (
        "http://127.0.0.1:8080/prefix/robot/send?access_token=tok1&timestamp=1577262236757&sign="
        + DINGTALK_DOC_SIGN)
    assert robots.url("https://oapi.dingtalk.com/robot/send?access_token=tok2").endswith(
        "&sign=" + sign("SECother", 1577262236757))
    unsigned = DingTalkRobots(RelayConfig(), None, None)
    assert unsigned.url("https://oapi.dingtalk.com/robot/send?access_token=t") == (
        "https://oapi.dingtalk.com/robot/send?access_token=t")
    with pytest.raises(ConfigError, match="dingtalk_secrets"):
        parse_secrets("tok-without-secret")


def test_sms_provider_registry():
    assert sms_provider("aliyun") is AliyunSms
    with pytest.raises(ConfigError, match=r"\[relay\] sms_provider: unknown provider 'nope'"):
        sms_provider("nope")


def test_relay_config_is_checked():
    with pytest.raises(ConfigError, match=r"\[relay\] dingtalk_msgtype"):
        load_config(None, environ={"GKJK_RELAY_DINGTALK_MSGTYPE": "html"})
    assert load_config(None, environ={"GKJK_RELAY_TOKEN": "t0k"}).relay.token == "t0k"


# --- payload, routing, rendering ----------------------------------------------------------------------------------


def grafana_alert(status="firing", fingerprint="a1b2c3", **labels) -> dict:
    return {"status": status, "labels": {"alertname": "治污设施未开启", "ent": FOUNDRY, "county": "如皋市",
                                         "fac": "T1", "rule": "treatment_off", "severity": "high", **labels},
            "annotations": {"summary": "治污设施未开启"}, "startsAt": "2026-11-23T00:15:00Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-23T01:00:00Z",
            "fingerprint": fingerprint}


def test_payload_parsing_rejects_what_is_not_a_notification():
    alerts = parse_notification(json.dumps({"version": "1", "alerts": [grafana_alert()]}).encode())
    assert alerts[0].labels["fac"] == "T1" and alerts[0].status == "firing"
    for body in (b"{", b"[]", json.dumps({"alerts": [{"status": "odd"}]}).encode(),
                 json.dumps({"alerts": [{"status": "firing", "labels": {"a": 1}}]}).encode()):
        with pytest.raises(PayloadError):
            parse_notification(body)


def test_recipients_resolve_to_registry_contacts_and_bureau_settings():
    registry = load_registry(TEST_REGISTRY)
    relay = RelayConfig(bureau_dingtalk="https://oapi.dingtalk.com/robot/send?access_token=b",
                        bureau_phones="13900000000, 0513-87654321")
    assert parse_recipient(["county", "如皋市"]) == Recipient("county", "如皋市")
    assert targets(parse_recipient(["enterprise", FOUNDRY.lower()]), registry, relay) == (
        Target("sms", "13800000001"),)
    assert targets(Recipient("bureau"), registry, relay) == (
        Target("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=b"), Target("sms", "13900000000"))
    for segments in (["enterprise"], ["nobody"], ["county", "x", "y"]):
        with pytest.raises(UnknownRecipient):
            parse_recipient(segments)
    with pytest.raises(UnknownRecipient):
        targets(Recipient("enterprise", "91320682MA1WX00099"), registry, relay)


def test_county_recipients_are_the_officers_in_charge_of_the_alerts_enterprise(tmp_path):
    registry = load_registry(write_registry(tmp_path))
    county, relay = Recipient("county", "如皋市"), RelayConfig()
    robot = "https://oapi.dingtalk.com/robot/send?access_token=robotcounty"
    assert targets(county, registry, relay, FOUNDRY) == (Target("sms", "13800000009"),)
    assert targets(county, registry, relay, COATING) == (Target("dingtalk", robot), Target("sms", "13800000009"))
    # An alert without an enterprise of the county: every county contact of the county, each address once.
    assert targets(county, registry, relay, "") == (Target("dingtalk", robot), Target("sms", "13800000009"))
    with pytest.raises(UnknownRecipient):
        targets(Recipient("county", "海安市"), registry, relay, FOUNDRY)


def test_rendering_in_chinese_with_registry_names_and_local_time():
    registry = load_registry(TEST_REGISTRY)
    alert = parse_notification(json.dumps({"alerts": [grafana_alert()]}).encode())[0]
    values = context(alert, registry, None, "Asia/Shanghai")
    assert values["message"] == "如皋市测试铸造有限公司：布袋除尘风机治污设施未开启/停运"
    assert values["started"] == "2026-11-23 08:15" and values["ended"] == ""
    markdown = dingtalk_body(values, "markdown")["markdown"]
    assert markdown["title"] == "工况告警：治污设施未开启/停运（告警）"
    assert "- 设施：布袋除尘风机" in markdown["text"] and "- 级别：高" in markdown["text"]
    text = dingtalk_body(context(alert, registry, "存储的告警文字", "Asia/Shanghai"), "text")["text"]["content"]
    assert text.startswith("【工况告警·告警】存储的告警文字（如皋市")
    resolved = parse_notification(json.dumps({"alerts": [grafana_alert("resolved")]}).encode())[0]
    params = sms_params(context(resolved, registry, None, "Asia/Shanghai"))
    assert params == {"enterprise": "如皋市测试铸造有限公司", "facility": "布袋除尘风机",
                      "alarm": "治污设施未开启/停运", "state": "已恢复"}


def test_grafana_alert_without_enterprise_is_worded_for_the_bureau():
    registry = load_registry(TEST_REGISTRY)
    error = {"status": "firing", "labels": {"alertname": "DatasourceError", "rulename": "治污设施未开启"},
             "annotations": {"Error": "connection refused"}, "startsAt": "2026-11-23T00:15:00Z", "fingerprint": "e1"}
    values = context(parse_notification(json.dumps({"alerts": [error]}).encode())[0], registry, None, "Asia/Shanghai")
    assert values["message"] == "数据源异常（告警规则无法查询 InfluxDB）"
    markdown = dingtalk_body(values, "markdown")["markdown"]["text"]
    assert "企业" not in markdown and "设施" not in markdown and "- 级别：未分级" in markdown
    assert sms_params(values) == {"enterprise": "工况监控平台", "facility": "—",
                                  "alarm": "数据源异常（告警规则无法查询 InfluxDB）", "state": "告警"}


def test_message_keys_tell_events_and_addresses_apart():
    body = json.dumps({"alerts": [grafana_alert(), grafana_alert("resolved")]}).encode()
    firing, resolved = parse_notification(body)
    again = parse_notification(json.dumps({"alerts": [grafana_alert()]}).encode())[0]
    sms, robot = Target("sms", "13800000001"), Target("dingtalk", "https://x")
    assert message_key(firing, sms) == message_key(again, sms)
    assert len({message_key(firing, sms), message_key(resolved, sms), message_key(firing, robot)}) == 3


# --- outbox and rate limits ---------------------------------------------------------------------------------------


def new(key: str, address: str = "13800000001", channel: str = "sms") -> NewMessage:
    return NewMessage(key, channel, address, {"params": {"state": "告警"}})


def test_outbox_survives_reopening_and_ignores_duplicates(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite")
    assert outbox.add([new("a"), new("b")], now=100.0) == 2
    assert outbox.add([new("a"), new("c")], now=101.0) == 1
    outbox.sent("a", 1, now=102.0)
    outbox.close()
    reopened = Outbox(tmp_path / "o.sqlite")
    assert [m.key for m in reopened.due(200.0, 10)] == ["b", "c"]
    assert reopened.counts() == {"pending": 2, "sent": 1, "dead": 0}
    assert reopened.add([new("a")], now=103.0) == 0  # delivered keys still dedup
    assert reopened.prune(before=103.0) == 1
    assert reopened.add([new("a")], now=104.0) == 1  # after dedup_hours a key is new again


def test_sliding_window():
    window = SlidingWindow(limit=2, window=60.0)
    assert window.next_free("x", 0.0) == 0.0
    window.record("x", 0.0)
    window.record("x", 10.0)
    assert window.next_free("x", 20.0) == 60.0
    assert window.next_free("y", 20.0) == 20.0
    assert window.next_free("x", 60.0) == 60.0


# --- dispatcher timing on a fake clock ----------------------------------------------------------------------------


class ScriptedSender:
    """Answers attempts from a script of outcomes (then Delivered); records attempt times."""

    def __init__(self, clock: Clock, *script: Outcome) -> None:
        self.clock, self.script, self.attempts = clock, list(script), []

    def send(self, message: Message) -> Deferred[Outcome]:
        self.attempts.append((self.clock.seconds(), message.key))
        return succeed(self.script.pop(0) if self.script else Delivered())


def dispatcher_for(tmp_path, sender, limit=None, max_attempts=4):
    clock = Clock()
    clock.advance(1000.0)
    sender.clock = clock
    outbox = Outbox(tmp_path / "o.sqlite")
    policy = RetryPolicy(max_attempts=max_attempts, initial=10.0, maximum=25.0)
    dispatcher = Dispatcher(outbox, {"sms": sender}, {"sms": limit or SlidingWindow(100, 3600.0)}, policy,
                            tmp_path / "dead.jsonl", clock)
    return clock, outbox, dispatcher


def test_backoff_doubles_up_to_retry_max_then_dead_letters(tmp_path):
    sender = ScriptedSender(Clock(), *[RetryLater("HTTP 503")] * 4)
    clock, outbox, dispatcher = dispatcher_for(tmp_path, sender)
    outbox.add([new("a")], clock.seconds())
    dispatcher.start()
    clock.advance(0)
    for _ in range(8):
        clock.advance(5.0)
    assert [t - 1000.0 for t, _ in sender.attempts] == [0.0, 10.0, 30.0]
    for _ in range(5):
        clock.advance(5.0)
    assert [t - 1000.0 for t, _ in sender.attempts] == [0.0, 10.0, 30.0, 55.0]  # 10, 20, 25 (retry_max)
    assert outbox.counts() == {"pending": 0, "sent": 0, "dead": 1}
    (dead,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert dead["key"] == "a" and dead["attempts"] == 4 and dead["error"] == "HTTP 503"


def test_refusal_is_dead_at_once_and_provider_pause_is_honoured(tmp_path):
    sender = ScriptedSender(Clock(), Failed("errcode 310000: sign not match"), RetryLater("130101", after=60.0))
    clock, outbox, dispatcher = dispatcher_for(tmp_path, sender)
    outbox.add([new("a")], clock.seconds())
    outbox.add([new("b")], clock.seconds() + 1)
    dispatcher.start()
    clock.advance(0)
    clock.advance(1.0)
    clock.advance(59.0)
    assert [k for _, k in sender.attempts] == ["a", "b"]
    clock.advance(1.0)
    assert [(t - 1000.0, k) for t, k in sender.attempts] == [(0.0, "a"), (1.0, "b"), (61.0, "b")]
    assert outbox.counts() == {"pending": 0, "sent": 1, "dead": 1}


def test_rate_limit_postpones_without_counting_an_attempt(tmp_path):
    sender = ScriptedSender(Clock())
    clock, outbox, dispatcher = dispatcher_for(tmp_path, sender, limit=SlidingWindow(2, 60.0), max_attempts=1)
    outbox.add([new(k) for k in "abcde"], clock.seconds())
    outbox.add([new("z", address="13900000000")], clock.seconds())
    dispatcher.start()
    clock.advance(0)
    for _ in range(130):
        clock.advance(1.0)
    sent = {k: t - 1000.0 for t, k in sender.attempts}
    assert sent["z"] == 0.0  # another phone is not held up
    assert sorted(sent[k] for k in "abcde") == [0.0, 0.0, 60.0, 60.0, 120.0]
    assert outbox.counts() == {"pending": 0, "sent": 6, "dead": 0}


# --- alarm texts from InfluxDB ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_latest_alarm_texts_in_one_query(influx_db):
    influx, db = influx_db
    influx.write("\n".join([
        f'alarm,ent={FOUNDRY},fac=T1,rule=treatment_off state="open",message="停运" 1795392900',
        f'alarm,ent={FOUNDRY},fac=T1,rule=treatment_off state="closed",message="停运，已恢复" 1795396500',
        f'alarm,ent={FOUNDRY},fac=P1,rule=low_load state="open",message="低负荷" 1795392900',
        f'alarm,ent={FOUNDRY},fac=P1,rule=low_load state="retracted",message="撤回" 1795396500',
        f'alarm,ent={FOUNDRY},fac=T\'1,rule=ph state="open",message="引号" 1795392900',
    ]).encode(), db, "s")
    client = InfluxClient(influx.url, db)
    try:
        texts = await alarm_text.latest_messages(client, [
            {"ent": FOUNDRY, "fac": "T1", "rule": "treatment_off"}, {"ent": FOUNDRY, "fac": "P1", "rule": "low_load"},
            {"ent": FOUNDRY, "fac": "T'1", "rule": "ph"}, {"ent": FOUNDRY, "fac": "T9", "rule": "ph"}, {}])
        assert texts == ["停运，已恢复", "低负荷", "引号", None, None]
        down = InfluxClient("http://127.0.0.1:1", db)
        assert await alarm_text.latest_messages(down, [{"ent": FOUNDRY, "fac": "T1", "rule": "ph"}]) == [None]
    finally:
        await client.close()
