"""The `state` measurement: run state and fan load per metered facility and minute, written only when new or changed.

Every evaluation derives the whole window again (late data may change any minute of it), but rewriting it all
would cost `lookback_minutes` lines per facility per cycle. The writer remembers what it last stored per
facility and minute, in two small arrays per facility, and emits only minutes it has not written or whose value
differs. What is stored is the same as a full rewrite would store; a new process (empty memory) rewrites its
first window once.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from typing import Any

from ingest_twisted.lineprotocol import point
from rules_plugins.site import RUN_QUANTITIES, Site

NO_RUN = -1  # run unknown
NO_LOAD = math.nan  # load unknown

Written = tuple[int, array, array]  # (first minute, run per minute, load per minute)


class StateWriter:
    """Lines for the `state` points that differ from what was written; `commit` once they are stored."""

    def __init__(self) -> None:
        self._written: dict[tuple[str, str], Written] = {}
        self._pending: dict[tuple[str, str], Written] = {}

    def lines(self, site: Site) -> list[bytes]:
        lines = []
        minutes = site.minutes
        facilities = (*site.enterprise.facilities.production, *site.enterprise.facilities.treatment)
        for facility in facilities:
            if not site.points(facility.id, *RUN_QUANTITIES):
                continue
            run_states, loads = site.run_states(facility.id), site.loads(facility.id)
            runs = array("b", [run_states.get(m, NO_RUN) for m in minutes])
            rounded = array("d", [NO_LOAD if (x := loads.get(m)) is None else round(x, 1) for m in minutes])
            key = (site.enterprise.id, facility.id)
            self._pending[key] = (minutes.start, runs, rounded)
            changed = self.changed(key, minutes, runs, rounded)
            if not changed:
                continue
            tags = {"ent": site.enterprise.id, "county": site.enterprise.county, "fac": facility.id}
            for i in changed:
                fields: dict[str, Any] = {}
                if runs[i] != NO_RUN:
                    fields["run"] = runs[i]
                if not math.isnan(rounded[i]):
                    fields["load"] = rounded[i]
                if fields:
                    lines.append(point("state", tags, fields, minutes[i]))
        return lines

    def changed(self, key: tuple[str, str], minutes: range, runs: array, loads: array) -> Iterable[int]:
        """Indexes of the minutes whose states differ from what was written (all of them if nothing was)."""
        if key not in self._written:
            return range(len(minutes))
        first, old_runs, old_loads = self._written[key]
        shift = (minutes.start - first) // 60
        if 0 <= shift < len(old_runs):
            kept = len(old_runs) - shift  # minutes both windows hold; the rest are new
            if old_runs[shift:] == runs[:kept] and old_loads[shift:].tobytes() == loads[:kept].tobytes():
                return range(kept, len(minutes))
        return [i for i, minute in enumerate(minutes)
                if not (0 <= (j := (minute - first) // 60) < len(old_runs)
                        and old_runs[j] == runs[i] and same(old_loads[j], loads[i]))]

    def commit(self) -> None:
        """Remember this evaluation's states (after they were written; facilities no longer seen are dropped)."""
        self._written, self._pending = self._pending, {}


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))
