"""工业涂装 (industrial coating): spray booths and ovens whose VOC exhaust passes a water curtain and dry filter,
activated carbon and an RTO, drawn by one main fan; the fan must run at a higher share of its normal current than
elsewhere because booths need their face velocity."""

from __future__ import annotations

from rules_plugins.packs.template import FacilityTemplate, PointTemplate, Template, pack_hooks

INDUSTRY = "工业涂装"
DEFAULTS = {"low_load_fraction": 0.6, "rto_min_temperature": 760, "rco_min_temperature": 300,
            "carbon_design_hours": 500}
MAIN_FAN = ("treatment_off", "low_load", "start_stop")
TEMPLATE = Template(
    INDUSTRY,
    production=(
        FacilityTemplate("P1", "喷漆房", "spray_booth",
                         (PointTemplate("i33200", "current", {"rated": 40, "on_threshold": 6}),)),
        FacilityTemplate("P2", "烘干房", "oven",
                         (PointTemplate("i33210", "current", {"rated": 25, "on_threshold": 4}),)),
    ),
    treatment=(
        FacilityTemplate("T1", "水帘柜", "water_curtain", (
            PointTemplate("g10201", "fan_current", {"rated": 30, "on_threshold": 4, "normal": 22}),
            PointTemplate("g10101", "spray"),
        ), serves=("P1",), rules=("treatment_off", "low_load", "spray_off")),
        FacilityTemplate("T2", "干式过滤器", "dry_filter", (PointTemplate("g10501", "pressure"),), serves=("P1",)),
        FacilityTemplate("T3", "活性炭吸附箱", "activated_carbon", (PointTemplate("g10401", "carbon_hours"),),
                         serves=("P1", "P2"), settings={"design_hours": 500}, rules=("carbon",)),
        FacilityTemplate("T4", "蓄热式焚烧炉", "rto", (PointTemplate("a01012", "temperature"),),
                         serves=("P1", "P2"), rules=("combustion_temperature",)),
        FacilityTemplate("T5", "喷涂废气主风机", "fan",
                         (PointTemplate("g10202", "fan_current", {"rated": 60, "on_threshold": 9, "normal": 45}),),
                         serves=("P1", "P2"), rules=MAIN_FAN),
    ),
)

gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE, DEFAULTS)
