"""铸造 (foundry): furnaces and shot blasting whose dust a bag filter catches, drawn by one fan. The bag-filter
fan's low-load share is stated here rather than inherited, so the foundry value stays put if the general
default of the low_load rule changes."""

from __future__ import annotations

from rules_plugins.packs.template import FacilityTemplate, PointTemplate, Template, pack_hooks

INDUSTRY = "铸造"
DEFAULTS = {"low_load_fraction": 0.5}
TEMPLATE = Template(
    INDUSTRY,
    production=(
        FacilityTemplate("P1", "中频炉", "furnace",
                         (PointTemplate("i33200", "current", {"rated": 400, "on_threshold": 40}),)),
        FacilityTemplate("P2", "抛丸机", "shot_blasting",
                         (PointTemplate("i33210", "current", {"rated": 30, "on_threshold": 4}),)),
    ),
    treatment=(
        FacilityTemplate("T1", "布袋除尘器", "bag_filter", (PointTemplate("g10501", "pressure"),),
                         serves=("P1", "P2")),
        FacilityTemplate("T2", "除尘风机", "fan",
                         (PointTemplate("g10201", "fan_current", {"rated": 60, "on_threshold": 9, "normal": 45}),),
                         serves=("P1", "P2"), rules=("treatment_off", "low_load", "start_stop")),
    ),
)

gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE, DEFAULTS)
