"""制鞋 (shoemaking): gluing lines whose adhesive solvents pass a UV photolysis unit and activated carbon, drawn by
one fan. Small shops rarely have an adsorption-hours counter, so the carbon is judged by the fan's running hours
since the replacement recorded with `gkjk carbon replaced` (or `last_replaced` in the registry); solvent-rich glue
fumes saturate carbon sooner than the general 500 h."""

from __future__ import annotations

from rules_plugins.packs.template import FacilityTemplate, PointTemplate, Template, pack_hooks

INDUSTRY = "制鞋"
DEFAULTS = {"carbon_design_hours": 300}
TEMPLATE = Template(
    INDUSTRY,
    production=(
        FacilityTemplate("P1", "刷胶线", "gluing_line",
                         (PointTemplate("i33200", "current", {"rated": 20, "on_threshold": 3}),)),
    ),
    treatment=(
        FacilityTemplate("T1", "UV光氧净化器", "uv_photolysis",
                         (PointTemplate("i33220", "current", {"rated": 10, "on_threshold": 1}),),
                         serves=("P1",), rules=("treatment_off", "start_stop")),
        FacilityTemplate("T2", "活性炭吸附箱", "activated_carbon", serves=("P1",), rules=("carbon",)),
        FacilityTemplate("T3", "制鞋废气风机", "fan",
                         (PointTemplate("g10201", "fan_current", {"rated": 30, "on_threshold": 4, "normal": 22}),),
                         serves=("P1",), rules=("treatment_off", "low_load", "start_stop")),
    ),
)

gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE, DEFAULTS)
