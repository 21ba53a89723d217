"""bench/report.py: a rerun replaces a section's figures and keeps the reading written by hand below its marker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import report  # noqa: E402


@pytest.fixture
def benchmarks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "benchmarks.md"
    monkeypatch.setattr(report, "BENCHMARKS", path)
    return path


def test_rerun_replaces_figures_and_keeps_the_hand_written_reading(benchmarks: Path) -> None:
    report.write_section("Codec", "| rate | 1 |")
    report.write_section("Rules", "| cold | 12 s |")
    benchmarks.write_text(benchmarks.read_text().replace(
        "| cold | 12 s |\n", f"| cold | 12 s |\n\n{report.HAND_WRITTEN}\nCold misses 10 s because ...\n"))
    report.write_section("Rules", "| cold | 9 s |")
    report.write_section("Codec", "| rate | 2 |")
    text = benchmarks.read_text()
    assert "| cold | 12 s |" not in text and "| rate | 1 |" not in text
    rules = text[text.index("## Rules"):]
    assert rules.index("| cold | 9 s |") < rules.index(report.HAND_WRITTEN) < rules.index("Cold misses 10 s")
    assert text.index("## Codec") < text.index("## Rules") and text.count("Cold misses") == 1
    assert text.endswith("Cold misses 10 s because ...\n")


def test_a_section_without_a_reading_is_replaced_whole(benchmarks: Path) -> None:
    report.write_section("Codec", "| rate | 1 |")
    report.write_section("Codec", "| rate | 2 |")
    text = benchmarks.read_text()
    assert text.count("## Codec") == 1 and "| rate | 2 |\n" in text and report.HAND_WRITTEN not in text
