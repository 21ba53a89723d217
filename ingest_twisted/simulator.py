"""A fleet of simulated data loggers playing a site registry over real TCP.

Each registered device connects to the platform like a real 数采仪: it sends
real-time data (2011) every RtdInterval and minute (2051) and hour (2061)
aggregates, keeps every upload until the platform acknowledges it (9014),
re-sends what is unacknowledged after a reconnect, answers backfill requests
from its history, and answers time commands. Values follow a daily production
schedule per enterprise, with treatment started before and stopped after
production. During a heavy-pollution alert period (the period files of
rules_plugins.emergency_periods) an enterprise on the emergency-control list
obeys like most real ones do: its 停产 lines stop (the treatment follows as
after any stop) and its 限产 lines run under their load cap. Optional faults:
outages (the device goes away and replays its stored records when back),
malformed frames, wrong values (`Faults`) and alerts ignored.

Time can be compressed (`--speed`): simulated seconds per real second.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from twisted.internet.protocol import ReconnectingClientFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from gkjk.config import Config
from gkjk.registry import Device, Enterprise, Point, load_registry
from ingest_twisted.hj212 import replies, sm4
from ingest_twisted.hj212.frame import Frame, encode_frame
from ingest_twisted.hj212.packet import CP, Packet, PacketError, build_segment, parse_segment
from ingest_twisted.protocol import HJ212Receiver
from rules_plugins.control import DEFAULT_LOAD_CAP, KW, controlled, requirement
from rules_plugins.emergency_periods import EmergencyPeriods, Period, strictest

log = Logger()

#: Devices keep at least this many unacknowledged uploads (the terminal requirement is >= 4000).
STORE_LIMIT = 10_000
VERSION_FLAG = {"2005": 0, "2017": 4, "2025": 8}
#: Rated value of a point the registry gives none.
DEFAULT_RATED = 50.0
#: Minutes between minute-data (2051) records.
MINUTE_PERIOD = 10
TIME_FORMAT = "%Y%m%d%H%M%S"


def qn_of(moment: datetime, sequence: int) -> str:
    """QN is YYYYMMDDhhmmsszzz; the counter keeps QNs unique within a second."""
    return moment.strftime(TIME_FORMAT) + f"{sequence % 1000:03d}"


# --- what the devices measure -------------------------------------------------------------------------------------


@dataclass
class Schedule:
    """Daily production shifts of one enterprise; treatment runs from `lead` before to `lag` after."""

    shifts: list[tuple[float, float]]
    lead: timedelta = timedelta(minutes=10)
    lag: timedelta = timedelta(minutes=10)

    @classmethod
    def for_enterprise(cls, rng: random.Random) -> Schedule:
        start = 7.0 + rng.random() * 1.5
        return cls(shifts=[(start, 11.5), (12.5, 18.5 + rng.random() * 2)])

    def producing(self, moment: datetime) -> bool:
        hour = moment.hour + moment.minute / 60 + moment.second / 3600
        return any(a <= hour < b for a, b in self.shifts)

    def treating(self, moment: datetime) -> bool:
        return self.producing(moment + self.lead) or self.producing(moment - self.lag) or self.producing(moment)


@dataclass
class Faults:
    """Faults a scenario injects into a device's values (rule tests and the demo use them)."""

    treatment_off: bool = False
    low_load: bool = False
    burner_cold: bool = False
    spray_off: bool = False
    flat: bool = False


#: The fault that is no value: the enterprise ignores alert periods, its controlled lines keep full production.
EMERGENCY_IGNORED = "emergency_ignored"
#: Every fault `--fault` accepts; `--fault-share` draws one of `Faults` (in this order: a seed keeps its faults).
FAULT_NAMES = (*(f.name for f in fields(Faults)), EMERGENCY_IGNORED)
#: A running line draws this share of its rated current, and this share of it as power.
RUNNING_CURRENT, RUNNING_POWER = 0.75, 0.7
#: A 限产 line runs at this share of its cap: under it, with room for the noise.
LIMITED_SHARE = 0.8


class EmergencyMeasures:
    """What the alert periods covering an enterprise ask of its controlled lines at a simulated moment (the
    judgement of rules_plugins.control: the same periods, level overrides and caps)."""

    def __init__(self, enterprise: Enterprise, periods: Sequence[Period], zone: ZoneInfo, default_cap: float) -> None:
        self.lines = {line.id: line for line in controlled(enterprise)}
        self.periods = [p for p in periods if p.covers(enterprise)]
        self.zone = zone
        self.default_cap = default_cap
        # The engine sums a line's phase-less active_power points, else its phases: how many share the line's power.
        self.power_points = Counter((p.facility, p.phase is None) for d in enterprise.devices for p in d.points
                                    if p.quantity == "active_power")

    def requirement(self, facility_id: str, moment: datetime) -> tuple[str, float | None] | None:
        """(停产 or 限产, cap in % of the load base) in force for a line at a local moment; None: nothing asked."""
        line = self.lines.get(facility_id)
        if line is None:
            return None
        period = strictest(self.periods, int(moment.replace(tzinfo=self.zone).timestamp()))
        return None if period is None else requirement(line, period, self.default_cap)


class DeviceModel:
    """The values a device's points would read at a given moment."""

    def __init__(self, device: Device, enterprise: Enterprise, schedule: Schedule, rng: random.Random) -> None:
        self.device = device
        self.enterprise = enterprise
        self.schedule = schedule
        self.rng = rng
        self.faults = Faults()
        self.ignores_emergency = False
        self.emergency: EmergencyMeasures | None = None  # the alerts in force that it obeys (Fleet sets it)
        self.energy: dict[str, float] = {}
        self.run_hours: dict[str, float] = {}
        self._flat: dict[str, float] = {}

    def running(self, facility_id: str, moment: datetime) -> bool:
        facility = self.enterprise.facility(facility_id)
        if facility is None or facility.role == "production":
            return self.producing(facility_id, moment)
        if self.faults.treatment_off:
            return False
        if self.emergency is None:
            return self.schedule.treating(moment)
        # From `lead` before to `lag` after any line it serves, a line stopped by an alert included.
        return any(self.producing(line, at) for line in facility.serves
                   for at in (moment, moment + self.schedule.lead, moment - self.schedule.lag))

    def producing(self, line_id: str, moment: datetime) -> bool:
        """A production line runs in its shifts, unless an alert in force stops it."""
        if not self.schedule.producing(moment):
            return False
        required = self.emergency.requirement(line_id, moment) if self.emergency is not None else None
        return required is None or required[0] != "停产"

    def limited(self, point: Point, moment: datetime) -> float:
        """The factor a 限产 line's load quantities are turned down by, so that the load the engine measures
        (rules_plugins.control.loads: current over `normal` else `rated`; active power over the line's
        `rated_power`) is LIMITED_SHARE of the cap; 1 without a cap in force."""
        required = self.emergency.requirement(point.facility, moment) if self.emergency is not None else None
        if required is None or required[1] is None:
            return 1.0
        target = LIMITED_SHARE * required[1] / 100
        rated = point.rated or DEFAULT_RATED
        if point.quantity == "current":
            return min(1.0, target * (point.normal or rated) / (rated * RUNNING_CURRENT))
        line = self.enterprise.facility(point.facility)
        if point.quantity == "active_power" and line.rated_power:
            kw = line.rated_power * target / self.emergency.power_points[(point.facility, point.phase is None)]
            return min(1.0, kw / KW.get(point.unit, 1.0) / (rated * RUNNING_POWER))
        return min(1.0, target / RUNNING_CURRENT)

    def sample(self, moment: datetime, step_seconds: float) -> dict[str, float]:
        values = {}
        for point in self.device.points:
            value = self._value(point, moment, step_seconds)
            # A logger replaying a made-up number: the point's first reading while its facility runs, sent from then
            # on whatever the facility does (a number frozen while off would read as a stopped facility, not flat data).
            if self.faults.flat and (point.factor in self._flat or self.running(point.facility, moment)):
                value = self._flat.setdefault(point.factor, value)
            values[point.factor] = round(value, 3)
        return values

    def _value(self, point, moment: datetime, step_seconds: float) -> float:
        on = self.running(point.facility, moment)
        scale = self.limited(point, moment) if on and self.emergency is not None else 1.0
        noise = self.rng.gauss
        rated = point.rated or DEFAULT_RATED
        quantity = point.quantity
        if quantity in ("current", "fan_current"):
            load = 0.35 if (self.faults.low_load and quantity == "fan_current") else RUNNING_CURRENT
            return max(0.0, (rated * load + noise(0, rated * 0.02)) * scale) if on else abs(noise(0, 0.05))
        if quantity == "voltage":
            return 220 + noise(0, 1.5)
        if quantity in ("active_power", "demand", "apparent_power"):
            return max(0.0, (rated * RUNNING_POWER + noise(0, rated * 0.03)) * scale) if on else abs(noise(0, 0.02))
        if quantity == "reactive_power":
            return max(0.0, (rated * 0.3 + noise(0, rated * 0.02)) * scale) if on else 0.0
        if quantity == "power_factor":
            return min(1.0, 0.92 + noise(0, 0.01)) if on else 0.0
        if quantity == "frequency":
            return 50 + noise(0, 0.02)
        if quantity in ("energy", "reactive_energy"):
            rate = (rated * RUNNING_POWER * scale if on else 0.01) * step_seconds / 3600
            self.energy[point.factor] = self.energy.get(point.factor, 1000.0 * self.rng.random()) + rate
            return self.energy[point.factor]
        if quantity in ("switch", "spray"):
            return 1.0 if on and not (quantity == "spray" and self.faults.spray_off) else 0.0
        if quantity == "temperature":
            if on:
                base = 650 if self.faults.burner_cold else 810
                return base + noise(0, 8)
            return 40 + noise(0, 2)
        if quantity == "ph":
            return 7.4 + noise(0, 0.2)
        if quantity in ("carbon_hours", "run_time"):
            hours = self.run_hours.get(point.factor, 100 * self.rng.random())
            if on:
                hours += step_seconds / 3600
            self.run_hours[point.factor] = hours
            return hours
        if quantity == "pressure":
            return 1200 + noise(0, 30) if on else 0.0
        if quantity == "humidity":
            return 60 + noise(0, 3)
        if quantity in ("flow", "velocity"):
            return max(0.0, (rated * 0.8 + noise(0, rated * 0.05)) * scale) if on else 0.0
        return max(0.0, 20 + noise(0, 2))


# --- the device ---------------------------------------------------------------------------------------------------


@dataclass
class Window:
    """Real-time samples of one aggregation period, for Avg/Min/Max."""

    start: datetime
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, values: dict[str, float]) -> None:
        for code, value in values.items():
            self.samples.setdefault(code, []).append(value)

    def cp(self) -> CP:
        factors = {
            code: {"Avg": f"{sum(v) / len(v):.3f}", "Min": f"{min(v):.3f}", "Max": f"{max(v):.3f}", "Flag": "N"}
            for code, v in self.samples.items() if v
        }
        return CP(data_time=self.start.strftime(TIME_FORMAT), factors=factors)


class SimulatedDevice:
    """A data logger: produces records on a (possibly compressed) clock and keeps them until acknowledged."""

    def __init__(self, model: DeviceModel, fleet: Fleet) -> None:
        self.model = model
        self.device = model.device
        self.fleet = fleet
        self.version = self.device.protocol.rsplit("-", 1)[-1]
        self.unacked: OrderedDict[str, bytes] = OrderedDict()
        self.history: dict[str, OrderedDict[str, CP]] = {"2051": OrderedDict(), "2061": OrderedDict()}
        self.connection: DeviceProtocol | None = None
        self.offline_until: datetime | None = None
        self.sequence = 0
        self.windows: dict[str, Window] = {}
        self.dropped = 0
        self.factory = DeviceFactory(self)

    # records

    def packet(self, cn: str, cp: CP, moment: datetime, ack: bool = True) -> Packet:
        self.sequence += 1
        flag = VERSION_FLAG[self.version] | (1 if ack else 0)
        st = "32" if self.version != "2025" else "44"
        return Packet(qn=qn_of(moment, self.sequence), st=st, cn=cn, pw=self.device.pw, mn=self.device.mn,
                      flag=flag, pnum=None, pno=None, cp=cp, extra={})

    def tick(self, moment: datetime, step: float) -> None:
        """One real-time interval has passed in simulated time."""
        values = self.model.sample(moment, step)
        cp = CP(data_time=moment.strftime(TIME_FORMAT),
                factors={code: {"Rtd": f"{v:.3f}", "Flag": "N"} for code, v in values.items()})
        self.upload(self.packet("2011", cp, moment))
        for cn, length in (("2051", timedelta(minutes=MINUTE_PERIOD)), ("2061", timedelta(hours=1))):
            start = period_start(moment, length)
            window = self.windows.get(cn)
            if window is not None and window.start != start:
                aggregate = window.cp()
                self.history[cn][aggregate.data_time] = aggregate
                if len(self.history[cn]) > 500:
                    self.history[cn].popitem(last=False)
                self.upload(self.packet(cn, aggregate, moment))
                window = None
            if window is None:
                window = self.windows[cn] = Window(start)
            window.add(values)

    def upload(self, packet: Packet) -> None:
        segment = build_segment(packet)
        key = self.device.sm4_key
        frame = sm4.encode_encrypted_frame(segment, key) if key else encode_frame(segment)
        self.unacked[packet.qn] = frame
        if len(self.unacked) > STORE_LIMIT:
            self.unacked.popitem(last=False)
            self.dropped += 1
        if self.connection is not None:
            self.connection.send(frame)

    def acknowledged(self, qn: str) -> None:
        if self.unacked.pop(qn, None) is not None:
            self.fleet.acked += 1

    # connection

    def connected(self, connection: DeviceProtocol) -> None:
        self.connection = connection
        for frame in list(self.unacked.values()):
            connection.send(frame)

    def disconnected(self) -> None:
        self.connection = None

    def go_offline(self, until: datetime) -> None:
        self.offline_until = until
        self.factory.stopTrying()
        if self.connection is not None:
            self.connection.transport.abortConnection()

    def maybe_come_back(self, now: datetime) -> None:
        if self.offline_until is not None and now >= self.offline_until:
            self.offline_until = None
            self.fleet.connect(self)

    # platform commands

    def command(self, packet: Packet, now: datetime) -> None:
        if packet.cn == "9014":
            self.acknowledged(packet.qn)
        elif packet.cn in ("2051", "2061") and "BeginTime" in packet.cp.params:
            self.answer_backfill(packet)
        elif packet.cn in ("1011", "1012", "1061", "1062"):
            self.connection.sendPacket(replies.qn_rtn(packet, 1))
            if packet.cn == "1011":
                cp = CP(params={"SystemTime": now.strftime(TIME_FORMAT)})
                self.connection.sendPacket(self.packet("1011", cp, now, ack=False))
            self.connection.sendPacket(replies.exe_rtn(packet, 1))
        elif packet.cn == "9011" and packet.cp.params.get("QnRtn") not in (None, "1"):
            log.warn("MN {mn}: platform refused QN {qn} with QnRtn={code}",
                     mn=self.device.mn, qn=packet.qn, code=packet.cp.params.get("QnRtn"))

    def answer_backfill(self, request: Packet) -> None:
        """QnRtn, then each stored record in the range (each with its own QN), then ExeRtn (HJ 212 6.6)."""
        connection = self.connection
        connection.sendPacket(replies.qn_rtn(request, 1))
        begin, end = request.cp.params.get("BeginTime", ""), request.cp.params.get("EndTime", "")
        now = self.fleet.now()
        for data_time, cp in self.history[request.cn].items():
            if begin <= data_time <= end:
                self.upload(self.packet(request.cn, cp, now))
        connection.sendPacket(replies.exe_rtn(request, 1))
        self.fleet.backfills_answered += 1


def period_start(moment: datetime, length: timedelta) -> datetime:
    seconds = int(length.total_seconds())
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = int((moment - midnight).total_seconds())
    return midnight + timedelta(seconds=elapsed - elapsed % seconds)


class DeviceProtocol(HJ212Receiver):
    """The device's side of the TCP connection."""

    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device

    def connectionMade(self) -> None:
        super().connectionMade()
        self.device.factory.resetDelay()
        self.device.connected(self)

    def connectionLost(self, reason=None) -> None:
        self.device.disconnected()

    def send(self, frame: bytes) -> None:
        if self.device.fleet.rng.random() < self.device.fleet.bad_frame_rate:
            self.transport.write(corrupt(frame, self.device.fleet.rng))
            self.device.fleet.bad_frames += 1
        self.transport.write(frame)

    def frameReceived(self, frame: Frame) -> None:
        try:
            packet = parse_segment(frame.segment)
        except PacketError:
            return
        self.device.command(packet, self.device.fleet.now())


def corrupt(frame: bytes, rng: random.Random) -> bytes:
    """A malformed frame of the kinds real devices send: bad CRC, bad length, or line noise."""
    kind = rng.randrange(3)
    if kind == 0:
        return frame[:-6] + b"0000\r\n"
    if kind == 1:
        return b"##9999" + frame[6:]
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))


class DeviceFactory(ReconnectingClientFactory):
    maxDelay = 30
    initialDelay = 0.5

    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device

    def buildProtocol(self, addr) -> DeviceProtocol:
        return DeviceProtocol(self.device)


# --- the fleet ----------------------------------------------------------------------------------------------------


class Fleet:
    """All simulated devices of a registry, on one compressed clock."""

    def __init__(self, registry_path: Path, host: str, port: int, speed: float = 1.0, seed: int = 1,
                 timezone: str = "Asia/Shanghai", start: datetime | None = None, bad_frame_rate: float = 0.0,
                 outage_rate: float = 0.0, outage_minutes: float = 30.0, limit: int | None = None,
                 fault_share: float = 0.0, faults: dict[str, list[str]] | None = None,
                 skip_enterprises: frozenset[str] = frozenset(), emergency_path: Path | None = None,
                 load_cap: float = DEFAULT_LOAD_CAP, reactor=None) -> None:
        """`emergency_path`: the directory of alert-period files the enterprises obey (None: no alerts);
        `load_cap`: the cap of a 限产 line without its own (the engine's threshold `emergency_load_cap`)."""
        if reactor is None:
            from twisted.internet import reactor
        self.registry = load_registry(registry_path)
        self.host, self.port = host, port
        self.speed = speed
        self.rng = random.Random(seed)
        self.zone = ZoneInfo(timezone)
        self.reactor = reactor
        self.bad_frame_rate = bad_frame_rate
        self.outage_rate = outage_rate
        self.outage_minutes = outage_minutes
        self.alerts = EmergencyPeriods(emergency_path, self.zone)
        self.load_cap = load_cap
        self._alerts_followed: list[Period] | None = None
        self.real_start = reactor.seconds()
        self.sim_start = start or datetime.now(self.zone).replace(tzinfo=None, microsecond=0)
        self.acked = 0
        self.bad_frames = 0
        self.backfills_answered = 0
        self.devices: list[SimulatedDevice] = []
        self._next_tick: dict[int, datetime] = {}
        # A stream of its own, so that choosing who ignores alerts leaves every other fault where a seed put it.
        ignoring = random.Random(f"emergency-{seed}")
        for enterprise in self.registry.enterprises.values():
            schedule = Schedule.for_enterprise(self.rng)
            if enterprise.id in skip_enterprises:
                continue
            controlled_lines = {line.id for line in controlled(enterprise)}
            for device in enterprise.devices:
                if limit is not None and len(self.devices) >= limit:
                    break
                model = DeviceModel(device, enterprise, schedule, self.rng)
                chosen = list((faults or {}).get(device.mn.upper(), ()))
                if self.rng.random() < fault_share:
                    chosen.append(self.rng.choice([f.name for f in fields(Faults)]))
                if any(p.facility in controlled_lines for p in device.points) and ignoring.random() < fault_share:
                    chosen.append(EMERGENCY_IGNORED)
                for fault in chosen:
                    if fault == EMERGENCY_IGNORED:
                        model.ignores_emergency = True
                    else:
                        setattr(model.faults, fault, True)
                    log.info("MN {mn} ({name}) plays fault {fault}", mn=device.mn, name=enterprise.name, fault=fault)
                self.devices.append(SimulatedDevice(model, self))
        played = {d.device.mn.upper() for d in self.devices}
        for mn in sorted(set(faults or {}) - played):
            log.warn("--fault for MN {mn}: no such device is played; ignored", mn=mn)
        self._loop = LoopingCall(self.step)
        self._loop.clock = reactor

    def now(self) -> datetime:
        """Simulated local wall time."""
        return self.sim_start + timedelta(seconds=(self.reactor.seconds() - self.real_start) * self.speed)

    def follow_alerts(self) -> None:
        """Give every obeying device the periods covering its enterprise, again whenever the period files change
        (a broken set is refused and the last good one kept, as in the engine)."""
        periods = self.alerts.current()
        if periods is self._alerts_followed:
            return
        self._alerts_followed = periods
        plans: dict[str, EmergencyMeasures | None] = {}
        for device in self.devices:
            model = device.model
            enterprise = model.enterprise
            if enterprise.id not in plans:
                plan = EmergencyMeasures(enterprise, periods, self.zone, self.load_cap)
                plans[enterprise.id] = plan if plan.lines and plan.periods else None
            model.emergency = None if model.ignores_emergency else plans[enterprise.id]

    def connect(self, device: SimulatedDevice) -> None:
        device.factory.continueTrying = True
        device.factory.resetDelay()
        self.reactor.connectTCP(self.host, self.port, device.factory, timeout=10)

    def start(self) -> None:
        now = self.now()
        for index, device in enumerate(self.devices):
            # Spread the first uploads over a few seconds, not a whole interval: the fleet shows up at once.
            offset = self.rng.random() * min(5.0, device.device.rtd_interval)
            self._next_tick[index] = now + timedelta(seconds=offset)
            self.connect(device)
        self._loop.start(0.1, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        for device in self.devices:
            device.factory.stopTrying()
            if device.connection is not None:
                device.connection.transport.loseConnection()

    def step(self) -> None:
        self.follow_alerts()
        now = self.now()
        for index, device in enumerate(self.devices):
            device.maybe_come_back(now)
            interval = timedelta(seconds=device.device.rtd_interval)
            while self._next_tick[index] <= now:
                device.tick(self._next_tick[index], interval.total_seconds())
                self._next_tick[index] += interval
                if device.offline_until is None and self.rng.random() < self.outage_rate:
                    device.go_offline(now + timedelta(minutes=self.outage_minutes))

    def status(self) -> str:
        connected = sum(d.connection is not None for d in self.devices)
        stored = sum(len(d.unacked) for d in self.devices)
        return (f"simulated {self.now():%Y-%m-%d %H:%M:%S} | devices {len(self.devices)} connected {connected}"
                f" | acked {self.acked} | awaiting ack {stored} | bad frames sent {self.bad_frames}"
                f" | backfills answered {self.backfills_answered}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="registry to play (default: [registry] path of the config)")
    parser.add_argument("--host", default="127.0.0.1", help="platform address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="platform port (default: the port of [ingest] listen)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--limit", type=int, help="play at most this many devices")
    parser.add_argument("--bad-frame-rate", type=float, default=0.0,
                        help="share of uploads preceded by a malformed frame (default 0)")
    parser.add_argument("--outage-rate", type=float, default=0.0,
                        help="chance per real-time interval that a device goes offline (default 0)")
    parser.add_argument("--outage-minutes", type=float, default=30.0,
                        help="simulated minutes an outage lasts (default 30)")
    parser.add_argument("--fault-share", type=float, default=0.0,
                        help="share of devices that play one fault: treatment off, low load, burner cold,"
                             " spray off or flat data; and, drawn apart, share of the devices measuring lines"
                             " under emergency control that ignore alert periods (default 0)")
    parser.add_argument("--fault", action="append", default=[], metavar="MN=FAULT", type=fault_argument,
                        help="make device MN play FAULT (one of: " + ", ".join(FAULT_NAMES) + "); repeatable")
    parser.add_argument("--emergency-path", metavar="DIR",
                        help="directory of alert-period files the enterprises on the emergency-control list obey"
                             " (default: [rules] emergency_path of the config; empty: none)")
    parser.add_argument("--skip-enterprise", action="append", default=[], metavar="ID",
                        help="do not play this enterprise's devices (an emulated site plays them); repeatable")
    parser.add_argument("--start", type=start_argument, metavar="YYYY-MM-DDTHH:MM",
                        help="simulated local start time (default: now)")
    parser.add_argument("--status-every", type=float, default=10.0, help="seconds between status lines (0: none)")


def fault_argument(text: str) -> tuple[str, str]:
    mn, _, fault = text.partition("=")
    if not mn.strip() or fault.strip() not in FAULT_NAMES:
        raise argparse.ArgumentTypeError(f"expected MN=FAULT with FAULT one of {', '.join(FAULT_NAMES)}: {text!r}")
    return mn.strip().upper(), fault.strip()


def start_argument(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DDTHH:MM (local time): {text!r}") from None


def faults_by_mn(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    faults: dict[str, list[str]] = {}
    for mn, fault in pairs:
        faults.setdefault(mn, []).append(fault)
    return faults


def main(args: argparse.Namespace, config: Config) -> None:
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    emergency_path = config.rules.emergency_path if args.emergency_path is None else args.emergency_path
    load_cap = config.rules.thresholds.get("emergency_load_cap", DEFAULT_LOAD_CAP)
    fleet = Fleet(
        Path(args.registry or config.registry.path), args.host, args.port or config.ingest.port,
        speed=args.speed, seed=args.seed, timezone=config.ingest.timezone, bad_frame_rate=args.bad_frame_rate,
        outage_rate=args.outage_rate, outage_minutes=args.outage_minutes, limit=args.limit,
        fault_share=args.fault_share, start=args.start, faults=faults_by_mn(args.fault),
        skip_enterprises=frozenset(e.upper() for e in args.skip_enterprise),
        emergency_path=Path(emergency_path) if emergency_path else None, load_cap=load_cap,
    )
    fleet.start()
    if args.status_every > 0:
        LoopingCall(lambda: print(fleet.status(), flush=True)).start(args.status_every, now=False)
    reactor.addSystemEventTrigger("before", "shutdown", fleet.stop)
    reactor.run()
