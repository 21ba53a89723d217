"""`gkjk dead-letters`: files written by the real DurableWriter against a real InfluxDB, listed and replayed by the
real command (a process), and the file's safety rules (appends during a replay, torn records, the lock)."""

from __future__ import annotations

import calendar
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytest_twisted
from gkjk.influxd import InfluxServer
from gkjk_process import write_config
from test_writer import eventually
from twisted.internet import reactor

from ingest_twisted.deadletter import (
    TORN_MARK,
    DeadLetterError,
    append_record,
    format_record,
    locked,
    parse,
    read,
    replay,
)
from ingest_twisted.influx import InfluxClient
from ingest_twisted.writer import DurableWriter

ROOT = Path(__file__).resolve().parent.parent
T = 1_700_000_000_000_000_000
REFUSED = [b'm f="x" %d' % (T + 1), b'm f="y" %d' % (T + 2)]  # m.f is an integer: refused before and after the fix
FIXED = [b'n g="y" %d' % (T + 1), b'n g="z" %d' % (T + 2)]  # n.g is an integer until the operator drops n
FIXED_ELSEWHERE = [b'n g="w" %d' % (T + 3)]  # the same, dead-lettered by worker 1


async def dead_letter(srv: InfluxServer, db: str, spool_dir: Path, *batches: list[bytes]) -> Path:
    """Have a real DurableWriter send each batch to InfluxDB, which refuses it; returns its dead-letter file."""
    client = InfluxClient(srv.url, db, timeout=5)
    writer = DurableWriter(spool_dir, client, reactor, flush_interval=0.05, stop_timeout=5)
    writer.start()
    try:
        for n, batch in enumerate(batches, 1):
            await writer.submit(batch)
            await eventually(lambda: writer.stats().dead_lettered_batches == n, timeout=20.0, what=f"dead letter {n}")
        assert writer.stats().written_lines == 0
    finally:
        await writer.stop()
        await client.close()
    return writer.dead_letter_path


async def two_workers(srv: InfluxServer, db: str, spool: Path) -> tuple[Path, Path]:
    """worker-0: REFUSED and FIXED, worker-1: FIXED_ELSEWHERE; then the operator fixes n (drops it)."""
    srv.write(b"m f=1i %d\nn g=1i %d" % (T, T), db)
    first = await dead_letter(srv, db, spool / "worker-0", REFUSED, FIXED)
    second = await dead_letter(srv, db, spool / "worker-1", FIXED_ELSEWHERE)
    srv.query('DROP MEASUREMENT "n"', db=db)
    return first, second


def gkjk(tmp_path: Path, srv: InfluxServer, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`gkjk dead-letters ARGS` as a process, configured for the test database and tmp_path/spool."""
    config = write_config(tmp_path / "gkjk.toml", {
        "influx": {"url": srv.url, "database": db, "timeout": 5}, "spool": {"path": str(tmp_path / "spool")}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("GKJK_")}
    return subprocess.run([sys.executable, "-m", "gkjk.cli", "dead-letters", *args, "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


def values(srv: InfluxServer, db: str, q: str) -> list[list[object]]:
    series = srv.query(q, db=db)["results"][0].get("series")
    return series[0]["values"] if series else []


@pytest_twisted.ensureDeferred
async def test_list_prints_each_batch_and_the_totals(influx_db: tuple[InfluxServer, str], tmp_path: Path) -> None:
    srv, db = influx_db
    first, second = await two_workers(srv, db, tmp_path / "spool")
    batches = read(first)
    assert [(b.lines, b.status, b.damaged) for b in batches] == [(2, "400", ""), (2, "400", "")]
    assert [b.points for b in batches] == [REFUSED, FIXED]
    assert all("field type conflict" in b.error for b in batches)

    done = gkjk(tmp_path, srv, db, "list")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == f"{first}: 2 batches, 4 lines"
    assert f"{second}: 1 batches, 1 lines" in out
    assert sum("lines=2  status=400  " in line and 'on measurement "m"' in line for line in out) == 1
    assert out[-1] == f"total: 3 batches, 5 lines in 2 files under {tmp_path / 'spool'}"


@pytest_twisted.ensureDeferred
async def test_replay_removes_accepted_batches_and_keeps_refused_ones(
        influx_db: tuple[InfluxServer, str], tmp_path: Path) -> None:
    srv, db = influx_db
    first, second = await two_workers(srv, db, tmp_path / "spool")
    before = first.read_bytes(), second.read_bytes()

    dry = gkjk(tmp_path, srv, db, "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{first}: would post 2 batches (4 lines), 0 damaged" in dry.stdout
    assert "dry run: 3 batches would be posted" in dry.stdout
    assert (first.read_bytes(), second.read_bytes()) == before
    assert srv.count(db, "n") == 0

    # m.f is now a float: the refused batch's comment must say so.
    srv.query('DROP MEASUREMENT "m"', db=db)
    srv.write(b"m f=1.5 %d" % T, db)
    started = int(time.time())
    done = gkjk(tmp_path, srv, db, "replay")
    assert done.returncode == 1, done.stderr  # one batch is still refused
    assert f"{first}: 1 accepted and removed, 1 refused again, 0 not sent, 0 damaged" in done.stdout
    assert f"{second}: 1 accepted and removed, 0 refused again" in done.stdout
    assert "total: 2 accepted, 1 refused again, 0 not sent, 0 damaged" in done.stdout

    assert values(srv, db, 'SELECT "g" FROM "n"') == [
        ["2023-11-14T22:13:20.000000001Z", "y"], ["2023-11-14T22:13:20.000000002Z", "z"],
        ["2023-11-14T22:13:20.000000003Z", "w"]]
    assert not second.exists()  # nothing left for worker 1
    (kept,) = parse(first.read_bytes())
    assert kept.points == REFUSED and kept.lines == 2 and kept.status == "400" and not kept.damaged
    assert "already exists as type float" in kept.error
    assert calendar.timegm(time.strptime(kept.when, "%Y-%m-%dT%H:%M:%SZ")) >= started
    assert first.read_bytes().startswith(b"# " + kept.when.encode())

    again = gkjk(tmp_path, srv, db, "replay")
    assert again.returncode == 1 and "0 accepted and removed, 1 refused again" in again.stdout
    assert gkjk(tmp_path, srv, db, "list").stdout.splitlines()[-1].startswith("total: 1 batches, 2 lines in 1 files")


@pytest_twisted.ensureDeferred
async def test_replay_against_a_stopped_influxdb_changes_nothing(
        influx_db: tuple[InfluxServer, str], tmp_path: Path) -> None:
    srv, db = influx_db
    first, second = await two_workers(srv, db, tmp_path / "spool")
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in (first, second)]
    srv.stop()  # the influx_db fixture starts it again
    done = gkjk(tmp_path, srv, db, "replay")
    assert done.returncode == 1
    assert "dead-letters replay stopped" in done.stderr and "refused" in done.stderr  # connection refused
    assert "3 batches left as they were" in done.stderr
    assert "total: 0 accepted, 0 refused again, 3 not sent, 0 damaged" in done.stdout
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in (first, second)] == before
    assert not list(first.parent.glob("*.tmp"))


@pytest_twisted.ensureDeferred
async def test_what_the_server_appends_during_a_replay_is_kept(
        influx_db: tuple[InfluxServer, str], tmp_path: Path) -> None:
    srv, db = influx_db
    first, _ = await two_workers(srv, db, tmp_path / "spool")
    late = format_record(b'm f="late" %d' % (T + 9), 1, 400, "refused while the replay ran")
    client = InfluxClient(srv.url, db, timeout=5)
    try:
        reactor.callLater(0, append_record, first, late)  # runs while the replay waits for InfluxDB
        outcome = await replay(first, client)
        assert len(outcome.accepted) == 1 and len(outcome.refused) == 1
        kept = parse(first.read_bytes())
        assert [b.points for b in kept] == [REFUSED, [b'm f="late" %d' % (T + 9)]]
        assert first.read_bytes().endswith(late)

        # Another replay rewrote the file meanwhile: this one leaves it alone.
        theirs = b"".join(b.raw for b in kept[1:])
        reactor.callLater(0, first.write_bytes, theirs)
        with pytest.raises(DeadLetterError, match="rewritten during the replay"):
            await replay(first, client)
        assert first.read_bytes() == theirs
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_a_record_cut_short_is_never_posted(influx_db: tuple[InfluxServer, str], tmp_path: Path) -> None:
    srv, db = influx_db
    srv.write(b"n g=1i %d" % T, db)
    path = await dead_letter(srv, db, tmp_path / "spool" / "worker-0", FIXED)
    srv.query('DROP MEASUREMENT "n"', db=db)
    whole = path.read_bytes()
    path.write_bytes(whole[:-4])  # a crash cut the append short: the last line lost its timestamp's end
    (torn,) = parse(path.read_bytes())
    assert "ends inside it" in torn.damaged

    again = format_record(b"\n".join(FIXED_ELSEWHERE), 1, 400, "dead-lettered after the restart")
    append_record(path, again)
    torn, intact = parse(path.read_bytes())
    assert torn.text[-1] == TORN_MARK and "cut short by a crash" in torn.damaged
    assert intact.raw == again and not intact.damaged

    client = InfluxClient(srv.url, db, timeout=5)
    try:
        outcome = await replay(path, client)
    finally:
        await client.close()
    assert (len(outcome.accepted), len(outcome.damaged)) == (1, 1)
    assert values(srv, db, 'SELECT "g" FROM "n"') == [["2023-11-14T22:13:20.000000003Z", "w"]]
    assert path.read_bytes() == torn.raw  # kept, byte for byte, for the operator

    edited = whole.replace(FIXED[1] + b"\n", b"")  # an operator dropped a line but not the count
    assert parse(edited)[0].damaged == "the header says lines=2, 1 found"


def test_appends_wait_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "dead-letter.lp"
    record = format_record(b"m f=1i 1", 1, 400, "x")
    with locked(path):
        appending = threading.Thread(target=append_record, args=(path, record))
        appending.start()
        appending.join(0.3)
        assert appending.is_alive() and not path.exists()
    appending.join(5)
    assert path.read_bytes() == record
