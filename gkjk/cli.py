"""The `gkjk` command: one entry point for every process of the platform."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gkjk.config import Config, ConfigError, load_config


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(Path(args.config) if args.config else None)
    except ConfigError as error:
        sys.exit(f"gkjk: configuration error: {error}")


def cmd_serve(args: argparse.Namespace) -> None:
    from gkjk.registry import RegistryError
    from ingest_twisted import supervisor

    config = _config(args)
    try:
        if args.worker is not None:
            supervisor.run_worker(config, args.worker, reuse_port=True, status=args.status)
        elif config.ingest.workers == 1:
            supervisor.run_worker(config, 0, reuse_port=False, status=args.status)
        else:
            supervisor.run_supervisor(config, args.config, status=args.status)
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")


def cmd_status(args: argparse.Namespace) -> None:
    from ingest_twisted import supervisor

    print(supervisor.status_line(_config(args), previous=None)[0])


def cmd_simulate(args: argparse.Namespace) -> None:
    from ingest_twisted import simulator

    simulator.main(args, _config(args))


def cmd_registry_check(args: argparse.Namespace) -> None:
    from gkjk.registry import RegistryError, load_registry

    try:
        registry = load_registry(Path(args.path))
    except RegistryError as error:
        sys.exit(str(error))
    devices = sum(len(e.devices) for e in registry.enterprises.values())
    print(f"{args.path}: {len(registry.enterprises)} enterprises, {devices} devices: valid")


def cmd_influxd(args: argparse.Namespace) -> None:
    from gkjk.influxd import serve

    serve(Path(args.dir), args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gkjk", description="Enterprise working-condition monitoring platform")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML configuration file (every default: gkjk/default.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the HJ 212 ingest server")
    serve.add_argument("--status", action="store_true", help="print a line of figures every few seconds")
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    status = commands.add_parser("status", parents=[common], help="print the running server's figures once")
    status.set_defaults(func=cmd_status)

    simulate = commands.add_parser("simulate", parents=[common], help="play the registry's devices over real TCP")
    from ingest_twisted.simulator import add_arguments

    add_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)

    influxd = commands.add_parser("influxd", help="run a local InfluxDB (Debian's influxd) with data in a directory")
    influxd.add_argument("--dir", default="var/influxdb", help="data and config directory (default var/influxdb)")
    influxd.add_argument("--port", type=int, default=8086, help="HTTP port on 127.0.0.1 (default 8086)")
    influxd.set_defaults(func=cmd_influxd)

    registry = commands.add_parser("registry", help="site registry tools")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    check = registry_commands.add_parser("check", parents=[common], help="validate a registry directory or file")
    check.add_argument("path")
    check.set_defaults(func=cmd_registry_check)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
