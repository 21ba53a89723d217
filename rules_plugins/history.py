"""Hourly statistics of the real-time data over the last `[rules] history_hours`, for rules that judge 24 hours or
a day (`flat`, `transmission`) while the engine reads only an hour of minute means.

Per (MN, factor) and complete clock hour the lowest and highest value, per MN and hour the real-time records
received (a record is one DataTime). The span is loaded from InfluxDB with aggregate queries when the engine
starts (or when it fell behind by more than the minutes it reads), while the engine parses its readings; after
that the engine's own readings keep it up to date for free: every evaluation recomputes the complete hours its
readings cover whole (with the default 60 + 10 minutes, the previous hour during the first 10 minutes of the
next), so late data is counted as long as it falls inside what the engine reads; older late data (a logger
replaying hours after an outage) is picked up by a reload of the span in the background every `[rules]
history_reload_minutes` of data time, which the engine does not wait for. InfluxDB's GROUP BY time(1h) over one hour took longer than the engine's whole raw read of 70
minutes, so it is used only for the span the readings do not hold. Hours before the span, or not yet loaded,
are unknown (None), never zero.
"""

from __future__ import annotations

import math
from array import array
from datetime import datetime, timedelta

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zoneinfo import ZoneInfo

from gkjk.registry import Registry
from ingest_twisted.influx import InfluxClient
from rules_plugins.site import Readings

log = Logger()

HOUR = 3600


class Hours:
    """Per key, `width` numbers per hour for the last `slots` hours, in arrays indexed by the hour's number modulo
    `slots`: a dict of tuples per hour took about six times the memory (a province has 100,000+ meters)."""

    def __init__(self, slots: int, width: int, typecode: str) -> None:
        self.slots, self.width, self.typecode = slots, width, typecode
        self.stamps: dict[object, array[int]] = {}  # per key: the hour each slot holds, -1 for none
        self.numbers: dict[object, array[float]] = {}  # per key: `width` numbers per slot

    def get(self, key: object, hour: int) -> tuple[float, ...] | None:
        stamps = self.stamps.get(key)
        i = hour // HOUR % self.slots
        if stamps is None or stamps[i] != hour:
            return None
        if self.width == 2:  # asked for every point and hour: spare the slice
            numbers = self.numbers[key]
            return numbers[2 * i], numbers[2 * i + 1]
        return tuple(self.numbers[key][i * self.width:(i + 1) * self.width])

    def put(self, key: object, hour: int, numbers: tuple[float, ...]) -> None:
        stamps = self.stamps.get(key)
        if stamps is None:
            stamps = self.stamps[key] = array("q", [-1]) * self.slots
            self.numbers[key] = array(self.typecode, [0]) * (self.slots * self.width)
        i = hour // HOUR % self.slots
        stamps[i] = hour
        self.numbers[key][i * self.width:(i + 1) * self.width] = array(self.typecode, numbers)

    def drop(self, key: object, hour: int) -> None:
        stamps = self.stamps.get(key)
        if stamps is not None and stamps[hour // HOUR % self.slots] == hour:
            stamps[hour // HOUR % self.slots] = -1

    def replace(self, start: int, end: int, other: Hours) -> None:
        """Hours [start, end) become exactly what `other` holds for them."""
        for stamps in self.stamps.values():
            for i, hour in enumerate(stamps):
                if start <= hour < end:
                    stamps[i] = -1
        for key, stamps in other.stamps.items():
            numbers = other.numbers[key]
            for i, hour in enumerate(stamps):
                if start <= hour < end:
                    self.put(key, hour, tuple(numbers[i * self.width:(i + 1) * self.width]))


class History:
    """Per hour: (lowest, highest) value of every (MN, factor), records of every MN; hours in [since, until)."""

    def __init__(self, hours: int, reload_minutes: int = 60, zone: str = "Asia/Shanghai") -> None:
        self.hours = hours
        self.reload_minutes = reload_minutes
        self.zone = ZoneInfo(zone)
        self.extremes, self.counts = self.tables()  # keys (MN, factor) and MN
        self.since: int | None = None  # first hour known
        self.until: int | None = None  # end of the last complete hour known
        self.loaded = 0  # data time (epoch s) of the last load or reload from InfluxDB
        self.reloading: Deferred[None] | None = None  # the background reload under way
        self._days: dict[int, range] = {}  # local midnight -> the day's hours

    def tables(self) -> tuple[Hours, Hours]:
        return Hours(self.hours + 2, 2, "d"), Hours(self.hours + 2, 1, "q")

    def known(self, hour: int) -> bool:
        return self.since is not None and self.until is not None and self.since <= hour < self.until

    def extreme(self, mn: str, factor: str, hour: int) -> tuple[float, ...] | None:
        """(lowest, highest) value of a complete hour; None if unknown or the point sent nothing."""
        return self.extremes.get((mn, factor), hour) if self.known(hour) else None

    def records(self, mn: str, hour: int) -> int | None:
        """Real-time records of a device in a complete hour; None if the hour is unknown."""
        if not self.known(hour):
            return None
        count = self.counts.get(mn, hour)
        return int(count[0]) if count else 0

    def day_start(self, moment: int) -> int:
        """Epoch s of the local midnight (`[ingest] timezone`) that begins the day of `moment`."""
        local = datetime.fromtimestamp(moment, self.zone)
        return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())

    def day_hours(self, day: int) -> range:
        """The hours of the local day that starts at `day` (23 or 25 where daylight saving time shifts)."""
        hours = self._days.get(day)
        if hours is None:
            following = datetime.fromtimestamp(day, self.zone) + timedelta(days=1, hours=2)
            end = int(following.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
            hours = self._days[day] = range(day, end, HOUR)
        return hours

    async def catch_up(self, client: InfluxClient, registry: Registry, first: int, end: int) -> None:
        """Load the hours the readings of [first, end) will not hold (at start, or after falling behind), or start
        a background reload when due. Needs only the window, so the engine runs it while its read is under way."""
        current, oldest = self.span(end)
        covered = min(-(-first // HOUR) * HOUR, current)  # first hour the readings hold whole
        missing = oldest if self.until is None else max(self.until, oldest)
        if missing < covered:
            self.replace(missing, covered, *await self.load(client, registry, missing, covered))
            self.loaded = end
        elif self.reload_minutes and self.reloading is None and end - self.loaded >= self.reload_minutes * 60:
            self.loaded = end
            self.reloading = Deferred.fromCoroutine(self.reload(client, registry, oldest, covered))

    def advance(self, readings: Readings) -> None:
        """Fold the complete hours the readings cover whole; the statistics then reach the current hour (after
        `catch_up` for the same window)."""
        current, oldest = self.span(readings.end)
        for hour in range(min(-(-readings.first // HOUR) * HOUR, current), current, HOUR):
            self.fold(readings, hour)
        self.since, self.until = oldest, current

    def span(self, end: int) -> tuple[int, int]:
        """(current hour, oldest hour kept) for a window ending at `end`."""
        current = end - end % HOUR
        return current, current - self.hours * HOUR

    async def reload(self, client: InfluxClient, registry: Registry, start: int, end: int) -> None:
        """Read hours [start, end) again (late data) and swap them in; a failure keeps what was there."""
        try:
            self.replace(start, end, *await self.load(client, registry, start, end))
        except Exception:
            log.failure("reloading the hourly statistics failed; keeping the ones known")
        finally:
            self.reloading = None

    def replace(self, start: int, end: int, extremes: Hours, counts: Hours) -> None:
        self.extremes.replace(start, end, extremes)
        self.counts.replace(start, end, counts)

    async def load(self, client: InfluxClient, registry: Registry, start: int, end: int) -> tuple[Hours, Hours]:
        """Hours [start, end) from InfluxDB: count, min and max of every registered factor, per MN and hour (the
        records of an hour: its most frequent factor's count). One statement per aggregate, sent together, so
        InfluxDB computes them on several cores while the answers are parsed (one statement with all three took
        twice as long); `fill(none)` leaves out the hours without data (rows of nulls, which added nothing)."""
        extremes, counts = self.tables()
        factors = sorted({p.factor.lower() for ref in registry.devices.values() for p in ref.device.points})
        if not factors:
            return extremes, counts
        fields = f'/(?i)^({"|".join(factors)})-Rtd$/'
        answers = [client.query(f'SELECT {aggregate}({fields}) FROM "rtd" WHERE time >= {start}s AND time < {end}s '
                                'GROUP BY time(1h), "mn" fill(none)', epoch="s")
                   for aggregate in ("count", "min", "max")]
        try:
            for aggregate, answer in zip(("count", "min", "max"), answers):
                self.parse(aggregate, await answer, registry, extremes, counts)
        finally:
            for answer in answers:
                answer.addErrback(lambda _: None)  # one failed: the others' outcome is of no interest
        return extremes, counts

    @staticmethod
    def parse(aggregate: str, result: dict, registry: Registry, extremes: Hours, counts: Hours) -> None:
        """Fold one aggregate's answer in; the same MN in another letter case adds to the same keys. Lows are
        stored with the highest value unknown (-inf) until the `max` answer fills it in."""
        for series in result["results"][0].get("series", []):
            mn = series["tags"]["mn"].upper()
            if mn not in registry.devices:
                continue
            factors = [c.partition("_")[2][:-len("-Rtd")].lower() for c in series["columns"][1:]]
            for hour, *values in series["values"]:
                if aggregate == "count":
                    records = max((v for v in values if v is not None), default=0)
                    if records:
                        counts.put(mn, hour, (records + (counts.get(mn, hour) or (0,))[0],))
                    continue
                for factor, value in zip(factors, values):
                    if value is None:
                        continue
                    key = (mn, factor)
                    known = extremes.get(key, hour)
                    if aggregate == "min":
                        extremes.put(key, hour,
                                     (value, -math.inf) if known is None else (min(value, known[0]), known[1]))
                    elif known is not None:
                        extremes.put(key, hour, (known[0], max(value, known[1])))

    def fold(self, readings: Readings, hour: int) -> None:
        """Recompute one complete hour from the readings (minute means of the minutes that received a record)."""
        received: dict[str, list[int]] = {}
        for mn, minutes in readings.records.items():
            in_hour = [m for m in minutes if hour <= m < hour + HOUR]
            self.counts.drop(mn, hour)
            if in_hour:
                received[mn] = in_hour
                self.counts.put(mn, hour, (sum(minutes[m] for m in in_hour),))
        for (mn, factor), series in readings.values.items():
            self.extremes.drop((mn, factor), hour)
            values = [series[m] for m in received.get(mn, ()) if m in series]
            if values:
                self.extremes.put((mn, factor), hour, (min(values), max(values)))


def hour_of(minute: int) -> int:
    """The clock hour (epoch s, UTC; local hours are whole hours in China) a minute belongs to."""
    return minute - minute % HOUR
