"""制革 (leather): tanning drums whose waste water goes to the wastewater station (discharge pH 6-9) and whose
sulphide and ammonia fumes go to an alkali scrubber (its liquor range set on the facility). Drums discharge in
batches and pH probes in equalisation tanks swing briefly, so a pH excursion must last longer here."""

from __future__ import annotations

from rules_plugins.packs.template import FacilityTemplate, PointTemplate, Template, pack_hooks

INDUSTRY = "制革"
DEFAULTS = {"ph_minutes": 15}
TEMPLATE = Template(
    INDUSTRY,
    production=(
        FacilityTemplate("P1", "转鼓", "tanning_drum",
                         (PointTemplate("i33200", "current", {"rated": 30, "on_threshold": 4}),)),
    ),
    treatment=(
        FacilityTemplate("T1", "污水处理站", "wastewater_station", (
            PointTemplate("i33230", "current", {"rated": 50, "on_threshold": 6}),
            PointTemplate("w01001", "ph"),
        ), serves=("P1",), rules=("treatment_off", "ph", "start_stop")),
        FacilityTemplate("T2", "碱液喷淋塔", "alkali_scrubber", (
            PointTemplate("g10201", "fan_current", {"rated": 18, "on_threshold": 3, "normal": 13}),
            PointTemplate("g10101", "spray"),
            PointTemplate("g10601", "ph"),
        ), serves=("P1",), settings={"ph_min": 8, "ph_max": 12},
            rules=("treatment_off", "low_load", "spray_off", "ph", "start_stop")),
    ),
)

gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE, DEFAULTS)
