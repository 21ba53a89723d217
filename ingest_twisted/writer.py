"""Durable writer: lines are acknowledged once fsync'd in the spool, then sent to InfluxDB in order.

Group commit: every ``submit()`` in one ``fsync_interval`` window is served by
one spool sync (write + fsync), run on the reactor thread. The reactor waits
for the disk meanwhile and the devices' next uploads wait in the kernel's
socket buffers; they would wait for the next fsync anyway. A thread of its own
for the fsync measured worse on the 2-core machines this runs on: each fsync
then costs two GIL hand-overs and a wake-up of the reactor, which under load
took longer than the fsync itself (docs/benchmarks.md).

A single sender reads batches from the spool on disk (memory stays bounded
whatever the backlog), POSTs them one at a time, and commits the checkpoint
after each success. Retryable failures back off exponentially and retry the
same batch, so order is kept; a 404 creates the database first; a batch
InfluxDB refuses as bad data goes to a dead-letter file (line protocol with a
``#`` comment header, re-postable as is; ``gkjk dead-letters replay``, see
ingest_twisted/deadletter.py) and is counted. Replaying a batch
after a crash is harmless: InfluxDB overwrites a point with the same series
and timestamp.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ingest_twisted.deadletter import FILE_NAME as DEAD_LETTER_FILE_NAME
from ingest_twisted.deadletter import append_record, format_record
from ingest_twisted.influx import (
    InfluxBadRequestError,
    InfluxClient,
    InfluxNotFoundError,
    InfluxRetryableError,
)
from ingest_twisted.spool import Spool, SpoolError

__all__ = ["DurableWriter", "WriterStats", "WriterStoppedError"]

log = Logger()


class WriterStoppedError(Exception):
    """submit() after stop() began: the caller must not acknowledge these lines."""


@dataclass
class WriterStats:
    """Counters for self-metrics (monotonic since start, except the gauges at the end)."""

    submitted_lines: int = 0
    acked_lines: int = 0
    written_lines: int = 0
    batches: int = 0
    retries: int = 0
    dead_lettered_batches: int = 0
    dead_lettered_lines: int = 0
    fsyncs: int = 0
    last_fsync_latency: float = 0.0  # seconds
    last_write_latency: float = 0.0  # seconds, one successful POST
    last_error: str = ""
    spool_records: int = 0  # backlog not yet in InfluxDB
    spool_bytes: int = 0


class DurableWriter:
    """Spool + batching sender. Owns the spool: ``stop()`` closes it.

    ``spool`` is a Spool or a directory for one with default settings.
    """

    def __init__(
        self,
        spool: Spool | str | os.PathLike[str],
        influx: InfluxClient,
        reactor: Any = None,
        *,
        batch_max_bytes: int = 4 * 1024 * 1024,
        batch_max_lines: int = 5000,
        flush_interval: float = 1.0,
        fsync_interval: float = 0.01,
        retry_initial: float = 0.25,
        retry_max: float = 30.0,
        stop_timeout: float = 10.0,
        dead_letter_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._spool = spool if isinstance(spool, Spool) else Spool(spool)
        self._influx = influx
        self._reactor = reactor
        self.batch_max_bytes = batch_max_bytes
        self.batch_max_lines = batch_max_lines
        self.flush_interval = flush_interval
        self.fsync_interval = fsync_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.stop_timeout = stop_timeout
        self.dead_letter_path = Path(dead_letter_path or self._spool.directory / DEAD_LETTER_FILE_NAME)
        self._stats = WriterStats()
        # group commit
        self._waiting: list[Deferred[None]] = []
        self._waiting_lines = 0
        self._sync_call: Any = None
        self._last_sync_start = float("-inf")
        # sender
        self._loop_d: Deferred[None] | None = None
        self._wake: Deferred[None] | None = None
        self._stopping = False
        self._halted = False
        self._stop_d: Deferred[None] | None = None

    # -- public API ----------------------------------------------------------

    def submit(self, lines: Sequence[bytes]) -> Deferred[None]:
        """Append lines (no trailing newline each); fires None once they are fsync'd in the spool.

        Fails (without acknowledging anything) with SpoolError/SpoolFullError
        when the spool cannot take them, ValueError for an empty line, or
        WriterStoppedError after stop().
        """
        if self._stopping:
            return fail(WriterStoppedError("writer is stopping"))
        if not lines:
            return succeed(None)
        try:
            self._spool.append(lines)
        except (SpoolError, ValueError) as exc:  # ValueError: an empty line
            return fail(exc)
        self._stats.submitted_lines += len(lines)
        self._waiting_lines += len(lines)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        if self._sync_call is None:
            self._schedule_sync()
        return d

    def start(self) -> None:
        """Start the sender; whatever a previous run left in the spool is sent first."""
        if self._loop_d is not None:
            raise RuntimeError("writer already started")
        self._loop_d = Deferred.fromCoroutine(self._run())
        self._loop_d.addErrback(self._loop_ended)

    def stop(self) -> Deferred[None]:
        """Sync pending submits, drain to InfluxDB for at most ``stop_timeout`` s, close the spool.

        What is not drained stays in the spool for the next start. Calling it
        again returns a Deferred firing None when that first stop is done.
        """
        if self._stop_d is None:
            self._stop_d = Deferred.fromCoroutine(self._stop())
            return self._stop_d
        return _settled(self._stop_d)

    def stats(self) -> WriterStats:
        """A snapshot of the counters with the current spool backlog."""
        depth = self._spool.depth()
        return replace(self._stats, spool_records=depth.records, spool_bytes=depth.bytes)

    # -- group commit --------------------------------------------------------

    def _schedule_sync(self) -> None:
        delay = max(0.0, self._last_sync_start + self.fsync_interval - self._reactor.seconds())
        self._sync_call = self._reactor.callLater(delay, self._sync)

    def _sync(self) -> None:
        """Make everything submitted so far durable and fire its Deferreds; on failure fail them instead."""
        self._sync_call = None
        waiting, self._waiting = self._waiting, []
        lines, self._waiting_lines = self._waiting_lines, 0
        self._last_sync_start = self._reactor.seconds()
        started = time.monotonic()
        try:
            self._spool.sync()
        except SpoolError as exc:
            log.error("spool sync failed, {n} lines not acknowledged: {exc}", n=lines, exc=exc)
            self._stats.last_error = str(exc)
            for d in waiting:
                d.errback(exc)
            return
        self._stats.fsyncs += 1
        self._stats.last_fsync_latency = time.monotonic() - started
        self._stats.acked_lines += lines
        self._notify()
        for d in waiting:
            d.callback(None)

    # -- sender --------------------------------------------------------------

    def _notify(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.callback(None)

    async def _wait(self, timeout: float | None) -> None:
        self._wake = Deferred()
        timer = self._reactor.callLater(timeout, self._notify) if timeout is not None else None
        try:
            await self._wake
        finally:
            if timer is not None and timer.active():
                timer.cancel()

    async def _run(self) -> None:
        spool = self._spool
        pending_since: float | None = None
        delay = self.retry_initial
        while not self._halted:
            ready = spool.readable()
            if not ready.records:
                if self._stopping:
                    return
                pending_since = None
                await self._wait(None)
                continue
            now = self._reactor.seconds()
            if pending_since is None:
                pending_since = now
            full = ready.records >= self.batch_max_lines or ready.bytes >= self.batch_max_bytes
            if not (full or self._stopping or now - pending_since >= self.flush_interval):
                await self._wait(pending_since + self.flush_interval - now)
                continue
            try:
                records, end = await self._in_thread(
                    spool.read, spool.committed, self.batch_max_bytes, self.batch_max_lines
                )
                await self._deliver(b"\n".join(records), len(records))
                spool.commit(end)
            except CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - spool trouble: keep the data, retry later
                self._stats.retries += 1
                self._stats.last_error = str(exc)
                log.error("sender: {exc}; retrying in {delay} s", exc=exc, delay=delay)
                await deferLater(self._reactor, delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = self.retry_initial
            pending_since = self._reactor.seconds() if spool.readable().records else None

    async def _deliver(self, body: bytes, lines: int) -> None:
        """POST one batch until InfluxDB takes it or refuses it as bad data."""
        delay = self.retry_initial
        while True:
            started = time.monotonic()
            try:
                await self._influx.write(body)
            except InfluxBadRequestError as exc:
                await self._dead_letter(body, lines, exc)
                return
            except Exception as exc:  # noqa: BLE001 - anything else: the data is fine, retry
                if self._halted or isinstance(exc, CancelledError):
                    raise CancelledError() from exc
                self._stats.retries += 1
                self._stats.last_error = str(exc)
                if isinstance(exc, InfluxNotFoundError):
                    log.warn("InfluxDB: {exc}; creating the database", exc=exc)
                    try:
                        await self._influx.ensure_database()
                        continue
                    except Exception as create_exc:  # noqa: BLE001
                        if self._halted:
                            raise CancelledError() from create_exc
                        log.error("creating the database failed: {exc}", exc=create_exc)
                wait = delay
                if isinstance(exc, InfluxRetryableError) and exc.retry_after:
                    wait = max(wait, exc.retry_after)
                log.warn(
                    "InfluxDB write failed ({lines} lines), retry in {wait} s: {exc}", lines=lines, wait=wait, exc=exc
                )
                await deferLater(self._reactor, wait)
                delay = min(delay * 2, self.retry_max)
                continue
            self._stats.last_write_latency = time.monotonic() - started
            self._stats.written_lines += lines
            self._stats.batches += 1
            return

    async def _dead_letter(self, body: bytes, lines: int, exc: InfluxBadRequestError) -> None:
        """Keep a refused batch (and why) so nothing is silently lost; fsync'd before the commit."""
        reason = " ".join(str(exc).split())
        record = format_record(body, lines, exc.status, reason)
        await self._in_thread(append_record, self.dead_letter_path, record)
        self._stats.dead_lettered_batches += 1
        self._stats.dead_lettered_lines += lines
        log.error(
            "InfluxDB refused a batch of {lines} lines, kept in {path}: {reason}",
            lines=lines,
            path=str(self.dead_letter_path),
            reason=reason,
        )

    def _loop_ended(self, failure: Any) -> None:
        if not failure.check(CancelledError):
            log.failure("sender stopped unexpectedly", failure)

    # -- stopping ------------------------------------------------------------

    async def _stop(self) -> None:
        self._stopping = True
        if self._sync_call is not None:
            self._sync_call.cancel()
            self._sync_call = None
        if self._waiting:
            self._sync()
        if self._loop_d is not None:
            self._notify()
            timer = self._reactor.callLater(self.stop_timeout, self._halt)
            await _settled(self._loop_d)
            if timer.active():
                timer.cancel()
        self._spool.close()

    def _halt(self) -> None:
        self._halted = True
        if self._loop_d is not None:
            self._loop_d.cancel()

    def _in_thread(self, f: Any, *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)


def _settled(d: Deferred[Any]) -> Deferred[None]:
    """A Deferred that fires (with None) when ``d`` has fired, leaving ``d``'s result alone."""
    done: Deferred[None] = Deferred()

    def passthrough(result: object) -> object:
        done.callback(None)
        return result

    d.addBoth(passthrough)
    return done
