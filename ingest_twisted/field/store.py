"""Durable stores of the data-logger emulator: the per-platform upload queue, the aggregate history, and small JSON
state files (`write_json`: counters, configuration, settings made by a platform).

A terminal must keep what it could not deliver across network outages and power cuts and replay it in order
(seed 002: at least 4,000 records). Each upload is appended as one line before it is sent and an acknowledgement
(9014) appends a removal line, so a crash at any point loses at most a half-written last line, which loading
cuts off. The file is rewritten (to a temporary file, then renamed) only when removals outweigh live records.

Line format, one record per line: ``+ <QN> <frame without CRLF>`` or ``- <QN>``. Frames are ASCII or UTF-8 and
never contain a line feed.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

#: Records each platform's queue keeps at least (seed 002 asks for 4,000); beyond it the oldest are dropped.
DEFAULT_LIMIT = 10_000
#: Rewrite the file once it holds this many lines more than live records.
_COMPACT_SLACK = 2_000


def _without_torn_tail(path: Path) -> bytes:
    """The file's complete lines; a last line cut short by a crash is cut off the file too, so that the next
    append does not continue it."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as file:
            file.truncate(end)
    return data[:end]


def write_json(path: Path, data: object) -> None:
    """Replace `path` with `data` as JSON durably: a temporary file, fsync, then an atomic rename, so a power cut
    leaves the old file or the new one, never half of one."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(data, out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


class UploadQueue:
    """Unacknowledged frames by QN, oldest first, mirrored in an append-only file."""

    def __init__(self, path: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self.dropped = 0
        self.records: OrderedDict[str, bytes] = OrderedDict()
        self._lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self._load()
        self._file = open(path, "ab")
        if self._lines > len(self.records) + _COMPACT_SLACK:
            self._compact()

    def _load(self) -> None:
        data = _without_torn_tail(self.path)
        for line in data.split(b"\n")[:-1]:
            self._lines += 1
            kind, _, rest = line.partition(b" ")
            qn, _, frame = rest.partition(b" ")
            if kind == b"+" and frame:
                self.records[qn.decode()] = frame + b"\r\n"
            elif kind == b"-":
                self.records.pop(qn.decode(), None)

    def __len__(self) -> int:
        return len(self.records)

    def append(self, qn: str, frame: bytes) -> None:
        """Keep `frame` until `remove(qn)`; past the limit the oldest record goes (counted in `dropped`)."""
        self.records[qn] = frame
        self._write(b"+ %b %b\n" % (qn.encode(), frame.rstrip(b"\r\n")))
        while len(self.records) > self.limit:
            oldest, _ = self.records.popitem(last=False)
            self._write(b"- %b\n" % oldest.encode())
            self.dropped += 1

    def remove(self, qn: str) -> bool:
        """Forget an acknowledged record; False if it was not queued (a late or repeated ack)."""
        if self.records.pop(qn, None) is None:
            return False
        self._write(b"- %b\n" % qn.encode())
        if self._lines > len(self.records) + _COMPACT_SLACK:
            self._compact()
        return True

    def sync(self) -> None:
        """Make what was written durable (called once per batch, not per record)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self.sync()
        self._file.close()

    def _write(self, line: bytes) -> None:
        self._file.write(line)
        self._lines += 1

    def _compact(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            for qn, frame in self.records.items():
                out.write(b"+ %b %b\n" % (qn.encode(), frame.rstrip(b"\r\n")))
            out.flush()
            os.fsync(out.fileno())
        self._file.close()
        os.replace(temporary, self.path)
        self._file = open(self.path, "ab")
        self._lines = len(self.records)


class History:
    """The logger's own aggregates of one CN (2051, 2061, 2031, or the run times of 2041) by DataTime, kept in a file so backfill requests
    outlive a restart.

    One line per record, ``<DataTime> <CP body>``; past `limit` records the oldest are forgotten and the file is
    rewritten once it holds twice the limit.
    """

    def __init__(self, path: Path, limit: int = DEFAULT_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self.records: OrderedDict[str, str] = OrderedDict()
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = _without_torn_tail(path).decode("utf-8").split("\n")[:-1] if path.exists() else []
        for line in lines:
            data_time, _, body = line.partition(" ")
            if body:
                self.records[data_time] = body
        self._trim()
        self._lines = len(lines)
        self._file = open(path, "a", encoding="utf-8")

    def add(self, data_time: str, body: str) -> None:
        self.records[data_time] = body
        self._file.write(f"{data_time} {body}\n")
        self._file.flush()
        self._lines += 1
        self._trim()
        if self._lines > 2 * self.limit:
            self._file.close()
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text("".join(f"{t} {b}\n" for t, b in self.records.items()), encoding="utf-8")
            os.replace(temporary, self.path)
            self._file = open(self.path, "a", encoding="utf-8")
            self._lines = len(self.records)

    def between(self, begin: str, end: str) -> list[tuple[str, str]]:
        """(DataTime, CP body) of the records from `begin` to `end` inclusive (``YYYYMMDDhhmmss``), oldest first."""
        return [(t, b) for t, b in self.records.items() if begin <= t <= end]

    def close(self) -> None:
        self._file.close()

    def _trim(self) -> None:
        while len(self.records) > self.limit:
            self.records.popitem(last=False)
