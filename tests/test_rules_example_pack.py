"""The example rule pack (examples/gkjk-rules-example) installed with pip as a third party would: the engine of a
real `gkjk rules` process finds it through the `gkjk.rules` entry point and its alarm reaches InfluxDB; the
pack's own tests pass against the installed copy."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gkjk_process import start_gkjk, write_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "gkjk-rules-example"
REGISTRY = ROOT / "tests" / "data" / "packs" / "shoemaking.yaml"
ENT, MN = "91320682MA1PK0004U", "010000A8900016F0000PK004"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pip --target directory, copy of the example's sources); built from a copy so the tree stays clean."""
    work = tmp_path_factory.mktemp("example-pack")
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = work / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return target, source


def test_pip_installs_the_entry_point(installed):
    target, _source = installed
    [dist] = [d for d in importlib.metadata.distributions(path=[str(target)])
              if d.metadata["Name"] == "gkjk-rules-example"]
    assert [(e.group, e.name, e.value) for e in dist.entry_points] == [("gkjk.rules", "uv_lamps", "gkjk_rules_example")]


def test_gkjk_rules_loads_it_and_stores_its_alarm(installed, influx_db, tmp_path, monkeypatch):
    influx, db = influx_db
    minute = int(time.time() // 60) * 60
    lines = []
    for m in range(-25, 1):  # the gluing line runs; the UV unit draws 6 A of its 10 A rated: tubes burnt out
        for fac, factor, value in (("P1", "i33200", 10), ("T1", "i33220", 6.0)):
            lines.append(f"rtd,county=如皋市,ent={ENT},fac={fac},mn={MN} {factor}-Rtd={value} {minute + 60 * m}")
    influx.write("\n".join(lines).encode(), db, precision="s")
    config = write_config(tmp_path / "gkjk.toml", {
        "influx": {"url": influx.url, "database": db},
        "registry": {"path": str(REGISTRY)},
        "rules": {"interval": 0.5, "disabled_plugins": "offline"},
    })
    monkeypatch.setenv("PYTHONPATH", str(installed[0]))
    log = tmp_path / "rules.log"
    process = start_gkjk("rules", config, log)
    try:
        deadline, rows = time.monotonic() + 30, []
        while not rows and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            result = influx.query('SELECT "state", "started", "severity", "message" FROM "alarm" '
                                  "WHERE \"rule\" = 'uv_lamp'", db=db, epoch="s")
            rows = result["results"][0].get("series", [{}])[0].get("values", [])
        assert rows, log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=10)
    # Violated from the first minute read (25 minutes ago): open after uv_lamp_minutes (10).
    assert rows[0] == [minute - 15 * 60, "open", minute - 25 * 60, "low",
                       "示例制鞋企业：生产设施运行期间，治污设施 UV光氧净化器 灯管电流仅为额定值的 60%（低于 80%），"
                       "疑似灯管损坏，已持续 10 分钟"]
    started = next(line for line in log.read_text().splitlines() if "rule plugins:" in line)
    assert started.endswith(", uv_lamps"), started


def test_the_packs_own_tests_pass_against_the_installed_copy(installed):
    target, source = installed
    shutil.rmtree(source / "gkjk_rules_example")  # the tests must import the installed package
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
                          capture_output=True, text=True, cwd=source, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
