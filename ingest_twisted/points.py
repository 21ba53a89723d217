"""Turn a data packet into InfluxDB line protocol (the schema of docs/schema.md).

One point per (measurement, device, facility, DataTime): the factors a device
reports for one facility share a point, so a 10-factor packet is one or two
points, not ten. Factors the registry does not map still get stored, under the
facility tag ``unmapped``: the platform never drops data for lack of a mapping.

``convert`` is the definition. ``convert_plain`` is the fast path for uploads
read by ``read_plain_upload``: per device, CN and list of CP keys it keeps a
plan, made by running ``convert`` on placeholder values: a regular expression
that accepts only values ``convert`` would copy through unchanged (plain
decimals for numbers; text without quotes, backslashes or spaces), and the
lines as ``str.format`` templates. One match and one ``format`` per line then
give the same bytes as ``convert``; any other value goes the general way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import math
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from gkjk.registry import Registry
from ingest_twisted.hj212.packet import CP, Packet, parse_cp
from ingest_twisted.lineprotocol import escape_key, escape_measurement, escape_string, escape_tag_value

#: Measurement per data command; other CNs carrying factors go to ``cn<code>``.
MEASUREMENTS = {
    "2011": "rtd",
    "2051": "minute",
    "2061": "hour",
    "2031": "day",
    "2041": "runtime",
    "3020": "info",
}

#: Suffixes whose values are numbers; everything else (Flag, EFlag, SampleTime, Info...) is text.
NUMERIC_SUFFIXES = frozenset(
    {"Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax", "RS", "RT"}
)

UNMAPPED = "unmapped"


@dataclass(slots=True)
class Conversion:
    """What one packet became: its lines, and what could not be mapped or read."""

    lines: list[bytes]
    unmapped_factors: int = 0
    bad_values: int = 0
    missing_data_time: bool = False


@dataclass(frozen=True, slots=True)
class _Plan:
    """How uploads of one device, CN and list of CP keys become lines (``pattern`` None: not by a plan)."""

    keys: tuple[str, ...] | None
    pattern: re.Pattern[str] | None = None
    templates: tuple[str, ...] = ()
    unmapped_factors: int = 0


#: A CP item ``key=value`` whose key holds nothing parse_cp would strip or split on.
_PLAIN_KEY = re.compile(r"[^\s=;,&]+")
_SEPARATOR = re.compile(r"[;,]")
#: A number convert writes as it came (anything else it reprints, or keeps as text and counts as a bad value).
_PLAIN_DECIMAL_PATTERN = r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?"
#: Values convert copies unchanged: plain decimals as numbers, text quoted as is; unused: anything without spaces.
_NUMBER_VALUE = f"({_PLAIN_DECIMAL_PATTERN})"
_TEXT_VALUE = r'([^;,&"\\\s]*)'
_UNUSED_VALUE = r"([^;,&\s]*)"
#: Placeholder values (19-digit plain decimals), two sets: the second checks the templates made with the first.
_PLACEHOLDERS = (5_918_273_645_091_827_000, 7_364_555_120_987_341_000)


class PointBuilder:
    """Builds the lines of one packet, with tags from the site registry.

    This runs for every packet (tens of thousands per second), so it writes line
    protocol directly: the ``measurement,tags`` prefix of each (device, facility)
    and every escaped field key are cached, and numbers already in plain decimal
    form are copied through instead of being parsed and re-printed.
    """

    def __init__(self, timezone: str) -> None:
        self._zone = ZoneInfo(timezone)
        self._time_cache: dict[str, int | None] = {}
        self._cached_for: Registry | None = None
        self._prefixes: dict[tuple[str, str, str], str] = {}
        self._facilities: dict[tuple[str, str], str | None] = {}
        self._keys: dict[str, dict[str, str]] = {}
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}

    def data_time_ns(self, text: str | None) -> int | None:
        """DataTime (local wall time, ``YYYYMMDDhhmmss``) as UTC epoch nanoseconds, or None if unreadable."""
        if text is None:
            return None
        cached = self._time_cache.get(text, -1)
        if cached != -1:
            return cached
        try:
            if len(text) < 14 or not text[:14].isdigit():
                raise ValueError(text)
            moment = datetime(
                int(text[0:4]), int(text[4:6]), int(text[6:8]),
                int(text[8:10]), int(text[10:12]), int(text[12:14]), tzinfo=self._zone,
            )
            value: int | None = int(moment.timestamp()) * 1_000_000_000
        except ValueError:
            value = None
        if len(self._time_cache) > 100_000:
            self._time_cache.clear()
        self._time_cache[text] = value
        return value

    def _use(self, registry: Registry) -> None:
        """Tags and facilities come from the registry: a reloaded registry empties the caches."""
        if registry is not self._cached_for:
            self._prefixes.clear()
            self._facilities.clear()
            self._plans.clear()
            self._cached_for = registry
        elif len(self._facilities) > 1_000_000 or len(self._prefixes) > 200_000 or len(self._plans) > 200_000:
            self._facilities.clear()
            self._prefixes.clear()
            self._plans.clear()

    def _facility(self, registry: Registry, mn: str, code: str) -> str | None:
        key = (mn, code)
        try:
            return self._facilities[key]
        except KeyError:
            found = registry.facility_of(mn, code)
            facility = self._facilities[key] = None if found is None else found.id
            return facility

    def _keys_of(self, code: str) -> dict[str, str]:
        """The field keys of one factor code, by suffix, filled as suffixes are seen."""
        keys = self._keys.get(code)
        if keys is None:
            if len(self._keys) > 100_000:
                self._keys.clear()
            keys = self._keys[code] = {}
        return keys

    @staticmethod
    def _new_key(keys: dict[str, str], code: str, suffix: str) -> str:
        """The escaped field key with its ``=``, e.g. ``w01018-Rtd=`` (or ``w01018-Rtd_text=`` for an unreadable number)."""
        key = keys[suffix] = escape_key(f"{code}-{suffix}") + "="
        return key

    def _prefix(self, registry: Registry, measurement: str, mn: str, facility: str) -> str:
        """``measurement,county=..,ent=..,fac=..,mn=..`` (tags sorted, escaped)."""
        key = (measurement, mn, facility)
        prefix = self._prefixes.get(key)
        if prefix is None:
            tags = {"mn": mn, "fac": facility}
            device = registry.device(mn)
            if device is not None:
                tags["ent"] = device.enterprise.id
                tags["county"] = device.enterprise.county
            prefix = escape_measurement(measurement) + "".join(
                f",{escape_key(tag)}={escape_tag_value(tags[tag])}" for tag in sorted(tags)
            )
            self._prefixes[key] = prefix
        return prefix

    def convert(self, packet: Packet, registry: Registry, received_ns: int) -> Conversion:
        """The lines of every record of the packet (a CP may hold several, one per DataTime)."""
        measurement = MEASUREMENTS.get(packet.cn) or f"cn{packet.cn}"
        mn = packet.mn.upper()
        result = Conversion(lines=[])
        self._use(registry)
        for group in (packet.cp, *packet.cp.more):
            self._convert_group(group, measurement, mn, registry, received_ns, result)
        return result

    def _convert_group(
        self, cp: CP, measurement: str, mn: str, registry: Registry, received_ns: int, result: Conversion
    ) -> None:
        """Append the lines of one record (one DataTime) to ``result``."""
        timestamp = self.data_time_ns(cp.data_time)
        if timestamp is None:
            result.missing_data_time = True
            timestamp = received_ns
        plain_decimal = _PLAIN_DECIMAL
        by_facility: dict[str, list[str]] = {}
        for items in (cp.factors, cp.devices):
            for code, values in items.items():
                facility = self._facility(registry, mn, code)
                if facility is None:
                    facility = UNMAPPED
                    result.unmapped_factors += 1
                fields = by_facility.get(facility)
                if fields is None:
                    fields = by_facility[facility] = []
                keys = self._keys_of(code)
                for suffix, raw in values.items():
                    if suffix in NUMERIC_SUFFIXES:
                        rendered = raw if plain_decimal(raw) else _reprinted_number(raw)
                        if rendered is None:
                            result.bad_values += 1
                            suffix += "_text"
                            rendered = escape_string(raw)
                    else:
                        rendered = escape_string(raw)
                    fields.append((keys.get(suffix) or self._new_key(keys, code, suffix)) + rendered)
        if cp.params:
            fields = by_facility.setdefault(UNMAPPED, [])
            for key, raw in cp.params.items():
                fields.append(f"{escape_key(key)}={escape_string(raw)}")

        for facility, fields in by_facility.items():
            if fields:
                line = f"{self._prefix(registry, measurement, mn, facility)} {','.join(fields)} {timestamp}"
                result.lines.append(line.encode())

    def convert_plain(self, packet: Packet, rest: str, registry: Registry) -> Conversion | None:
        """``convert`` of a ``read_plain_upload`` packet whose CP after DataTime is ``rest``; None: use ``convert``."""
        timestamp = self.data_time_ns(packet.cp.data_time)
        if timestamp is None:
            return None
        self._use(registry)
        key = (packet.mn, packet.cn)
        plan = self._plans.get(key)
        match = plan.pattern.fullmatch(rest) if plan is not None and plan.pattern is not None else None
        if match is None:
            keys = _keys_of_cp(rest)
            if plan is not None and plan.keys == keys:
                return None  # the usual keys with an unusual value
            plan = self._plans[key] = self._plan(packet, keys, registry)
            match = plan.pattern.fullmatch(rest) if plan.pattern is not None else None
            if match is None:
                return None
        return Conversion(
            [template.format(*match.groups(), timestamp).encode() for template in plan.templates],
            plan.unmapped_factors,
        )

    def _plan(self, packet: Packet, keys: tuple[str, ...] | None, registry: Registry) -> _Plan:
        """Run ``convert`` on placeholder values; where they come out is where the real values go."""
        if keys is None:
            return _Plan(keys)
        conversions = []
        for base in _PLACEHOLDERS:
            values = [str(base + i) for i in range(len(keys) + 1)]  # the last one stands for the timestamp
            cp = parse_cp(",".join(f"{key}={value}" for key, value in zip(keys, values)))
            if cp.data_time is not None or cp.more:
                return _Plan(keys)  # several records in one CP
            conversion = self.convert(replace(packet, cp=cp), registry, int(values[-1]))
            conversions.append((values, conversion))
        (values, first), (check_values, check) = conversions
        templates = []
        for line in first.lines:
            template = line.decode().replace("{", "{{").replace("}", "}}")
            for i, value in enumerate(values):
                template = template.replace(value, f"{{{i}}}")
            templates.append(template)
        if [t.format(*check_values).encode() for t in templates] != check.lines or check.bad_values:
            return _Plan(keys)  # a placeholder also stood somewhere else in a line: leave it to convert
        text = b"\n".join(first.lines).decode()
        pattern = "[;,]".join(
            re.escape(key) + "=" + (
                _TEXT_VALUE if f'"{value}"' in text else _NUMBER_VALUE if value in text else _UNUSED_VALUE
            )
            for key, value in zip(keys, values)
        )
        compiled = self._patterns.get(pattern)
        if compiled is None:
            if len(self._patterns) > 10_000:
                self._patterns.clear()
            compiled = self._patterns[pattern] = re.compile(pattern)
        return _Plan(keys, compiled, tuple(templates), first.unmapped_factors)


def _keys_of_cp(rest: str) -> tuple[str, ...] | None:
    """The keys of the ``key=value`` items of a CP, or None if an item is not that simple."""
    keys = []
    for item in _SEPARATOR.split(rest):
        key, equals, _ = item.partition("=")
        if not equals or not _PLAIN_KEY.fullmatch(key):
            return None
        keys.append(key)
    return tuple(keys)


_PLAIN_DECIMAL = re.compile(_PLAIN_DECIMAL_PATTERN).fullmatch


def _reprinted_number(text: str) -> str | None:
    """A number not in plain decimal form (``1e3``, `` 5``) re-printed for line protocol; None if not finite."""
    value = _finite_float(text)
    return None if value is None else repr(value)


def _finite_float(text: str) -> float | None:
    """The number in `text`, or None; NaN and infinities are not storable in InfluxDB."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
