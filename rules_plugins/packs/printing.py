"""包装印刷 (packaging and printing): presses and laminators whose solvent exhaust is adsorbed on activated carbon
and burnt in a catalytic oxidiser (CO), drawn by one fan."""

from __future__ import annotations

from rules_plugins.packs.template import FacilityTemplate, PointTemplate, Template, pack_hooks

INDUSTRY = "包装印刷"
DEFAULTS = {"co_min_temperature": 300, "low_load_fraction": 0.6}
TEMPLATE = Template(
    INDUSTRY,
    production=(
        FacilityTemplate("P1", "印刷机", "printing_press",
                         (PointTemplate("i33200", "current", {"rated": 60, "on_threshold": 8}),)),
        FacilityTemplate("P2", "复合机", "laminating_machine",
                         (PointTemplate("i33210", "current", {"rated": 30, "on_threshold": 4}),)),
    ),
    treatment=(
        FacilityTemplate("T1", "活性炭吸附箱", "activated_carbon", (PointTemplate("g10401", "carbon_hours"),),
                         serves=("P1", "P2"), settings={"design_hours": 500}, rules=("carbon",)),
        FacilityTemplate("T2", "催化燃烧装置", "co", (PointTemplate("a01012", "temperature"),),
                         serves=("P1", "P2"), rules=("combustion_temperature",)),
        FacilityTemplate("T3", "印刷废气风机", "fan",
                         (PointTemplate("g10201", "fan_current", {"rated": 45, "on_threshold": 6, "normal": 34}),),
                         serves=("P1", "P2"), rules=("treatment_off", "low_load", "start_stop")),
    ),
)

gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE, DEFAULTS)
