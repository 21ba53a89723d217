"""InfluxDB line protocol: escaping and point formatting.

This sits on the ingest hot path (tens of thousands of points per second), so
escaped names are cached and the common case (nothing to escape) costs a dict
look-up. Rules, checked against InfluxDB 1.6:

* measurement: escape ``,`` and space;
* tag keys, tag values, field keys: escape ``,``, ``=`` and space;
* string field values: double-quoted, escape ``"`` and ``\\``;
* a newline, carriage return or tab cannot appear raw in a name or tag value;
  they are written as the two characters ``\\n``, ``\\r``, ``\\t``;
* InfluxDB 1.x has no escape for a backslash that ends a name or precedes an
  escaped character (it swallows the next character): such backslashes are
  dropped, every other backslash is kept as is;
* empty tag values are skipped (InfluxDB rejects them); NaN and infinities are
  skipped (InfluxDB cannot store them); a point left with no field is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["escape_measurement", "escape_key", "escape_tag_value", "escape_string", "format_value", "point"]

_CACHE_MAX = 100_000
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_CONTROL = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})
_MEASUREMENT_SPECIAL = re.compile(r"[, \n\r\t\\]")
_KEY_SPECIAL = re.compile(r"[,= \n\r\t\\]")
# A backslash InfluxDB 1.x would read as escaping what follows it.
_MEASUREMENT_BAD_BACKSLASH = re.compile(r"\\+(?=[, ]|$)")
_KEY_BAD_BACKSLASH = re.compile(r"\\+(?=[,= ]|$)")
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})

_measurement_cache: dict[str, str] = {}
_key_cache: dict[str, str] = {}


def _escape_measurement(name: str) -> str:
    if not _MEASUREMENT_SPECIAL.search(name):
        return name
    name = _MEASUREMENT_BAD_BACKSLASH.sub("", name.translate(_CONTROL))
    return name.translate(_MEASUREMENT_ESCAPES)


def _escape_key(name: str) -> str:
    if not _KEY_SPECIAL.search(name):
        return name
    name = _KEY_BAD_BACKSLASH.sub("", name.translate(_CONTROL))
    return name.translate(_KEY_ESCAPES)


def escape_measurement(name: str) -> str:
    """Escape a measurement name (cached: measurements are few)."""
    escaped = _measurement_cache.get(name)
    if escaped is None:
        if len(_measurement_cache) >= _CACHE_MAX:
            _measurement_cache.clear()
        escaped = _measurement_cache[name] = _escape_measurement(name)
    return escaped


def escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key (cached: device ids and codes repeat)."""
    escaped = _key_cache.get(name)
    if escaped is None:
        if len(_key_cache) >= _CACHE_MAX:
            _key_cache.clear()
        escaped = _key_cache[name] = _escape_key(name)
    return escaped


escape_tag_value = escape_key


def escape_string(value: str) -> str:
    """Quote a string field value."""
    if '"' in value or "\\" in value:
        value = value.translate(_STRING_ESCAPES)
    return f'"{value}"'


def _format_float(value: float) -> str | None:
    if value - value != 0.0:  # NaN or +-inf: not storable
        return None
    return repr(value)


def _format_int(value: int) -> str:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"integer field value {value} does not fit in int64")
    return f"{value}i"


def _format_bool(value: bool) -> str:
    return "true" if value else "false"


_FORMATTERS: dict[type, Callable[[Any], str | None]] = {
    float: _format_float,
    int: _format_int,
    bool: _format_bool,
    str: escape_string,
}


def format_value(value: Any) -> str | None:
    """Render a field value; None means the value cannot be stored and is skipped."""
    formatter = _FORMATTERS.get(type(value))
    if formatter is not None:
        return formatter(value)
    # Subclasses (numpy scalars, IntEnum, ...): bool before int, it is one.
    if isinstance(value, bool):
        return _format_bool(value)
    if isinstance(value, int):
        return _format_int(int(value))
    if isinstance(value, float):
        return _format_float(float(value))
    if isinstance(value, str):
        return escape_string(str(value))
    raise TypeError(f"unsupported field value type {type(value).__name__}: {value!r}")


def point(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any], ts: int) -> bytes:
    """One line of line protocol (no trailing newline), tags sorted by key.

    ``ts`` is written as given: its unit is the write precision. Raises
    ValueError when no storable field is left.
    """
    cache = _key_cache
    key = escape_key
    parts = [escape_measurement(measurement)]
    if tags:
        for tag in sorted(tags):
            value = tags[tag]
            if value:
                escaped = cache.get(value) or key(value)
                if escaped:
                    parts.append(f",{cache.get(tag) or key(tag)}={escaped}")
    sep = " "
    formatters = _FORMATTERS
    for name, value in fields.items():
        if type(value) is float:  # the common case, inlined
            if value - value != 0.0:
                continue
            rendered = repr(value)
        else:
            formatter = formatters.get(type(value))
            rendered = formatter(value) if formatter is not None else format_value(value)
            if rendered is None:
                continue
        parts.append(f"{sep}{cache.get(name) or key(name)}={rendered}")
        sep = ","
    if sep == " ":
        raise ValueError(f"point {measurement!r} {dict(tags)!r} has no storable field: {dict(fields)!r}")
    parts.append(f" {ts}")
    return "".join(parts).encode()
