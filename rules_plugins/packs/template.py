"""Facility templates: what an enterprise of one industry usually runs, how it is linked and metered.

An industry pack answers `gkjk_facility_template` with a `Template`; `gkjk registry template --industry X` prints
it as a registry file (`skeleton`) for an installer to fill in, so a new site starts from a layout the pack's
rules can judge. Each facility names the rules expected to judge it (a test holds the packs to that).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gkjk import uscc
from rules_plugins import hookimpl

PLACEHOLDER_ID = "91320682MA0000000" + uscc.check_digit("91320682MA0000000")
PLACEHOLDER_MN = "0000000000000000000000A1"


@dataclass(frozen=True, slots=True)
class PointTemplate:
    """A factor a data logger sends for the facility; `settings` are registry point keys (rated, normal, ...)."""

    factor: str
    quantity: str
    settings: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class FacilityTemplate:
    """A production or treatment facility; `serves` only for treatment, `settings` are registry facility keys."""

    id: str
    name: str
    kind: str
    points: tuple[PointTemplate, ...] = ()
    serves: tuple[str, ...] = ()
    settings: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    rules: tuple[str, ...] = ()  # names of the rules (alarm `rule` tags) that judge this facility


@dataclass(frozen=True, slots=True)
class Template:
    industry: str
    production: tuple[FacilityTemplate, ...]
    treatment: tuple[FacilityTemplate, ...]

    @property
    def facilities(self) -> tuple[FacilityTemplate, ...]:
        return (*self.production, *self.treatment)


def _flow(items: Mapping[str, object]) -> str:
    """A YAML flow mapping of plain scalars, ids and lists of ids."""
    def scalar(value: object) -> str:
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(str(v) for v in value) + "]"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return "{" + ", ".join(f"{key}: {scalar(value)}" for key, value in items.items()) + "}"


def skeleton(template: Template, enterprise_id: str = PLACEHOLDER_ID, mn: str = PLACEHOLDER_MN) -> str:
    """A registry file for one enterprise laid out as the template says, every site fact a placeholder."""
    lines = [
        f"# Registry skeleton for {template.industry} (gkjk registry template). Replace the placeholders (credit code,",
        "# names, county, town, location, MN, PW, rated values and thresholds) with the site's facts, drop what",
        "# the site lacks, then check it: gkjk registry check FILE. Format: docs/registry.md.",
        f"id: {enterprise_id}",
        f"name: 示例{template.industry}企业",
        "county: 如皋市",
        "town: 如城街道",
        f"industry: {template.industry}",
        "location: {lat: 32.39, lon: 120.57}",
        "facilities:",
    ]
    for group, facilities in (("production", template.production), ("treatment", template.treatment)):
        lines.append(f"  {group}:")
        for facility in facilities:
            items: dict[str, object] = {"id": facility.id, "name": facility.name, "kind": facility.kind}
            if facility.serves:
                items["serves"] = facility.serves
            items.update(facility.settings)
            judged = f"  # rules: {', '.join(facility.rules)}" if facility.rules else ""
            lines.append(f"    - {_flow(items)}{judged}")
    lines += [
        "devices:",
        f"  - mn: {mn}",
        '    pw: "123456"',
        "    protocol: hj212-2017",
        "    rtd_interval: 60",
        "    points:",
    ]
    for facility in template.facilities:
        for p in facility.points:
            items = {"factor": p.factor, "facility": facility.id, "quantity": p.quantity, **p.settings}
            lines.append(f"      - {_flow(items)}")
    return "\n".join(lines) + "\n"


def pack_hooks(template: Template, defaults: Mapping[str, float] | None = None) -> tuple[Callable, Callable]:
    """The hook implementations of an industry pack module, which binds them to the hook names:
    `gkjk_facility_template, gkjk_rule_defaults = pack_hooks(TEMPLATE, DEFAULTS)`."""

    @hookimpl(trylast=True)  # an installed pack's template for the same industry wins
    def gkjk_facility_template(industry: str) -> Template | None:
        return template if industry == template.industry else None

    @hookimpl
    def gkjk_rule_defaults(industry: str) -> Mapping[str, float] | None:
        return defaults if industry == template.industry else None

    return gkjk_facility_template, gkjk_rule_defaults
