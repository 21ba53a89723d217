"""The rule engine: pluggy hooks, built-in rules and the evaluator that turns InfluxDB data into alarms.

Rule packs import `hookimpl` from here, as datasette plugins do from `datasette`.
"""

import pluggy

hookimpl = pluggy.HookimplMarker("gkjk")

__all__ = ["hookimpl"]
