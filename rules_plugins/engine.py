"""The rule engine: every `[rules] interval` seconds, read the last `lookback_minutes` of real-time data for
all enterprises at once, let every rule judge each minute, and store alarm events and states.

Nothing a result depends on lives only in memory: the episodes already open come back from the `alarm`
measurement, and the device watch markers (rules_plugins.watch) from `state` when the engine starts, so a restart
resumes them, and each evaluation derives the window from data alone. What was last written to `state` is
remembered, to skip rewriting unchanged minutes (rules_plugins.states). Events the data no longer supports (late
data showed the fan was on after all) are overwritten with state "retracted"; events it does support are written
at the same time with the same tags, so repeating an evaluation overwrites instead of duplicating. See
docs/schema.md (`alarm`, `state`) and docs/plugins.md.
"""

from __future__ import annotations

import json
import math
import socket
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from gkjk.config import Config, RulesConfig
from gkjk.registry import Enterprise, Registry
from ingest_twisted.influx import InfluxClient
from ingest_twisted.lineprotocol import point
from rules_plugins import control, watch as watching
from rules_plugins.builtin.carbon import Ledger
from rules_plugins.emergency_periods import EmergencyPeriods, in_scope
from rules_plugins.episodes import Episode, episode_id, scan
from rules_plugins.history import History
from rules_plugins.model import Alarm, Condition, Rule
from rules_plugins.plugins import Plugins, parse_disabled
from rules_plugins.site import Readings, Site
from rules_plugins.states import StateWriter

log = Logger()

WRITE_BATCH = 10000  # lines per InfluxDB write request (at least)
IN_FLIGHT = 4  # write requests under way at once
READ_PARTS = 2  # time slices of the real-time read, queried at the same time
Key = tuple[str, str, str]  # (enterprise, subject, rule): one alarm series


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A row of the `alarm` measurement."""

    time: int
    id: str
    state: str
    started: int
    duration_s: int
    context: Mapping[str, Any]
    county: str
    severity: str


@dataclass(slots=True)
class Report:
    """What one evaluation did (events written, not alarms in force)."""

    start: int
    end: int
    opened: int = 0
    closed: int = 0
    retracted: int = 0
    states: int = 0
    controls: int = 0  # `control` and `emergency` points (rules_plugins.control)


class BatchWriter:
    """Writes an evaluation's lines while it goes on, at most IN_FLIGHT requests at a time: InfluxDB stores one
    batch on the other core while the next enterprises are judged (a fresh engine writes a million `state` lines).
    The first failure is raised, by `send` or `finish`; the evaluation then fails as a whole, as before."""

    def __init__(self, client: InfluxClient) -> None:
        self.client = client
        self.pending: deque[Deferred[None]] = deque()

    async def send(self, lines: list[bytes]) -> None:
        if not lines:
            return
        while len(self.pending) >= IN_FLIGHT:
            await self.oldest()
        from twisted.internet import reactor  # here: at import time it would install the default reactor

        self.pending.append(self.client.write(b"\n".join(lines), precision="s"))
        await deferLater(reactor, 0)  # a turn of the reactor: the request goes out before the judging goes on

    async def finish(self) -> None:
        while self.pending:
            await self.oldest()

    async def oldest(self) -> None:
        try:
            await self.pending.popleft()
        except Exception:
            for d in self.pending:
                d.addErrback(lambda _: None)  # the first failure is the one reported
            self.pending.clear()
            raise


def minute_means(rows: list[list[Any]]) -> list[float | None]:
    """Per column, the mean of one minute's rows (several points of a logger, or uploads every 30 s)."""
    if len(rows) == 1:
        return rows[0][1:]
    means: list[float | None] = []
    for column in zip(*rows):
        known = [v for v in column if v is not None]
        means.append(sum(known) / len(known) if known else None)
    return means[1:]


class Engine:
    """Evaluates every enterprise of the registry over the window that ends at the last whole minute."""

    def __init__(
        self, client: InfluxClient, registry: Callable[[], Registry], plugins: Plugins, config: RulesConfig,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        """`timezone` ([ingest] timezone) reads the registry's carbon `last_replaced` dates and the times in
        emergency period files."""
        self.client = client
        self.registry = registry
        self.plugins = plugins
        self.config = config
        self.states = StateWriter()
        self.controls = control.ControlWriter()
        self.emergency = EmergencyPeriods(Path(config.emergency_path) if config.emergency_path else None,
                                          ZoneInfo(timezone))
        self.watch: watching.Watch | None = None  # read from `state` once, then kept up to date
        self.carbon = Ledger(timezone)  # activated-carbon replacements (builtin/carbon.py)
        self.history = History(config.history_hours, config.history_reload_minutes, timezone)  # flat, transmission

    async def evaluate(self, now: float) -> Report:
        """Judge the `lookback_minutes` whole minutes before `now` (epoch s) and write what changed, then the
        cycle's self-metric point (`gkjk_rules`, also when the judging failed)."""
        began = perf_counter()
        report = None
        try:
            report = await self.judge(now)
            return report
        finally:
            await self.write_metrics(now, perf_counter() - began, report)

    async def write_metrics(self, now: float, seconds: float, report: Report | None) -> None:
        """One `gkjk_rules` point (docs/schema.md) at the cycle's end; `report` is None for a cycle that raised.
        A failure to write it is logged, never raised: the metric must not break the engine."""
        try:
            fields: dict[str, Any] = {"duration_seconds": seconds, "enterprises": len(self.registry().enterprises),
                                      "failed": int(report is None)}
            if report is not None:
                fields.update(opened=report.opened, closed=report.closed, retracted=report.retracted,
                              states=report.states, controls=report.controls)
            line = point("gkjk_rules", {"host": socket.gethostname()}, fields, int(now + seconds))
            await self.client.write(line, precision="s")
        except Exception:
            log.failure("cannot write the rule engine's self-metrics (gkjk_rules)")

    async def judge(self, now: float) -> Report:
        """The evaluation proper (see `evaluate`)."""
        end = int(now // 60) * 60
        start = end - self.config.lookback_minutes * 60
        registry = self.registry()
        first = start - self.config.context_minutes * 60
        history: list[Deferred[None]] = []

        def catch_up() -> None:  # InfluxDB aggregates the missing hours (at start) while the read is parsed
            history.append(Deferred.fromCoroutine(self.history.catch_up(self.client, registry, first, end)))

        try:
            readings = await self.read(registry, start, end, answered=catch_up)
        except Exception:
            for d in history:
                d.addErrback(lambda _: None)  # the read's failure is the one reported
            raise
        if not history:
            catch_up()
        await history[0]
        self.history.advance(readings)
        await self.carbon.refresh(self.client, registry, readings)
        before, within = await self.stored(start)
        alarmed = {*within, *(key for key, event in before.items() if event.state == "open")}
        if self.watch is None:
            self.watch = await watching.stored(self.client)
        watch, lines = watching.update(self.watch, registry, readings, end)
        periods = self.emergency.current()
        controls = self.controls.periods(periods, registry, readings.minutes)
        report = Report(start, end)
        writer = BatchWriter(self.client)
        defaults: dict[str, dict[str, float]] = {}
        for enterprise in registry.enterprises.values():
            if enterprise.industry not in defaults:
                defaults[enterprise.industry] = self.plugins.defaults(enterprise.industry, self.config.thresholds)
            site = Site(enterprise, registry, readings, defaults[enterprise.industry], watch, carbon=self.carbon,
                        history=self.history, alarmed=alarmed,
                        periods=in_scope(periods, enterprise, start, end))
            states = self.states.lines(site)
            controls.extend(self.controls.lines(site, control.judge(site)))
            report.states += len(states)
            lines.extend(states)
            for plugin, rule in self.plugins.rules(enterprise):
                try:
                    conditions = list(rule.conditions(site))
                except Exception:
                    self.plugins.failed(plugin, f"rule {getattr(rule, 'name', rule)!r} of {enterprise.id}")
                    continue
                for condition in conditions:
                    key = (enterprise.id, condition.subject, rule.name)
                    if key not in alarmed and not any(condition.minutes.values()):
                        continue  # nothing stored to carry on or withdraw, nothing violated: nothing to write
                    lines.extend(self.reconcile(site, rule, condition, before.get(key), within.get(key, ()), report))
            if len(lines) >= WRITE_BATCH:
                await writer.send(lines)
                lines = []
        report.controls = len(controls)
        lines.extend(controls)
        await writer.send(lines)
        await writer.finish()
        self.states.commit()  # only once stored: after a failed write the next evaluation writes it all again
        self.controls.commit()
        self.watch = watch
        return report

    async def read(self, registry: Registry, start: int, end: int, answered: Callable[[], None] = lambda: None
                   ) -> Readings:
        """Minute means of every registered factor, all devices at once, from `context_minutes` before the
        window; readings stand for the device's upload interval plus a minute of grace (loggers' clocks jitter
        across minute boundaries). Raw points are averaged here: InfluxDB's GROUP BY time(1m) took 4x longer. The
        span is read in READ_PARTS slices cut on whole minutes, sent together (InfluxDB answers them on several
        cores, 1.0 s instead of 1.5 s for the bench's 5,000 loggers), and put back together per device in order.
        `answered` is called once InfluxDB has answered, before the answers are parsed."""
        stands = {mn: math.ceil(ref.device.rtd_interval / 60) + 1 for mn, ref in registry.devices.items()}
        factors = sorted({p.factor.lower() for ref in registry.devices.values() for p in ref.device.points})
        first = start - self.config.context_minutes * 60  # rules may look back this far (start_stop)
        if not factors:
            return Readings(start, end, first)
        lead = (max(stands.values()) - 1) * 60
        fields, since = f'/(?i)^({"|".join(factors)})-Rtd$/', first - lead
        cuts = [since, *(since + (end - since) // 60 * k // READ_PARTS * 60 for k in range(1, READ_PARTS)), end]
        answers = [self.client.query(f'SELECT {fields} FROM "rtd" WHERE time >= {a}s AND time < {b}s GROUP BY "mn"',
                                     epoch="s") for a, b in zip(cuts, cuts[1:]) if a < b]
        answers.append(self.client.query(
            f'SELECT "Event" FROM "info" WHERE time >= {first}s AND time < {end}s GROUP BY "mn"', epoch="s"))
        results = []
        try:
            for answer in answers:
                results.append((await answer)["results"][0].get("series", []))
        except Exception:
            for answer in answers:
                answer.addErrback(lambda _: None)  # the first failure is the one reported
            raise
        answered()
        parts: dict[str, list[dict[str, Any]]] = {}  # a device's series, time slice after time slice
        for found in results[:-1]:
            for series in found:
                parts.setdefault(series["tags"]["mn"], []).append(series)
        values: dict[tuple[str, str], dict[int, float]] = {}
        present: dict[str, frozenset[int]] = {}
        records: dict[str, dict[int, int]] = {}  # MN -> minute -> real-time records received in it
        for series in (series for tag in sorted(parts) for series in parts[tag]):
            mn = series["tags"]["mn"].upper()
            if mn not in stands:
                continue
            columns = [column[:-len("-Rtd")].lower() for column in series["columns"][1:]]
            held_by_mn = set(present.get(mn, ()))  # the same MN in another letter case adds to it
            received = records.setdefault(mn, {})
            points, stand = series["values"], stands[mn] * 60  # points in ascending time
            standing = []  # (minutes a reading stands for, its minute means), in ascending time
            i = 0
            while i < len(points):
                minute = points[i][0] - points[i][0] % 60
                j = i + 1
                while j < len(points) and points[j][0] - points[j][0] % 60 == minute:
                    j += 1
                if minute >= first:  # a record is one DataTime, whatever facility points it was split into
                    count = 1 if j - i == 1 else len({p[0] for p in points[i:j]})
                    received[minute] = received.get(minute, 0) + count
                means, i = minute_means(points[i:j]), j
                held = range(max(minute, first), min(minute + stand, end), 60)
                if held:
                    standing.append((held, means))
                    held_by_mn.update(held)
            for k, column in enumerate(columns):  # a column at a time: one look-up of its series, not one a row
                target = None
                for held, means in standing:  # a later reading overrides an earlier one's standing
                    if (value := means[k]) is not None:
                        if target is None:
                            target = values.get((mn, column))
                            if target is None:
                                target = values[mn, column] = {}
                        for m in held:
                            target[m] = value
            present[mn] = frozenset(held_by_mn)
        events: dict[str, list[tuple[int, str]]] = {}  # field-unit events (3020 `Event`), builtin/power_loss.py
        for series in results[-1]:
            events.setdefault(series["tags"]["mn"].upper(), []).extend(
                (time, event) for time, event in series["values"] if isinstance(event, str))
        return Readings(start, end, first, values, present, records,
                        {mn: tuple(sorted(found)) for mn, found in events.items()})

    async def stored(self, start: int) -> tuple[dict[Key, StoredEvent], dict[Key, list[StoredEvent]]]:
        """Per alarm series: the last live event before the window, and every event inside it."""
        before = await self._events(
            f'SELECT * FROM "alarm" WHERE time < {start}s AND "state" != \'retracted\' '
            'GROUP BY "ent", "fac", "rule" ORDER BY time DESC LIMIT 1')
        within = await self._events(f'SELECT * FROM "alarm" WHERE time >= {start}s GROUP BY "ent", "fac", "rule"')
        return {key: events[0] for key, events in before.items()}, within

    async def _events(self, query: str) -> dict[Key, list[StoredEvent]]:
        result = await self.client.query(query, epoch="s")
        events: dict[Key, list[StoredEvent]] = {}
        for series in result["results"][0].get("series", []):
            tags = series["tags"]
            rows = [dict(zip(series["columns"], values)) for values in series["values"]]
            events[tags["ent"], tags["fac"], tags["rule"]] = [
                StoredEvent(r["time"], r["id"], r["state"], r["started"], r["duration_s"],
                            json.loads(r["context"] or "{}"), r["county"], r["severity"])
                for r in rows
            ]
        return events

    def reconcile(
        self, site: Site, rule: Rule, condition: Condition, before: StoredEvent | None,
        within: Iterable[StoredEvent], report: Report,
    ) -> list[bytes]:
        """Scan the window from the episode stored as open at its start; write what differs from the store."""
        start, end = site.readings.start, site.readings.end
        within = list(within)
        earlier: dict[str, Episode] = {}  # episodes that began before the window, as stored
        if before is not None and before.state == "open":
            earlier[before.id] = Episode(before.id, before.started, before.time, before.context)
        for event in within:
            if event.state == "retracted" or event.started >= start:
                continue
            known = earlier.get(event.id)
            opened = known.opened if known else event.started + condition.duration * 60
            episode = Episode(event.id, event.started, opened, event.context)
            if event.state == "closed":
                episode = replace(episode, ended=event.started + event.duration_s, closed=event.time)
            earlier[event.id] = episode
        seed, scan_from = None, start
        last = max(earlier.values(), key=lambda e: e.started, default=None)
        if last is not None:
            if last.ended is not None and last.ended < start:
                scan_from = last.closed or start  # it ended before the data we read: keep it as stored
            else:
                seed = replace(last, ended=None, closed=None)  # still open, or its end is ours to judge again
        settled = set(earlier) - ({seed.id} if seed else set())

        def make_id(started: int) -> str:
            return episode_id(rule.name, site.enterprise.id, condition.subject, started)

        derived: dict[tuple[int, str, str], Episode] = {}
        for episode in scan(range(scan_from, end, 60), condition.minutes, condition.duration,
                            self.config.hold_off_minutes, make_id, seed):
            if episode.opened >= start:
                derived[episode.opened, episode.id, "open"] = episode
            if episode.closed is not None:
                derived[episode.closed, episode.id, "closed"] = episode
        stored = {(e.time, e.id, e.state): e for e in within if e.id not in settled}
        lines = []
        for (time, event_id, state), episode in sorted(derived.items()):
            if (time, event_id, state) not in stored:
                lines.append(self.event_line(site.enterprise, rule, condition, episode, state, time))
                report.opened += state == "open"
                report.closed += state == "closed"
        derived_times = {time for time, _event_id, _state in derived}
        for (time, event_id, state), event in stored.items():
            # An event at a time a derived event takes is overwritten by it; any other is withdrawn.
            if state != "retracted" and (time, event_id, state) not in derived and time not in derived_times:
                tags = {"ent": site.enterprise.id, "county": event.county, "fac": condition.subject,
                        "rule": rule.name, "severity": event.severity}
                lines.append(point("alarm", tags, {"state": "retracted", "active": 0}, time))
                report.retracted += 1
                log.info("alarm {id} {state} at {time} retracted: the data no longer supports it",
                         id=event_id, state=state, time=time)
        return lines

    def event_line(
        self, enterprise: Enterprise, rule: Rule, condition: Condition, episode: Episode, state: str, time: int
    ) -> bytes:
        held = (episode.ended if state == "closed" else episode.opened) - episode.started
        alarm = Alarm(
            id=episode.id, rule=rule.name, enterprise=enterprise.id, county=enterprise.county,
            facility=condition.subject, severity=rule.severity, state=state,  # type: ignore[arg-type]
            started=episode.started, ended=episode.ended if state == "closed" else None, minutes=held // 60,
            template=condition.template, context=episode.context,
        )
        message = self.plugins.first("gkjk_alarm_message", alarm=alarm, enterprise=enterprise) or ""
        log.info("alarm {state}: {message}", state=state, message=message)
        tags = {"ent": enterprise.id, "county": enterprise.county, "fac": condition.subject, "rule": rule.name,
                "severity": rule.severity}
        fields = {"id": episode.id, "state": state, "active": int(state == "open"), "message": message,
                  "started": episode.started, "duration_s": held,
                  "context": json.dumps(dict(episode.context), ensure_ascii=False, sort_keys=True)}
        return point("alarm", tags, fields, time)

    def tick(self, now: float) -> Deferred[None]:
        """One evaluation for the LoopingCall: failures are logged, never stop the loop."""
        d = Deferred.fromCoroutine(self.evaluate(now))
        d.addCallbacks(
            lambda r: log.info("rules: {opened} opened, {closed} closed, {retracted} retracted, {states} states, "
                               "{controls} control points; plugin failures {failures}", opened=r.opened,
                               closed=r.closed, retracted=r.retracted, states=r.states, controls=r.controls,
                               failures=dict(self.plugins.failures)),
            lambda f: log.failure("rules evaluation failed", f),
        )
        return d


def run(config: Config) -> None:
    """`gkjk rules`: evaluate every `[rules] interval` seconds until SIGTERM/SIGINT; SIGHUP reloads the registry."""
    import sys

    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from gkjk.registry import RegistryHolder
    from ingest_twisted.server import influx_client, reload_registry_on_sighup

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    holder = RegistryHolder(Path(config.registry.path))
    plugins = Plugins(parse_disabled(config.rules.disabled_plugins))
    plugins.check_thresholds(config.rules.thresholds)  # an unknown key or industry stops the start (ConfigError)
    log.info("rule plugins: {names}", names=", ".join(plugins.names))
    client = influx_client(config, reactor)
    engine = Engine(client, lambda: holder.current, plugins, config.rules, config.ingest.timezone)
    loop = LoopingCall(lambda: engine.tick(reactor.seconds()))
    loop.clock = reactor

    def started() -> None:
        ensured = client.ensure_database()
        ensured.addErrback(lambda f: log.failure("cannot create the database; evaluating anyway", f))
        ensured.addCallback(lambda _: loop.start(config.rules.interval, now=True))

    reload_registry_on_sighup(holder, reactor)
    reactor.callWhenRunning(started)
    reactor.run()
