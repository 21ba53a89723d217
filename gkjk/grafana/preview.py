"""`gkjk grafana preview`: the generated dashboards drawn to PNG with the data in InfluxDB, without Grafana.

A reviewer sees what a bureau will see: one image per dashboard, panels placed by their gridPos on Grafana's
24-column grid, each drawn by its type from the answers to its queries, which are expanded as Grafana expands them
(gkjk/grafana/expand.py) and run on `/query` through the platform's InfluxDB client. A panel type without a drawer
becomes a labelled placeholder. Images are for review only: they go under var/ and are never committed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gkjk.config import Config
from gkjk.grafana.common import ALL_VALUE
from gkjk.grafana.expand import ExpandError, expand, interval_for, range_seconds, time_filter

WIDTH_PX = 1600
GRID_COLUMNS = 24
ROW_PX = 38  # Grafana's grid cell (30 px) and vertical margin (8 px)
HEADER_PX = 60  # dashboard title, time range and variables
MARGIN_PX = 4
TITLE_PX = 24
DPI = 100
BACKGROUND = "#ffffff"
PANEL_FACE = "#f7f8fa"
PANEL_EDGE = "#c7d0d9"
MUTED = "#6e7480"
# Grafana's named colours (its default theme) and classic series palette.
NAMED_COLOURS = {"green": "#73bf69", "red": "#f2495c", "yellow": "#fade2a", "orange": "#ff9830", "blue": "#5794f2",
                 "purple": "#b877d9", "text": "#333333", "transparent": "none"}
PALETTE = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0")
DEFAULT_THRESHOLDS = [{"value": None, "color": "green"}, {"value": 80, "color": "red"}]
UNIT_SUFFIXES = {"none": "", "short": "", "percent": "%", "amp": " A", "volt": " V", "watt": " W", "kwatt": " kW",
                 "kwatth": " kWh", "hertz": " Hz", "celsius": " ℃", "s": " s", "m": " 分钟", "h": " 小时"}
CJK_FONTS = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC",
             "Droid Sans Fallback", "AR PL UMing CN")
CJK_FONT_FILES = ("wqymicrohei", "wqyzenhei", "notosanscjk", "sourcehansans", "droidsansfallback", "uming")


# -- data ------------------------------------------------------------------------------------------------------------

@dataclass
class Series:
    """One series of an InfluxQL answer: measurement, tags, columns (the first is time, epoch ms), rows."""
    ref_id: str
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]
    alias: str = ""

    def field_columns(self) -> list[str]:
        return [c for c in self.columns if c != "time"]

    def display_name(self, column: str) -> str:
        """Grafana's name for a series: its alias with $tag_x / $col / $m filled in, else `measurement.column
        {tag: value}`."""
        if self.alias:
            text = re.sub(r"\$tag_(\w+)|\[\[tag_(\w+)\]\]", lambda m: self.tags.get(m.group(1) or m.group(2), ""),
                          self.alias)
            return text.replace("$col", column).replace("$measurement", self.name).replace("$m", self.name)
        tags = ", ".join(f"{k}: {v}" for k, v in sorted(self.tags.items()))
        return f"{self.name}.{column}" + (f" {{{tags}}}" if tags else "")

    def points(self, column: str) -> list[tuple[float, Any]]:
        """(epoch ms, value) of a column, time order."""
        index = self.columns.index(column)
        return [(row[0], row[index]) for row in self.values]


@dataclass
class PanelData:
    series: list[Series] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Table:
    """Series merged into rows, as Grafana's table format shows them: Time, tags, fields."""
    columns: list[str]
    rows: list[list[Any]]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def as_table(series: Iterable[Series]) -> Table:
    series = list(series)
    tags = sorted({k for s in series for k in s.tags})
    fields = list(dict.fromkeys(c for s in series for c in s.field_columns()))
    columns = (["Time"] if any("time" in s.columns for s in series) else []) + tags + fields
    rows = []
    for s in series:
        for row in s.values:
            cells = dict(zip(s.columns, row))
            rows.append(([cells.get("time")] if columns[:1] == ["Time"] else [])
                        + [s.tags.get(t) for t in tags] + [cells.get(f) for f in fields])
    return Table(columns, rows)


@dataclass
class Dashboard:
    data: dict[str, Any]
    path: Path

    @property
    def uid(self) -> str:
        return self.data.get("uid") or self.path.stem

    @property
    def title(self) -> str:
        return self.data.get("title") or self.uid

    def panels(self) -> list[dict[str, Any]]:
        """Every drawable panel; a collapsed row's panels count, the row itself is not drawn."""
        found = []
        for panel in self.data.get("panels", []):
            if panel.get("type") == "row":
                found += panel.get("panels", [])
            else:
                found.append(panel)
        return found


@dataclass
class Answers:
    """What one dashboard's queries returned, and what went wrong."""
    variables: dict[str, tuple[str, ...]]
    panels: list[PanelData]
    annotations: list[tuple[float, str]]  # epoch ms, colour
    problems: list[str]


@dataclass(frozen=True)
class Range:
    start: str
    end: str
    zone: ZoneInfo
    start_s: float
    end_s: float


def load_dashboards(directory: Path, uid: str | None) -> list[Dashboard]:
    dashboards = [Dashboard(json.loads(path.read_text(encoding="utf-8")), path)
                  for path in sorted(directory.glob("*.json"))]
    return [d for d in dashboards if uid is None or d.uid == uid]


def load_gazetteer(path: Path) -> dict[str, tuple[float, float]]:
    """Location key -> (lat, lon) from a Grafana gazetteer file (a list of {key, latitude, longitude, ...})."""
    if not path.is_file():
        return {}
    return {str(e["key"]): (float(e["latitude"]), float(e["longitude"]))
            for e in json.loads(path.read_text(encoding="utf-8"))}


def to_series(ref_id: str, answer: Any, alias: str = "") -> list[Series]:
    """Series of a /query answer (v1/v2: results -> series; v3: a list of rows)."""
    if isinstance(answer, list):
        columns = list(answer[0]) if answer else []
        return [Series(ref_id, "", {}, columns, [[row.get(c) for c in columns] for row in answer], alias)]
    return [Series(ref_id, s.get("name", ""), s.get("tags") or {}, s["columns"], s.get("values", []), alias)
            for result in answer.get("results", []) for s in result.get("series", [])]


async def query_answers(client: Any, dashboard: Dashboard, chosen: dict[str, list[str]], window: Range) -> Answers:
    """Resolve the template variables in order (--var, else 全部, else the saved or first value), then run every
    panel and annotation query. A failing query is recorded, not raised: the rest still draws."""
    filter_text = time_filter(window.start, window.end, window.zone)
    span = window.end_s - window.start_s
    answers = Answers({}, [], [], [])

    async def run(query: str, interval: str, ref_id: str = "", alias: str = "") -> list[Series]:
        text = expand(query, answers.variables, filter_text, interval, int(span))
        return to_series(ref_id, await client.query(text, epoch="ms"), alias)

    for variable in dashboard.data.get("templating", {}).get("list", []):
        options: list[str] = []
        if variable.get("type") == "query":
            try:
                options = [str(row[-1]) for s in await run(variable.get("query", ""), interval_for(span, WIDTH_PX))
                           for row in s.values]
            except Exception as error:  # noqa: BLE001 - its panels show nothing, the others still draw
                answers.problems.append(f"{dashboard.title}: variable {variable.get('name')}: {brief(error)}")
        elif variable.get("type") in ("custom", "interval"):
            options = [o.split(" : ")[-1].strip() for o in str(variable.get("query", "")).split(",") if o.strip()]
        elif variable.get("type") in ("constant", "textbox"):
            options = [str(variable.get("query", ""))]
        else:
            continue
        answers.variables[variable["name"]] = selection(variable, sorted_options(variable, options),
                                                        chosen.get(variable["name"]))
    for panel in dashboard.panels():
        data = PanelData()
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            if not isinstance(target.get("query"), str):
                data.errors.append(f"target {target.get('refId')}: not a raw InfluxQL query, not run")
                continue
            try:
                data.series += await run(target["query"], interval_for(span, panel_width_px(panel)),
                                         target.get("refId", "A"), target.get("alias") or "")
            except Exception as error:  # noqa: BLE001 - shown in the panel and reported
                data.errors.append(f"target {target.get('refId')}: {brief(error)}")
        answers.problems += [f"{dashboard.title}: panel {panel.get('title')!r}: {e}" for e in data.errors]
        answers.panels.append(data)
    for annotation in dashboard.data.get("annotations", {}).get("list", []):
        target = annotation.get("target") or {}
        if not annotation.get("enable", True) or not isinstance(target.get("query"), str):
            continue
        try:
            answers.annotations += [(row[0], colour(annotation.get("iconColor", "red")))
                                    for s in await run(target["query"], interval_for(span, WIDTH_PX))
                                    for row in s.values]
        except Exception as error:  # noqa: BLE001 - the time axes go without these marks
            answers.problems.append(f"{dashboard.title}: annotation {annotation.get('name')}: {brief(error)}")
    return answers


def brief(error: Exception) -> str:
    """An error in one line of reasonable length (InfluxDB's messages quote the whole query)."""
    return textwrap.shorten(str(error), 300, placeholder=" …")


def sorted_options(variable: dict[str, Any], options: list[str]) -> list[str]:
    """Grafana's `sort`: 0 as returned, odd ascending, even descending (5, 6 ignore case)."""
    order = int(variable.get("sort") or 0)
    if not order:
        return list(dict.fromkeys(options))
    key = str.lower if order in (5, 6) else str
    return sorted(set(options), key=key, reverse=order % 2 == 0)


def selection(variable: dict[str, Any], options: list[str], chosen: list[str] | None) -> tuple[str, ...]:
    """The values a variable sends: what --var chose, else 全部 when it offers it, else its saved or first value."""
    if chosen and chosen != ["全部"]:
        return tuple(chosen)
    if variable.get("includeAll"):
        return (variable["allValue"],) if variable.get("allValue") else tuple(options)
    current = (variable.get("current") or {}).get("value")
    if isinstance(current, str) and current in options:
        return (current,)
    return tuple(options[:1]) or ("",)


# -- layout ----------------------------------------------------------------------------------------------------------

def grid_bottom(panels: Sequence[dict[str, Any]]) -> int:
    return max((p.get("gridPos", {}).get("y", 0) + p.get("gridPos", {}).get("h", 8) for p in panels), default=1)


def canvas_size(panels: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """Image size in pixels: WIDTH_PX wide, HEADER_PX plus ROW_PX per grid row high."""
    return WIDTH_PX, HEADER_PX + grid_bottom(panels) * ROW_PX


def panel_box(grid_pos: dict[str, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of a panel's frame in the image."""
    column = WIDTH_PX / GRID_COLUMNS
    x, y, w, h = (grid_pos.get(k, d) for k, d in (("x", 0), ("y", 0), ("w", 12), ("h", 8)))
    return (round(x * column) + MARGIN_PX, HEADER_PX + y * ROW_PX + MARGIN_PX,
            round((x + w) * column) - MARGIN_PX, HEADER_PX + (y + h) * ROW_PX - MARGIN_PX)


def panel_width_px(panel: dict[str, Any]) -> int:
    left, _, right, _ = panel_box(panel.get("gridPos", {}))
    return right - left


# -- field configuration and values ----------------------------------------------------------------------------------

def field_config(panel: dict[str, Any], name: str) -> dict[str, Any]:
    """A field's configuration: the panel defaults, then the overrides matching its name."""
    config = dict(panel.get("fieldConfig", {}).get("defaults", {}))
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        pattern = str(matcher.get("options", ""))
        matched = (matcher.get("id") == "byName" and pattern == name) or (
            matcher.get("id") == "byRegexp" and re.fullmatch(pattern.strip("/"), name) is not None)
        if matched:
            config.update({p["id"]: p.get("value") for p in override.get("properties", [])})
    return config


def mapped(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """The value mapping result ({text, color}) for a value, if any."""
    for mapping in config.get("mappings") or []:
        options = mapping.get("options", {})
        if mapping.get("type") == "value" and str(value) in options:
            return options[str(value)]
        if mapping.get("type") == "range" and isinstance(value, (int, float)):
            low, high = options.get("from"), options.get("to")
            if (low is None or value >= low) and (high is None or value <= high):
                return options.get("result", {})
    return None


def format_value(value: Any, config: dict[str, Any], zone: ZoneInfo) -> str:
    if value is None:
        return ""
    result = mapped(value, config)
    if result and result.get("text"):
        return str(result["text"])
    unit = config.get("unit") or "none"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if unit.startswith("dateTime"):
            return datetime.fromtimestamp(value / 1000, zone).strftime("%Y-%m-%d %H:%M:%S")
        decimals = config.get("decimals")
        number = f"{value:.{decimals}f}" if decimals is not None else (
            str(int(value)) if float(value).is_integer() else f"{value:.2f}".rstrip("0").rstrip("."))
        return number + UNIT_SUFFIXES.get(unit, f" {unit}")
    return str(value)


def colour(name: str | None) -> str:
    """A Grafana colour name (green, semi-dark-red, #hex, ...) as a matplotlib colour."""
    from matplotlib.colors import is_color_like

    name = (name or "").strip()
    base = re.sub(r"^(super-light|light|semi-dark|dark)-", "", name)
    if base in NAMED_COLOURS:
        return NAMED_COLOURS[base]
    return name if name and is_color_like(name) else "#8e8e8e"


def threshold_colour(value: Any, config: dict[str, Any]) -> str:
    steps = (config.get("thresholds") or {}).get("steps") or DEFAULT_THRESHOLDS
    chosen = steps[0].get("color")
    if isinstance(value, (int, float)):
        for step in steps[1:]:
            if step.get("value") is not None and value >= step["value"]:
                chosen = step.get("color")
    return colour(chosen)


def numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def time_of(ms: float) -> Any:
    from matplotlib import dates

    return dates.date2num(datetime.fromtimestamp(ms / 1000, timezone.utc))


# -- drawing ---------------------------------------------------------------------------------------------------------

@dataclass
class Canvas:
    """The figure and what every panel drawer needs beside its own data."""
    figure: Any
    window: Range
    gazetteer: dict[str, tuple[float, float]]
    annotations: list[tuple[float, str]]

    def axes(self, box: tuple[int, int, int, int], pad: tuple[int, int, int, int] = (0, 0, 0, 0)) -> Any:
        """Axes over a pixel box less (left, top, right, bottom) padding."""
        width, height = self.figure.get_size_inches() * DPI
        left, top, right, bottom = box[0] + pad[0], box[1] + pad[1], box[2] - pad[2], box[3] - pad[3]
        return self.figure.add_axes((left / width, 1 - bottom / height, max(right - left, 1) / width,
                                     max(bottom - top, 1) / height))

    def time_axis(self, axes: Any) -> None:
        from matplotlib import dates

        axes.set_xlim(time_of(self.window.start_s * 1000), time_of(self.window.end_s * 1000))
        locator = dates.AutoDateLocator(tz=self.window.zone, maxticks=8)
        axes.xaxis.set_major_locator(locator)
        span = self.window.end_s - self.window.start_s
        axes.xaxis.set_major_formatter(dates.DateFormatter("%m-%d %H:%M" if span > 2 * 86400 else "%H:%M",
                                                           tz=self.window.zone))
        for when, tint in self.annotations:
            axes.axvline(time_of(when), color=tint, linewidth=1, linestyle="--", alpha=0.8)


Drawer = Callable[[Canvas, dict[str, Any], PanelData, tuple[int, int, int, int]], bool]


def style(axes: Any) -> None:
    axes.set_facecolor(PANEL_FACE)
    axes.tick_params(labelsize=7, colors=MUTED)
    for spine in axes.spines.values():
        spine.set_color(PANEL_EDGE)


def draw_timeseries(canvas: Canvas, panel: dict[str, Any], data: PanelData, box: tuple[int, int, int, int]) -> bool:
    """Lines, one per series and field; a null breaks the line (spanNulls off)."""
    axes = canvas.axes(box, (48, 4, 10, 20))
    style(axes)
    drawn = 0
    for s in data.series:
        for column in s.field_columns():
            points = [(time_of(t), float(v) if numeric(v) else float("nan")) for t, v in s.points(column)]
            if not any(v == v for _, v in points):
                continue
            axes.plot([t for t, _ in points], [v for _, v in points], linewidth=1.3,
                      color=PALETTE[drawn % len(PALETTE)], label=s.display_name(column))
            drawn += 1
    canvas.time_axis(axes)
    defaults = field_config(panel, "")
    if defaults.get("min") is not None or defaults.get("max") is not None:
        axes.set_ylim(defaults.get("min"), defaults.get("max"))
    suffix = UNIT_SUFFIXES.get(defaults.get("unit") or "none", f" {defaults.get('unit')}")
    axes.yaxis.set_major_formatter(lambda v, _pos: f"{v:g}{suffix}")
    axes.grid(color="#e4e7eb", linewidth=0.6)
    if drawn and panel.get("options", {}).get("legend", {}).get("showLegend", True):
        axes.legend(loc="upper left", fontsize=7, framealpha=0.7, ncol=min(drawn, 3))
    return drawn > 0


def draw_stat(canvas: Canvas, panel: dict[str, Any], data: PanelData, box: tuple[int, int, int, int]) -> bool:
    """The last non-null value of each field in a big number, coloured by the thresholds (or the background)."""
    values = []
    for s in data.series:
        for column in s.field_columns():
            last = [v for _, v in s.points(column) if v is not None]
            if last:
                values.append((s.display_name(column), last[-1], field_config(panel, column)))
    defaults = field_config(panel, "")
    shown = values or [("", None, defaults)]
    background = panel.get("options", {}).get("colorMode") == "background"
    left, top, right, bottom = box
    slot = (right - left) / len(shown)
    for number, (name, value, config) in enumerate(shown):
        axes = canvas.axes((round(left + number * slot), top, round(left + (number + 1) * slot), bottom), (4, 4, 4, 4))
        axes.set_axis_off()
        text = format_value(value, config, canvas.window.zone) if value is not None else (
            str(defaults.get("noValue", "无数据")))
        tint = threshold_colour(value if value is not None else _number(text), config)
        if background:
            axes.add_patch(_rectangle(tint))
        size = min((bottom - top) * 0.45, slot / max(_text_width(text), 1) * 1.6) * 72 / DPI
        axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=max(size, 8),
                  color="white" if background else tint, transform=axes.transAxes)
        if len(shown) > 1:
            axes.text(0.5, 0.08, name, ha="center", va="bottom", fontsize=7, color=MUTED, transform=axes.transAxes)
    return bool(values)


def draw_state_timeline(canvas: Canvas, panel: dict[str, Any], data: PanelData,
                        box: tuple[int, int, int, int]) -> bool:
    """A row of coloured bands per series; colour and text from the value mappings, a gap for null."""
    from matplotlib.patches import Patch

    axes = canvas.axes(box, (110, 4, 10, 38))
    style(axes)
    rows = [(s, column) for s in data.series for column in s.field_columns()]
    seen: dict[str, str] = {}  # text -> colour, for the legend
    end_ms = canvas.window.end_s * 1000
    for index, (s, column) in enumerate(rows):
        config = field_config(panel, column)
        points = s.points(column)
        step = points[-1][0] - points[-2][0] if len(points) > 1 else 60_000  # the last value holds one interval
        bands = []
        for number, (start, value) in enumerate(points):
            stop = points[number + 1][0] if number + 1 < len(points) else min(end_ms, start + step)
            if value is None:
                continue
            if bands and bands[-1][2] == value and bands[-1][1] == start:
                bands[-1][1] = stop
            else:
                bands.append([start, stop, value])
        for start, stop, value in bands:
            result = mapped(value, config) or {}
            tint = colour(result["color"]) if result.get("color") else PALETTE[len(seen) % len(PALETTE)]
            label = str(result.get("text") or format_value(value, config, canvas.window.zone))
            tint = seen.setdefault(label, tint)
            axes.broken_barh([(time_of(start), time_of(stop) - time_of(start))], (index - 0.4, 0.8),
                             facecolors=tint)
    canvas.time_axis(axes)
    axes.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    axes.set_yticks(range(len(rows)), [", ".join(s.tags.values()) or s.display_name(c) for s, c in rows],
                    fontsize=8)
    for mapping in field_config(panel, "").get("mappings") or []:
        for result in (mapping.get("options") or {}).values():
            if isinstance(result, dict) and result.get("text"):
                seen.setdefault(str(result["text"]), colour(result.get("color")))
    if seen:  # under the time labels, inside the panel's bottom padding
        below = -18 / max(box[3] - box[1] - 42, 1)
        axes.legend(handles=[Patch(color=tint, label=label) for label, tint in seen.items()], fontsize=8,
                    loc="upper center", bbox_to_anchor=(0.5, below), ncol=len(seen), frameon=False)
    return any(row for s, _ in rows for row in s.values if any(v is not None for v in row[1:]))


def draw_table(canvas: Canvas, panel: dict[str, Any], data: PanelData, box: tuple[int, int, int, int]) -> bool:
    """The merged rows with the organize transformation, display names, mappings and units; as many as fit."""
    table = as_table(data.series)
    organize = {}
    for transformation in panel.get("transformations", []):
        if transformation.get("id") == "organize":
            organize = transformation.get("options", {})
    excluded = {name for name, off in (organize.get("excludeByName") or {}).items() if off}
    kept = [i for i, name in enumerate(table.columns) if name not in excluded]
    configs = [field_config(panel, table.columns[i]) for i in kept]
    headers = [str(config.get("displayName") or (organize.get("renameByName") or {}).get(table.columns[i])
                   or ("时间" if table.columns[i] == "Time" else table.columns[i]))
               for i, config in zip(kept, configs)]
    for number, i in enumerate(kept):
        if table.columns[i] == "Time":
            configs[number] = {**configs[number], "unit": "dateTimeAsLocal"}
    left, top, right, bottom = box
    fitting = max(int((bottom - top - 8) / 20) - 1, 1)
    rows = [[format_value(row[i], config, canvas.window.zone) for i, config in zip(kept, configs)]
            for row in table.rows[:fitting]]
    axes = canvas.axes(box, (4, 4, 4, 4))
    axes.set_axis_off()
    if not headers:
        return False
    natural = [max([_text_width(h)] + [_text_width(r[n]) for r in rows]) + 2 for n, h in enumerate(headers)]
    widths = fit_widths(natural, (right - left - 8) / 6.5)  # 8 pt: about 6.5 px per Latin character
    cells = [[_clip(text, w - 2) for text, w in zip(r, widths)] for r in rows]
    shown = cells or [[""] * len(headers)]
    height = min(1.0, 20 * (len(shown) + 1) / max(bottom - top - 8, 1))
    drawn = axes.table(cellText=shown, colLabels=headers, bbox=(0, 1 - height, 1, height), cellLoc="left",
                       colLoc="left", colWidths=[w / max(sum(widths), 1) for w in widths])
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    for (row, _column), cell in drawn.get_celld().items():
        cell.set_edgecolor(PANEL_EDGE)
        cell.set_facecolor("#e9edf2" if row == 0 else PANEL_FACE)
    if len(table.rows) > fitting:
        axes.text(1.0, 0.0, f"共 {len(table.rows)} 行，显示前 {fitting} 行", ha="right", va="bottom", fontsize=7,
                  color=MUTED, transform=axes.transAxes)
    return bool(table.rows)


def draw_bar_gauge(canvas: Canvas, panel: dict[str, Any], data: PanelData, box: tuple[int, int, int, int]) -> bool:
    """A bar per series and field: its last value, coloured by the thresholds, named above it."""
    axes = canvas.axes(box, (12, 6, 40, 36))
    style(axes)
    bars = [(s.display_name(c), [v for _, v in s.points(c) if numeric(v)], field_config(panel, c))
            for s in data.series for c in s.field_columns()]
    bars = [(name, values[-1], config) for name, values, config in bars if values]
    axes.barh(range(len(bars)), [v for _, v, _ in bars], 0.5, color=[threshold_colour(v, c) for _, v, c in bars])
    axes.set_yticks([])
    axes.set_ylim(len(bars) - 0.5, -0.8)
    for y, (name, value, config) in enumerate(bars):
        axes.text(0, y - 0.3, name, va="bottom", fontsize=8, color=MUTED)
        axes.text(value, y, " " + format_value(value, config, canvas.window.zone), va="center", fontsize=8)
    return bool(bars)


def draw_bar_chart(canvas: Canvas, panel: dict[str, Any], data: PanelData, box: tuple[int, int, int, int]) -> bool:
    """A bar per row of the x field (a group of bars when there are several numeric fields)."""
    from matplotlib.ticker import MaxNLocator

    axes = canvas.axes(box, (60, 6, 40, 36))
    style(axes)
    table = as_table(data.series)
    x_field = panel.get("options", {}).get("xField")
    if x_field not in table.columns:
        x_field = next((c for c in table.columns if c != "Time" and not all(numeric(v) for v in table.column(c))),
                       None)
    fields = [c for c in table.columns if c not in ("Time", x_field) and any(numeric(v) for v in table.column(c))]
    x_config = field_config(panel, x_field or "")
    labels = [format_value(v, x_config, canvas.window.zone) for v in table.column(x_field)] if x_field else [
        str(n + 1) for n in range(len(table.rows))]
    width = 0.8 / max(len(fields), 1)
    horizontal = panel.get("options", {}).get("orientation") == "horizontal"
    for number, name in enumerate(fields):
        values = [float(v) if numeric(v) else 0.0 for v in table.column(name)]
        positions = [i - 0.4 + width * (number + 0.5) for i in range(len(values))]
        plot = axes.barh if horizontal else axes.bar
        config = field_config(panel, name)
        patches = plot(positions, values, width * 0.9, color=PALETTE[number % len(PALETTE)],
                       label=config.get("displayName") or name)
        if panel.get("options", {}).get("showValue") != "never":
            axes.bar_label(patches, [format_value(v, config, canvas.window.zone) for v in values], fontsize=8)
    if all(float(v).is_integer() for name in fields for v in table.column(name) if numeric(v)):
        (axes.xaxis if horizontal else axes.yaxis).set_major_locator(MaxNLocator(integer=True))
    ticks = axes.set_yticks if horizontal else axes.set_xticks
    ticks(range(len(labels)), labels, fontsize=8)
    if x_field:
        (axes.set_ylabel if horizontal else axes.set_xlabel)(x_config.get("displayName") or x_field, fontsize=8)
    if len(fields) > 1:
        axes.legend(fontsize=7)
    return bool(fields and table.rows)


def draw_geomap(canvas: Canvas, panel: dict[str, Any], data: PanelData, box: tuple[int, int, int, int]) -> bool:
    """Each marker layer as a scatter of lat/lon (looked up in the gazetteer or read from fields), coloured by
    its fixed colour or by a field's value, sized by a field; the gazetteer's other places in grey for context."""
    from matplotlib import colormaps

    axes = canvas.axes(box, (40, 4, 10, 20))
    style(axes)
    options = panel.get("options", {})
    if canvas.gazetteer:
        axes.scatter([lon for _, lon in canvas.gazetteer.values()], [lat for lat, _ in canvas.gazetteer.values()],
                     s=6, color="#d5d9de", zorder=1)
    layers = options.get("layers") or [{"type": "markers", "config": {}, "location": {"mode": "auto"}}]
    drawn = 0
    for layer in layers:
        wanted = (layer.get("filterData") or {}).get("options")
        table = as_table(s for s in data.series if wanted in (None, s.ref_id))
        places = _locations(table, layer.get("location") or {}, canvas.gazetteer)
        if not places:
            continue
        style_config = (layer.get("config") or {}).get("style", {})
        size_config, colour_config = style_config.get("size", {}), style_config.get("color", {})
        sizes = _sizes([row for row, _, _ in places], table, size_config)
        if colour_config.get("field") in table.columns:
            index = table.columns.index(colour_config["field"])
            tints = [float(row[index]) if numeric(row[index]) else 0.0 for row, _, _ in places]
            collection = axes.scatter([lon for _, _, lon in places], [lat for _, lat, _ in places], s=sizes,
                                      c=tints, cmap=colormaps["RdYlGn_r"], alpha=0.85, zorder=2,
                                      label=layer.get("name"))
            canvas.figure.colorbar(collection, ax=axes, fraction=0.04, pad=0.01)
        else:
            axes.scatter([lon for _, _, lon in places], [lat for _, lat, _ in places], s=sizes, zorder=2,
                         color=colour(colour_config.get("fixed", "green")), alpha=style_config.get("opacity", 0.85),
                         label=layer.get("name"))
        drawn += len(places)
    view = options.get("view", {})
    if view.get("id") == "coords" and "lat" in view and "lon" in view:
        left, top, right, bottom = box
        span = 360 / 2 ** float(view.get("zoom", 1)) * (right - left) / 256
        axes.set_xlim(view["lon"] - span / 2, view["lon"] + span / 2)
        axes.set_ylim(view["lat"] - span * (bottom - top) / (right - left) / 2,
                      view["lat"] + span * (bottom - top) / (right - left) / 2)
    else:
        axes.set_aspect("equal", adjustable="datalim")
    if drawn:
        axes.legend(fontsize=8, loc="upper right", markerscale=0.6)
    return drawn > 0


def draw_text(canvas: Canvas, panel: dict[str, Any], data: PanelData, box: tuple[int, int, int, int]) -> bool:
    """The panel's Markdown/HTML content as plain text."""
    axes = canvas.axes(box, (8, 4, 8, 4))
    axes.set_axis_off()
    content = str(panel.get("options", {}).get("content", ""))
    plain = re.sub(r"<[^>]+>|[*_`]+|^#+\s*", "", content, flags=re.MULTILINE)
    columns = max(int((box[2] - box[0]) / 9), 10)
    lines = [wrapped for line in plain.splitlines() for wrapped in (textwrap.wrap(line, columns) or [""])]
    axes.text(0, 1, "\n".join(lines), ha="left", va="top", fontsize=9, color="#333333", transform=axes.transAxes)
    return True  # a text panel has no data to miss


DRAWERS: dict[str, Drawer] = {
    "timeseries": draw_timeseries,
    "graph": draw_timeseries,
    "stat": draw_stat,
    "singlestat": draw_stat,
    "state-timeline": draw_state_timeline,
    "table": draw_table,
    "barchart": draw_bar_chart,
    "bargauge": draw_bar_gauge,
    "geomap": draw_geomap,
    "text": draw_text,
}


def draw_placeholder(canvas: Canvas, panel: dict[str, Any], box: tuple[int, int, int, int]) -> None:
    axes = canvas.axes(box, (8, 4, 8, 8))
    axes.set_axis_off()
    axes.add_patch(_rectangle("#eceff3", hatch="//", edgecolor=PANEL_EDGE))
    axes.text(0.5, 0.5, f"面板类型 {panel.get('type')} 不支持预览", ha="center", va="center", fontsize=11,
              color=MUTED, transform=axes.transAxes,
              bbox={"facecolor": PANEL_FACE, "edgecolor": PANEL_EDGE, "boxstyle": "round"})


@dataclass
class Outcome:
    path: Path
    panels: int = 0
    empty: list[str] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)


def render(dashboard: Dashboard, answers: Answers, window: Range, gazetteer: dict[str, tuple[float, float]],
           out: Path) -> Outcome:
    """Draw one dashboard to `out/<uid>.png`."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    panels = dashboard.panels()
    width, height = canvas_size(panels)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
    canvas = Canvas(figure, window, gazetteer, answers.annotations)
    header = canvas.axes((0, 0, width, HEADER_PX))
    header.set_axis_off()
    header.text(0.006, 0.62, dashboard.title, fontsize=17, va="center", color="#1f2328",
                transform=header.transAxes)
    labels = {v["name"]: v.get("label") or v["name"] for v in dashboard.data.get("templating", {}).get("list", [])}
    chosen = "　".join(f"{labels.get(name, name)}：{'全部' if values == (ALL_VALUE,) else '、'.join(values)}"
                      for name, values in answers.variables.items())
    start = datetime.fromtimestamp(window.start_s, window.zone).strftime("%Y-%m-%d %H:%M")
    end = datetime.fromtimestamp(window.end_s, window.zone).strftime("%Y-%m-%d %H:%M")
    header.text(0.006, 0.18, f"时间范围：{start} 至 {end}（{window.zone.key}）　{chosen}", fontsize=9,
                color=MUTED, va="center", transform=header.transAxes)
    header.text(0.994, 0.62, "预览图（gkjk grafana preview），非 Grafana 截图", fontsize=8, color=MUTED,
                ha="right", va="center", transform=header.transAxes)
    outcome = Outcome(out / f"{dashboard.uid}.png", len(panels))
    for panel, data in zip(panels, answers.panels):
        box = panel_box(panel.get("gridPos", {}))
        left, top, right, bottom = box
        figure.patches.append(Rectangle((left / width, 1 - bottom / height), (right - left) / width,
                                        (bottom - top) / height, transform=figure.transFigure,
                                        facecolor=PANEL_FACE, edgecolor=PANEL_EDGE, linewidth=1, zorder=-1))
        title = canvas.axes((left, top, right, top + TITLE_PX), (8, 0, 8, 0))
        title.set_axis_off()
        title.text(0, 0.5, str(panel.get("title", "")), fontsize=10, va="center", color="#1f2328",
                   transform=title.transAxes)
        content = (left, top + TITLE_PX, right, bottom)
        drawer = DRAWERS.get(str(panel.get("type")))
        if drawer is None:
            draw_placeholder(canvas, panel, content)
            outcome.placeholders.append(f"{panel.get('title')!r} ({panel.get('type')})")
            continue
        if not drawer(canvas, panel, data, content):
            outcome.empty.append(str(panel.get("title")))
            if not data.errors and drawer is not draw_stat:  # a stat shows its own noValue text
                _note(canvas, content, str(field_config(panel, "").get("noValue", "无数据")), MUTED)
        if data.errors:
            _note(canvas, content, "查询出错：" + "\n".join(textwrap.shorten(e, 120, placeholder=" …")
                                                          for e in data.errors),
                  NAMED_COLOURS["red"])
    out.mkdir(parents=True, exist_ok=True)
    figure.savefig(outcome.path, dpi=DPI, facecolor=BACKGROUND)
    return outcome


def _note(canvas: Canvas, box: tuple[int, int, int, int], text: str, tint: str) -> None:
    axes = canvas.axes(box)
    axes.set_axis_off()
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color=tint, wrap=True,
              transform=axes.transAxes)


def _rectangle(tint: str, **style_options: Any) -> Any:
    """A patch filling axes whose limits are the default 0..1."""
    from matplotlib.patches import Rectangle

    return Rectangle((0, 0), 1, 1, facecolor=tint, **style_options)


def _locations(table: Table, location: dict[str, Any], gazetteer: dict[str, tuple[float, float]]
               ) -> list[tuple[list[Any], float, float]]:
    """(row, lat, lon) of the rows that have a place."""
    columns = {name.lower(): i for i, name in enumerate(table.columns)}
    mode = location.get("mode", "auto")
    if mode == "coords" or (mode == "auto" and {"latitude", "longitude"} <= set(columns)):
        lat = table.columns.index(location["latitude"]) if location.get("latitude") in table.columns else (
            columns.get("latitude", columns.get("lat")))
        lon = table.columns.index(location["longitude"]) if location.get("longitude") in table.columns else (
            columns.get("longitude", columns.get("lon")))
        if lat is None or lon is None:
            return []
        return [(row, float(row[lat]), float(row[lon])) for row in table.rows if numeric(row[lat])
                and numeric(row[lon])]
    key = location.get("lookup")
    if key not in table.columns:
        return []
    index = table.columns.index(key)
    return [(row, *gazetteer[str(row[index])]) for row in table.rows if str(row[index]) in gazetteer]


def _sizes(rows: list[list[Any]], table: Table, size: dict[str, Any]) -> list[float]:
    """Marker areas (points²): fixed, or scaled between the layer's min and max by a field."""
    if size.get("field") in table.columns:
        index = table.columns.index(size["field"])
        values = [float(row[index]) if numeric(row[index]) else 0.0 for row in rows]
        low, high = min(values), max(values)
        small, large = float(size.get("min", 4)), float(size.get("max", 16))
        return [(small + (large - small) * ((v - low) / (high - low) if high > low else 1)) ** 2 for v in values]
    return [float(size.get("fixed", 6)) ** 2] * len(rows)


def fit_widths(widths: list[int], room: float) -> list[int]:
    """Column widths (characters) within `room`: narrow columns keep theirs, the widest share what is left."""
    level = max(widths, default=0)
    while level > 6 and sum(min(w, level) for w in widths) > room:
        level -= 1
    return [min(w, level) for w in widths]


def _text_width(text: str) -> int:
    """Width in Latin characters: a CJK character is two."""
    return sum(2 if ord(c) > 0x2e80 else 1 for c in text)


def _clip(text: str, width: int) -> str:
    if _text_width(text) <= width:
        return text
    kept = ""
    for char in text:
        if _text_width(kept + char) > width - 1:
            break
        kept += char
    return kept + "…"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# -- command ---------------------------------------------------------------------------------------------------------

def use_cjk_font() -> str | None:
    """Make matplotlib draw Chinese: the first CJK font it knows (or finds among the system's files), DejaVu Sans
    for the rest. None when there is none (Chinese then shows as boxes)."""
    import matplotlib
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONTS if name in known), None)
    if found is None:
        for path in font_manager.findSystemFonts():
            if any(part in re.sub(r"[-_]", "", Path(path).name.lower()) for part in CJK_FONT_FILES):
                font_manager.fontManager.addfont(path)
        known = {f.name for f in font_manager.fontManager.ttflist}
        found = next((name for name in CJK_FONTS if name in known), None)
    if found:
        matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["font.sans-serif"] = [found, "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False
    return found


def parse_variables(pairs: Sequence[str]) -> dict[str, list[str]]:
    """--var name=value, repeated for several values of one variable."""
    chosen: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--var {pair!r}: expected name=value")
        chosen.setdefault(name.strip(), []).append(value)
    return chosen


def main(args: argparse.Namespace, config: Config) -> None:
    """Draw every chosen dashboard; exits 1 when a query failed (the images are written all the same)."""
    from twisted.internet import task

    from ingest_twisted.server import influx_client

    try:
        chosen = parse_variables(args.var)
    except ValueError as error:
        sys.exit(f"gkjk: grafana preview: {error}")
    dashboards = load_dashboards(Path(args.dashboards), args.dashboard)
    if not dashboards:
        sys.exit(f"gkjk: grafana preview: no dashboard {args.dashboard or ''} in {args.dashboards}")
    if use_cjk_font() is None:
        print("gkjk: grafana preview: warning: no CJK font found (install fonts-wqy-microhei); "
              "Chinese text will show as boxes", file=sys.stderr)
    gazetteer = load_gazetteer(Path(args.gazetteer))
    zone = ZoneInfo(config.ingest.timezone)
    windows = []
    for dashboard in dashboards:
        times = dashboard.data.get("time", {})
        start, end = args.start or times.get("from", "now-6h"), args.end or times.get("to", "now")
        try:
            windows.append(Range(start, end, zone, *range_seconds(start, end, datetime.now(timezone.utc), zone)))
        except ExpandError as error:
            sys.exit(f"gkjk: grafana preview: {error}")

    async def run(reactor: Any) -> None:
        client = influx_client(config, reactor)
        failed = 0
        try:
            for dashboard, window in zip(dashboards, windows):
                answers = await query_answers(client, dashboard, chosen, window)
                outcome = render(dashboard, answers, window, gazetteer, Path(args.out))
                for problem in answers.problems:
                    print(f"gkjk: grafana preview: {problem}", file=sys.stderr)
                for placeholder in outcome.placeholders:
                    print(f"gkjk: grafana preview: {dashboard.title}: panel {placeholder} is not previewed "
                          f"(placeholder)", file=sys.stderr)
                failed += len(answers.problems)
                print(f"{outcome.path}: {outcome.panels} panels, {len(outcome.empty)} without data, "
                      f"{len(outcome.placeholders)} not previewed, {len(answers.problems)} failed queries")
        finally:
            await client.close()
        if failed:
            raise SystemExit(1)

    task.react(run)
