"""`gkjk relay`: wires the outbox, the senders, the dispatcher and the HTTP server, and runs them."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from gkjk.config import Config, ConfigError
from gkjk.relay.dispatcher import Dispatcher, RetryPolicy
from gkjk.relay.intake import Intake
from gkjk.relay.metrics import MetricsReporter, RelayStats
from gkjk.relay.outbox import Outbox
from gkjk.relay.providers import Sender, sms_provider
from gkjk.relay.ratelimit import SlidingWindow

log = Logger()

PRUNE_INTERVAL = 3600.0  # seconds between removals of expired dedup keys


def run(config: Config, dry_run: bool = False) -> None:
    """Serve until SIGTERM/SIGINT (attempts under way finish first); SIGHUP reloads the registry."""
    from treq.client import HTTPClient
    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError
    from twisted.internet.task import LoopingCall
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.client import Agent, HTTPConnectionPool

    from gkjk.registry import RegistryHolder
    from gkjk.relay import server
    from gkjk.relay.providers.dingtalk import DingTalkRobots
    from gkjk.relay.providers.dry_run import DryRunRecorder
    from ingest_twisted.server import influx_client, reload_registry_on_sighup

    relay = replace(config.relay, dry_run=True) if dry_run else config.relay
    if not relay.token:
        raise ConfigError("[relay] token: must be set (GKJK_RELAY_TOKEN): Grafana authenticates with it")
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, connectTimeout=relay.timeout, pool=pool))
    senders: dict[str, Sender]
    if relay.dry_run:
        recorder = DryRunRecorder(Path(relay.dry_run_log))
        senders = {"dingtalk": recorder, "sms": recorder}
    else:
        senders = {"dingtalk": DingTalkRobots(relay, http, reactor)}
        if relay.sms_provider:
            senders["sms"] = sms_provider(relay.sms_provider)(relay, http, reactor)

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    holder = RegistryHolder(Path(config.registry.path))
    outbox = Outbox(Path(relay.outbox))
    limits = {"dingtalk": SlidingWindow(relay.dingtalk_per_minute, 60.0),
              "sms": SlidingWindow(relay.sms_per_phone_per_hour, 3600.0)}
    stats = RelayStats()
    dispatcher = Dispatcher(outbox, senders, limits, RetryPolicy.of(relay), Path(relay.dead_letters), reactor,
                            stats)
    influx = influx_client(config, reactor)
    intake = Intake(lambda: holder.current, influx, outbox, relay, config.ingest.timezone, reactor, dispatcher.wake)
    # Dry run writes its metrics too (marked dry_run=1): the rehearsal covers the relay's monitoring as well.
    metrics = MetricsReporter(stats, outbox, senders, influx, config.metrics.interval, reactor, relay.dry_run)
    try:
        reactor.listenTCP(relay.port, server.site(intake, outbox, relay.token, relay.dry_run, stats.intake),
                          interface=relay.host)
    except CannotListenError as exc:
        raise ConfigError(f"[relay] listen: cannot listen on {relay.listen}: {exc.socketError}") from None
    prune = LoopingCall(lambda: outbox.prune(reactor.seconds() - relay.dedup_hours * 3600))
    prune.clock = reactor

    def started() -> None:
        counts = outbox.counts()
        log.info("relay listening on {listen}{dry}; outbox {path}: {pending} pending", listen=relay.listen,
                 dry=" (dry run: nothing is sent)" if relay.dry_run else "", path=relay.outbox,
                 pending=counts["pending"])
        prune.start(PRUNE_INTERVAL, now=True)
        dispatcher.start()
        metrics.start()

    def stopping() -> Deferred[None]:
        prune.stop()
        metrics.stop()  # before the outbox closes: the gauges read it
        return dispatcher.stop().addBoth(lambda _: outbox.close())

    reload_registry_on_sighup(holder, reactor)
    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()
