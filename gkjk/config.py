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
    pin_workers: bool = True
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
        return split_listen(self.listen, "0.0.0.0")[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen, "0.0.0.0")[1]


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
    fsync_interval: float = 0.01
    segment_bytes: int = 64 * 1024 * 1024
    batch_max_lines: int = 5000
    batch_max_bytes: int = 2 * 1024 * 1024
    flush_interval: float = 0.2

    def worker_directory(self, index: int) -> Path:
        """Worker ``index``'s own spool, with its dead-letter file: ``<path>/worker-<index>``."""
        return Path(self.path) / f"{WORKER_PREFIX}{index}"

    def worker_directories(self) -> list[Path]:
        """The worker directories under ``path`` (also of workers no longer configured), by worker number."""
        found = [p for p in Path(self.path).glob(f"{WORKER_PREFIX}*") if p.name.removeprefix(WORKER_PREFIX).isdigit()]
        return sorted(found, key=lambda p: int(p.name.removeprefix(WORKER_PREFIX)))


WORKER_PREFIX = "worker-"


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
    emergency_path: str = ""
    history_hours: int = 48
    history_reload_minutes: int = 60
    # Bureau thresholds: global keys, and a table per industry (rules_plugins.plugins.Plugins.defaults).
    thresholds: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    listen: str = "127.0.0.1:9300"
    public_url: str = "http://127.0.0.1:9300"
    token: str = ""
    outbox: str = "var/relay/outbox.sqlite"
    dead_letters: str = "var/relay/dead-letters.jsonl"
    dry_run: bool = False
    dry_run_log: str = "var/relay/dry-run.jsonl"
    dedup_hours: float = 72.0
    max_attempts: int = 12
    retry_initial: float = 10.0
    retry_max: float = 1800.0
    timeout: float = 15.0
    dingtalk_base_url: str = "https://oapi.dingtalk.com"
    dingtalk_secret: str = ""
    dingtalk_secrets: str = ""
    dingtalk_msgtype: str = "markdown"
    dingtalk_per_minute: int = 20
    sms_provider: str = "aliyun"
    sms_per_phone_per_hour: int = 5
    aliyun_endpoint: str = "https://dysmsapi.aliyuncs.com"
    aliyun_region: str = "cn-hangzhou"
    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: str = ""
    aliyun_sign_name: str = ""
    aliyun_template_code: str = ""
    bureau_dingtalk: str = ""
    bureau_phones: str = ""

    @property
    def host(self) -> str:
        return split_listen(self.listen, "127.0.0.1")[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen, "127.0.0.1")[1]


@dataclass(frozen=True, slots=True)
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    influx: InfluxConfig = field(default_factory=InfluxConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)


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
    elif kind is dict and isinstance(value, dict):
        return value
    raise ConfigError(f"{setting}: expected {kind.__name__}, got {value!r}")


_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "dict[str, Any]": dict}


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


def split_listen(listen: str, default_host: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); an empty host is `default_host`. ValueError when the port is no number."""
    host, _, port = listen.rpartition(":")
    return host or default_host, int(port)


def _check_listen(section: str, listen: str) -> None:
    try:
        _, port = split_listen(listen, "")
    except ValueError:
        raise ConfigError(f"[{section}] listen: expected HOST:PORT, got {listen!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"[{section}] listen: port {port} out of range")


def _validate(config: Config) -> None:
    ingest = config.ingest
    _check_listen("ingest", ingest.listen)
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
    if config.rules.history_hours < 1:
        raise ConfigError("[rules] history_hours: must be at least 1")
    if config.rules.history_reload_minutes < 0:
        raise ConfigError("[rules] history_reload_minutes: must not be negative")
    _validate_thresholds(config.rules.thresholds)
    if config.spool.fsync_interval < 0:
        raise ConfigError("[spool] fsync_interval: must not be negative")
    if config.metrics.interval <= 0:
        raise ConfigError("[metrics] interval: must be positive")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(ingest.timezone)
    except Exception:
        raise ConfigError(f"[ingest] timezone: unknown time zone {ingest.timezone!r}") from None
    _validate_relay(config.relay)


def _validate_relay(relay: RelayConfig) -> None:
    _check_listen("relay", relay.listen)
    if relay.dingtalk_msgtype not in ("text", "markdown"):
        raise ConfigError(f"[relay] dingtalk_msgtype: expected text or markdown, got {relay.dingtalk_msgtype!r}")
    if relay.max_attempts < 1:
        raise ConfigError("[relay] max_attempts: must be at least 1")
    if not 0 < relay.retry_initial <= relay.retry_max:
        raise ConfigError("[relay] retry_initial: must be positive and at most retry_max")
    for key in ("dingtalk_per_minute", "sms_per_phone_per_hour"):
        if getattr(relay, key) < 1:
            raise ConfigError(f"[relay] {key}: must be at least 1")
    for key in ("timeout", "dedup_hours"):
        if getattr(relay, key) <= 0:
            raise ConfigError(f"[relay] {key}: must be positive")


def _validate_thresholds(thresholds: Mapping[str, Any]) -> None:
    """Numbers, globally or in one table per industry; which keys exist is known only to the rule plugins, so
    `gkjk rules` checks the names at start (rules_plugins.plugins.Plugins.check_thresholds)."""
    for key, value in thresholds.items():
        table, where = (value, f'[rules.thresholds."{key}"]') if isinstance(value, dict) else \
            ({key: value}, "[rules.thresholds]")
        for name, number in table.items():
            if not isinstance(number, (int, float)) or isinstance(number, bool):
                raise ConfigError(f"{where} {name}: expected a number, got {number!r}")
