"""活性炭需更换: an activated-carbon adsorber has run more adsorption hours since its last replacement than its
design cycle (the facility's `design_hours`, else `carbon_design_hours`); saturated carbon adsorbs nothing.

Replacements are the `carbon` records (written by `gkjk carbon replaced`, see docs/schema.md) and the facility's
`last_replaced` in the registry; each minute counts from the last replacement at or before it. The hours come from

- the facility's `carbon_hours` points (the data logger's adsorption-hours counter): the counter minus its first
  reading at or after the replacement, or the counter itself when no replacement is known or the logger reset it
  (a reading below that baseline);
- otherwise the run state of the adsorber, or of a metered `fan` serving the same production: running minutes
  since the replacement, from the `state` measurement before the minutes read and from the readings after. An
  adsorber without a counter and without a known replacement is not judged (the hours have no start).

Either way a replacement brings the hours back near zero, which closes the alarm. `Ledger` gathers from InfluxDB
what lies before the minutes read, once per evaluation, since rules themselves do no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gkjk.registry import Enterprise, PointRef, Registry, TreatmentFacility
from ingest_twisted.influx import InfluxClient, quote_literal
from ingest_twisted.lineprotocol import point
from rules_plugins import hookimpl
from rules_plugins.model import Condition, Rule, Verdict
from rules_plugins.site import Readings, Site, tells_run_state

MEASUREMENT = "carbon"  # replacement records
TEMPLATE = "治污设施 {treatment} 活性炭累计吸附运行 {hours} 小时，超过设计更换周期 {limit} 小时，需更换"
STATEMENTS_PER_QUERY = 200

Key = tuple[str, str]  # (enterprise, facility)


def replacement_line(enterprise: Enterprise, facility_id: str, at: int, note: str = "") -> bytes:
    """The `carbon` point recording a replacement at `at` (epoch s)."""
    fields: dict[str, object] = {"replaced": 1}
    if note:
        fields["note"] = note
    tags = {"ent": enterprise.id, "county": enterprise.county, "fac": facility_id}
    return point(MEASUREMENT, tags, fields, at)


def replacement(registry: Registry, enterprise_id: str, facility_id: str, at: str | None, note: str,
                zone: str) -> tuple[bytes, str]:
    """The record for `gkjk carbon replaced` and a line saying what it records; ValueError names a wrong argument.

    `at` is ISO 8601 (`2026-11-23 10:30`, `2026-11-23T10:30:00+08:00`), local time ([ingest] timezone) unless it
    has an offset; None means now."""
    enterprise = registry.enterprises.get(enterprise_id.upper())
    if enterprise is None:
        raise ValueError(f"--enterprise: no enterprise {enterprise_id!r} in the registry")
    adsorber = enterprise.facility(facility_id)
    if adsorber is None or adsorber.kind != "activated_carbon":
        carbon_ids = [t.id for t in enterprise.facilities.treatment if t.kind == "activated_carbon"]
        raise ValueError(f"--facility: {facility_id!r} is not an activated_carbon facility of {enterprise.name} "
                         f"(those are: {', '.join(carbon_ids) or 'none'})")
    if at is None:
        when = datetime.now(timezone.utc)
    else:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise ValueError(f"--at: expected a time such as 2026-11-23 10:30, got {at!r}") from None
    epoch = to_epoch(when, ZoneInfo(zone))
    local = datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
    said = f"{enterprise.name} {adsorber.name} 活性炭更换于 {local}"
    return replacement_line(enterprise, adsorber.id, epoch, note), said


def to_epoch(when: datetime | date, zone: ZoneInfo) -> int:
    """Epoch seconds of a time or date (local midnight); naive values are local time in `zone`."""
    if not isinstance(when, datetime):
        when = datetime.combine(when, time())
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return int(when.astimezone(timezone.utc).timestamp())


def counters(registry: Registry, enterprise_id: str, adsorber_id: str) -> list[PointRef]:
    return [p for p in registry.points_of(enterprise_id, adsorber_id) if p.quantity == "carbon_hours"]


def run_source(registry: Registry, enterprise: Enterprise, adsorber: TreatmentFacility) -> str | None:
    """The facility whose run state is the adsorber's: itself if metered, else a metered fan serving its production."""
    def metered(facility_id: str) -> bool:
        return tells_run_state(registry.points_of(enterprise.id, facility_id))

    if metered(adsorber.id):
        return adsorber.id
    fans = (t for t in enterprise.facilities.treatment if t.kind == "fan" and set(t.serves) & set(adsorber.serves))
    return next((fan.id for fan in fans if metered(fan.id)), None)


class Ledger:
    """Per adsorber, the replacements that matter to the minutes read (the last one before them and every one
    among them), the counters' first readings after the earlier one, and the running minutes since it; kept
    between evaluations so that each reads only what is new."""

    def __init__(self, zone: str = "Asia/Shanghai") -> None:
        self.zone = ZoneInfo(zone)
        self.before: dict[Key, int] = {}  # the last replacement before the first minute read, epoch s
        self.within: dict[Key, list[int]] = {}  # replacements from the first minute read to the window's end
        self.baselines: dict[tuple[Key, str, str], tuple[int, float]] = {}  # (key, MN, factor) -> (replaced, value)
        self.counted: dict[Key, tuple[int, int, int]] = {}  # key -> (replaced, counted until, running minutes)
        self.sources: dict[Key, str] = {}  # adsorbers without a counter -> the facility whose run state is theirs

    async def refresh(self, client: InfluxClient, registry: Registry, readings: Readings) -> None:
        """Read the replacement records, then what each adsorber needs from before `readings.first`."""
        first = readings.first
        result = await client.query(
            f'SELECT last("replaced") FROM "{MEASUREMENT}" WHERE time < {first}s GROUP BY "ent", "fac"; '
            f'SELECT "replaced" FROM "{MEASUREMENT}" WHERE time >= {first}s AND time < {readings.end}s '
            'GROUP BY "ent", "fac"', epoch="s")
        recorded: list[dict[Key, list[int]]] = [{}, {}]
        for found, statement in zip(recorded, result["results"]):
            for series in statement.get("series", []):
                found[series["tags"]["ent"], series["tags"]["fac"]] = [row[0] for row in series["values"]]
        before: dict[Key, int] = {}
        within: dict[Key, list[int]] = {}
        sources: dict[Key, str] = {}
        wanted: list[tuple[str, Any, str]] = []  # (what, key, InfluxQL statement)
        for enterprise in registry.enterprises.values():
            for adsorber in enterprise.facilities.treatment:
                if adsorber.kind != "activated_carbon":
                    continue
                key = (enterprise.id, adsorber.id)
                earlier, later = recorded[0].get(key, []), list(recorded[1].get(key, []))
                if adsorber.last_replaced is not None:
                    registered = to_epoch(adsorber.last_replaced, self.zone)
                    (earlier if registered < first else later).append(registered)
                if later:
                    within[key] = sorted(set(t for t in later if t < readings.end))
                refs = counters(registry, enterprise.id, adsorber.id)
                source = None if refs else run_source(registry, enterprise, adsorber)
                if source is not None:
                    sources[key] = source
                if not earlier:
                    continue
                when = before[key] = max(earlier)
                for ref in refs:
                    factor = ref.point.factor.lower()
                    if self.baselines.get((key, ref.device.mn, factor), (None,))[0] != when:
                        wanted.append(("baseline", (key, ref.device.mn, factor), (
                            f'SELECT first("{factor}-Rtd") FROM "rtd" WHERE "mn" = {quote_literal(ref.device.mn)} '
                            f"AND time >= {when}s AND time < {first}s")))
                if source is None:
                    continue
                since, until, minutes = self.counted.get(key, (None, 0, 0))
                if since != when or until > first:
                    until, minutes = when, 0
                self.counted[key] = (when, until, minutes)
                if until < first:
                    wanted.append(("run", key, (
                        f'SELECT sum("run") FROM "state" WHERE "ent" = {quote_literal(enterprise.id)} AND '
                        f'"fac" = {quote_literal(source)} AND time >= {until}s AND time < {first}s')))
        for i in range(0, len(wanted), STATEMENTS_PER_QUERY):
            batch = wanted[i:i + STATEMENTS_PER_QUERY]
            result = await client.query("; ".join(q for _what, _key, q in batch), epoch="s")
            for (what, key, _q), statement in zip(batch, result["results"]):
                series = statement.get("series")
                value = series[0]["values"][0][1] if series else None
                if what == "baseline":
                    if value is not None:
                        self.baselines[key] = (before[key[0]], value)
                else:
                    when, _until, minutes = self.counted[key]
                    self.counted[key] = (when, first, minutes + int(value or 0))
        self.before, self.within, self.sources = before, within, sources

    def baseline(self, key: Key, ref: PointRef) -> float | None:
        """The counter's first reading after the last replacement before the minutes read, if there was one."""
        found = self.baselines.get((key, ref.device.mn, ref.point.factor.lower()))
        return found[1] if found and found[0] == self.before.get(key) else None

    def running_minutes(self, key: Key) -> int | None:
        """Running minutes from the last replacement before the minutes read to the first of them (None: no
        replacement known, or no run state to count)."""
        found = self.counted.get(key)
        return found[2] if found and found[0] == self.before.get(key) else None


class CarbonReplacement:
    name = "carbon"
    severity: Literal["medium"] = "medium"

    def conditions(self, site: Site) -> Iterator[Condition]:
        ledger = site.carbon or Ledger()
        for adsorber in site.enterprise.facilities.treatment:
            if adsorber.kind != "activated_carbon":
                continue
            key = (site.enterprise.id, adsorber.id)
            # Minute a replacement takes effect -> whether it is the one before the minutes read (in force at first).
            replaced = {site.readings.first: True} if key in ledger.before else {}
            replaced.update((t - t % 60, False) for t in ledger.within.get(key, ()))
            refs = site.points(adsorber.id, "carbon_hours")
            if refs:
                hours = self.counted_hours(site, ledger, key, refs, replaced)
            elif replaced and (source := ledger.sources.get(key)):
                hours = self.running_hours(site, ledger, key, source, replaced)
            else:
                continue
            limit = adsorber.design_hours or site.thresholds["carbon_design_hours"]
            verdicts: dict[int, Verdict] = {
                minute: value > limit and {"treatment": adsorber.name, "hours": f"{value:.1f}", "limit": f"{limit:g}"}
                for minute, value in hours.items()
            }
            yield Condition(adsorber.id, verdicts, int(site.thresholds["carbon_minutes"]), TEMPLATE)

    @staticmethod
    def counted_hours(site: Site, ledger: Ledger, key: Key, refs: tuple[PointRef, ...],
                      replaced: Mapping[int, bool]) -> dict[int, float]:
        """Minute -> mean over the counters of their hours since the replacement in force (the counter itself
        before any, or once it reads below its baseline: the logger reset it)."""
        bases: dict[tuple[int, int], float] = {}  # (index of the counter, replacement) -> baseline
        for i, ref in enumerate(refs):
            series = site.series(ref)
            for effective, earlier in replaced.items():
                base = ledger.baseline(key, ref) if earlier else None
                if base is None:
                    after = [m for m in series if m >= effective]
                    base = series[min(after)] if after else None
                if base is not None:
                    bases[i, effective] = base
        hours: dict[int, float] = {}
        for minute in site.minutes:
            in_force = max((m for m in replaced if m <= minute), default=None)
            known = []
            for i, ref in enumerate(refs):
                value = site.value(ref, minute)
                if value is not None:
                    base = bases.get((i, in_force)) if in_force is not None else None
                    known.append(value - base if base is not None and value >= base else value)
            if known:
                hours[minute] = sum(known) / len(known)
        return hours

    @staticmethod
    def running_hours(site: Site, ledger: Ledger, key: Key, source: str,
                      replaced: Mapping[int, bool]) -> dict[int, float]:
        """Minute -> running hours of `source` since the replacement in force; minutes before any replacement
        or without a run state are not judged."""
        states = site.run_states(source)
        running: int | None = None
        hours: dict[int, float] = {}
        for minute in range(site.readings.first, site.readings.end, 60):
            if minute in replaced:
                running = (ledger.running_minutes(key) or 0) if replaced[minute] else 0
            state = states.get(minute)
            if running is None:
                continue
            running += bool(state)
            if minute >= site.readings.start and state is not None:
                hours[minute] = running / 60
        return hours


@hookimpl
def gkjk_rules(enterprise: Enterprise) -> list[Rule]:
    return [CarbonReplacement()] if any(t.kind == "activated_carbon" for t in enterprise.facilities.treatment) else []


@hookimpl(trylast=True)
def gkjk_rule_defaults(industry: str) -> Mapping[str, float]:
    return {"carbon_design_hours": 500, "carbon_minutes": 5}
