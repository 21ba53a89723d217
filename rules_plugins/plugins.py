"""The plugin manager: built-in rules and external rule packs, each hook implementation called on its own.

Built-ins are plugins like any pack (DEFAULT_PLUGINS); packs come from the entry-point group `gkjk.rules`.
`[rules] disabled_plugins` blocks any of them by name. pm.hook.x() would stop at the first implementation
that raises, so one broken pack would silence every rule; `Plugins.call` isolates, logs and counts instead.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pluggy
from twisted.logger import Logger

from gkjk.config import ConfigError
from gkjk.registry import INDUSTRIES
from rules_plugins import hookspecs

if TYPE_CHECKING:
    from gkjk.registry import Enterprise
    from rules_plugins.model import Rule
    from rules_plugins.packs.template import Template

ENTRY_POINT_GROUP = "gkjk.rules"
DEFAULT_PLUGINS = (
    "rules_plugins.builtin.messages",
    "rules_plugins.builtin.run_state",
    "rules_plugins.builtin.treatment_off",
    "rules_plugins.builtin.low_load",
    "rules_plugins.builtin.combustion",
    "rules_plugins.builtin.ph",
    "rules_plugins.builtin.spray_off",
    "rules_plugins.builtin.carbon",
    "rules_plugins.builtin.start_stop",
    "rules_plugins.builtin.offline",
    "rules_plugins.builtin.flat",
    "rules_plugins.builtin.stuck_low",
    "rules_plugins.builtin.jump",
    "rules_plugins.builtin.transmission",
    "rules_plugins.builtin.power_loss",
    "rules_plugins.builtin.emergency",
    "rules_plugins.packs.generic",
    "rules_plugins.packs.coating",
    "rules_plugins.packs.printing",
    "rules_plugins.packs.shoemaking",
    "rules_plugins.packs.electroplating",
    "rules_plugins.packs.leather",
    "rules_plugins.packs.foundry",
)

log = Logger()


def builtin_name(module: str) -> str:
    """Built-ins are named by their last module segment (`treatment_off`), the built-in industry packs
    `packs.<segment>` (`packs.coating`: an installed pack may well call itself `coating`), installed packs by
    their entry-point name."""
    package, _, name = module.rpartition(".")
    return f"packs.{name}" if package == "rules_plugins.packs" else name


class Plugins:
    """A pluggy manager plus failure-isolated calls; `failures` counts exceptions per plugin name."""

    def __init__(
        self, disabled: Iterable[str] = (), load_entry_points: bool = True, extra: Iterable[tuple[str, Any]] = ()
    ) -> None:
        """`extra` registers (name, plugin) pairs after the built-ins, as an installed pack would be."""
        self.pm = pluggy.PluginManager("gkjk")
        self.pm.add_hookspecs(hookspecs)
        self.failures: Counter[str] = Counter()
        for name in disabled:
            self.pm.set_blocked(name)
        for module in DEFAULT_PLUGINS:
            self.pm.register(importlib.import_module(module), name=builtin_name(module))
        if load_entry_points:
            self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for name, plugin in extra:
            self.pm.register(plugin, name=name)

    @property
    def names(self) -> list[str]:
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """(plugin name, result) for every implementation that returned non-None, in pluggy's call order."""
        return list(self._each(hook, kwargs))

    def first(self, hook: str, **kwargs: Any) -> Any:
        """The first non-None result (for firstresult hooks), skipping implementations that raise."""
        return next((result for _name, result in self._each(hook, kwargs)), None)

    def _each(self, hook: str, kwargs: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception:
                self.failed(impl.plugin_name, hook)
                continue
            if result is not None:
                yield impl.plugin_name, result

    def failed(self, plugin: str, what: str) -> None:
        """Log the exception being handled and count it against the plugin."""
        self.failures[plugin] += 1
        log.failure("rule plugin {plugin} failed in {what}", plugin=plugin, what=what)

    def defaults(self, industry: str, bureau: Mapping[str, Any] = MappingProxyType({})) -> dict[str, float]:
        """Thresholds for an industry: built-in defaults (trylast) first, then every pack's overrides, then the
        bureau's `[rules.thresholds]` keys, then its `[rules.thresholds.<industry>]` table."""
        merged: dict[str, float] = {}
        for _name, values in reversed(self.call("gkjk_rule_defaults", industry=industry)):
            merged.update(values)
        merged.update((key, value) for key, value in bureau.items() if not isinstance(value, Mapping))
        merged.update(bureau.get(industry, {}))
        return merged

    def check_thresholds(self, bureau: Mapping[str, Any]) -> None:
        """Refuse a bureau threshold no plugin knows, or a table for an unknown industry (ConfigError names it)."""
        known = {key for industry in INDUSTRIES for key in self.defaults(industry)}
        for key, value in bureau.items():
            if not isinstance(value, Mapping):
                table, where = {key: value}, "[rules.thresholds]"
            elif key not in INDUSTRIES:
                industries = ", ".join(INDUSTRIES)
                raise ConfigError(f'[rules.thresholds."{key}"]: unknown industry (one of {industries})')
            else:
                table, where = value, f'[rules.thresholds."{key}"]'
            for name in table:
                if name not in known:
                    raise ConfigError(f"{where} {name}: unknown threshold (known: {', '.join(sorted(known))})")

    def template(self, industry: str) -> Template | None:
        """The facility template of an industry (hook `gkjk_facility_template`), or None if no pack has one."""
        return self.first("gkjk_facility_template", industry=industry)

    def rules(self, enterprise: Enterprise) -> list[tuple[str, Rule]]:
        """(plugin name, rule) for every rule any plugin applies to the enterprise."""
        found = []
        for name, rules in self.call("gkjk_rules", enterprise=enterprise):
            try:
                found.extend((name, rule) for rule in list(rules))
            except Exception:
                self.failed(name, "gkjk_rules")
        return found


def parse_disabled(value: str) -> list[str]:
    """`[rules] disabled_plugins` is a comma-separated list of plugin names."""
    return [name.strip() for name in value.split(",") if name.strip()]

