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
from itertools import repeat

from ingest_twisted.lineprotocol import escape_key
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
            runs = array("b", map(run_states.get, minutes, repeat(NO_RUN)))
            rounded = (array("d", [NO_LOAD if (x := loads.get(m)) is None else round(x, 1) for m in minutes])
                       if loads else array("d", [NO_LOAD]) * len(minutes))
            key = (site.enterprise.id, facility.id)
            self._pending[key] = (minutes.start, runs, rounded)
            changed = self.changed(key, minutes, runs, rounded)
            if not changed:
                continue
            prefix = series_key(site.enterprise.county, site.enterprise.id, facility.id)
            for i in changed:
                run, load = runs[i], rounded[i]
                if load - load == 0.0:  # not NaN (unknown)
                    fields = f"run={run}i,load={load!r}" if run != NO_RUN else f"load={load!r}"
                elif run != NO_RUN:
                    fields = f"run={run}i"
                else:
                    continue
                lines.append(f"{prefix} {fields} {minutes[i]}".encode())
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


def series_key(county: str, enterprise: str, facility: str) -> str:
    """`state,county=…,ent=…,fac=…` as ingest_twisted.lineprotocol.point writes it (tags sorted, empty ones left
    out): the lines are formatted here directly, 1.2 million of them on a fresh engine's first evaluation."""
    tags = ((key, escape_key(value)) for key, value in (("county", county), ("ent", enterprise), ("fac", facility)))
    return "state" + "".join(f",{key}={value}" for key, value in tags if value)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))
