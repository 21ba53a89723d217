"""Write a benchmark's figures into its own section of docs/benchmarks.md, leaving the others as they are.

A section may end with a reading written by hand, after a `HAND_WRITTEN` line: a rerun replaces the figures above
that line and keeps the line and what follows it.
"""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
PREAMBLE = """\
# Benchmarks

Produced by the scripts in `bench/`; each run rewrites its own section. Figures are from
one run on the machine named in the section (these are noisy shared 2-core machines:
compare ratios measured in the same run rather than absolute numbers across runs).
"""
HAND_WRITTEN = "<!-- written by hand below: kept when the bench runs again -->"


def write_section(title: str, body: str) -> None:
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else PREAMBLE
    stamp = f"_{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, Python {platform.python_version()}_"
    section = f"## {title}\n\n{stamp}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    if found:
        _, marker, kept = found.group().partition(HAND_WRITTEN)
        text = text[:found.start()] + section + (f"\n{marker}{kept.rstrip()}\n" if marker else "") + "\n" + \
            text[found.end():]
        text = text.rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    BENCHMARKS.parent.mkdir(exist_ok=True)
    BENCHMARKS.write_text(text, encoding="utf-8")
