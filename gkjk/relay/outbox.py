"""The durable outbox: every accepted message, on disk before Grafana gets its 200, until delivered or given up.

SQLite in WAL mode, because the volume is small (alarms, not data) and it gives atomic multi-row inserts, the dedup
key as a primary key and crash-safe updates for free. Queuing commits with synchronous=FULL (the WAL is fsync'd:
the messages survive a power cut before Grafana gets its 200); the bookkeeping of attempts commits with
synchronous=NORMAL (it survives a crash of the relay; a power cut may forget that a message was sent, and it is
sent again: still at least once). A message's key is
derived from the alert and the address, so the same notification posted again (Grafana retries when it gets no
answer in time) is ignored rather than queued twice. Keys of delivered and dead messages are kept for
`[relay] dedup_hours`, then pruned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    key TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    finished REAL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS message_due ON message (state, next_attempt);
"""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to queue: `payload` is what the channel's sender needs (JSON-serialisable)."""

    key: str
    channel: str
    address: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """A queued message as stored."""

    key: str
    channel: str
    address: str
    payload: Mapping[str, Any]
    created: float
    attempts: int


class Outbox:
    """Messages by state: pending (with the time of the next attempt), sent, dead."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, messages: Iterable[NewMessage], now: float) -> int:
        """Queue messages in one committed transaction; returns how many were new (the rest were duplicates)."""
        rows = [(m.key, m.channel, m.address, json.dumps(m.payload, ensure_ascii=False), now, now) for m in messages]
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO message (key, channel, address, payload, created, next_attempt)"
                    " VALUES (?, ?, ?, ?, ?, ?)", rows)
                return self._db.total_changes - before
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    def due(self, now: float, limit: int) -> list[Message]:
        """Pending messages whose next attempt has come, oldest first."""
        cursor = self._db.execute(
            "SELECT key, channel, address, payload, created, attempts FROM message"
            " WHERE state = 'pending' AND next_attempt <= ? ORDER BY next_attempt, created LIMIT ?", (now, limit))
        return [Message(k, c, a, json.loads(p), cr, n) for k, c, a, p, cr, n in cursor]

    def next_due(self, exclude: Collection[str] = ()) -> float | None:
        """When the earliest pending message not in `exclude` (attempts under way) is due; None if none is."""
        for key, at in self._db.execute("SELECT key, next_attempt FROM message WHERE state = 'pending'"
                                        " ORDER BY next_attempt"):
            if key not in exclude:
                return at
        return None

    def postpone(self, key: str, until: float) -> None:
        """Move a message's next attempt without counting one (a rate limit, not a failure)."""
        self._db.execute("UPDATE message SET next_attempt = ? WHERE key = ? AND state = 'pending'", (until, key))

    def failed_attempt(self, key: str, attempts: int, next_attempt: float, error: str) -> None:
        self._db.execute("UPDATE message SET attempts = ?, next_attempt = ?, last_error = ? WHERE key = ?",
                         (attempts, next_attempt, error, key))

    def sent(self, key: str, attempts: int, now: float) -> None:
        self._db.execute("UPDATE message SET state = 'sent', attempts = ?, finished = ?, last_error = ''"
                         " WHERE key = ?", (attempts, now, key))

    def dead(self, key: str, attempts: int, now: float, error: str) -> None:
        self._db.execute("UPDATE message SET state = 'dead', attempts = ?, finished = ?, last_error = ?"
                         " WHERE key = ?", (attempts, now, error, key))

    def sent_since(self, channel: str, since: float) -> list[tuple[str, float]]:
        """(address, time) of the channel's deliveries since `since`, to restore rate limits after a restart."""
        return self._db.execute("SELECT address, finished FROM message WHERE channel = ? AND state = 'sent'"
                                " AND finished > ? ORDER BY finished", (channel, since)).fetchall()

    def counts(self) -> dict[str, int]:
        """Messages per state (pending, sent, dead), zeros included."""
        found = dict(self._db.execute("SELECT state, count(*) FROM message GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in ("pending", "sent", "dead")}

    def backlog(self) -> dict[str, tuple[int, float]]:
        """Per channel with pending messages: how many, and when the oldest of them was queued (self-metrics)."""
        return {channel: (n, oldest) for channel, n, oldest in self._db.execute(
            "SELECT channel, count(*), min(created) FROM message WHERE state = 'pending' GROUP BY channel")}

    def prune(self, before: float) -> int:
        """Forget delivered and dead messages finished before `before` (their keys no longer dedup)."""
        return self._db.execute("DELETE FROM message WHERE state != 'pending' AND finished < ?", (before,)).rowcount
