"""What the data-quality rules (flat, stuck_low, jump) share: how a point is named in a message, which facility's
run state says whether a value should move, and how per-point verdicts make one verdict per facility.

Alarms are per facility (the `fac` tag), so the verdicts of a facility's points are merged: violated when any
point is (the first one's message values are kept), else clear when any point is clear, else unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gkjk.registry import Facility, PointRef
from rules_plugins.model import Verdict
from rules_plugins.site import RUN_QUANTITIES, Site

QUANTITY_NAMES: Mapping[str, str] = {
    "current": "电流", "voltage": "电压", "active_power": "有功功率", "reactive_power": "无功功率",
    "apparent_power": "视在功率", "power_factor": "功率因数", "frequency": "频率", "energy": "电量",
    "reactive_energy": "无功电量", "demand": "需量", "switch": "开关量", "fan_current": "风机电流",
    "temperature": "温度", "pressure": "压力", "ph": "pH", "spray": "喷淋信号", "carbon_hours": "吸附累计时间",
    "run_time": "运行时间", "flow": "流量", "velocity": "流速", "concentration": "浓度", "humidity": "湿度",
}
ROLES = {"production": "生产设施", "treatment": "治污设施"}


def label(facility: Facility, ref: PointRef) -> str:
    """`生产设施 中频炉 电流（i33200）`, `治污设施 除尘风机 A相风机电流（d10101）`."""
    phase = f"{ref.point.phase.upper()}相" if ref.point.phase else ""
    return (f"{ROLES[facility.role]} {facility.name} "
            f"{phase}{QUANTITY_NAMES.get(ref.quantity, ref.quantity)}（{ref.point.factor}）")


def facilities(site: Site) -> Iterable[Facility]:
    return (*site.enterprise.facilities.production, *site.enterprise.facilities.treatment)


def run_sources(site: Site, facility: Facility) -> tuple[str, ...]:
    """Whose run state says the facility runs: its own if metered, else (an RTO with only a thermocouple) that of
    the metered production facilities it serves; empty when nothing tells."""
    if site.metered(facility.id):
        return (facility.id,)
    return tuple(p for p in getattr(facility, "serves", ()) if site.metered(p))


def merge(per_point: Sequence[Mapping[int, Verdict]]) -> Mapping[int, Verdict]:
    """One verdict per minute for a facility: the first violating point's, else clear if any point is clear."""
    if len(per_point) == 1:
        return per_point[0]
    merged: dict[int, Verdict] = {}
    for verdicts in per_point:
        for minute, verdict in verdicts.items():
            if not merged.get(minute) and (verdict or minute not in merged):
                merged[minute] = verdict
    return merged


def run_points(site: Site, facility_id: str) -> tuple[PointRef, ...]:
    return site.points(facility_id, *RUN_QUANTITIES)
