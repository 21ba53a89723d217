"""DurableWriter end to end: real spool files, real InfluxDB, real outages."""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from gkjk.influxd import InfluxServer, free_port
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from ingest_twisted import spool as spool_module
from ingest_twisted.influx import InfluxClient
from ingest_twisted.spool import Spool, SpoolError, SpoolFullError
from ingest_twisted.writer import DurableWriter, WriterStoppedError

BASE_TS = 1_700_000_000_000_000_000


def lines(n: int, start: int = 0, measurement: str = "w") -> list[bytes]:
    """Distinct points (unique timestamp), ~300 bytes each like a real HJ 212 record."""
    pad = "x" * 200
    return [
        f'{measurement},mn=010000A8900016F00016{i % 50:04d},cn=2011 v={i}.5,flag="N",note="{pad}" {BASE_TS + i}'
        .encode()
        for i in range(start, start + n)
    ]


async def eventually(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.05)


@pytest_twisted.async_yield_fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """make.client(url, db) and make.writer(client, spool_dir=..., **kw); all stopped/closed afterwards."""
    clients: list[InfluxClient] = []
    writers: list[DurableWriter] = []

    class Maker:
        @staticmethod
        def client(url: str, db: str, **kw: Any) -> InfluxClient:
            clients.append(InfluxClient(url, db, timeout=5, **kw))
            return clients[-1]

        @staticmethod
        def writer(client: InfluxClient, spool_dir: Path | Spool | None = None, **kw: Any) -> DurableWriter:
            kw.setdefault("flush_interval", 0.05)
            kw.setdefault("stop_timeout", 5)
            writers.append(DurableWriter(spool_dir or tmp_path / "spool", client, reactor, **kw))
            return writers[-1]

    yield Maker
    for w in writers:
        await w.stop()
    for c in clients:
        await c.close()


@pytest_twisted.ensureDeferred
async def test_ack_waits_for_fsync_and_groups_commits(
    tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    acked: list[int] = []
    acks_before_fsync: list[int] = []  # how many submits were acknowledged when each os.fsync began
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        acks_before_fsync.append(len(acked))
        real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "fsync", recording_fsync)
    writer = make.writer(make.client(f"http://127.0.0.1:{free_port()}", "db"), fsync_interval=0.05)
    first = [writer.submit(lines(2, start=2 * i)) for i in range(100)]  # one reactor turn: one group
    for d in first:
        d.addCallback(lambda _: acked.append(1))
    assert not acked and not acks_before_fsync  # the sync waits for the group to gather
    await gatherResults(first)
    assert acks_before_fsync and set(acks_before_fsync) == {0}  # every fsync of the group came before any ack
    assert writer.stats().fsyncs == 1 and writer.stats().acked_lines == 200  # one sync served all 100 submits
    late = writer.submit(lines(1, start=1000))
    assert not late.called  # a later submit waits for the next sync
    await late
    assert writer.stats().fsyncs == 2 and writer.stats().acked_lines == 201
    assert acks_before_fsync[-1] == 100
    # What was acknowledged is on disk: a fresh reader finds it after the writer stops.
    await writer.stop()
    with Spool(tmp_path / "spool") as spool:
        assert spool.depth().records == 201


@pytest_twisted.ensureDeferred
async def test_lines_reach_influxdb(influx_db: tuple[InfluxServer, str], make: Any) -> None:
    srv, db = influx_db
    writer = make.writer(make.client(srv.url, db), batch_max_lines=1000)
    writer.start()
    await gatherResults([writer.submit(lines(50, start=i)) for i in range(0, 10_000, 50)])
    await eventually(lambda: writer.stats().spool_records == 0, what="drain")
    assert srv.count(db, "w") == 10_000
    stats = writer.stats()
    assert stats.submitted_lines == stats.acked_lines == stats.written_lines == 10_000
    assert stats.batches >= 10
    assert stats.dead_lettered_lines == 0
    assert stats.last_write_latency > 0


@pytest_twisted.ensureDeferred
async def test_influxdb_outage_under_load(influx_db: tuple[InfluxServer, str], make: Any) -> None:
    """Kill InfluxDB while lines stream in, bring it back: every acked line is stored exactly once."""
    srv, db = influx_db
    writer = make.writer(make.client(srv.url, db), batch_max_lines=2000, retry_max=1.0)
    writer.start()
    acked = 0
    acks: list[Deferred[None]] = []

    def count_ack(_: None, n: int) -> None:
        nonlocal acked
        acked += n

    async def load() -> None:
        i = 0
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            batch = lines(100, start=i)
            acks.append(writer.submit(batch).addCallback(count_ack, len(batch)))
            i += 100
            await deferLater(reactor, 0.01)

    async def outage() -> None:
        await deferLater(reactor, 1.0)
        await deferToThread(srv.stop, True)  # SIGKILL
        await deferLater(reactor, 1.5)
        await deferToThread(srv.start)

    await gatherResults([Deferred.fromCoroutine(load()), Deferred.fromCoroutine(outage())])
    await gatherResults(acks)
    await eventually(lambda: writer.stats().spool_records == 0, timeout=60, what="drain after the outage")
    stats = writer.stats()
    assert stats.retries > 0
    assert acked == stats.submitted_lines > 20_000
    assert srv.count(db, "w") == acked
    assert stats.dead_lettered_lines == 0


@pytest_twisted.ensureDeferred
async def test_restart_replays_pending_spool(influx_db: tuple[InfluxServer, str], make: Any, tmp_path: Path) -> None:
    srv, db = influx_db
    spool_dir = tmp_path / "replay"
    dead = make.writer(make.client(f"http://127.0.0.1:{free_port()}", db), spool_dir=spool_dir, stop_timeout=0.5)
    dead.start()
    await gatherResults([dead.submit(lines(100, start=i)) for i in range(0, 3000, 100)])
    await dead.stop()  # InfluxDB unreachable: the drain times out, the backlog stays on disk
    assert dead.stats().written_lines == 0
    with Spool(spool_dir) as spool:
        assert spool.depth().records == 3000

    writer = make.writer(make.client(srv.url, db), spool_dir=spool_dir)
    writer.start()
    await eventually(lambda: writer.stats().spool_records == 0, what="replay")
    assert srv.count(db, "w") == 3000
    await writer.stop()
    with Spool(spool_dir) as spool:
        assert spool.depth().records == 0
        assert len(list(spool_dir.glob("*.seg"))) <= 1


@pytest_twisted.ensureDeferred
async def test_dead_letter_on_field_type_conflict(influx_db: tuple[InfluxServer, str], make: Any) -> None:
    srv, db = influx_db
    srv.write(b"w v=1.0 %d" % (BASE_TS - 1), db)  # v is a float field from now on
    writer = make.writer(make.client(srv.url, db))
    writer.start()
    bad = lines(10) + [b"w v=2i %d" % (BASE_TS + 10)] + lines(10, start=11)
    await writer.submit(bad)
    await eventually(lambda: writer.stats().dead_lettered_batches == 1, what="dead letter")
    await writer.submit(lines(10, start=100))
    await eventually(lambda: writer.stats().spool_records == 0, what="drain")
    stats = writer.stats()
    assert stats.dead_lettered_lines == 21
    assert stats.written_lines == 10
    content = writer.dead_letter_path.read_bytes()
    header, *body = content.split(b"\n")
    assert header.startswith(b"# ") and b"status=400" in header and b"field type conflict" in header
    assert b"\n".join(body).strip() == b"\n".join(bad)
    # InfluxDB kept the valid lines of the partial write; the file is replayable as is.
    assert srv.count(db, "w") == 1 + 20 + 10


@pytest_twisted.ensureDeferred
async def test_missing_database_is_created(influxdb: InfluxServer, make: Any) -> None:
    db = f"auto_{uuid.uuid4().hex[:8]}"
    writer = make.writer(make.client(influxdb.url, db))
    writer.start()
    try:
        await writer.submit(lines(20))
        await eventually(lambda: writer.stats().spool_records == 0, what="drain")
        assert influxdb.count(db, "w") == 20
        assert writer.stats().retries >= 1
    finally:
        influxdb.query(f'DROP DATABASE "{db}"')


@pytest_twisted.ensureDeferred
async def test_spool_full_and_stopped_submits_fail(tmp_path: Path, make: Any) -> None:
    client = make.client(f"http://127.0.0.1:{free_port()}", "db")
    writer = make.writer(client, Spool(tmp_path / "tiny", max_bytes=10_000), stop_timeout=0.2)
    await writer.submit(lines(20))
    with pytest.raises(SpoolFullError):
        await writer.submit(lines(20, start=20))
    await writer.stop()
    with pytest.raises(WriterStoppedError):
        await writer.submit(lines(1))
    assert writer.stats().acked_lines == 20


@pytest_twisted.ensureDeferred
async def test_failed_fsync_acknowledges_nothing_more(tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an fsync error the kernel may drop the pages and report success later: nothing after it is acked."""
    writer = make.writer(make.client(f"http://127.0.0.1:{free_port()}", "db"), stop_timeout=0.2)
    await writer.submit(lines(5))
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(spool_module.os, "fsync", failing_fsync)
    with pytest.raises(SpoolError, match="fsync failed"):
        await writer.submit(lines(5, start=5))
    monkeypatch.setattr(spool_module.os, "fsync", real_fsync)  # the disk "recovers": the spool still refuses
    with pytest.raises(SpoolError, match="fsync failed"):
        await writer.submit(lines(5, start=10))
    assert writer.stats().acked_lines == 5
    assert "fsync failed" in writer.stats().last_error
