"""The providers' answers, classified: each real sender against a local HTTP stand-in, in this process's reactor."""

from __future__ import annotations

from dataclasses import replace

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent, HTTPConnectionPool

from gkjk.config import RelayConfig
from gkjk.relay.outbox import Message
from gkjk.relay.outcome import Delivered, Failed, RetryLater
from gkjk.relay.providers.aliyun_sms import AliyunSms
from gkjk.relay.providers.dingtalk import DingTalkRobots
from test_relay_e2e import ALIYUN_ID, ALIYUN_SECRET, Receiver, receivers  # noqa: F401 - receivers is a fixture

ROBOT = "https://oapi.dingtalk.com/robot/send?access_token=robotfoundry"


@pytest.fixture
def http():
    pool = HTTPConnectionPool(reactor, persistent=False)
    return HTTPClient(Agent(reactor, connectTimeout=1.0, pool=pool))


def robot_message() -> Message:
    return Message("k1", "dingtalk", ROBOT, {"msgtype": "text", "text": {"content": "工况告警"}}, 0.0, 0)


def sms_message() -> Message:
    return Message("k2", "sms", "13800000001", {"params": {"state": "告警"}}, 0.0, 0)


def relay_config(dingtalk: Receiver, aliyun: Receiver, **changes) -> RelayConfig:
    config = RelayConfig(dingtalk_base_url=dingtalk.url, dingtalk_secret="SECdefault0123", timeout=1.0,
                         aliyun_endpoint=aliyun.url, aliyun_access_key_id=ALIYUN_ID,
                         aliyun_access_key_secret=ALIYUN_SECRET, aliyun_sign_name="如皋生态环境",
                         aliyun_template_code="SMS_1")
    return replace(config, **changes)


@pytest_twisted.ensureDeferred
async def test_dingtalk_answers(receivers, http):
    dingtalk, aliyun = receivers
    robots = DingTalkRobots(relay_config(dingtalk, aliyun), http, reactor)
    dingtalk.script[:] = [(200, {"errcode": 130101, "errmsg": "send too fast"}), (200, {"errcode": -1}),
                          (200, {"errcode": 300001, "errmsg": "token is not exist"}), (404, {"message": "nope"})]
    assert await robots.send(robot_message()) == RetryLater("errcode 130101: send too fast", after=60.0)
    assert isinstance(await robots.send(robot_message()), RetryLater)
    assert await robots.send(robot_message()) == Failed("HTTP 200, errcode 300001: token is not exist")
    assert isinstance(await robots.send(robot_message()), Failed)
    assert await robots.send(robot_message()) == Delivered()
    wrong = DingTalkRobots(relay_config(dingtalk, aliyun, dingtalk_secret="SECwrong"), http, reactor)
    assert await wrong.send(robot_message()) == Failed("HTTP 200, errcode 310000: sign not match")


@pytest_twisted.ensureDeferred
async def test_transport_trouble_is_retried_and_not_counted(receivers, http):
    dingtalk, aliyun = receivers
    robots = DingTalkRobots(relay_config(dingtalk, aliyun), http, reactor)
    dingtalk.delay = 1.5  # longer than the timeout
    slow = await robots.send(robot_message())
    assert isinstance(slow, RetryLater) and slow.reached is False
    dingtalk.stop()
    refused = await robots.send(robot_message())
    assert isinstance(refused, RetryLater) and refused.reached is False and "refused" in refused.reason.lower()


@pytest_twisted.ensureDeferred
async def test_aliyun_answers(receivers, http):
    dingtalk, aliyun = receivers
    sms = AliyunSms(relay_config(dingtalk, aliyun), http, reactor)
    aliyun.script[:] = [(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控"}),
                        (200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}), 503]
    assert await sms.send(sms_message()) == RetryLater("isv.BUSINESS_LIMIT_CONTROL: 触发分钟级流控", after=600.0)
    assert await sms.send(sms_message()) == Failed("HTTP 200, isv.MOBILE_NUMBER_ILLEGAL: 非法手机号")
    assert isinstance(await sms.send(sms_message()), RetryLater)
    assert await sms.send(sms_message()) == Delivered("900619746936498440^0")
    wrong = AliyunSms(relay_config(dingtalk, aliyun, aliyun_access_key_secret="other"), http, reactor)
    assert await wrong.send(sms_message()) == Failed(
        "HTTP 200, SignatureDoesNotMatch: Specified signature is not matched")
