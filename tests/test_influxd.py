"""The platform's local InfluxDB starts with the Go runtime settings that keep its garbage collector quiet, at a
lower CPU priority than the ingest workers."""

from __future__ import annotations

from pathlib import Path

from gkjk.influxd import GO_RUNTIME_GOGC, INFLUXD_NICE, InfluxServer, go_runtime_environment


def process_environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def test_influxd_runs_with_gogc_and_a_memory_limit(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx") as server:
        assert server.pid is not None
        environment = process_environment(server.pid)
        assert server.ping()
    assert environment["GOGC"] == GO_RUNTIME_GOGC
    limit = int(environment["GOMEMLIMIT"].removesuffix("B"))
    assert 64 * 2**20 < limit < 2**50


def nice_values(pid: int) -> set[int]:
    """The nice value of every thread of the process (Linux keeps one per thread)."""
    return {int(stat.read_text().rsplit(")", 1)[1].split()[16]) for stat in Path(f"/proc/{pid}/task").glob("*/stat")}


def test_influxd_runs_at_a_lower_cpu_priority_in_every_thread(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx") as server:
        assert server.pid is not None
        assert Path(f"/proc/{server.pid}/exe").resolve().name == "influxd"
        server.query('CREATE DATABASE "nice"')  # threads the HTTP server starts now
        assert nice_values(server.pid) == {INFLUXD_NICE}


def test_settings_in_the_environment_win() -> None:
    environment = go_runtime_environment({"GOGC": "100", "GOMEMLIMIT": "2GiB", "PATH": "/usr/bin"})
    assert environment == {"GOGC": "100", "GOMEMLIMIT": "2GiB", "PATH": "/usr/bin"}
    assert go_runtime_environment({})["GOGC"] == GO_RUNTIME_GOGC
