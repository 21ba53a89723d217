"""Shared fixtures: a real InfluxDB 1.x server (gkjk.influxd)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from gkjk.influxd import InfluxServer


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One influxd for the whole session; tests may stop() and start() it."""
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.close()


@pytest.fixture
def influx_db(influxdb: InfluxServer) -> Iterator[tuple[InfluxServer, str]]:
    """A fresh, uniquely named database on the session server, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    influxdb.query(f'CREATE DATABASE "{name}"')
    yield influxdb, name
    influxdb.start()  # a test may have left it stopped
    influxdb.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def influx(influx_db: tuple[InfluxServer, str]) -> InfluxServer:
    """The InfluxDB server of `influx_db`."""
    return influx_db[0]


@pytest.fixture
def db(influx_db: tuple[InfluxServer, str]) -> str:
    """The fresh database of `influx_db`."""
    return influx_db[1]
