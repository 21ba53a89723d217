"""With several workers, each worker process runs on a CPU of its own (`[ingest] pin_workers`, docs/ingest.md)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from gkjk_process import ServerProcess
from ingest_twisted.supervisor import worker_cpu

ALLOWED = sorted(os.sched_getaffinity(0))


def test_one_cpu_each_only_when_there_are_enough() -> None:
    assert worker_cpu(1, 0) is None  # a single worker may use every CPU
    assert worker_cpu(len(ALLOWED) + 1, 0) is None  # more workers than CPUs: the scheduler spreads them
    if len(ALLOWED) >= 2:
        assert [worker_cpu(len(ALLOWED), i) for i in range(len(ALLOWED))] == ALLOWED


def cpus_of(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            cpus: set[int] = set()
            for part in line.split(":", 1)[1].strip().split(","):
                low, _, high = part.partition("-")
                cpus.update(range(int(low), int(high or low) + 1))
            return cpus
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def worker_cpus(server: ServerProcess) -> list[set[int]]:
    """The allowed CPUs of each worker process of the server, and of every thread of it."""
    deadline = time.monotonic() + 20
    while True:
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout
        pids = [int(pid) for pid in children.split()]
        if len(pids) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(pids) == 2
    found = []
    for pid in pids:
        threads = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
        sets = {frozenset(cpus_of(pid))} | {frozenset(cpus_of(tid)) for tid in threads}
        assert len(sets) == 1, f"threads of worker {pid} differ: {sets}"
        found.append(set(next(iter(sets))))
    return found


@pytest.mark.skipif(len(ALLOWED) < 2, reason="one CPU: nothing to pin")
@pytest.mark.parametrize("pin", [True, False])
def test_workers_of_a_server_run_on_their_own_cpus(tmp_path: Path, influx_db, pin: bool) -> None:
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, ingest={"workers": 2, "pin_workers": pin}) as server:
        found = worker_cpus(server)
    if pin:
        assert sorted(found, key=min) == [{ALLOWED[0]}, {ALLOWED[1]}]
    else:
        assert found == [set(ALLOWED), set(ALLOWED)]
