"""HJ 212 framing: ``##`` + 4-digit length + data segment + 4 hex CRC + CR LF.

Framing is separate from meaning: this module finds frame boundaries in a TCP
byte stream and checks the CRC; ``packet`` reads the segment.

Rules of ``FrameDecoder`` (lenient on input, never stuck, bounded memory):

* The length is the data segment's size in UTF-8 bytes.  A frame is complete
  when its 4 CRC digits (any case) have arrived and either match the CRC of the
  segment, or are followed by ``\\r\\n`` or ``\\n``.  So a frame whose CRC
  matches is accepted without a trailer (devices that omit it still get their
  ack at once), and a frame whose CRC does not match is still emitted, as
  ``Frame(crc_ok=False)``, once its trailer confirms the declared length: the
  standard says "answer or drop", the server decides.  The CRC alone never
  moves a frame boundary.
* Bad length digits, a length over ``max_segment``, or a declared length that
  does not end in CRC + trailer make the bytes from that ``##`` on garbage:
  a ``Garbage`` event with a reason, and the scan resumes at the byte after the
  first ``#`` (so ``###0101...`` still finds its frame).
* Length repair, the one exception: if the declared length is wrong but the
  frame ends visibly (``&&`` + 4 hex digits + ``[\\r]\\n``) before the next
  frame header (``##`` + 4 digits), it is accepted when its CRC matches, or
  when its CP is SM4-encrypted (``CP=&&{0x``): the HJ 212-2025 examples print
  the plaintext length in front of the longer ciphertext, and the CRC of such
  frames covers the plaintext (see ``sm4.decrypt_frame``).  ``Frame.length_ok``
  tells these frames apart.  A LF or a frame header arriving before the
  declared end settles the frame at once (repair or garbage): a cut-off frame
  never holds back the next one while its device waits for an ack.
* Bytes outside frames are reported as ``Garbage("no_header")`` as they arrive
  (only a trailing ``#`` is kept); CR and LF right after a frame are ignored.
  ``Frame.raw`` includes the trailer only if it had arrived with the frame.
  The buffer never holds more than one frame of ``max_segment`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .crc import hj212_crc

__all__ = ["MAX_LENGTH_FIELD", "Frame", "FrameDecoder", "FrameEvent", "Garbage", "encode_frame"]

#: The length field has 4 decimal digits.
MAX_LENGTH_FIELD = 9999

_HEADER = b"##"
_HEADER_SIZE = 6  # "##" + 4 digits
_CRC_SIZE = 4
_CR, _LF, _HASH = 13, 10, 35
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_ENCRYPTED_CP = b"CP=&&{"


def encode_frame(segment: str | bytes) -> bytes:
    """Wrap a data segment: ``##`` + byte length + segment + CRC + CR LF."""
    data = segment.encode("utf-8") if isinstance(segment, str) else bytes(segment)
    if len(data) > MAX_LENGTH_FIELD:
        raise ValueError(f"data segment of {len(data)} bytes does not fit the 4-digit length field")
    return b"##%04d%b%04X\r\n" % (len(data), data, hj212_crc(data))


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: its data segment, whether the CRC matched, and the raw bytes (trailer included)."""

    segment: bytes
    crc_ok: bool
    raw: bytes

    @property
    def declared_length(self) -> int:
        """The number in the length field."""
        return int(self.raw[2:_HEADER_SIZE])

    @property
    def length_ok(self) -> bool:
        """False for frames recovered by length repair (see the module docstring)."""
        return self.declared_length == len(self.segment)

    @property
    def received_crc(self) -> int:
        """The CRC the sender wrote (to check a decrypted segment against)."""
        at = _HEADER_SIZE + len(self.segment)
        return int(self.raw[at:at + _CRC_SIZE], 16)


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that are not part of any frame, with the reason they were skipped."""

    data: bytes
    reason: str  # no_header | bad_length | length_over_cap | bad_trailer


FrameEvent: TypeAlias = Frame | Garbage


def _hex4(field: bytes) -> int:
    """The value of exactly 4 hex digits, or -1 (int() alone would accept ' +1_0')."""
    if len(field) == _CRC_SIZE and not field.translate(None, _HEX_DIGITS):
        return int(field, 16)
    return -1


def _next_header(buf: bytes, begin: int, end: int) -> int:
    """Index of the first ``##`` + 4 digits starting in ``[begin, end)``, or -1."""
    at = buf.find(_HEADER, begin, end)
    while at >= 0:
        digits = buf[at + 2:at + _HEADER_SIZE]
        if len(digits) == 4 and digits.isdigit():
            return at
        at = buf.find(_HEADER, at + 1, end)
    return -1


def _trailer_end(buf: bytes, crc_end: int, crc_ok: bool) -> int | None:
    """End of the frame whose CRC digits end at ``crc_end``: None = need more bytes, -1 = bad trailer."""
    n = len(buf)
    if n == crc_end:
        return crc_end if crc_ok else None
    first = buf[crc_end]
    if first == _LF:
        return crc_end + 1
    if first == _CR:
        if n == crc_end + 1:
            return n if crc_ok else None  # a late LF is ignored as inter-frame whitespace
        if buf[crc_end + 1] == _LF:
            return crc_end + 2
        return crc_end + 1 if crc_ok else -1
    return crc_end if crc_ok else -1


class FrameDecoder:
    """Incremental, sans-IO HJ 212 frame decoder: ``feed(bytes) -> [Frame | Garbage, ...]``."""

    def __init__(self, max_segment: int = 1024 * 4) -> None:
        if not 0 <= max_segment <= MAX_LENGTH_FIELD:
            raise ValueError(f"max_segment must be within 0..{MAX_LENGTH_FIELD}, not {max_segment}")
        self.max_segment = max_segment
        self._buf = b""

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[FrameEvent]:
        buf = self._buf + data if self._buf else bytes(data)
        events: list[FrameEvent] = []
        n = len(buf)
        pos = 0  # first byte not yet accounted for
        junk_at = -1  # start of skipped bytes not yet reported
        junk_reason = ""
        while True:
            start = buf.find(_HEADER, pos)
            if start < 0:
                stop = n - 1 if n > pos and buf[n - 1] == _HASH else n
                if junk_at < 0:
                    junk_at, junk_reason = pos, "no_header"
                self._skip(events, buf[junk_at:stop], junk_reason)
                pos = stop
                break
            if junk_at < 0 and start > pos:
                junk_at, junk_reason = pos, "no_header"
            outcome = self._frame_at(buf, start)
            if outcome is None:  # incomplete: keep it
                if junk_at >= 0:
                    self._skip(events, buf[junk_at:start], junk_reason)
                pos = start
                break
            if isinstance(outcome, str):  # not a frame: resume after its first '#'
                if junk_at >= 0 and junk_reason == "no_header":
                    self._skip(events, buf[junk_at:start], junk_reason)
                    junk_at = -1
                if junk_at < 0:
                    junk_at, junk_reason = start, outcome
                pos = start + 1
                continue
            frame, pos = outcome
            if junk_at >= 0:
                self._skip(events, buf[junk_at:start], junk_reason)
                junk_at = -1
            events.append(frame)
        self._buf = buf[pos:]
        return events

    @staticmethod
    def _skip(events: list[FrameEvent], data: bytes, reason: str) -> None:
        if reason == "no_header":
            data = data.lstrip(b"\r\n")  # the trailer of a frame emitted before it arrived
        if data:
            events.append(Garbage(data, reason))

    def _frame_at(self, buf: bytes, start: int) -> tuple[Frame, int] | str | None:
        """The frame starting at ``start``: (frame, end), a garbage reason, or None to wait."""
        n = len(buf)
        seg_start = start + _HEADER_SIZE
        if n < seg_start:
            digits = buf[start + 2:n]
            return "bad_length" if digits and not digits.isdigit() else None
        digits = buf[start + 2:seg_start]
        if not digits.isdigit():
            return "bad_length"
        seg_end = seg_start + int(digits)
        if seg_end - seg_start > self.max_segment:
            return "length_over_cap"
        crc_end = seg_end + _CRC_SIZE
        if n < crc_end:
            # Neither a LF nor a frame header can occur inside a segment: if one has
            # arrived, this frame ended early (wrong length) or was cut off.
            if buf.find(b"\n", seg_start, n) >= 0 or _next_header(buf, seg_start, n) >= 0:
                return self._repair(buf, start)
            return None
        received = _hex4(buf[seg_end:crc_end])
        if received >= 0:
            segment = buf[seg_start:seg_end]
            crc_ok = hj212_crc(segment) == received
            end = _trailer_end(buf, crc_end, crc_ok)
            if end is None:
                return None
            if end >= 0:
                return Frame(segment, crc_ok, buf[start:end]), end
        return self._repair(buf, start)

    def _repair(self, buf: bytes, start: int) -> tuple[Frame, int] | str | None:
        """Accept a frame whose declared length is wrong if its real end is unambiguous."""
        seg_start = start + _HEADER_SIZE
        limit = seg_start + self.max_segment + _CRC_SIZE + 2
        lf = buf.find(b"\n", seg_start, limit)
        if _next_header(buf, start + 2, lf if lf >= 0 else limit) >= 0:
            return "bad_trailer"  # another frame starts first
        if lf < 0:
            return None if len(buf) < limit else "bad_trailer"
        crc_end = lf - 1 if buf[lf - 1] == _CR else lf
        seg_end = crc_end - _CRC_SIZE
        received = _hex4(buf[seg_end:crc_end])
        if seg_end < seg_start + 2 or buf[seg_end - 2:seg_end] != b"&&" or received < 0:
            return "bad_trailer"
        segment = buf[seg_start:seg_end]
        crc_ok = hj212_crc(segment) == received
        if crc_ok or _ENCRYPTED_CP in segment:
            return Frame(segment, crc_ok, buf[start:lf + 1]), lf + 1
        return "bad_trailer"
