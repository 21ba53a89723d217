"""通用 (general): an enterprise no industry pack describes: its production units and an exhaust fan, judged by
the common rules at their plugin defaults (so this pack changes none)."""

from __future__ import annotations

from rules_plugins.packs.template import FacilityTemplate, PointTemplate, Template, pack_hooks

INDUSTRY = "通用"
TEMPLATE = Template(
    INDUSTRY,
    production=(
        FacilityTemplate("P1", "生产设备", "other",
                         (PointTemplate("i33200", "current", {"rated": 50, "on_threshold": 6}),)),
    ),
    treatment=(
        FacilityTemplate("T1", "废气处理风机", "fan",
                         (PointTemplate("g10201", "fan_current", {"rated": 30, "on_threshold": 4, "normal": 22}),),
                         serves=("P1",), rules=("treatment_off", "low_load", "start_stop")),
    ),
)

gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE)
