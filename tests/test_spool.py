"""The on-disk spool: framing, rotation, checkpoints, crash recovery, disk full."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest_twisted.spool import Position, Spool, SpoolCorruptError, SpoolError, SpoolFullError

MAIN = Path(__file__).resolve().parent.parent


def records(n: int, start: int = 0, size: int = 100) -> list[bytes]:
    return [f"m,dev=d{i % 7} v={i} {i}".encode().ljust(size, b"x") for i in range(start, start + n)]


def read_all(spool: Spool, position: Position | None = None) -> tuple[list[bytes], Position]:
    position = position or spool.committed
    out: list[bytes] = []
    while True:
        batch, position = spool.read(position, 1 << 20, 1000)
        if not batch:
            return out, position
        out.extend(bytes(r) for r in batch)


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_append_sync_read_commit(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        data = records(50)
        spool.append(data[:20])
        spool.append(data[20:])
        assert spool.depth().records == 50
        assert spool.readable().records == 0  # buffered, not in the file yet
        assert spool.read(spool.committed, 1 << 20, 1000)[0] == []
        spool.sync()
        assert spool.readable().records == 50
        got, end = read_all(spool)
        assert got == data
        assert end == spool.flushed
        spool.commit(end)
        assert spool.depth() == (0, 0)


def test_read_limits(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(records(10, size=100))
        spool.append([b"big" * 1000])
        spool.sync()
        batch, pos = spool.read(spool.committed, 350, 100)
        assert len(batch) == 3  # 3 x 100 bytes fit, a fourth would exceed 350
        batch, pos = spool.read(pos, 10_000, 4)
        assert len(batch) == 4
        batch, pos = spool.read(pos, 350, 100)
        assert len(batch) == 3
        batch, pos = spool.read(pos, 10, 100)  # larger than max_bytes: still returned alone
        assert [bytes(r) for r in batch] == [b"big" * 1000]
        assert spool.read(pos, 10, 100)[0] == []


def test_rotation_and_segment_deletion(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_size=4096) as spool:
        data = records(200, size=100)
        for i in range(0, 200, 10):
            spool.append(data[i : i + 10])
            spool.sync()
        files = segment_files(tmp_path)
        assert len(files) >= 5
        assert all(f.stat().st_size <= 4096 for f in files)
        got, end = read_all(spool)
        assert got == data
        # Commit half way: only segments wholly before the checkpoint go.
        batch, middle = spool.read(spool.committed, 1 << 20, 100)
        spool.commit(middle)
        remaining = segment_files(tmp_path)
        assert remaining and remaining[0].name == f"{middle.segment:016d}.seg"
        assert read_all(spool)[0] == data[100:]
        assert spool.depth().records == 100
        spool.commit(end)
        assert len(segment_files(tmp_path)) == 1
        assert spool.depth() == (0, 0)


def test_restart_resumes_at_checkpoint(tmp_path: Path) -> None:
    data = records(30)
    with Spool(tmp_path) as spool:
        spool.append(data)
        spool.sync()
        _, pos = spool.read(spool.committed, 1 << 20, 12)
        spool.commit(pos)
    with Spool(tmp_path) as spool:
        assert spool.depth().records == 18
        assert spool.readable().records == 18
        assert read_all(spool)[0] == data[12:]
        spool.append(records(5, start=30))
        spool.sync()
        assert read_all(spool)[0] == data[12:] + records(5, start=30)
    with Spool(tmp_path) as spool:
        assert read_all(spool)[0] == data[12:] + records(5, start=30)


def test_second_opener_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path):
        with pytest.raises(SpoolError, match="in use"):
            Spool(tmp_path)


@pytest.mark.parametrize("damage", ["cut_mid_record", "cut_mid_header", "garbage", "zeros"])
def test_torn_tail_is_truncated(tmp_path: Path, damage: str) -> None:
    data = records(20)
    with Spool(tmp_path) as spool:
        spool.append(data)
    last = segment_files(tmp_path)[-1]
    size = last.stat().st_size
    with open(last, "r+b") as f:
        if damage == "cut_mid_record":
            f.truncate(size - 30)
        elif damage == "cut_mid_header":
            f.truncate(size - 104)  # 100-byte payload + 4 of the 8 header bytes gone
        elif damage == "garbage":
            f.seek(size)
            f.write(b"\x10\x00\x00\x00garbage")
        else:
            f.seek(size)
            f.write(b"\x00" * 4096)
    expected = data[:19] if damage.startswith("cut") else data
    with Spool(tmp_path) as spool:
        assert spool.depth().records == len(expected)
        assert read_all(spool)[0] == expected
        spool.append([b"after"])
        spool.sync()
        assert read_all(spool)[0] == expected + [b"after"]
    with Spool(tmp_path) as spool:
        assert read_all(spool)[0] == expected + [b"after"]


def test_torn_segment_drops_later_segments(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_size=1000) as spool:
        for i in range(0, 40, 5):
            spool.append(records(5, start=i))
            spool.sync()
    files = segment_files(tmp_path)
    assert len(files) >= 3
    with open(files[1], "r+b") as f:
        f.truncate(f.seek(0, os.SEEK_END) - 10)
    with Spool(tmp_path) as spool:
        got = read_all(spool)[0]
    assert got == records(len(got))  # a clean prefix
    assert len(got) < 40
    assert segment_files(tmp_path) == files[:2]


def test_corrupt_or_missing_checkpoint_replays_everything(tmp_path: Path) -> None:
    data = records(10)
    with Spool(tmp_path) as spool:
        spool.append(data)
        spool.sync()
        spool.commit(spool.read(spool.committed, 1 << 20, 5)[1])
    (tmp_path / "checkpoint").write_bytes(b"\x01\x02")
    with Spool(tmp_path) as spool:
        assert read_all(spool)[0] == data


def test_checkpoint_past_end_is_clamped(tmp_path: Path) -> None:
    """Data committed before its fsync can lose its tail in a crash; resume at the real end."""
    with Spool(tmp_path) as spool:
        spool.append(records(10))
        spool.sync()
        end = spool.flushed
        spool.commit(end)
    seg = segment_files(tmp_path)[-1]
    with open(seg, "r+b") as f:
        f.truncate(f.seek(0, os.SEEK_END) - 50)
    with Spool(tmp_path) as spool:
        assert spool.depth() == (0, 0)
        assert spool.committed.offset == seg.stat().st_size
        spool.append([b"next"])
        spool.sync()
        assert read_all(spool)[0] == [b"next"]


def test_crash_keeps_synced_records(tmp_path: Path) -> None:
    """SIGKILL after sync(): every synced record is there; unsynced ones may be lost, never garbled."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(MAIN)!r})
        from ingest_twisted.spool import Spool
        spool = Spool({str(tmp_path)!r}, segment_size=5000)
        for i in range(1000):
            spool.append([b"rec-%06d" % i])
            if i % 100 == 99:
                spool.sync()
        spool.append([b"unsynced"] * 10)
        os.fsync = lambda fd: None
        spool.sync()  # written to the OS, never fsync'd
        spool.append([b"buffered"] * 10)
        print("ready", flush=True)
        os.kill(os.getpid(), {int(signal.SIGKILL)})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.stdout.strip() == b"ready", proc.stderr
    with Spool(tmp_path) as spool:
        got = read_all(spool)[0]
    assert got[:1000] == [b"rec-%06d" % i for i in range(1000)]
    assert got[1000:] in ([], [b"unsynced"] * 10)


def test_disk_full_drops_the_unwritten_batch_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    with Spool(tmp_path) as spool:
        spool.append(records(5))
        spool.sync()

        def full_after_some(fd: int, data: bytes) -> int:
            if len(data) > 50:
                real_write(fd, data[:50])  # a partial write, then no room
                return 50
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full_after_some)
        spool.append(records(5, start=5))
        with pytest.raises(SpoolFullError, match="disk full"):
            spool.sync()
        monkeypatch.setattr(os, "write", real_write)
        assert spool.depth().records == 5
        assert read_all(spool)[0] == records(5)
        spool.append(records(5, start=10))
        spool.sync()
        assert read_all(spool)[0] == records(5) + records(5, start=10)
    with Spool(tmp_path) as spool:
        assert read_all(spool)[0] == records(5) + records(5, start=10)


def test_max_bytes_backlog(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=1000) as spool:
        spool.append(records(8, size=100))
        with pytest.raises(SpoolFullError, match="max_bytes"):
            spool.append(records(2, size=100))
        spool.sync()
        spool.commit(read_all(spool)[1])
        spool.append(records(2, size=100))


def test_empty_record_rejected(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        with pytest.raises(ValueError):
            spool.append([b"ok", b""])
        assert spool.depth().records == 0


def test_corruption_inside_flushed_data_is_reported(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(records(10))
        spool.sync()
        seg = segment_files(tmp_path)[-1]
        with open(seg, "r+b") as f:
            f.seek(500)
            f.write(b"!")
        with pytest.raises(SpoolCorruptError):
            read_all(spool)
