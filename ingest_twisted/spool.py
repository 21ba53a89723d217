"""Durable append-only spool: the write-ahead log between ingest and InfluxDB.

Records (one line of line protocol each, but any non-empty bytes work) are
appended to numbered segment files, each framed as ``length:u32le crc32:u32le
payload``, so a tail torn by a crash is detected and cut off when the spool is
opened. Appends are buffered in memory; ``sync()`` writes the buffer to the
files and fsyncs them, so one fsync serves every record appended since the last
(group commit). Readers read records from disk after a position, so memory does
not grow with the backlog.
``commit()`` records in a checkpoint file how far the consumer got; it is not
fsync'd because replaying a few committed records after a crash is harmless
(InfluxDB overwrites a point with the same series and timestamp). Segments
wholly before the checkpoint are deleted.

No Twisted here; state read by ``read()`` is guarded by a lock so reads can run
in a worker thread while the owning thread appends and flushes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

__all__ = [
    "Depth",
    "Position",
    "Spool",
    "SpoolCorruptError",
    "SpoolError",
    "SpoolFullError",
]

_HEADER = struct.Struct("<II")  # payload length, CRC32 of the payload
_CHECKPOINT = struct.Struct("<QQQI")  # segment, offset, seq, CRC32 of the first 24 bytes
_SEGMENT_SUFFIX = ".seg"
_CHECKPOINT_NAME = "checkpoint"
_LOCK_NAME = "lock"
_SCAN_CHUNK = 1 << 20
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class SpoolError(Exception):
    """The spool cannot take or give data (I/O failure, locked, or unusable after a failed fsync)."""


class SpoolFullError(SpoolError):
    """No room: the disk is full, or the configured ``max_bytes`` backlog is reached."""


class SpoolCorruptError(SpoolError):
    """A record that was written and read back before fails its CRC (disk corruption)."""


class Position(NamedTuple):
    """A record boundary: segment number, byte offset in it, and records before it (for counting)."""

    segment: int
    offset: int
    seq: int


class Depth(NamedTuple):
    records: int
    bytes: int


class _Pending:
    """Framed records buffered for one segment."""

    __slots__ = ("segment", "chunks", "records", "size")

    def __init__(self, segment: int) -> None:
        self.segment = segment
        self.chunks: list[bytes] = []
        self.records = 0
        self.size = 0


class Spool:
    """A directory of segment files plus a checkpoint; one process at a time (flock)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        segment_size: int = 64 * 1024 * 1024,
        max_bytes: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.segment_size = segment_size
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._failed: SpoolError | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise SpoolError(f"spool {self.directory} is in use by another process") from exc
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        self._fds: dict[int, int] = {}  # segment -> write fd, for segments written since open
        self._dirty: set[int] = set()  # segments written since the last sync
        self._new_segment = False  # a segment file was created since the last sync
        self._recover()

    # -- opening -------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:016d}{_SEGMENT_SUFFIX}"

    def _recover(self) -> None:
        """Find segments, drop committed ones, cut a torn tail, count what is pending."""
        segments = sorted(
            int(p.name[: -len(_SEGMENT_SUFFIX)])
            for p in self.directory.iterdir()
            if p.name.endswith(_SEGMENT_SUFFIX) and p.name[: -len(_SEGMENT_SUFFIX)].isdigit()
        )
        checkpoint = self._read_checkpoint()
        if checkpoint is None:
            checkpoint = Position(segments[0] if segments else 0, 0, 0)
        for segment in [s for s in segments if s < checkpoint.segment]:
            self._path(segment).unlink()
        segments = [s for s in segments if s >= checkpoint.segment]
        if segments and segments[0] > checkpoint.segment:
            # The checkpoint's segment is gone (the checkpoint write was lost
            # after its segment was deleted): resume at the next one.
            checkpoint = Position(segments[0], 0, checkpoint.seq)

        ends: dict[int, int] = {}
        seq = checkpoint.seq
        for index, segment in enumerate(segments):
            start = checkpoint.offset if segment == checkpoint.segment else 0
            size = self._path(segment).stat().st_size
            valid, records = self._scan(segment, start, size)
            seq += records
            if valid < size:
                # A torn write: nothing after it was ever acknowledged, since an
                # fsync covering later data would have covered this too.
                os.truncate(self._path(segment), valid)
                for later in segments[index + 1 :]:
                    self._path(later).unlink()
                segments = segments[: index + 1]
                ends[segment] = valid
                break
            ends[segment] = size
        if checkpoint.segment in ends and checkpoint.offset > ends[checkpoint.segment]:
            # Committed data lost its un-fsync'd tail in a crash: resume at the end.
            checkpoint = Position(checkpoint.segment, ends[checkpoint.segment], checkpoint.seq)

        self._segments = segments  # sorted segment numbers with a file
        self._ends = ends  # segment -> bytes flushed to the file
        self._committed = checkpoint
        last = segments[-1] if segments else checkpoint.segment
        self._flushed = Position(last, ends.get(last, 0), seq) if segments else checkpoint
        # Appends after a restart go to a fresh segment; the old tail is never rewritten.
        self._active = max(last, checkpoint.segment) + 1
        self._active_size = 0
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._end_seq = seq
        if checkpoint != self._read_checkpoint():
            self._write_checkpoint(checkpoint)

    def _scan(self, segment: int, offset: int, size: int) -> tuple[int, int]:
        """Offset after the last valid record from ``offset``, and how many records that is."""
        records = 0
        with open(self._path(segment), "rb", buffering=0) as f:
            for _payload, offset in _iter_records(f.fileno(), offset, size, _SCAN_CHUNK):
                records += 1
        return offset, records

    def _read_checkpoint(self) -> Position | None:
        try:
            data = (self.directory / _CHECKPOINT_NAME).read_bytes()
        except FileNotFoundError:
            return None
        if len(data) != _CHECKPOINT.size:
            return None
        segment, offset, seq, crc = _CHECKPOINT.unpack(data)
        if zlib.crc32(data[:24]) != crc:
            return None
        return Position(segment, offset, seq)

    def _write_checkpoint(self, position: Position) -> None:
        head = struct.pack("<QQQ", *position)
        tmp = self.directory / (_CHECKPOINT_NAME + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(head + struct.pack("<I", zlib.crc32(head)))
            os.replace(tmp, self.directory / _CHECKPOINT_NAME)
        except OSError as exc:
            raise _io_error("checkpoint write failed", self.directory, exc) from exc

    # -- writing -------------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> Position:
        """Buffer records (non-empty bytes each); durable only after a sync. Returns the end position."""
        if self._failed is not None:
            raise self._failed
        header = _HEADER.pack
        crc32 = zlib.crc32
        chunks: list[bytes] = []
        size = 0
        for record in records:
            n = len(record)
            if not n:
                raise ValueError("empty spool record")
            chunks.append(header(n, crc32(record)))
            chunks.append(record)
            size += n
        if not chunks:
            return self.end
        size += _HEADER.size * len(records)
        if self.max_bytes is not None and self.depth().bytes + size > self.max_bytes:
            raise SpoolFullError(f"spool {self.directory} holds max_bytes={self.max_bytes} not yet sent")
        if self._active_size and self._active_size + size > self.segment_size:
            self._active += 1
            self._active_size = 0
        pending = self._pending
        if not pending or pending[-1].segment != self._active:
            pending.append(_Pending(self._active))
        last = pending[-1]
        last.chunks.extend(chunks)
        last.records += len(records)
        last.size += size
        self._active_size += size
        self._pending_bytes += size
        self._end_seq += len(records)
        return Position(self._active, self._active_size, self._end_seq)

    def sync(self) -> Position:
        """Write the buffer to the files and fsync them (blocking); returns the end of the durable data.

        On a write error the buffered records are dropped (files cut back to
        their last record) and SpoolFullError or SpoolError is raised: none of
        those records may be acknowledged. A failed fsync leaves the spool
        unusable (data may be lost; the kernel may not report it again), so
        every later call raises.
        """
        if self._failed is not None:
            raise self._failed
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        for index, chunk in enumerate(pending):
            try:
                self._write(chunk)
            except OSError as exc:
                self._drop_unwritten(pending[index:])
                raise _io_error("write failed", self.directory, exc) from exc
        fds = [self._fds[s] for s in sorted(self._dirty)]
        # Segments left behind by rotation are closed once fsync'd.
        retired = [self._fds.pop(s) for s in sorted(self._fds) if s != self._active]
        self._dirty.clear()
        new_segment, self._new_segment = self._new_segment, False
        try:
            for fd in fds:
                os.fsync(fd)
            if new_segment:
                os.fsync(self._dir_fd)
        except OSError as exc:
            error = (SpoolFullError if exc.errno in _DISK_FULL else SpoolError)(
                f"fsync failed in {self.directory}: {exc}; the spool must be reopened"
            )
            self._failed = error
            raise error from exc
        finally:
            for fd in retired:
                os.close(fd)
        return self._flushed

    def _write(self, chunk: _Pending) -> None:
        segment = chunk.segment
        fd = self._fds.get(segment)
        if fd is None:
            fd = os.open(self._path(segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._fds[segment] = fd
            self._new_segment = True
            with self._lock:
                if segment not in self._ends:
                    self._segments.append(segment)
                    self._ends[segment] = 0
        data = b"".join(chunk.chunks)
        start = self._ends[segment]
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError:
            if written:
                try:
                    os.ftruncate(fd, start)
                except OSError as exc:
                    self._failed = _io_error("cannot cut back a partial write", self.directory, exc)
            raise
        self._dirty.add(segment)
        with self._lock:
            self._ends[segment] = start + len(data)
            self._flushed = Position(segment, start + len(data), self._flushed.seq + chunk.records)

    def _drop_unwritten(self, chunks: list[_Pending]) -> None:
        """Forget records that never reached a file, so positions stay consistent."""
        self._end_seq -= sum(c.records for c in chunks)
        self._active = chunks[0].segment
        self._active_size = self._ends.get(self._active, 0)

    # -- reading -------------------------------------------------------------

    def read(self, position: Position, max_bytes: int, max_records: int) -> tuple[list[memoryview], Position]:
        """Records after ``position`` that are in the files (flushed), and the position after them.

        Stops before ``max_bytes`` of payload would be exceeded (but returns at
        least one record if any) or at ``max_records``. Thread-safe.
        """
        with self._lock:
            segments = [(s, self._ends[s]) for s in self._segments if s >= position.segment]
        records: list[memoryview] = []
        nbytes = 0
        segment, offset, seq = position
        for number, end in segments:
            if number != segment:
                segment, offset = number, 0
            if offset >= end:
                continue
            chunk = min(end - offset, max_bytes + _HEADER.size * max_records)
            with open(self._path(segment), "rb", buffering=0) as f:
                for payload, next_offset in _iter_records(f.fileno(), offset, end, chunk):
                    if records and nbytes + len(payload) > max_bytes:
                        return records, Position(segment, offset, seq)
                    records.append(payload)
                    nbytes += len(payload)
                    offset = next_offset
                    seq += 1
                    if len(records) >= max_records:
                        return records, Position(segment, offset, seq)
            if offset < end:
                raise SpoolCorruptError(f"bad record in {self._path(segment)} at offset {offset}")
        return records, Position(segment, offset, seq)

    # -- committing ----------------------------------------------------------

    def commit(self, position: Position) -> None:
        """Record that everything before ``position`` is delivered; delete segments wholly before it."""
        if position.seq < self._committed.seq:
            raise ValueError(f"commit moves backwards: {position} < {self._committed}")
        self._write_checkpoint(position)
        self._committed = position
        with self._lock:
            done = [s for s in self._segments if s < position.segment]
            for segment in done:
                self._segments.remove(segment)
                del self._ends[segment]
        for segment in done:
            # Their write fds are already closed: a later segment was synced,
            # and that sync closed the older ones.
            try:
                self._path(segment).unlink()
            except FileNotFoundError:
                pass

    # -- state ---------------------------------------------------------------

    @property
    def committed(self) -> Position:
        """Where the consumer resumes after a restart."""
        return self._committed

    @property
    def flushed(self) -> Position:
        """End of the data in the files (readable by ``read``)."""
        return self._flushed

    @property
    def end(self) -> Position:
        """End of everything appended, buffered records included."""
        return Position(self._active, self._active_size, self._end_seq)

    def depth(self) -> Depth:
        """Records and bytes appended but not committed (the backlog)."""
        return Depth(
            self._end_seq - self._committed.seq,
            self._bytes_between(self._committed, self._flushed) + self._pending_bytes,
        )

    def readable(self) -> Depth:
        """Records and bytes in the files after the checkpoint: what a sender can read now."""
        return Depth(self._flushed.seq - self._committed.seq, self._bytes_between(self._committed, self._flushed))

    def _bytes_between(self, start: Position, stop: Position) -> int:
        if start.segment == stop.segment:
            return stop.offset - start.offset
        total = stop.offset - start.offset
        for segment in self._segments:
            if start.segment <= segment < stop.segment:
                total += self._ends[segment]
        return total

    def close(self) -> None:
        """Sync, close files and release the directory lock."""
        try:
            if self._failed is None:
                self.sync()
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            os.close(self._dir_fd)
            os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _io_error(what: str, directory: Path, exc: OSError) -> SpoolError:
    if exc.errno in _DISK_FULL:
        return SpoolFullError(f"spool {directory}: {what}, disk full: {exc}")
    return SpoolError(f"spool {directory}: {what}: {exc}")


def _iter_records(fd: int, offset: int, end: int, chunk: int) -> Iterator[tuple[memoryview, int]]:
    """Yield (payload, offset after it) for valid records in [offset, end); stop at the first invalid one."""
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    hsize = _HEADER.size
    while offset < end:
        buf = os.pread(fd, min(chunk, end - offset), offset)
        view = memoryview(buf)
        size = len(buf)
        i = 0
        while i + hsize <= size:
            length, crc = unpack(buf, i)
            stop = i + hsize + length
            if stop > size:
                break
            payload = view[i + hsize : stop]
            if not length or crc32(payload) != crc:
                return
            i = stop
            yield payload, offset + i
        if i:
            offset += i
            continue
        # A record larger than the chunk, or a torn tail.
        if size < hsize:
            return
        length, crc = unpack(buf, 0)
        if not length or offset + hsize + length > end:
            return
        payload = memoryview(os.pread(fd, length, offset + hsize))
        if len(payload) != length or crc32(payload) != crc:
            return
        offset += hsize + length
        yield payload, offset
