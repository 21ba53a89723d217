"""Configuration: one TOML file, every default written down, environment overrides.

The defaults live in the dataclasses below and, with their documentation, in
`default.toml` beside this module; a test keeps the two equal. Any key can be
overridden from the environment as ``GKJK_<SECTION>_<KEY>``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

DEFAULT_TOML = Path(__file__).with_name("default.toml")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the setting."""


@dataclass(frozen=True, slots=True)
class IngestConfig:
    listen: str = "0.0.0.0:9212"
    workers: int = 1
    max_segment_bytes: int = 4096
    idle_timeout: float = 600.0
    max_connections_per_ip: int = 1000
    max_connections: int = 20000
    max_pending_per_connection: int = 2000
    timezone: str = "Asia/Shanghai"
    reassembly_timeout: float = 120.0
    max_auth_failures: int = 10

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0] or "0.0.0.0"

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    url: str = "http://127.0.0.1:8086"
    api: str = "v1"
    database: str = "gkjk"
    retention_policy: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    org: str = ""
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    path: str = "registry/demo"


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    path: str = "var/spool"
    fsync_interval: float = 0.005
    segment_bytes: int = 64 * 1024 * 1024
    batch_max_lines: int = 5000
    batch_max_bytes: int = 2 * 1024 * 1024
    flush_interval: float = 0.2


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    interval: float = 10.0


@dataclass(frozen=True, slots=True)
class BackfillConfig:
    enabled: bool = True
    rate: float = 5.0
    grace_seconds: float = 120.0
    retry_minutes: float = 30.0
    max_age_hours: float = 48.0


@dataclass(frozen=True, slots=True)
class RulesConfig:
    interval: float = 60.0
    lookback_minutes: int = 60
    hold_off_minutes: int = 5
    context_minutes: int = 10
    disabled_plugins: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)


def _coerce(setting: str, kind: type, value: Any) -> Any:
    """Turn a TOML or environment value into the setting's type, or say which setting is wrong."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{setting}: expected {kind.__name__}, got {value!r}")


_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def _section(name: str, current: Any, values: Mapping[str, Any]) -> Any:
    known = {f.name: _TYPES[f.type] for f in fields(current)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"[{name}] unknown key(s): {', '.join(unknown)}")
    return replace(current, **{k: _coerce(f"[{name}] {k}", known[k], v) for k, v in values.items()})


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (optional) over the defaults, then apply GKJK_<SECTION>_<KEY> overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = Config()
    sections = {f.name for f in fields(config)}
    unknown = sorted(set(data) - sections)
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    env = os.environ if environ is None else environ
    updated = {}
    for name in sorted(sections):
        section = getattr(config, name)
        values = dict(data.get(name, {}))
        for key in (f.name for f in fields(section)):
            env_value = env.get(f"GKJK_{name.upper()}_{key.upper()}")
            if env_value is not None:
                values[key] = env_value
        updated[name] = _section(name, section, values)
    result = Config(**updated)
    _validate(result)
    return result


def _validate(config: Config) -> None:
    ingest = config.ingest
    try:
        port = ingest.port
    except ValueError:
        raise ConfigError(f"[ingest] listen: expected HOST:PORT, got {ingest.listen!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"[ingest] listen: port {port} out of range")
    if ingest.workers < 1:
        raise ConfigError("[ingest] workers: must be at least 1")
    if not 64 <= ingest.max_segment_bytes <= 65535:
        raise ConfigError("[ingest] max_segment_bytes: must be between 64 and 65535")
    if config.influx.api not in ("v1", "v2", "v3"):
        raise ConfigError(f"[influx] api: expected v1, v2 or v3, got {config.influx.api!r}")
    if config.rules.interval <= 0:
        raise ConfigError("[rules] interval: must be positive")
    if config.rules.hold_off_minutes < 0:
        raise ConfigError("[rules] hold_off_minutes: must not be negative")
    if config.rules.context_minutes < 0:
        raise ConfigError("[rules] context_minutes: must not be negative")
    if config.rules.lookback_minutes <= config.rules.hold_off_minutes:
        raise ConfigError("[rules] lookback_minutes: must be longer than hold_off_minutes")
    if config.spool.fsync_interval < 0:
        raise ConfigError("[spool] fsync_interval: must not be negative")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(ingest.timezone)
    except Exception:
        raise ConfigError(f"[ingest] timezone: unknown time zone {ingest.timezone!r}") from None
