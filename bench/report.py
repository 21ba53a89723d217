"""Write a benchmark's figures into its own section of docs/benchmarks.md, leaving the others as they are."""

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


def write_section(title: str, body: str) -> None:
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else PREAMBLE
    stamp = f"_{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, Python {platform.python_version()}_"
    section = f"## {title}\n\n{stamp}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    BENCHMARKS.parent.mkdir(exist_ok=True)
    BENCHMARKS.write_text(text, encoding="utf-8")
