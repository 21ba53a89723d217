"""Episode scanning: exact open and close minutes from per-minute verdicts (no InfluxDB)."""

from __future__ import annotations

from rules_plugins.episodes import Episode, episode_id, scan

V = {"x": "1"}  # a violating verdict


def verdicts(spec: str) -> dict[int, object]:
    """One character per minute: x violating, . clear, ? unknown."""
    return {i * 60: {"x": V, ".": False, "?": None}[c] for i, c in enumerate(spec)}


def run(spec: str, duration: int = 3, hold_off: int = 2, seed: Episode | None = None) -> list[tuple]:
    found = scan(range(0, len(spec) * 60, 60), verdicts(spec), duration, hold_off, lambda s: f"id{s}", seed)
    return [(e.started // 60, e.opened // 60, None if e.ended is None else e.ended // 60,
             None if e.closed is None else e.closed // 60) for e in found]


def test_opens_after_duration_and_closes_after_hold_off():
    assert run("..xxxx..x..") == [(2, 5, 6, 8)]  # the x at 8 comes after the close: too short to open


def test_short_violation_and_unknown_minutes_do_not_open():
    assert run("xx.xx?xx.") == []


def test_violation_within_hold_off_keeps_the_episode():
    assert run("xxx.x..") == [(0, 3, 5, 7)]


def test_unknown_minute_restarts_the_clear_count_and_episode_stays_open_at_the_end():
    assert run("xxx.?.") == [(0, 3, None, None)]


def test_seeded_open_episode_continues_with_its_own_id():
    seed = Episode("old", -600, -420, V)
    [episode] = scan(range(0, 300, 60), verdicts("x..xx"), 3, 2, lambda s: f"id{s}", seed)
    assert (episode.id, episode.started, episode.ended, episode.closed) == ("old", -600, 60, 180)


def test_ids_are_stable_and_distinct():
    assert episode_id("treatment_off", "E", "T1", 60) == episode_id("treatment_off", "E", "T1", 60)
    assert episode_id("treatment_off", "E", "T1", 60) != episode_id("treatment_off", "E", "T1", 120)
