"""Split-packet reassembly (Flag bit D, PNUM/PNO).

Fragments of one upload each carry their own QN but share MN, CN and DataTime,
so sets are keyed by (MN, CN, DataTime), never by QN.  Nothing is lost: a set
that does not complete within ``timeout`` seconds of its first fragment, or that
is evicted because ``max_open`` sets are open, comes out of ``expire`` merged
from what did arrive.

A merged packet takes its header from the lowest PNO, clears Flag bit D and
has ``pno=None``; ``pnum`` is None when the set was complete and the announced
total when it was not.  ``fragments`` lists the packets merged, in PNO order
(their QNs are the ones to acknowledge).  Later fragments win when two carry
the same item; a repeated PNO is ignored (devices re-send unacknowledged data).
"""

from __future__ import annotations

from dataclasses import dataclass

from .packet import CP, FLAG_SPLIT, Packet

__all__ = ["Reassembler"]

_Key = tuple[str, str, str | None]


@dataclass(slots=True)
class _OpenSet:
    first_seen: float
    pnum: int
    parts: dict[int, Packet]


def _merge(parts: dict[int, Packet], pnum: int | None) -> Packet:
    ordered = tuple(parts[pno] for pno in sorted(parts))
    first = ordered[0]
    cp = CP(data_time=first.cp.data_time)
    extra: dict[str, str] = {}
    for part in ordered:
        cp.params.update(part.cp.params)
        for merged, items in ((cp.factors, part.cp.factors), (cp.devices, part.cp.devices)):
            for code, values in items.items():
                merged.setdefault(code, {}).update(values)
        cp.more.extend(part.cp.more)
        extra.update(part.extra)
    return Packet(
        qn=first.qn, st=first.st, cn=first.cn, pw=first.pw, mn=first.mn,
        flag=None if first.flag is None else first.flag & ~FLAG_SPLIT,
        pnum=pnum, pno=None, cp=cp, extra=extra, fragments=ordered,
    )


class Reassembler:
    """Merges split uploads; ``now`` is any monotonic clock in seconds (e.g. ``reactor.seconds()``)."""

    def __init__(self, timeout: float, max_open: int = 10_000) -> None:
        if timeout < 0 or max_open < 1:
            raise ValueError("timeout must be >= 0 and max_open >= 1")
        self.timeout = timeout
        self.max_open = max_open
        self._open: dict[_Key, _OpenSet] = {}  # oldest first
        self._evicted: list[Packet] = []

    def __len__(self) -> int:
        """Number of incomplete sets held."""
        return len(self._open)

    def add(self, packet: Packet, now: float) -> Packet | None:
        """Take one packet; returns the merged packet when its set is complete.

        A packet that is not split is returned as it is.
        """
        if packet.pnum is None or packet.pno is None:
            return packet
        key = (packet.mn, packet.cn, packet.cp.data_time)
        entry = self._open.get(key)
        if entry is None:
            if len(self._open) >= self.max_open:
                oldest = next(iter(self._open))
                evicted = self._open.pop(oldest)
                self._evicted.append(_merge(evicted.parts, evicted.pnum))
            entry = self._open[key] = _OpenSet(now, packet.pnum, {})
        elif packet.pnum > entry.pnum:
            entry.pnum = packet.pnum
        parts = entry.parts
        parts.setdefault(packet.pno, packet)
        if len(parts) < entry.pnum or any(pno not in parts for pno in range(1, entry.pnum + 1)):
            return None
        del self._open[key]
        return _merge(parts, None)

    def expire(self, now: float) -> list[Packet]:
        """Incomplete sets older than the timeout, and sets evicted since the last call, merged."""
        out, self._evicted = self._evicted, []
        while self._open:
            key, entry = next(iter(self._open.items()))
            if now - entry.first_seen < self.timeout:
                break
            del self._open[key]
            out.append(_merge(entry.parts, entry.pnum))
        return out
