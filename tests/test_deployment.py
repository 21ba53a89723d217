"""The systemd units of config/systemd/ (docs/deployment.md): what they run is a command the CLI accepts, and
systemd itself finds nothing wrong with them (`systemd-analyze verify`, with the commands pointed at this checkout)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gkjk.cli import build_parser
from gkjk.config import load_config

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "config" / "systemd"
INSTALLED = "/opt/gkjk/.venv/bin/gkjk"
SERVICES = {"gkjk-serve.service": "serve", "gkjk-rules.service": "rules", "gkjk-relay.service": "relay"}


def settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values]}} of a unit file (systemd allows a key more than once)."""
    found: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            found.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        found[section].setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("name, command", sorted(SERVICES.items()))
def test_each_service_runs_its_command_as_the_gkjk_user(name: str, command: str) -> None:
    unit = settings(UNITS / name)
    service = unit["Service"]
    [start] = service["ExecStart"]
    program, *arguments = shlex.split(start)
    assert program == INSTALLED and arguments[0] == command
    parsed = build_parser().parse_args(arguments)  # exits (SystemExit) on an option the CLI does not have
    assert parsed.config == "/etc/gkjk/gkjk.toml"
    assert (service["User"], service["Group"], service["WorkingDirectory"]) == (["gkjk"], ["gkjk"], ["/var/lib/gkjk"])
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # every service reloads the registry on SIGHUP
    assert service["Restart"] == ["always"] and unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "influxdb.service" in unit["Unit"]["After"][0]


def test_the_relay_refuses_to_start_without_its_secrets_file() -> None:
    """The relay needs GKJK_RELAY_TOKEN: its environment file is required (no leading '-'); the others' optional."""
    assert settings(UNITS / "gkjk-relay.service")["Service"]["EnvironmentFile"] == ["/etc/gkjk/env"]
    for name in ("gkjk-serve.service", "gkjk-rules.service"):
        assert settings(UNITS / name)["Service"]["EnvironmentFile"] == ["-/etc/gkjk/env"]


def test_influxdb_drop_in_lowers_its_priority() -> None:
    service = settings(UNITS / "influxdb.service.d" / "gkjk.conf")["Service"]
    assert service == {"Nice": ["10"], "Environment": ["GOGC=400"]}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong(tmp_path: Path) -> None:
    gkjk = ROOT / ".venv" / "bin" / "gkjk"
    assert gkjk.exists(), "the test command installs the project into .venv"
    for name in SERVICES:
        (tmp_path / name).write_text((UNITS / name).read_text(encoding="utf-8").replace(INSTALLED, str(gkjk)),
                                     encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result


def test_the_configuration_of_docs_deployment_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    block = text.split("cat > /etc/gkjk/gkjk.toml <<'TOML'\n", 1)[1].split("\nTOML\n", 1)[0]
    path = tmp_path / "gkjk.toml"
    path.write_text(block, encoding="utf-8")
    config = load_config(path, environ={})
    assert (config.registry.path, config.spool.path, config.relay.outbox) == (
        "/etc/gkjk/registry", "/var/lib/gkjk/spool", "/var/lib/gkjk/relay/outbox.sqlite")
