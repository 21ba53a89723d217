"""The relay's self-metrics (`gkjk_relay`, docs/schema.md) read back with InfluxQL from a real InfluxDB: the real
`gkjk relay` process against local stand-ins for DingTalk and Aliyun (test_relay_e2e.py), and the dispatcher on a fake
clock for exact ages and rate limits. The operator queries of docs/relay.md are run here as written (with
`time > now() - 1h` for Grafana's `$timeFilter`)."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from gkjk.relay.dispatcher import Dispatcher, RetryPolicy
from gkjk.relay.metrics import MetricsReporter, RelayStats
from gkjk.relay.outbox import Message, NewMessage, Outbox
from gkjk.relay.outcome import Delivered, Outcome, RetryLater
from gkjk.relay.ratelimit import SlidingWindow
from ingest_twisted.influx import InfluxClient
from test_relay_e2e import (  # noqa: F401 - receivers and relay_factory are fixtures
    COATING, FOUNDRY, Relay, alert, receivers, relay_factory,
)

INTERVAL = 0.2  # [metrics] interval of the relays under test
HOST = socket.gethostname()
ZERO = {"delivered": 0, "failed_attempts": 0, "dead_lettered": 0, "rate_limit_postponed": 0, "pending": 0,
        "oldest_pending_seconds": 0, "dry_run": 0, "host": HOST}
INTAKE_ZERO = {"requests": 0, "accepted": 0, "refused": 0, "refused_400": 0, "refused_401": 0, "refused_404": 0,
               "refused_413": 0, "refused_503": 0, "queued": 0, "duplicates": 0, "dry_run": 0, "host": HOST}

# The operator's queries (docs/relay.md), $timeFilter spelled out. Per minute, for panels:
FAILING_PER_MINUTE = (
    'SELECT sum("delivered") AS "delivered", sum("failed_attempts") AS "failed_attempts", '
    'sum("dead_lettered") AS "dead_lettered" FROM (SELECT non_negative_difference("delivered") AS "delivered", '
    'non_negative_difference("failed_attempts") AS "failed_attempts", '
    'non_negative_difference("dead_lettered") AS "dead_lettered" FROM "gkjk_relay" '
    'WHERE "channel" != \'\' AND time > now() - 1h GROUP BY "host", "channel") '
    'WHERE time > now() - 1h GROUP BY time(1m), "host", "channel" fill(0)')
BACKLOG_PANEL = (
    'SELECT last("pending") AS "pending", max("oldest_pending_seconds") AS "oldest_pending_seconds" '
    'FROM "gkjk_relay" WHERE "channel" != \'\' AND time > now() - 1h GROUP BY time(1s), "host", "channel" fill(none)')
# Totals over the alert rule's range, for alerts:
FAILING = (
    'SELECT sum("delivered") AS "delivered", sum("failed_attempts") AS "failed_attempts", '
    'sum("dead_lettered") AS "dead_lettered" FROM (SELECT non_negative_difference("delivered") AS "delivered", '
    'non_negative_difference("failed_attempts") AS "failed_attempts", '
    'non_negative_difference("dead_lettered") AS "dead_lettered" FROM "gkjk_relay" '
    'WHERE "channel" != \'\' AND time > now() - 1h GROUP BY "host", "channel") GROUP BY "host", "channel"')
BACKLOG = (
    'SELECT last("pending") - first("pending") AS "growth", last("pending") AS "pending", '
    'last("oldest_pending_seconds") AS "oldest_pending_seconds" FROM "gkjk_relay" '
    'WHERE "channel" != \'\' AND time > now() - 1h GROUP BY "host", "channel"')


# --- helpers ------------------------------------------------------------------------------------------------------


def by_channel(result: dict, with_time: bool = False) -> dict[str, dict]:
    """The last row of each series of a query grouped by channel, as {column or other tag: value} without nulls
    (and without time unless asked)."""
    found = {}
    drop = {"channel"} if with_time else {"channel", "time"}
    for series in result["results"][0].get("series", []):
        row = {**series.get("tags", {}), **dict(zip(series["columns"], series["values"][-1]))}
        found[row.get("channel", "")] = {k: v for k, v in row.items() if v is not None and k not in drop}
    return found


def points_after(influx, db: str, since: float, channels: set[str], relay: Relay | None = None,
                 timeout: float = 15.0, with_time: bool = False) -> dict[str, dict]:
    """The newest `gkjk_relay` point of each channel ("" = the intake) written after `since` (time.time()),
    waiting until every one of `channels` has one."""
    deadline = time.monotonic() + timeout
    while True:
        found = by_channel(influx.query(f'SELECT * FROM "gkjk_relay" WHERE time > {int(since * 1000)}ms '
                                        'GROUP BY "channel"', db=db, epoch="ms"), with_time)
        if channels <= set(found):
            return found
        if time.monotonic() > deadline:
            log = relay.log.read_text(encoding="utf-8") if relay else ""
            raise AssertionError(f"no gkjk_relay points for {channels - set(found)} after {since}:\n{log}")
        time.sleep(INTERVAL / 2)


def attempts_by_channel(outbox: Path) -> dict[str, int]:
    """Attempts the outbox recorded per channel: the dispatcher's bookkeeping, independent of the counters."""
    with sqlite3.connect(outbox) as db:
        return dict(db.execute("SELECT channel, sum(attempts) FROM message GROUP BY channel").fetchall())


@pytest.fixture
def metered_relay(relay_factory):
    """Starts `gkjk relay` (test_relay_e2e.Relay) with `[metrics] interval = INTERVAL`."""
    return lambda *args, **settings: relay_factory(*args, metrics_interval=INTERVAL, **settings)


# --- the relay process --------------------------------------------------------------------------------------------


def test_deliveries_failures_dead_letters_and_webhook_answers_are_counted(metered_relay, receivers, influx_db,
                                                                          tmp_path):
    influx, db = influx_db
    dingtalk, aliyun = receivers
    dingtalk.script[:] = [503, 502]
    aliyun.script[:] = [500]
    relay = metered_relay(max_attempts=3)
    # Before anything happened: every field present, all zero, with its type.
    assert points_after(influx, db, 0, {"dingtalk", "sms", ""}, relay) == {
        "dingtalk": ZERO, "sms": ZERO, "": INTAKE_ZERO}
    types = {tuple(row) for row in influx.query('SHOW FIELD KEYS FROM "gkjk_relay"', db=db)["results"][0]
             ["series"][0]["values"]}
    assert types == {(name, "integer") for name in {*ZERO, *INTAKE_ZERO} - {"host", "oldest_pending_seconds"}} | {
        ("oldest_pending_seconds", "float")}

    # Two failed DingTalk attempts and one failed SMS attempt, then both delivered.
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()]) == (200, {"queued": 2, "duplicates": 0})
    relay.wait_for(lambda h: h["sent"] == 2)
    # Three failed SMS attempts: dead letter (max_attempts 3); the DingTalk message goes through.
    aliyun.script[:] = [503, 503, 503]
    assert relay.post(f"enterprise/{FOUNDRY}", [alert(minute=30)])[0] == 200
    relay.wait_for(lambda h: h["dead"] == 1 and h["sent"] == 3)
    # Refusals: bad token, unknown path, enterprise not in the registry, not a notification; and a duplicate.
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()], token="wrong")[0] == 401
    assert relay.post("nobody/here", [alert()])[0] == 404
    assert relay.post("enterprise/91320682MA1WX9999X", [alert()])[0] == 404
    assert relay.post(f"enterprise/{COATING}", [{"status": "broken"}])[0] == 400
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()]) == (200, {"queued": 0, "duplicates": 2})
    assert [r.answer for r in dingtalk.requests] == [503, 502, 200, 200]
    assert [r.answer for r in aliyun.requests] == [500, 200, 503, 503, 503]

    points = points_after(influx, db, time.time(), {"dingtalk", "sms", ""}, relay)
    assert points == {
        "dingtalk": {**ZERO, "delivered": 2, "failed_attempts": 2},
        "sms": {**ZERO, "delivered": 1, "failed_attempts": 4, "dead_lettered": 1},
        "": {**INTAKE_ZERO, "requests": 7, "accepted": 3, "refused": 4, "refused_400": 1, "refused_401": 1,
             "refused_404": 2, "queued": 4, "duplicates": 2},
    }
    assert attempts_by_channel(tmp_path / "outbox.sqlite") == {"dingtalk": 4, "sms": 5}

    # The operator's "deliveries failing" queries: increases since the first (all-zero) point, in all and per
    # minute (the minutes add up to the same).
    totals = {"dingtalk": {"delivered": 2, "failed_attempts": 2, "dead_lettered": 0},
              "sms": {"delivered": 1, "failed_attempts": 4, "dead_lettered": 1}}
    assert by_channel(influx.query(FAILING, db=db)) == {c: {"host": HOST, **v} for c, v in totals.items()}
    per_minute = influx.query(FAILING_PER_MINUTE, db=db)["results"][0]["series"]
    assert {s["tags"]["channel"]: {c: sum(row[s["columns"].index(c)] for row in s["values"]) for c in totals["sms"]}
            for s in per_minute} == totals


def test_outbox_gauges_show_waiting_messages_and_the_oldest_ones_age(metered_relay, receivers, influx_db,
                                                                     tmp_path):
    influx, db = influx_db
    dingtalk, aliyun = receivers
    dingtalk.stop()
    aliyun.stop()
    relay = metered_relay()
    points_after(influx, db, 0, {"dingtalk", "sms"}, relay)  # a first point, pending 0, before anything is queued
    before = time.time()
    assert relay.post(f"enterprise/{FOUNDRY}", [alert(minute=m) for m in range(3)])[0] == 200
    after = time.time()
    time.sleep(1.0)
    assert relay.post(f"enterprise/{FOUNDRY}", [alert(minute=m) for m in range(3, 5)])[0] == 200
    assert relay.health()["pending"] == 10

    points = points_after(influx, db, time.time(), {"dingtalk", "sms"}, relay, with_time=True)
    for channel in ("dingtalk", "sms"):
        point = points[channel]
        assert (point["pending"], point["delivered"], point["dead_lettered"]) == (5, 0, 0)
        assert point["failed_attempts"] >= 2  # connection refused, retried every 0.2 to 1 s
        # The age of the first batch (queued between `before` and `after`), not of the second one.
        written = point["time"] / 1000  # the relay's clock when it made the point (ms, rounded down)
        assert written - after - 0.001 <= point["oldest_pending_seconds"] <= written - before + 0.002
        assert point["oldest_pending_seconds"] > 1.0
    backlog = by_channel(influx.query(BACKLOG, db=db))
    assert {c: (v["growth"], v["pending"]) for c, v in backlog.items()} == {"dingtalk": (5, 5), "sms": (5, 5)}
    assert all(v["oldest_pending_seconds"] > 1.0 for v in backlog.values())
    panel = by_channel(influx.query(BACKLOG_PANEL, db=db))
    assert {c: v["pending"] for c, v in panel.items()} == {"dingtalk": 5, "sms": 5}

    dingtalk.start()
    aliyun.start()
    relay.wait_for(lambda h: h["sent"] == 10)
    points = points_after(influx, db, time.time(), {"dingtalk", "sms"}, relay)
    attempts = attempts_by_channel(tmp_path / "outbox.sqlite")
    for channel in ("dingtalk", "sms"):
        assert points[channel] == {**ZERO, "delivered": 5, "failed_attempts": attempts[channel] - 5}
    assert {c: (v["growth"], v["pending"], v["oldest_pending_seconds"])
            for c, v in by_channel(influx.query(BACKLOG, db=db)).items()} == {"dingtalk": (0, 0, 0), "sms": (0, 0, 0)}


def test_influxdb_down_does_not_stop_delivery_and_the_counts_arrive_later(metered_relay, receivers, influx_db):
    influx, db = influx_db
    dingtalk, aliyun = receivers
    influx.stop()
    relay = metered_relay()
    warning = "relay self-metrics (gkjk_relay) not written"
    deadline = time.monotonic() + 10
    while warning not in relay.log.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, relay.log.read_text(encoding="utf-8")
        time.sleep(INTERVAL)
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()]) == (200, {"queued": 2, "duplicates": 0})
    relay.wait_for(lambda h: h["sent"] == 2)
    assert len(dingtalk.accepted) == 1 and len(aliyun.accepted) == 1
    time.sleep(3 * INTERVAL)
    assert relay.process.poll() is None and relay.log.read_text(encoding="utf-8").count(warning) >= 3

    influx.start()
    points = points_after(influx, db, 0, {"dingtalk", "sms", ""}, relay)
    assert points == {"dingtalk": {**ZERO, "delivered": 1}, "sms": {**ZERO, "delivered": 1},
                      "": {**INTAKE_ZERO, "requests": 1, "accepted": 1, "queued": 2}}


def test_dry_run_writes_its_metrics_marked_as_such(metered_relay, receivers, influx_db):
    influx, db = influx_db
    relay = metered_relay("--dry-run")
    assert relay.post(f"enterprise/{FOUNDRY}", [alert()]) == (200, {"queued": 2, "duplicates": 0})
    relay.wait_for(lambda h: h["sent"] == 2)
    points = points_after(influx, db, time.time(), {"dingtalk", "sms", ""}, relay)
    assert points == {"dingtalk": {**ZERO, "delivered": 1, "dry_run": 1}, "sms": {**ZERO, "delivered": 1, "dry_run": 1},
                      "": {**INTAKE_ZERO, "requests": 1, "accepted": 1, "queued": 2, "dry_run": 1}}
    assert receivers[0].requests == [] and receivers[1].requests == []


# --- the dispatcher on a fake clock -------------------------------------------------------------------------------


class Script:
    """A sender answering from a list of outcomes, then Delivered."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)

    def send(self, message: Message) -> Deferred[Outcome]:
        return succeed(self.outcomes.pop(0) if self.outcomes else Delivered())


@pytest_twisted.ensureDeferred
async def test_rate_limits_retries_and_exact_ages_on_a_fake_clock(influx_db, tmp_path):
    influx, db = influx_db
    clock = Clock()
    start = float(int(time.time()) - 600)
    clock.advance(start)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    stats = RelayStats()
    dispatcher = Dispatcher(outbox, {"sms": Script(RetryLater("HTTP 503"))}, {"sms": SlidingWindow(2, 60.0)},
                            RetryPolicy(max_attempts=4, initial=10.0, maximum=25.0), tmp_path / "dead.jsonl", clock,
                            stats)
    client = InfluxClient(influx.url, db)
    reporter = MetricsReporter(stats, outbox, ["dingtalk", "sms"], client, 10.0, clock)
    # Five SMS to one phone, two allowed a minute: a fails (retry in 10 s), b is delivered, c, d, e wait for the
    # window (3 postponements). f, queued 5 s later, and a's retry at +10 s wait for it too (2 more).
    outbox.add([NewMessage(key, "sms", "13800000001", {"params": {}}) for key in "abcde"], clock.seconds())
    dispatcher.start()
    clock.advance(0)
    clock.advance(5.0)
    outbox.add([NewMessage("f", "sms", "13800000001", {"params": {}})], clock.seconds())
    dispatcher.wake()
    for _ in range(5):
        clock.advance(5.0)
    assert outbox.counts() == {"pending": 5, "sent": 1, "dead": 0}
    try:
        await reporter.report()
        points = by_channel(influx.query('SELECT * FROM "gkjk_relay" GROUP BY "channel"', db=db, epoch="ms"))
        assert points == {
            "dingtalk": ZERO,
            "sms": {**ZERO, "delivered": 1, "failed_attempts": 1, "rate_limit_postponed": 5, "pending": 5,
                    "oldest_pending_seconds": 30},
            "": INTAKE_ZERO,
        }
        [[at, *_]] = influx.query('SELECT "pending" FROM "gkjk_relay" WHERE "channel" = \'sms\'', db=db,
                                  epoch="ms")["results"][0]["series"][0]["values"]
        assert at == (start + 30.0) * 1000  # the point's time is the relay's clock
    finally:
        await client.close()
        outbox.close()


# --- the documentation --------------------------------------------------------------------------------------------


def test_docs_give_the_queries_tested_here_and_every_field():
    """docs/relay.md's queries are the ones run above ($timeFilter and $__interval filled in); docs/schema.md names
    every field and tag of the points."""
    root = Path(__file__).resolve().parent.parent
    relay_md = (root / "docs/relay.md").read_text(encoding="utf-8")
    section = relay_md.split("## Self-metrics\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]
    queries = [" ".join(query.split()) for block in blocks for query in block.split("\n\n")]
    filled = [q.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1s") for q in queries]
    assert filled == [FAILING_PER_MINUTE, FAILING, BACKLOG_PANEL, BACKLOG]
    schema = (root / "docs/schema.md").read_text(encoding="utf-8").split("## Self-metrics: `gkjk_relay`\n", 1)[1]
    schema = schema.split("\n## ", 1)[0]
    for name in {*ZERO, *INTAKE_ZERO, "channel"}:
        assert f"`{name}`" in schema, name
