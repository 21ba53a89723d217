"""Alarm episodes from per-minute verdicts: open after the violation held, close after it stayed clear.

A pure function of the verdicts and of the episode already open when the scan starts, so evaluating the same
window again (after late data, or after a restart) gives the same episodes, the same ids, the same times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from rules_plugins.model import Verdict


@dataclass(frozen=True, slots=True)
class Episode:
    id: str
    started: int  # first violating minute (epoch s)
    opened: int  # started + duration: when the alarm opens
    context: Mapping[str, Any]  # the verdict of the first minute: what the message names
    ended: int | None = None  # first clear minute
    closed: int | None = None  # ended + hold-off: when the alarm closes


def episode_id(rule: str, enterprise: str, subject: str, started: int) -> str:
    """Stable across re-evaluations and restarts: the same violation always gets the same id."""
    return hashlib.sha1(f"{rule}|{enterprise}|{subject}|{started}".encode()).hexdigest()[:16]


def scan(
    minutes: Iterable[int],
    verdicts: Mapping[int, Verdict],
    duration: int,
    hold_off: int,
    make_id: Callable[[int], str],
    open_episode: Episode | None = None,
) -> list[Episode]:
    """Episodes that open within `minutes` (plus `open_episode`, carried in from before the scan).

    Violating for `duration` whole minutes opens (at start + duration); clear for `hold_off` whole minutes
    closes (at first clear minute + hold_off). A minute the data cannot judge restarts both counts.
    """
    episodes: list[Episode] = []
    current = open_episode
    run_start: int | None = None
    run_context: Mapping[str, Any] = {}
    clear_start: int | None = None
    for minute in minutes:
        verdict = verdicts.get(minute)
        if current is None:
            if verdict:
                if run_start is None:
                    run_start, run_context = minute, verdict
                if minute + 60 - run_start >= duration * 60:
                    current = Episode(make_id(run_start), run_start, run_start + duration * 60, run_context)
                    clear_start = None
            else:
                run_start = None
        elif verdict is False:
            clear_start = minute if clear_start is None else clear_start
            if minute + 60 - clear_start >= hold_off * 60:
                episodes.append(replace(current, ended=clear_start, closed=clear_start + hold_off * 60))
                current, run_start = None, None
        else:
            clear_start = None
    if current is not None:
        episodes.append(current)
    return episodes
