"""Heavy-pollution alert periods (重污染天气应急预警): when emergency control (应急管控) is in force, and where.

The bureau issues an alert (黄色/橙色/红色预警) with a start, an end and the counties or enterprises it covers; the
measures each production line must take (停产/限产) are in the registry (`emergency_action`, `load_cap`). Periods
are TOML files in one directory (`[rules] emergency_path`, docs/plugins.md): the operator drops a file in when an
alert is issued and edits its `end` when it is lifted, without restarting anything. The engine asks for the
current set at every evaluation; the directory is read again only when a file changed, and a set with a broken
file is refused as a whole (the error names file and key) while the last good set stays in force, so a typo
never lifts an alert.

    python -m rules_plugins.emergency_periods config/emergency     # check a directory before deploying it
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from twisted.logger import Logger

from gkjk.registry import Enterprise

log = Logger()

ZONE = ZoneInfo("Asia/Shanghai")  # default: times in period files are local wall time ([ingest] timezone)
Level = Literal["黄色", "橙色", "红色"]
LEVELS: tuple[Level, ...] = ("黄色", "橙色", "红色")  # mildest first: overlapping periods, the strictest wins
PERIOD_KEYS = {"id", "name", "level", "start", "end", "all", "counties", "enterprises"}
LEVEL_KEYS = {"stop_limited", "load_cap"}


class PeriodError(ValueError):
    """A period file is wrong; every line names the file and the key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Period:
    """One alert period and what it asks beyond the registry's measures (the level overrides of its file)."""

    id: str
    name: str
    level: Level
    start: int  # epoch s, first moment in force
    end: int  # epoch s, first moment no longer in force
    counties: frozenset[str] = frozenset()
    enterprises: frozenset[str] = frozenset()
    everywhere: bool = False
    stop_limited: bool = False  # 限产 lines must stop as well
    load_cap: float | None = None  # 限产 lines stay under this fraction at most (or their own, if lower)

    def covers(self, enterprise: Enterprise) -> bool:
        return self.everywhere or enterprise.county in self.counties or enterprise.id in self.enterprises

    def active(self, minute: int) -> bool:
        """Whether the minute starting at `minute` (epoch s) lies in the period."""
        return self.start <= minute < self.end

    @property
    def scope(self) -> str:
        """The covered area in words, for the `emergency` measurement."""
        if self.everywhere:
            return "全部"
        return "、".join([*sorted(self.counties), *sorted(self.enterprises)])


def strictest(periods: Iterable[Period], minute: int) -> Period | None:
    """The period in force at a minute that asks most: highest level, then the latest to start."""
    return max((p for p in periods if p.active(minute)), key=lambda p: (LEVELS.index(p.level), p.start, p.id),
               default=None)


def _time(value: Any, where: str, zone: ZoneInfo, problems: list[str]) -> int | None:
    if isinstance(value, datetime):
        local = value if value.tzinfo else value.replace(tzinfo=zone)
        return int(local.timestamp())
    problems.append(f"{where}: must be a TOML date-time such as 2026-11-24T08:00:00 (local time, {zone.key}), "
                    f"got {value!r}")
    return None


def _strings(value: Any, where: str, problems: list[str]) -> frozenset[str]:
    if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return frozenset(v.strip().upper() if v.isascii() else v.strip() for v in value)
    problems.append(f"{where}: must be a list of non-empty strings, got {value!r}")
    return frozenset()


def _overrides(path: Path, data: Any, problems: list[str]) -> dict[str, dict[str, Any]]:
    """The file's `[levels.<level>]` tables: what periods of that level ask beyond the registry."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: levels: must be a table of levels")
        return {}
    found: dict[str, dict[str, Any]] = {}
    for level, table in data.items():
        where = f"{path}: levels.{level}"
        if level not in LEVELS:
            problems.append(f"{where}: unknown level (one of {', '.join(LEVELS)})")
            continue
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table")
            continue
        for key in sorted(set(table) - LEVEL_KEYS):
            problems.append(f"{where}.{key}: unknown key (one of {', '.join(sorted(LEVEL_KEYS))})")
        stop = table.get("stop_limited", False)
        if not isinstance(stop, bool):
            problems.append(f"{where}.stop_limited: must be true or false, got {stop!r}")
        cap = table.get("load_cap")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < 1):
            problems.append(f"{where}.load_cap: must be a number between 0 and 1 (exclusive), got {cap!r}")
        found[level] = {"stop_limited": stop is True, "load_cap": float(cap) if isinstance(cap, (int, float)) else None}
    return found


def parse(path: Path, text: str, zone: ZoneInfo = ZONE) -> tuple[list[Period], list[str]]:
    """The periods of one file, and its problems (`<file>: <key path>: <message>`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [f"{path}: not valid TOML: {exc}"]
    problems: list[str] = []
    for key in sorted(set(data) - {"periods", "levels"}):
        problems.append(f"{path}: {key}: unknown key (periods, levels)")
    overrides = _overrides(path, data.get("levels"), problems)
    entries = data.get("periods")
    if not isinstance(entries, list) or not entries:
        problems.append(f"{path}: periods: at least one [[periods]] table is required")
        return [], problems
    periods = []
    for i, entry in enumerate(entries):
        where = f"{path}: periods[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table ([[periods]])")
            continue
        before = len(problems)
        for key in sorted(set(entry) - PERIOD_KEYS):
            problems.append(f"{where}.{key}: unknown key (one of {', '.join(sorted(PERIOD_KEYS))})")
        for key in ("id", "name", "level", "start", "end"):
            if key not in entry:
                problems.append(f"{where}.{key}: required")
        for key in ("id", "name"):
            if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
                problems.append(f"{where}.{key}: must be a non-empty string, got {entry[key]!r}")
        level = entry.get("level")
        if "level" in entry and level not in LEVELS:
            problems.append(f"{where}.level: must be one of {', '.join(LEVELS)}, got {level!r}")
        start = _time(entry["start"], f"{where}.start", zone, problems) if "start" in entry else None
        end = _time(entry["end"], f"{where}.end", zone, problems) if "end" in entry else None
        if start is not None and end is not None and end <= start:
            problems.append(f"{where}.end: must be after start")
        everywhere = entry.get("all", False)
        if not isinstance(everywhere, bool):
            problems.append(f"{where}.all: must be true or false, got {everywhere!r}")
        counties = _strings(entry["counties"], f"{where}.counties", problems) if "counties" in entry else frozenset()
        enterprises = (_strings(entry["enterprises"], f"{where}.enterprises", problems) if "enterprises" in entry
                       else frozenset())
        if everywhere is True and (counties or enterprises):
            problems.append(f"{where}.all: all = true covers everything; leave out counties and enterprises")
        elif everywhere is not True and not counties and not enterprises:
            problems.append(f"{where}: scope: give counties, enterprises, or all = true")
        if len(problems) > before:
            continue
        extra = overrides.get(level, {})
        periods.append(Period(entry["id"].strip(), entry["name"].strip(), level, start, end, counties, enterprises,
                              everywhere is True, extra.get("stop_limited", False), extra.get("load_cap")))
    return periods, problems


def load(directory: Path, zone: ZoneInfo = ZONE) -> list[Period]:
    """Every period of the `*.toml` files directly in `directory` (names starting with `.` are skipped); raises
    PeriodError with every problem of every file. A missing directory holds no periods."""
    problems: list[str] = []
    periods: list[Period] = []
    where: dict[str, Path] = {}
    for path in _files(directory):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        found, issues = parse(path, text, zone)
        problems.extend(issues)
        for i, period in enumerate(found):
            if period.id in where:
                problems.append(f"{path}: periods[{i}].id: {period.id!r} is already used by {where[period.id]}")
            where.setdefault(period.id, path)
            periods.append(period)
    if problems:
        raise PeriodError(problems)
    return sorted(periods, key=lambda p: (p.start, p.id))


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.toml") if not p.name.startswith(".") and p.is_file())


class EmergencyPeriods:
    """The periods in force for the engine: read again when a file changed; a broken set is refused, the last
    good one kept."""

    def __init__(self, directory: Path | None, zone: ZoneInfo = ZONE) -> None:
        self.directory = directory
        self.zone = zone
        self.periods: list[Period] = []
        self.error: str | None = None  # why the files on disk are not in force, if they are not
        self._signature: tuple[tuple[str, int, int], ...] | None = None

    def current(self) -> list[Period]:
        if self.directory is None:
            return self.periods
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            try:
                self.periods, self.error = load(self.directory, self.zone), None
                log.info("emergency periods: {count} from {dir}{missing}", count=len(self.periods),
                         dir=str(self.directory), missing="" if self.directory.is_dir() else " (no such directory)")
            except PeriodError as exc:
                self.error = str(exc)
                log.error("emergency periods refused, the last good set ({count}) stays in force:\n{error}",
                          count=len(self.periods), error=self.error)
        return self.periods

    def _stat(self) -> tuple[tuple[str, int, int], ...]:
        """Names, sizes and modification times: a change to any file, or a file added or removed, reloads."""
        found = []
        for path in _files(self.directory) if self.directory else []:
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append((path.name, stat.st_size, stat.st_mtime_ns))
        return tuple(found)


def in_scope(periods: Iterable[Period], enterprise: Enterprise, first: int, end: int) -> list[Period]:
    """Periods covering the enterprise that overlap the minutes [first, end)."""
    return [p for p in periods if p.start < end and p.end > first and p.covers(enterprise)]


def main(argv: Sequence[str] | None = None) -> int:
    """Check a directory of period files: exit 1 and list every problem if it would be refused."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m rules_plugins.emergency_periods DIRECTORY", file=sys.stderr)
        return 2
    try:
        periods = load(Path(args[0]))
    except PeriodError as exc:
        print(f"{len(exc.problems)} period file error(s):\n{exc}", file=sys.stderr)
        return 1
    for p in periods:
        start, end = (datetime.fromtimestamp(t, ZONE).strftime("%Y-%m-%d %H:%M") for t in (p.start, p.end))
        print(f"{p.id}: {p.name} {p.level}预警 {start} - {end} ({p.scope})")
    print(f"ok: {len(periods)} periods")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
