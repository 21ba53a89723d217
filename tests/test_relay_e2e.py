"""`gkjk relay` as a real process over real HTTP: Grafana's webhook payload in, requests out to local stand-ins
for DingTalk and Aliyun SMS that check the signatures the way the providers document them.

Time is compressed through the retry settings (first retry after 0.2 s, at most 1 s apart).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gkjk.grafana.alerting import platform_rules
from gkjk.influxd import free_port
from gkjk_process import ROOT, write_config

FOUNDRY, COATING = "91320682MA1WX0001W", "91320682MA1WX00020"
TOKEN = "grafana-relay-test-token"
ROBOT_SECRETS = {"robotfoundry": "SECdefault0123", "robotcounty": "SECcounty4567", "robotcoating": "SECdefault0123",
                 "robotbureau": "SECdefault0123"}
ALIYUN_ID, ALIYUN_SECRET = "LTAItestid", "testsecret-for-relay"
STORED_MESSAGE = "如皋市测试铸造有限公司：生产设施 中频炉 运行中，治污设施 布袋除尘风机 已停运 5 分钟"


# --- stand-ins for the providers ----------------------------------------------------------------------------------


@dataclass
class Captured:
    path: str
    query: dict[str, str]
    body: bytes
    answer: int = 0
    verified: bool = False


@dataclass
class Receiver:
    """A local HTTP server that records every request and answers through `judge` or a script of statuses."""

    judge: Callable[[Captured], tuple[bool, dict]]
    port: int = field(default_factory=free_port)
    requests: list[Captured] = field(default_factory=list)
    # Answers to give first, then `judge`: a status (e.g. 503) or (status, JSON body).
    script: list[int | tuple[int, dict]] = field(default_factory=list)
    delay: float = 0.0  # seconds to wait before answering
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                captured = Captured(parts.path, dict(urllib.parse.parse_qsl(parts.query)), body)
                receiver.requests.append(captured)
                time.sleep(receiver.delay)
                if receiver.script:
                    scripted = receiver.script.pop(0)
                    status, reply = scripted if isinstance(scripted, tuple) else (scripted, {"error": "scripted"})
                else:
                    captured.verified, reply = receiver.judge(captured)
                    status = 200
                captured.answer = status
                raw = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def accepted(self) -> list[Captured]:
        return [r for r in self.requests if r.verified]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def dingtalk_judge(request: Captured) -> tuple[bool, dict]:
    """DingTalk's check as documented: timestamp within an hour, sign = urlencode(base64(HmacSHA256(ts\\nsecret)))."""
    secret = ROBOT_SECRETS.get(request.query.get("access_token", ""))
    timestamp = request.query.get("timestamp", "0")
    expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                                         hashlib.sha256).digest()).decode() if secret else None
    # parse_qsl has already URL-decoded `sign` once, as DingTalk's server does.
    if expected is None or request.query.get("sign") != expected or abs(time.time() * 1000 - int(timestamp)) > 3.6e6:
        return False, {"errcode": 310000, "errmsg": "sign not match"}
    return True, {"errcode": 0, "errmsg": "ok"}


def aliyun_judge(request: Captured) -> tuple[bool, dict]:
    """Aliyun's RPC signature check, written from its documentation (POST, form body)."""
    params = dict(urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True))
    given = params.pop("Signature", "")

    def enc(text: str) -> str:
        return urllib.parse.quote(text, safe="~")

    canonical = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
    to_sign = "POST&" + enc("/") + "&" + enc(canonical)
    expected = base64.b64encode(hmac.new(f"{ALIYUN_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest())
    if given != expected.decode() or params.get("AccessKeyId") != ALIYUN_ID or params.get("Action") != "SendSms":
        return False, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}
    return True, {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5"}


def sms_fields(request: Captured) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.body.decode()))


# --- the relay process --------------------------------------------------------------------------------------------


def write_registry(directory: Path) -> Path:
    """The test registry's two enterprises with DingTalk robots and county contacts (one person for both)."""
    directory.mkdir(parents=True, exist_ok=True)
    robot = "https://oapi.dingtalk.com/robot/send?access_token="
    foundry = (ROOT / "tests/data/registry/foundry.yaml").read_text(encoding="utf-8").replace(
        '  - {role: enterprise, name: 张三, phone: "13800000001"}\n',
        f'  - {{role: enterprise, name: 张三, phone: "13800000001", dingtalk_webhook: "{robot}robotfoundry"}}\n'
        '  - {role: county, name: 李四（执法一局）, phone: "13800000009"}\n')
    coating = (ROOT / "tests/data/registry/coating.yaml").read_text(encoding="utf-8").replace(
        "facilities:\n",
        "contacts:\n"
        f'  - {{role: enterprise, name: 王五, phone: "13800000002", dingtalk_webhook: "{robot}robotcoating"}}\n'
        f'  - {{role: county, name: 李四（执法一局）, phone: "13800000009", dingtalk_webhook: "{robot}robotcounty"}}\n'
        "facilities:\n", 1)
    assert "robotfoundry" in foundry and "robotcounty" in coating
    (directory / "foundry.yaml").write_text(foundry, encoding="utf-8")
    (directory / "coating.yaml").write_text(coating, encoding="utf-8")
    return directory


class Relay:
    """`gkjk relay` in a subprocess; the token comes from the environment, as in production."""

    def __init__(self, workdir: Path, influx_url: str, db: str, dingtalk: Receiver, aliyun: Receiver,
                 metrics_interval: float | None = None, **relay: object) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "relay.log"
        settings = {
            "listen": f"127.0.0.1:{self.port}", "outbox": str(workdir / "outbox.sqlite"),
            "dead_letters": str(workdir / "dead.jsonl"), "dry_run_log": str(workdir / "dry-run.jsonl"),
            "retry_initial": 0.2, "retry_max": 1.0, "max_attempts": 40, "timeout": 3.0,
            "dingtalk_base_url": dingtalk.url, "dingtalk_secret": "SECdefault0123",
            "dingtalk_secrets": "robotcounty=SECcounty4567", "sms_per_phone_per_hour": 100,
            "aliyun_endpoint": aliyun.url, "aliyun_access_key_id": ALIYUN_ID,
            "aliyun_access_key_secret": ALIYUN_SECRET, "aliyun_sign_name": "如皋生态环境", "aliyun_template_code":
            "SMS_154950909", **relay,
        }
        self.config = write_config(workdir / "gkjk.toml", {
            "influx": {"url": influx_url, "database": db, "timeout": 2.0},
            "registry": {"path": str(write_registry(workdir / "registry"))},
            "relay": settings,
            **({"metrics": {"interval": metrics_interval}} if metrics_interval is not None else {}),
        })
        self.process: subprocess.Popen | None = None

    def start(self, *args: str) -> Relay:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
        env["GKJK_RELAY_TOKEN"] = TOKEN
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gkjk.cli", "relay", "--config", str(self.config), *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gkjk relay exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                self.health()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gkjk relay did not answer within 20 s:\n{self.log.read_text()}")

    def stop(self, kill: bool = False) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        return process.wait(timeout=30)

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
            return json.loads(response.read())

    def post(self, recipient: str, alerts: list[dict], token: str | None = TOKEN) -> tuple[int, dict]:
        body = json.dumps(grafana_payload(alerts)).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/grafana/{recipient}", body, headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def wait_for(self, condition: Callable[[dict], bool], timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if condition(health):
                return health
            time.sleep(0.05)
        raise AssertionError(f"relay never reached the state; last {self.health()}:\n{self.log.read_text()}")


def alert(minute: int = 15, status: str = "firing", ent: str = FOUNDRY, fac: str = "T1",
          rule: str = "treatment_off") -> dict:
    """One alert as Grafana's webhook notifier documents it."""
    labels = {"alertname": "工况告警", "ent": ent, "county": "如皋市", "fac": fac, "rule": rule, "severity": "high",
              "grafana_folder": "gkjk"}
    return {
        "status": status, "labels": labels, "annotations": {"summary": "治污设施未开启"},
        "startsAt": f"2026-11-23T00:{minute:02d}:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-23T01:00:00Z",
        "generatorURL": "http://grafana:3000/alerting/grafana/abc/view", "fingerprint": f"fp{ent[-4:]}{fac}{minute}",
        "silenceURL": "http://grafana:3000/alerting/silence/new", "dashboardURL": "", "panelURL": "",
        "values": {"A": 1, "C": 1}, "valueString": "[ var='A' labels={} value=1 ]",
    }


def grafana_payload(alerts: list[dict]) -> dict:
    firing = sum(a["status"] == "firing" for a in alerts)
    return {
        "receiver": "gkjk-relay", "status": "firing" if firing else "resolved", "orgId": 1, "alerts": alerts,
        "groupLabels": {"alertname": "工况告警"}, "commonLabels": {"alertname": "工况告警"},
        "commonAnnotations": {}, "externalURL": "http://grafana:3000/", "version": "1",
        "groupKey": '{}:{alertname="工况告警"}', "truncatedAlerts": 0, "title": f"[FIRING:{firing}] 工况告警",
        "state": "alerting", "message": "**Firing**",
    }


@pytest.fixture
def receivers():
    dingtalk, aliyun = Receiver(dingtalk_judge).start(), Receiver(aliyun_judge).start()
    yield dingtalk, aliyun
    dingtalk.stop()
    aliyun.stop()


@pytest.fixture
def relay_factory(tmp_path, influx_db, receivers):
    influx, db = influx_db
    started: list[Relay] = []

    def make(*args: str, **settings: object) -> Relay:
        relay = Relay(tmp_path, influx.url, db, *receivers, **settings)
        started.append(relay)
        return relay.start(*args)

    yield make
    for relay in started:
        relay.stop()


# --- tests --------------------------------------------------------------------------------------------------------


def test_grafana_notification_reaches_dingtalk_and_sms_signed(relay_factory, receivers, influx_db):
    influx, db = influx_db
    influx.write((f'alarm,ent={FOUNDRY},county=如皋市,fac=T1,rule=treatment_off,severity=high '
                  f'id="e1",state="open",message="{STORED_MESSAGE}",active=1i 1795392900').encode(), db, "s")
    dingtalk, aliyun = receivers
    relay = relay_factory()
    status, answer = relay.post(f"enterprise/{FOUNDRY}", [alert()])
    assert (status, answer) == (200, {"queued": 2, "duplicates": 0})
    relay.wait_for(lambda h: h["sent"] == 2)

    (robot,) = dingtalk.requests
    assert robot.verified and robot.path == "/robot/send" and robot.query["access_token"] == "robotfoundry"
    markdown = json.loads(robot.body)["markdown"]
    assert markdown["title"] == "工况告警：治污设施未开启/停运（告警）"
    assert STORED_MESSAGE in markdown["text"] and "- 开始：2026-11-23 08:15" in markdown["text"]
    (sms,) = aliyun.requests
    fields = sms_fields(sms)
    assert sms.verified and fields["PhoneNumbers"] == "13800000001"
    assert (fields["SignName"], fields["TemplateCode"]) == ("如皋生态环境", "SMS_154950909")
    assert json.loads(fields["TemplateParam"]) == {
        "enterprise": "如皋市测试铸造有限公司", "facility": "布袋除尘风机", "alarm": "治污设施未开启/停运", "state": "告警"}

    # Grafana retries a notification it thinks failed: nothing is sent twice.
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()]) == (200, {"queued": 0, "duplicates": 2})
    # The county: the county contacts of both enterprises, one person, one robot with its own secret.
    county_alert = alert(ent=COATING, fac="T1", rule="combustion_temperature")
    status, answer = relay.post(urllib.parse.quote("county/如皋市"), [county_alert])
    assert (status, answer) == (200, {"queued": 2, "duplicates": 0})
    relay.wait_for(lambda h: h["sent"] == 4)
    time.sleep(0.3)
    assert [r.query["access_token"] for r in dingtalk.requests] == ["robotfoundry", "robotcounty"]
    assert [sms_fields(r)["PhoneNumbers"] for r in aliyun.requests] == ["13800000001", "13800000009"]
    county_text = json.loads(dingtalk.requests[1].body)["markdown"]["text"]
    assert "如皋市测试涂装有限公司：蓄热式焚烧炉燃烧温度不足" in county_text  # no stored text: the template's
    assert all(r.verified for r in dingtalk.requests + aliyun.requests)


def platform_alert(check: str, status: str = "firing", **labels: str) -> dict:
    """An alert of a generated platform rule (labels as the rule sets them, alertname = its title) for a host,
    its annotations as Grafana renders the rule's templates."""
    [rule] = [r for r in platform_rules() if r["uid"] == f"gkjk-platform-{check}"]
    body = alert(status=status)
    body["labels"] = {"alertname": rule["title"], **rule["labels"], "grafana_folder": "工况监控", **labels}
    body["annotations"] = {"summary": f"主机 {labels['host']} {rule['title']}",
                           "description": f"{rule['title']}：请检查主机 {labels['host']}。"}
    body["fingerprint"] = f"platform-{check}-{status}"
    return body


def test_platform_alert_reaches_the_bureau_worded_from_its_rule_and_host(relay_factory, receivers):
    """Platform alerts have no enterprise: the bureau's robot and phones get the rule, the host and the rule's
    description; no InfluxDB alarm text is looked for."""
    dingtalk, aliyun = receivers
    robot = "https://oapi.dingtalk.com/robot/send?access_token=robotbureau"
    relay = relay_factory(bureau_dingtalk=robot, bureau_phones="13800000010, 0513-1234567")
    alerts = [platform_alert("silent", host="ingest-01"),
              platform_alert("dead-letters", host="ingest-01", worker="1"),
              platform_alert("silent", status="resolved", host="ingest-02")]
    assert relay.post("bureau", alerts) == (200, {"queued": 6, "duplicates": 0})
    relay.wait_for(lambda h: h["sent"] == 6)
    time.sleep(0.3)
    assert all(r.verified and r.query["access_token"] == "robotbureau" for r in dingtalk.requests)
    markdown = {json.loads(r.body)["markdown"]["title"]: json.loads(r.body)["markdown"]["text"]
                for r in dingtalk.requests}
    assert set(markdown) == {"工况告警：采集服务无上报（告警）", "工况告警：InfluxDB 拒收数据（告警）",
                             "工况告警：采集服务无上报（已恢复）"}
    silent = markdown["工况告警：采集服务无上报（告警）"]
    assert silent.startswith("#### 工况告警：采集服务无上报（告警）\n\n采集服务无上报：请检查主机 ingest-01。\n\n")
    assert "- 主机：ingest-01\n- 级别：高\n- 开始：2026-11-23 08:15\n" in silent
    assert "企业" not in silent and "设施" not in silent and "区县" not in silent
    assert "- 主机：ingest-01（工作进程 1）\n" in markdown["工况告警：InfluxDB 拒收数据（告警）"]
    assert "- 主机：ingest-02\n" in markdown["工况告警：采集服务无上报（已恢复）"]
    assert "- 恢复：2026-11-23 09:00" in markdown["工况告警：采集服务无上报（已恢复）"]
    assert all(r.verified and sms_fields(r)["PhoneNumbers"] == "13800000010" for r in aliyun.requests)
    params = sorted((json.loads(sms_fields(r)["TemplateParam"]) for r in aliyun.requests), key=json.dumps)
    assert params == sorted([
        {"enterprise": "工况监控平台", "facility": "主机 ingest-01", "alarm": "采集服务无上报", "state": "告警"},
        {"enterprise": "工况监控平台", "facility": "主机 ingest-01", "alarm": "InfluxDB 拒收数据", "state": "告警"},
        {"enterprise": "工况监控平台", "facility": "主机 ingest-02", "alarm": "采集服务无上报", "state": "已恢复"},
    ], key=json.dumps)


def test_bad_token_is_refused_and_nothing_queued(relay_factory, receivers):
    relay = relay_factory()
    for token in ("wrong", None, ""):
        status, answer = relay.post(f"enterprise/{FOUNDRY}", [alert()], token=token)
        assert status == 401 and "token" in answer["error"]
    assert relay.post("nobody/here", [alert()])[0] == 404
    assert relay.post(f"enterprise/{FOUNDRY}", [{"status": "broken"}])[0] == 400
    time.sleep(0.5)
    assert relay.health() == {"status": "ok", "dry_run": False, "pending": 0, "sent": 0, "dead": 0}
    assert receivers[0].requests == [] and receivers[1].requests == []


def test_server_errors_are_retried_and_refusals_dead_lettered(relay_factory, receivers, tmp_path):
    dingtalk, aliyun = receivers
    dingtalk.script[:] = [503, 502]
    aliyun.script[:] = [500]
    relay = relay_factory(dingtalk_secrets="robotcounty=SECcounty4567,robotcoating=SECwrong", max_attempts=3)
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()])[0] == 200
    relay.wait_for(lambda h: h["sent"] == 2)
    assert [r.answer for r in dingtalk.requests] == [503, 502, 200]
    assert [r.answer for r in aliyun.requests] == [500, 200]
    assert len(dingtalk.accepted) == 1 and len(aliyun.accepted) == 1

    # Still failing after max_attempts: dead letter.
    aliyun.script[:] = [503, 503, 503]
    assert relay.post(f"enterprise/{FOUNDRY}", [alert(minute=30)])[0] == 200
    relay.wait_for(lambda h: h["dead"] == 1 and h["sent"] == 3)
    assert [r.answer for r in aliyun.requests[2:]] == [503, 503, 503]

    # A refusal (bad signature: errcode 310000) is not retried: straight to the dead letters.
    assert relay.post(f"enterprise/{COATING}", [alert(ent=COATING)])[0] == 200
    health = relay.wait_for(lambda h: h["dead"] == 2 and h["sent"] == 4)
    assert health["pending"] == 0
    exhausted, refused = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text("utf-8").splitlines()]
    assert exhausted["channel"] == "sms" and exhausted["attempts"] == 3 and "HTTP 503" in exhausted["error"]
    assert refused["channel"] == "dingtalk" and "robotcoating" in refused["address"] and "310000" in refused["error"]
    assert refused["attempts"] == 1 and len([r for r in dingtalk.requests if "robotcoating" in r.query.values()]) == 1


def test_receiver_outage_then_every_message_delivered_exactly_once(relay_factory, receivers):
    dingtalk, aliyun = receivers
    dingtalk.stop()
    aliyun.stop()
    relay = relay_factory()
    alerts = [alert(minute=m) for m in range(10)]
    assert relay.post(f"enterprise/{FOUNDRY}", alerts) == (200, {"queued": 20, "duplicates": 0})
    time.sleep(2.5)  # several failed attempts each (connection refused)
    assert relay.health()["pending"] == 20
    dingtalk.start()
    aliyun.start()
    relay.wait_for(lambda h: h["sent"] == 20)
    time.sleep(1.5)  # nothing more arrives
    starts = sorted(json.loads(r.body)["markdown"]["text"].split("- 开始：")[1][:16] for r in dingtalk.requests)
    assert starts == [f"2026-11-23 08:{m:02d}" for m in range(10)]
    assert len(aliyun.requests) == 10 and all(r.verified for r in dingtalk.requests + aliyun.requests)
    assert "attempt" in relay.log.read_text(encoding="utf-8")


def test_relay_killed_with_pending_messages_delivers_after_restart(relay_factory, receivers):
    dingtalk, aliyun = receivers
    dingtalk.stop()
    aliyun.stop()
    relay = relay_factory()
    assert relay.post(f"enterprise/{FOUNDRY}", [alert(minute=m) for m in range(5)])[0] == 200
    assert relay.health()["pending"] == 10
    relay.stop(kill=True)
    dingtalk.start()
    aliyun.start()
    time.sleep(0.5)
    assert dingtalk.requests == [] and aliyun.requests == []
    relay.start()
    relay.wait_for(lambda h: h["sent"] == 10 and h["pending"] == 0)
    time.sleep(1.0)
    assert len({r.body for r in dingtalk.requests}) == len(dingtalk.requests) == 5
    assert len(aliyun.accepted) == len(aliyun.requests) == 5
    # A clean stop after that (SIGTERM) exits 0.
    assert relay.stop() == 0


def test_dry_run_sends_nothing_and_records_what_it_would(relay_factory, receivers, tmp_path):
    dingtalk, aliyun = receivers
    # No Aliyun credentials: a dry run builds no provider, so it needs none.
    relay = relay_factory("--dry-run", aliyun_access_key_id="", aliyun_access_key_secret="")
    assert relay.health()["dry_run"] is True
    assert relay.post(f"enterprise/{FOUNDRY}", [alert(), alert(minute=20, status="resolved")])[0] == 200
    relay.wait_for(lambda h: h["sent"] == 4)
    time.sleep(0.5)
    assert dingtalk.requests == [] and aliyun.requests == []
    records = [json.loads(line) for line in (tmp_path / "dry-run.jsonl").read_text(encoding="utf-8").splitlines()]
    robot = "https://oapi.dingtalk.com/robot/send?access_token=robotfoundry"
    assert sorted((r["channel"], r["address"]) for r in records) == [
        ("dingtalk", robot), ("dingtalk", robot), ("sms", "13800000001"), ("sms", "13800000001")]
    states = sorted(r["payload"]["params"]["state"] for r in records if r["channel"] == "sms")
    assert states == ["告警", "已恢复"]
    assert "dry run: would send" in relay.log.read_text(encoding="utf-8")


def test_sms_off_delivers_to_dingtalk_only_without_aliyun_settings(relay_factory, receivers):
    dingtalk, aliyun = receivers
    relay = relay_factory(sms_provider="", aliyun_access_key_id="", aliyun_access_key_secret="",
                          aliyun_sign_name="", aliyun_template_code="")
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()]) == (200, {"queued": 1, "duplicates": 0})
    relay.wait_for(lambda h: h["sent"] == 1)
    time.sleep(0.3)
    assert [r.query["access_token"] for r in dingtalk.requests] == ["robotfoundry"] and aliyun.requests == []


def test_relay_refuses_to_start_without_a_token(tmp_path, receivers):
    relay = Relay(tmp_path, "http://127.0.0.1:1", "x", *receivers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
    done = subprocess.run([sys.executable, "-m", "gkjk.cli", "relay", "--config", str(relay.config)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=30)
    assert done.returncode != 0 and "[relay] token: must be set" in done.stderr
