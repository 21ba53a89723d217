"""Process management for `gkjk serve`: one worker in-process, or a supervisor with N workers.

With several workers each worker process listens on the same port with
SO_REUSEPORT, and the kernel spreads new connections evenly over them (a
shared accept queue would hand nearly all of them to whichever worker wakes
first), so one machine uses all its cores. A worker that dies is started again.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

from twisted.internet import protocol
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from gkjk.config import Config
from ingest_twisted.server import reuse_port_socket

log = Logger()

STATUS_EVERY = 5.0
RESTART_DELAY = 1.0


def _start_logging() -> None:
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)


def _raise_open_file_limit() -> None:
    """Each device connection is a file descriptor: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def status_line(config: Config, previous: dict | None) -> tuple[str, dict]:
    """Sum the workers' status files into one line; rates come from the previous sums."""
    totals: dict[str, float] = {}
    now = time.time()
    for path in Path(config.spool.path).glob("status-*.json"):
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if now - values.get("time", 0) > 30:
            continue
        for key, value in values.items():
            if isinstance(value, (int, float)) and key != "time":
                totals[key] = totals.get(key, 0) + value
    totals["time"] = now
    rate = 0.0
    if previous and now > previous["time"]:
        rate = (totals.get("frames_in", 0) - previous.get("frames_in", 0)) / (now - previous["time"])
    line = (
        f"connections {int(totals.get('connections', 0))}"
        f" | devices online {int(totals.get('devices_online', 0))}"
        f" | frames {int(totals.get('frames_in', 0))} ({rate:.0f}/s)"
        f" | acks {int(totals.get('acks_out', 0))}"
        f" | errors {int(totals.get('errors', 0))}"
        f" | spool depth {int(totals.get('writer_spool_records', 0))}"
        f" | written {int(totals.get('writer_written_lines', 0))}"
    )
    return line, totals


def _print_status(config: Config, state: dict) -> None:
    line, state["previous"] = status_line(config, state.get("previous"))
    print(time.strftime("%H:%M:%S"), line, flush=True)


def _status_loop(config: Config, reactor):
    from twisted.internet.task import LoopingCall

    state: dict = {}
    loop = LoopingCall(_print_status, config, state)
    loop.clock = reactor
    loop.start(STATUS_EVERY, now=False)
    return loop


def worker_cpu(workers: int, index: int) -> int | None:
    """The CPU worker `index` of `workers` runs on, or None to let it move: one CPU each when there are enough.

    Left to the scheduler, two workers woken by the same load often share a core while the other runs something
    else; pinned, each keeps its own (p99 at 10,000/s in four interleaved pairs of runs: 14 - 20 ms instead of
    19 - 47 ms, docs/benchmarks.md)."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[index] if 1 < workers <= len(allowed) else None


def run_worker(config: Config, index: int, reuse_port: bool, status: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads the site registry."""
    from ingest_twisted import eventloop, heap
    from ingest_twisted.server import Worker

    cpu = worker_cpu(config.ingest.workers, index) if config.ingest.pin_workers else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before any thread starts: the reactor's threads inherit it
    reactor = eventloop.install()
    _start_logging()
    _raise_open_file_limit()
    worker = Worker(config, reactor, index=index, reuse_port=reuse_port)
    worker.start()
    reactor.addSystemEventTrigger("before", "shutdown", worker.stop)
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(worker.reload_registry))
    if status:
        _status_loop(config, reactor)
    heap.settle()
    reactor.run()


class _WorkerProcess(protocol.ProcessProtocol):
    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index

    def processEnded(self, reason) -> None:
        self.supervisor.worker_ended(self.index, reason)


class Supervisor:
    """Starts N workers on one shared listening socket and restarts any that die."""

    def __init__(self, config: Config, config_path: str | None, reactor) -> None:
        self.config = config
        self.config_path = config_path
        self.reactor = reactor
        self.stopping = False
        self.processes: dict[int, object] = {}
        # Fail here, with one clear error, if the port cannot be had.
        reuse_port_socket(config.ingest.host, config.ingest.port).close()

    def start_worker(self, index: int) -> None:
        if self.stopping:
            return
        args = [sys.executable, "-m", "gkjk.cli", "serve", "--worker", str(index)]
        if self.config_path:
            args += ["--config", self.config_path]
        self.processes[index] = self.reactor.spawnProcess(
            _WorkerProcess(self, index), sys.executable, args, env=os.environ, childFDs={0: 0, 1: 1, 2: 2}
        )

    def worker_ended(self, index: int, reason) -> None:
        self.processes.pop(index, None)
        if not self.stopping:
            log.error("worker {index} ended ({reason}); starting it again", index=index, reason=reason.value)
            self.reactor.callLater(RESTART_DELAY, self.start_worker, index)

    def signal_workers(self, signum: int) -> None:
        for process in self.processes.values():
            try:
                process.signalProcess(signum)
            except Exception:
                pass

    def stop(self):
        """Ask every worker to stop gracefully and wait for them (each drains or keeps its spool)."""
        from twisted.internet import defer, task

        self.stopping = True
        self.signal_workers(signal.SIGTERM)

        def all_ended():
            if self.processes:
                return task.deferLater(self.reactor, 0.1, all_ended)
            return None

        return defer.maybeDeferred(all_ended)


def run_supervisor(config: Config, config_path: str | None, status: bool = False) -> None:
    from twisted.internet import reactor

    from gkjk.registry import load_registry

    load_registry(Path(config.registry.path))  # refuse to start workers on a broken registry
    _start_logging()
    supervisor = Supervisor(config, config_path, reactor)
    for index in range(config.ingest.workers):
        supervisor.start_worker(index)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stop)
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(supervisor.signal_workers, signal.SIGHUP))
    if status:
        _status_loop(config, reactor)
    log.info("supervisor: {n} workers on {listen}", n=config.ingest.workers, listen=config.ingest.listen)
    reactor.run()
