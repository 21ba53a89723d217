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


def cmd_rules(args: argparse.Namespace) -> None:
    from gkjk.registry import RegistryError
    from rules_plugins import engine

    try:
        engine.run(_config(args))
    except ConfigError as error:
        sys.exit(f"gkjk: configuration error: {error}")
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")


def cmd_relay(args: argparse.Namespace) -> None:
    from gkjk.registry import RegistryError
    from gkjk.relay import service

    try:
        service.run(_config(args), dry_run=args.dry_run)
    except ConfigError as error:
        sys.exit(f"gkjk: configuration error: {error}")
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")


def cmd_registry_template(args: argparse.Namespace) -> None:
    from rules_plugins.packs.template import skeleton
    from rules_plugins.plugins import Plugins, parse_disabled

    plugins = Plugins(parse_disabled(_config(args).rules.disabled_plugins))
    template = plugins.template(args.industry)
    if template is None:
        sys.exit(f"gkjk: registry template: no rule pack has a facility template for industry {args.industry!r}")
    text = skeleton(template)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def cmd_carbon_replaced(args: argparse.Namespace) -> None:
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from gkjk.registry import RegistryError, load_registry
    from ingest_twisted.server import influx_client
    from rules_plugins.builtin import carbon

    config = _config(args)
    try:
        registry = load_registry(Path(config.registry.path))
        line, said = carbon.replacement(registry, args.enterprise, args.facility, args.at, args.note or "",
                                        config.ingest.timezone)
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")
    except ValueError as error:
        sys.exit(f"gkjk: carbon replaced: {error}")

    async def store(reactor) -> None:
        client = influx_client(config, reactor)
        try:
            await client.write(line, precision="s")
        finally:
            await client.close()
        print(said)

    task.react(lambda reactor: Deferred.fromCoroutine(store(reactor)))


def cmd_dead_letters_list(args: argparse.Namespace) -> None:
    from ingest_twisted import deadletter

    sys.exit(deadletter.list_command(_config(args).spool, sys.stdout))


def cmd_dead_letters_replay(args: argparse.Namespace) -> None:
    from twisted.internet import task

    from ingest_twisted import deadletter
    from ingest_twisted.server import influx_client

    config = _config(args)

    async def replay(reactor) -> None:
        client = influx_client(config, reactor)
        try:
            code = await deadletter.replay_command(config.spool, client, args.dry_run, sys.stdout, sys.stderr)
        finally:
            await client.close()
        raise SystemExit(code)

    task.react(replay)


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


def cmd_modbus_sim(args: argparse.Namespace) -> None:
    from gkjk.registry import RegistryError, load_registry
    from ingest_twisted.field import modbus_sim
    from ingest_twisted.field.scenario import Scenario, ScenarioError, load_scenario

    config = _config(args)
    try:
        registry = load_registry(Path(args.registry or config.registry.path))
        scenario = load_scenario(Path(args.scenario)) if args.scenario else Scenario()
        modbus_sim.main(args, registry, scenario, config.ingest.timezone)
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")
    except ScenarioError as error:
        sys.exit(f"gkjk: scenario error: {error}")
    except (ValueError, RuntimeError) as error:
        sys.exit(f"gkjk: modbus-sim: {error}")


def cmd_logger(args: argparse.Namespace) -> None:
    from gkjk.registry import RegistryError, load_registry
    from ingest_twisted.field import logger

    config = _config(args)
    try:
        registry = load_registry(Path(args.registry or config.registry.path))
        logger.main(args, registry, config.ingest.timezone)
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")
    except ValueError as error:
        sys.exit(f"gkjk: logger: {error}")


def cmd_telegraf_build(args: argparse.Namespace) -> None:
    from gkjk.registry import RegistryError, load_registry
    from ingest_twisted.field import telegraf

    config = _config(args)
    try:
        registry = load_registry(Path(args.registry or config.registry.path))
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")
    options = telegraf.Options(args.modbus_host, args.port_base, args.byte_order, config.influx, args.hosts_database,
                               args.framer)
    try:
        written = telegraf.build(registry, Path(args.out), options)
    except ValueError as error:  # a registry modbus block whose overrides collide (layout.LayoutError)
        sys.exit(f"gkjk: telegraf build: {error}")
    print(f"{args.out}: {len(written)} Telegraf configs written")


def cmd_grafana_build(args: argparse.Namespace) -> None:
    from gkjk import grafana
    from gkjk.registry import RegistryError, load_registry

    config = _config(args)
    try:
        registry = load_registry(Path(args.registry or config.registry.path))
    except RegistryError as error:
        sys.exit(f"gkjk: site registry error: {error}")
    for warning in grafana.warnings(registry):
        print(f"gkjk: grafana: {warning}", file=sys.stderr)
    written = grafana.build(registry, Path(args.out), config.influx, args.dashboards_path, config.relay.public_url)
    print(f"{args.out}: {len(written)} Grafana files written")


def cmd_grafana_preview(args: argparse.Namespace) -> None:
    from gkjk.grafana import preview

    preview.main(args, _config(args))


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

    rules = commands.add_parser("rules", parents=[common], help="run the rule engine (alarms and run states)")
    rules.set_defaults(func=cmd_rules)

    relay = commands.add_parser("relay", parents=[common],
                                help="relay Grafana alert notifications to DingTalk and SMS (docs/relay.md)")
    relay.add_argument("--dry-run", action="store_true",
                       help="send nothing; record what would be sent in [relay] dry_run_log and the log")
    relay.set_defaults(func=cmd_relay)

    influxd = commands.add_parser("influxd", help="run a local InfluxDB (Debian's influxd) with data in a directory")
    influxd.add_argument("--dir", default="var/influxdb", help="data and config directory (default var/influxdb)")
    influxd.add_argument("--port", type=int, default=8086, help="HTTP port on 127.0.0.1 (default 8086)")
    influxd.set_defaults(func=cmd_influxd)

    modbus_sim = commands.add_parser("modbus-sim", parents=[common],
                                     help="serve an enterprise's field instruments over Modbus TCP (docs/field.md)")
    from ingest_twisted.field.modbus_sim import add_arguments as add_modbus_sim_arguments

    add_modbus_sim_arguments(modbus_sim)
    modbus_sim.set_defaults(func=cmd_modbus_sim)

    data_logger = commands.add_parser("logger", parents=[common],
                                      help="play a data logger: poll Modbus, upload HJ 212 (docs/field.md)")
    from ingest_twisted.field.logger import add_arguments as add_logger_arguments

    add_logger_arguments(data_logger)
    data_logger.set_defaults(func=cmd_logger)

    telegraf = commands.add_parser("telegraf", help="Telegraf configs for the sites and the platform's hosts")
    telegraf_commands = telegraf.add_subparsers(dest="telegraf_command", required=True)
    telegraf_build = telegraf_commands.add_parser("build", parents=[common],
                                                  help="write the configs from the registry (telegraf/README.md)")
    from ingest_twisted.field.telegraf import add_arguments as add_telegraf_arguments

    add_telegraf_arguments(telegraf_build)
    telegraf_build.set_defaults(func=cmd_telegraf_build)

    grafana = commands.add_parser("grafana", help="Grafana provisioning and dashboards (docs/grafana.md)")
    grafana_commands = grafana.add_subparsers(dest="grafana_command", required=True)
    grafana_build = grafana_commands.add_parser("build", parents=[common],
                                                help="write provisioning/ and dashboards/ from the registry")
    grafana_build.add_argument("--registry", help="registry directory or file (default: [registry] path)")
    grafana_build.add_argument("--out", default=".", help="directory to write provisioning/ and dashboards/ under")
    grafana_build.add_argument("--dashboards-path", default="/var/lib/grafana/dashboards/gkjk",
                               help="where Grafana sees dashboards/ (the file provider's path)")
    grafana_build.set_defaults(func=cmd_grafana_build)
    grafana_preview = grafana_commands.add_parser("preview", parents=[common],
                                                  help="draw the dashboards with InfluxDB's data to PNG")
    grafana_preview.add_argument("--dashboards", default="dashboards", help="dashboard JSON directory")
    grafana_preview.add_argument("--gazetteer", default="provisioning/gazetteer/gkjk-enterprises.json",
                                 help="locations for the map panels")
    grafana_preview.add_argument("--out", default="var/preview", help="directory for the PNGs (default var/preview)")
    grafana_preview.add_argument("--dashboard", metavar="UID", help="only this dashboard")
    grafana_preview.add_argument("--from", dest="start", metavar="TIME",
                                 help="now-24h, ISO local time or epoch ms (default: the dashboard's)")
    grafana_preview.add_argument("--to", dest="end", metavar="TIME", help="range end (default: the dashboard's)")
    grafana_preview.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                                 help="a template variable's value, repeat for several (default 全部 or the first)")
    grafana_preview.set_defaults(func=cmd_grafana_preview)

    registry = commands.add_parser("registry", help="site registry tools")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    check = registry_commands.add_parser("check", parents=[common], help="validate a registry directory or file")
    check.add_argument("path")
    check.set_defaults(func=cmd_registry_check)
    template = registry_commands.add_parser("template", parents=[common],
                                            help="print a registry skeleton from an industry pack's facility template")
    template.add_argument("--industry", required=True, help="industry, e.g. 工业涂装 (docs/registry.md)")
    template.add_argument("--out", help="write to this file instead of standard output")
    template.set_defaults(func=cmd_registry_template)

    dead_letters = commands.add_parser("dead-letters",
                                       help="batches InfluxDB refused as bad data (docs/ingest.md, Dead letters)")
    dead_letters_commands = dead_letters.add_subparsers(dest="dead_letters_command", required=True)
    dead_letters_list = dead_letters_commands.add_parser("list", parents=[common],
                                                         help="print every worker's dead-lettered batches and totals")
    dead_letters_list.set_defaults(func=cmd_dead_letters_list)
    dead_letters_replay = dead_letters_commands.add_parser(
        "replay", parents=[common], help="post the batches again; remove the accepted ones (exit 1 if any is left)")
    dead_letters_replay.add_argument("--dry-run", action="store_true",
                                     help="post nothing, change nothing; print what would be posted")
    dead_letters_replay.set_defaults(func=cmd_dead_letters_replay)

    carbon = commands.add_parser("carbon", help="activated-carbon records (docs/plugins.md)")
    carbon_commands = carbon.add_subparsers(dest="carbon_command", required=True)
    replaced = carbon_commands.add_parser("replaced", parents=[common],
                                          help="record that an adsorber's carbon was replaced (closes its alarm)")
    replaced.add_argument("--enterprise", required=True, help="enterprise id (unified social credit code)")
    replaced.add_argument("--facility", required=True, help="id of the activated_carbon facility")
    replaced.add_argument("--at", help="when, e.g. '2026-11-23 10:30' ([ingest] timezone unless an offset is given;"
                                       " default now)")
    replaced.add_argument("--note", help="free text stored with the record, e.g. who replaced how much")
    replaced.set_defaults(func=cmd_carbon_replaced)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
