"""Turn a data packet into InfluxDB line protocol (the schema of docs/schema.md).

One point per (measurement, device, facility, DataTime): the factors a device
reports for one facility share a point, so a 10-factor packet is one or two
points, not ten. Factors the registry does not map still get stored, under the
facility tag ``unmapped``: the platform never drops data for lack of a mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from gkjk.registry import Registry
from ingest_twisted.hj212.packet import Packet
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
            self._cached_for = registry
        elif len(self._facilities) > 1_000_000 or len(self._prefixes) > 200_000:
            self._facilities.clear()
            self._prefixes.clear()

    def _facility(self, registry: Registry, mn: str, code: str) -> str | None:
        key = (mn, code)
        try:
            return self._facilities[key]
        except KeyError:
            ref = registry.point(mn, code)
            facility = self._facilities[key] = None if ref is None else ref.facility.id
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
        measurement = MEASUREMENTS.get(packet.cn) or f"cn{packet.cn}"
        mn = packet.mn.upper()
        timestamp = self.data_time_ns(packet.cp.data_time)
        result = Conversion(lines=[], missing_data_time=timestamp is None)
        if timestamp is None:
            timestamp = received_ns

        self._use(registry)
        plain_decimal = _PLAIN_DECIMAL
        by_facility: dict[str, list[str]] = {}
        for items in (packet.cp.factors, packet.cp.devices):
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
        if packet.cp.params:
            fields = by_facility.setdefault(UNMAPPED, [])
            for key, raw in packet.cp.params.items():
                fields.append(f"{escape_key(key)}={escape_string(raw)}")

        for facility, fields in by_facility.items():
            if fields:
                line = f"{self._prefix(registry, measurement, mn, facility)} {','.join(fields)} {timestamp}"
                result.lines.append(line.encode())
        return result


_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?").fullmatch


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
