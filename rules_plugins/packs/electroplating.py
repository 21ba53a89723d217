"""电镀 (electroplating): plating lines whose acid mist is absorbed in an alkaline scrubber. The liquor is kept
alkaline; once its pH falls below 7 the alkali is spent and acid mist passes, so this industry's pH range is 7-12
rather than the discharge range 6-9 (a `ph_min`/`ph_max` on the facility still wins)."""

from __future__ import annotations

from rules_plugins.packs.template import FacilityTemplate, PointTemplate, Template, pack_hooks

INDUSTRY = "电镀"
DEFAULTS = {"ph_min": 7, "ph_max": 12}
TEMPLATE = Template(
    INDUSTRY,
    production=(
        FacilityTemplate("P1", "电镀线", "plating_line",
                         (PointTemplate("i33200", "current", {"rated": 80, "on_threshold": 10}),)),
    ),
    treatment=(
        FacilityTemplate("T1", "酸雾吸收塔", "acid_mist_scrubber", (
            PointTemplate("g10201", "fan_current", {"rated": 22, "on_threshold": 3, "normal": 16}),
            PointTemplate("g10101", "spray"),
            PointTemplate("w01001", "ph"),
        ), serves=("P1",), rules=("treatment_off", "low_load", "spray_off", "ph", "start_stop")),
    ),
)

gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE, DEFAULTS)
