"""Dead letters: batches InfluxDB refused as bad data, kept so they can be posted again.

The writer appends each refused batch to ``dead-letter.lp`` beside its spool as
one record (``format_record``): a comment line ``# <UTC time> lines=N status=S
error=...`` and the batch's line protocol. Once an operator has fixed the cause,
``gkjk dead-letters replay`` posts each batch again, drops the ones InfluxDB now
takes and keeps the others with the new error and time.

Running beside the server. The server only appends, and only while it holds an
exclusive flock on the directory holding the file (``locked``). The replay holds
the same lock while it reads the file and while it replaces it, never while it
talks to InfluxDB, so a refused batch waits at most for one rewrite. When it
replaces the file it checks that the file still begins with the bytes it read,
and keeps whatever the server appended since; if the beginning changed (another
replay rewrote it) it writes nothing. The lock is on the directory, not the file:
the replay replaces the file by a rename, so a lock on the old file would not
keep an append off the new one, and a separate lock file could end up owned by
the wrong user.

Crash safety. The new file is written beside the old one, fsync'd, renamed over
it and the directory fsync'd, once, at the end of a replay: a crash leaves the
old file or the new one, whole. Batches posted before a crash are still in the
old file and are posted again next time, which is harmless (InfluxDB overwrites
a point with the same series and timestamp).

A batch that may be cut short is never posted, because a line cut short can
still be valid line protocol (without its timestamp InfluxDB would store it at
the time of the post): a record at the end of a file that does not end with a
newline, a record whose line count differs from its header's ``lines=``, and a
record followed by the ``TORN_MARK`` comment that ``append_record`` writes when it
finds the file's end cut short by a crash. ``gkjk dead-letters list`` shows them
as damaged; they are left for the operator.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from gkjk.config import SpoolConfig
from ingest_twisted.influx import InfluxBadRequestError, InfluxClient, InfluxError

__all__ = [
    "FILE_NAME",
    "TORN_MARK",
    "Batch",
    "DeadLetterError",
    "Outcome",
    "append_record",
    "dead_letter_files",
    "format_header",
    "format_record",
    "list_command",
    "locked",
    "parse",
    "read",
    "replay",
    "replay_command",
]

FILE_NAME = "dead-letter.lp"
TORN_MARK = b"# the record above was cut short by a crash while it was written; it is not replayed"
_HEADER = re.compile(rb"# (\S+) lines=(\d+) status=(\S+) error=(.*)")


class DeadLetterError(Exception):
    """The dead-letter file cannot be replaced safely (changed by someone else, wrong owner, I/O)."""


@dataclass(frozen=True)
class Batch:
    """One record of a dead-letter file: its header's fields, its lines, and its bytes as found."""

    raw: bytes  # the record exactly as in the file, written back unchanged unless it is refused again
    text: tuple[bytes, ...]  # the lines after the header, without newlines
    when: str = ""
    lines: int = 0  # as the header says
    status: str = ""
    error: str = ""
    damaged: str = ""  # why it must not be posted ("" if it may)

    @property
    def points(self) -> list[bytes]:
        """The line protocol lines (blank lines and comments left out: InfluxDB ignores them)."""
        return [line for line in self.text if line.strip() and not line.startswith(b"#")]

    @property
    def body(self) -> bytes:
        """What to POST."""
        return b"\n".join(self.points)

    def refused_again(self, status: int | str | None, error: str, when: float | None = None) -> Batch:
        """The same lines under a header with the new refusal."""
        header = format_header(len(self.points), status, error, when)
        return parse(b"\n".join((header, *self.text)) + b"\n")[0]


def format_header(lines: int, status: int | str | None, error: str, when: float | None = None) -> bytes:
    """The comment line of a record; the error is folded onto one line so the record stays parseable."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    reason = " ".join(error.split())
    return f"# {stamp} lines={lines} status={status} error={reason}".encode()


def format_record(body: bytes, lines: int, status: int | str | None, error: str, when: float | None = None) -> bytes:
    """A whole record: header, the batch (newline-separated line protocol), final newline."""
    return format_header(lines, status, error, when) + b"\n" + body + b"\n"


def parse(data: bytes) -> list[Batch]:
    """Split a dead-letter file into records; records that must not be posted get ``damaged`` set."""
    rows = data.split(b"\n")
    cut_short = rows[-1] != b""  # no final newline: the last record's end is missing
    if not cut_short:
        rows.pop()
    groups: list[list[bytes]] = []
    for row in rows:
        if not groups or _HEADER.fullmatch(row):
            groups.append([row])
        else:
            groups[-1].append(row)
    batches = []
    for number, group in enumerate(groups, 1):
        last = number == len(groups)
        raw = b"\n".join(group) + (b"" if last and cut_short else b"\n")
        header = _HEADER.fullmatch(group[0])
        if header is None:
            batches.append(Batch(raw, tuple(group), damaged="text before the first header"))
            continue
        batch = Batch(raw, tuple(group[1:]), _text(header[1]), int(header[2]), _text(header[3]), _text(header[4]))
        if last and cut_short:
            damaged = "the file ends inside it (cut short by a crash?)"
        elif TORN_MARK in batch.text:
            damaged = "cut short by a crash while it was written"
        elif len(batch.points) != batch.lines:
            damaged = f"the header says lines={batch.lines}, {len(batch.points)} found"
        else:
            damaged = ""
        batches.append(replace(batch, damaged=damaged))
    return batches


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive flock that the writer's appends and the replay's read and rewrite share.

    It is taken on the directory holding the file (see the module docstring for why).
    """
    fd = os.open(Path(path).parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def append_record(path: Path, record: bytes) -> None:
    """Append one record durably (the writer's way in; blocking, so run it in a thread).

    If the file does not end with a newline, an earlier append was cut short by a
    crash: ``TORN_MARK`` goes first, so that record is marked and this one stays whole.
    """
    path = Path(path)
    with locked(path), open(path, "ab+") as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            f.seek(end - 1)
            if f.read(1) != b"\n":
                record = b"\n" + TORN_MARK + b"\n" + record
        f.write(record)
        f.flush()
        os.fsync(f.fileno())
    if not end:  # a new file: make its name durable too
        _fsync_directory(path.parent)


def read(path: Path) -> list[Batch]:
    """The records of a dead-letter file, read under the lock (none if there is no file)."""
    with locked(path):
        return parse(_read(path))


def dead_letter_files(spool: SpoolConfig) -> list[Path]:
    """Every worker's dead-letter file, ``<spool path>/worker-<n>/dead-letter.lp``, by worker number."""
    return [d / FILE_NAME for d in spool.worker_directories() if (d / FILE_NAME).is_file()]


@dataclass
class Outcome:
    """What a replay did with one file's batches."""

    path: Path
    accepted: list[Batch] = field(default_factory=list)
    refused: list[Batch] = field(default_factory=list)  # refused again, with the new header
    damaged: list[Batch] = field(default_factory=list)  # not posted (see ``parse``)
    unsent: list[Batch] = field(default_factory=list)  # not posted: dry run, or after ``stopped``
    stopped: str = ""  # the error that ended the replay early (InfluxDB unreachable, 5xx, auth ...)


async def replay(path: Path, client: InfluxClient, *, dry_run: bool = False, stop: bool = False) -> Outcome:
    """POST each batch of one file again; remove the accepted ones and re-head the refused ones.

    Any failure other than a refusal of the data (connection, timeout, 5xx, auth,
    missing database) says nothing about the batch: the replay stops there and
    leaves the rest as it is. ``stop`` (an earlier file's replay stopped) posts nothing.
    A dry run posts nothing and changes nothing.
    """
    path = Path(path)
    outcome = Outcome(path)
    if not dry_run and not stop and path.exists():
        _check_owner(path)
    with locked(path):
        snapshot = _read(path)
    kept: list[bytes] = []
    for batch in parse(snapshot):
        if batch.damaged:
            outcome.damaged.append(batch)
        elif dry_run or stop or outcome.stopped:
            outcome.unsent.append(batch)
        else:
            try:
                await client.write(batch.body)
            except InfluxBadRequestError as exc:
                batch = batch.refused_again(exc.status, str(exc))
                outcome.refused.append(batch)
            except InfluxError as exc:
                outcome.stopped = str(exc)
                outcome.unsent.append(batch)
            else:
                outcome.accepted.append(batch)
                continue
        kept.append(batch.raw)
    if outcome.accepted or outcome.refused:
        _replace(path, snapshot, b"".join(kept))
    return outcome


def _replace(path: Path, snapshot: bytes, kept: bytes) -> None:
    """Atomically replace the ``snapshot`` part of the file with ``kept``, keeping what was appended since."""
    with locked(path):
        current = _read(path)
        if not current.startswith(snapshot):
            raise DeadLetterError(f"{path} was rewritten during the replay (another replay?): left as it is;"
                                  " the batches posted meanwhile are harmless to post again")
        data = kept + current[len(snapshot):]
        try:
            if data:
                old = path.stat()
                temporary = path.with_name(path.name + ".tmp")
                with open(temporary, "wb") as f:
                    if os.geteuid() == 0:  # the server, running as the file's owner, must still append to it
                        os.fchown(f.fileno(), old.st_uid, old.st_gid)
                    os.fchmod(f.fileno(), old.st_mode & 0o7777)
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, path)
            else:
                path.unlink()
            _fsync_directory(path.parent)
        except OSError as exc:
            raise DeadLetterError(f"{path}: cannot rewrite: {exc}; the batches posted are harmless to post again")\
                from exc


def _check_owner(path: Path) -> None:
    """Refuse before posting anything if the new file could not keep the owner the server appends as."""
    owner = path.stat().st_uid
    if os.geteuid() not in (0, owner):
        raise DeadLetterError(f"{path} belongs to user id {owner}: run the replay as that user (or root), or the"
                              " server could no longer append to the file it would leave")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


# -- the `gkjk dead-letters` commands -------------------------------------------


def _describe(batch: Batch) -> str:
    if not batch.when:
        return f"{len(batch.points)} lines  DAMAGED: {batch.damaged}"
    text = f"{batch.when}  lines={batch.lines}  status={batch.status}  {batch.error}"
    return f"{text}  DAMAGED: {batch.damaged}" if batch.damaged else text


def list_command(spool: SpoolConfig, out: TextIO) -> int:
    """Print every worker's dead-lettered batches and the totals; exit status 0."""
    batches = lines = damaged = 0
    files = dead_letter_files(spool)
    for path in files:
        found = read(path)
        found_lines = sum(len(b.points) for b in found)
        broken = sum(1 for b in found if b.damaged)
        print(f"{path}: {len(found)} batches, {found_lines} lines" + (f", {broken} damaged" if broken else ""),
              file=out)
        for batch in found:
            print(f"  {_describe(batch)}", file=out)
        batches, lines, damaged = batches + len(found), lines + found_lines, damaged + broken
    print(f"total: {batches} batches, {lines} lines in {len(files)} files under {spool.path}"
          + (f" ({damaged} damaged, not replayable as they are)" if damaged else ""), file=out)
    return 0


async def replay_command(spool: SpoolConfig, client: InfluxClient, dry_run: bool, out: TextIO, err: TextIO) -> int:
    """Replay every worker's file in turn; exit status 1 if any batch is left (refused, unsent, damaged)."""
    totals = {"accepted": 0, "refused": 0, "unsent": 0, "damaged": 0}
    stopped = ""
    failed = False
    for path in dead_letter_files(spool):
        try:
            outcome = await replay(path, client, dry_run=dry_run, stop=bool(stopped))
        except DeadLetterError as exc:
            print(f"gkjk: dead-letters replay: {exc}", file=err)
            failed = True
            continue
        stopped = stopped or outcome.stopped
        counts = {name: len(getattr(outcome, name)) for name in totals}
        for name, count in counts.items():
            totals[name] += count
        if dry_run:
            print(f"{path}: would post {counts['unsent']} batches"
                  f" ({sum(len(b.points) for b in outcome.unsent)} lines), {counts['damaged']} damaged", file=out)
        else:
            print(f"{path}: {counts['accepted']} accepted and removed, {counts['refused']} refused again,"
                  f" {counts['unsent']} not sent, {counts['damaged']} damaged", file=out)
        for batch in outcome.refused:
            print(f"  refused again: {_describe(batch)}", file=out)
        for batch in outcome.damaged:
            print(f"  not posted: {_describe(batch)}", file=out)
    if dry_run:
        print(f"dry run: {totals['unsent']} batches would be posted to {client.url} ({client.database});"
              " nothing posted, nothing changed", file=out)
        return 1 if failed or totals["damaged"] else 0
    print(f"total: {totals['accepted']} accepted, {totals['refused']} refused again, {totals['unsent']} not sent,"
          f" {totals['damaged']} damaged", file=out)
    if stopped:
        print(f"gkjk: dead-letters replay stopped: {stopped.rstrip('.')}; {totals['unsent']} batches left as they were,"
              " run it again once InfluxDB answers", file=err)
    return 1 if failed or totals["refused"] or totals["unsent"] or totals["damaged"] else 0
