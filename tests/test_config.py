"""The configuration file documents every default, and overrides behave."""

import re
import tomllib
from dataclasses import asdict

import pytest

from gkjk.config import DEFAULT_TOML, Config, ConfigError, SpoolConfig, load_config


def documented_defaults() -> dict:
    """default.toml with its `# key = value` lines uncommented."""
    text = DEFAULT_TOML.read_text(encoding="utf-8")
    return tomllib.loads(re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M))


def test_default_toml_documents_every_default_exactly():
    assert documented_defaults() == asdict(Config())


def test_file_then_environment_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[influx]\nurl = "http://db:8086"\n[ingest]\nworkers = 2\n', encoding="utf-8")
    config = load_config(path, environ={"GKJK_INGEST_WORKERS": "3", "GKJK_BACKFILL_ENABLED": "false"})
    assert config.influx.url == "http://db:8086"
    assert config.ingest.workers == 3
    assert config.backfill.enabled is False
    assert config.spool == Config().spool


@pytest.mark.parametrize(
    "text, environ, message",
    [
        ("[ingest]\nlisten = 5\n", {}, "[ingest] listen: expected str"),
        ("[ingest]\nlisten = \"x:y\"\n", {}, "[ingest] listen: expected HOST:PORT"),
        ("[ingest]\nlisten = \":70000\"\n", {}, "[ingest] listen: port 70000 out of range"),
        ("", {"GKJK_RELAY_LISTEN": "relay"}, "[relay] listen: expected HOST:PORT"),
        ("[relay]\nlisten = \"127.0.0.1:-1\"\n", {}, "[relay] listen: port -1 out of range"),
        ("[ingets]\n", {}, "unknown section(s): ingets"),
        ("[influx]\nurll = \"x\"\n", {}, "[influx] unknown key(s): urll"),
        ("", {"GKJK_INGEST_WORKERS": "two"}, "[ingest] workers: expected int"),
        ("[influx]\napi = \"v4\"\n", {}, "[influx] api: expected v1, v2 or v3"),
        ("[ingest]\ntimezone = \"Mars/Base\"\n", {}, "[ingest] timezone: unknown time zone"),
        ("[ingest\n", {}, "not valid TOML"),
        ("[metrics]\ninterval = 0\n", {}, "[metrics] interval: must be positive"),
    ],
)
def test_errors_name_the_setting(tmp_path, text, environ, message):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ)
    assert message in str(info.value)


def test_worker_directories_are_numbered_under_the_spool_path(tmp_path):
    spool = SpoolConfig(path=str(tmp_path))
    assert spool.worker_directory(3) == tmp_path / "worker-3"
    for name in ("worker-10", "worker-2", "worker-x", "status-0.json"):
        (tmp_path / name).mkdir()
    assert spool.worker_directories() == [tmp_path / "worker-2", tmp_path / "worker-10"]
