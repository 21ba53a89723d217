"""HJ 212 data segment: ``QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;[PNUM=..;PNO=..;]CP=&&...&&``.

``parse_segment`` is lenient and never raises anything but ``PacketError``;
``build_segment`` is strict and canonical.  Decisions, in order of surprise:

* Top-level fields may be separated by ``;`` or ``,`` (header values never hold
  commas), in any order, with whitespace around them; known names match in any
  case (``flag=5``).  Unknown fields (``RF=1`` of 2025 backfill uploads, vendor
  keys) are kept in ``extra`` and written back after PNUM/PNO.
* CN and MN are required for every packet (``missing_cn``/``missing_mn``): the
  platform answers every packet to a device.  CN must be digits; MN may have
  any length.  QN, ST, PW and Flag are optional.
* QN is accepted as long as it can be echoed back safely (``bad_qn`` only for
  control characters, ``=`` or ``&``); ``Packet.qn_valid`` flags QNs that are
  not the standard 17 digits, so the server may count them without losing data.
* CP items are split on ``;`` and ``,`` alike, each ``key=value`` read on its
  own: ``DataTime`` -> ``cp.data_time``; ``code-Suffix`` -> ``cp.factors``
  (``SB...`` codes -> ``cp.devices``); anything else -> ``cp.params``.  A second
  ``DataTime`` starts a new group in ``cp.more`` (several records in one CP).
  The last ``&&`` closes the CP; a missing ``&&`` is tolerated.
* An SM4-encrypted CP (``{0x..,...}``, HJ 212-2025) raises ``encrypted_cp``:
  decrypt with ``sm4.decrypt_segment`` first.
* Version: Flag bits V5..V0 (0 = 2005, 1 = 2017, 2 and above = 2025); without a
  Flag, ST 44/45 mean 2025, no QN or a 14-character MN mean 2005, else 2017.

``read_plain_upload`` reads only the header of a data upload in the shape
nearly every device sends (the order ``build_segment`` writes, DataTime first in
CP) with one regular expression, leaving the factors to
``PointBuilder.convert_plain``; anything else goes through ``parse_segment``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "CP",
    "FLAG_ACK",
    "FLAG_SPLIT",
    "VERSION_BITS",
    "Packet",
    "PacketError",
    "build_cp",
    "build_segment",
    "flag_for",
    "format_time",
    "make_qn",
    "parse_cp",
    "parse_segment",
    "parse_time",
    "read_plain_upload",
]

#: Flag bit A: the receiver must answer.
FLAG_ACK = 1
#: Flag bit D: the segment carries PNUM and PNO.
FLAG_SPLIT = 2
#: Version number in Flag bits V5..V0 (``flag >> 2``).
VERSION_BITS = {"2005": 0, "2017": 1, "2025": 2}

_HEADER_NAMES = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")
#: Known header names in the spellings accepted on input -> canonical name.
_HEADER_KEYS = {
    spelling: name
    for name in _HEADER_NAMES
    for spelling in (name, name.upper(), name.lower())
}
_SUFFIX_NAMES = (
    "Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax",
    "Flag", "EFlag", "SampleTime", "Info", "RS", "RT",
)
#: Known factor suffixes in the spellings accepted on input -> canonical spelling.
_SUFFIXES = {
    spelling: name
    for name in _SUFFIX_NAMES
    for spelling in (name, name.upper(), name.lower())
}
_DEVICE_PREFIX = "SB"
_DATA_TIME = "DataTime"


class PacketError(Exception):
    """A data segment that cannot be read; ``kind`` is a short snake_case metric label."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class CP:
    """The command parameters (``CP=&&...&&``), grouped by meaning.

    ``more`` holds further groups when one CP carries several ``DataTime`` records.
    """

    data_time: str | None = None
    factors: dict[str, dict[str, str]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    more: list[CP] = field(default_factory=list)


@dataclass(slots=True)
class Packet:
    """One data segment.  ``fragments`` is set only on packets merged by ``reassembly``."""

    qn: str | None
    st: str | None
    cn: str
    pw: str | None
    mn: str
    flag: int | None
    pnum: int | None = None
    pno: int | None = None
    cp: CP = field(default_factory=CP)
    extra: dict[str, str] = field(default_factory=dict)
    fragments: tuple[Packet, ...] = field(default=(), compare=False, repr=False)

    @property
    def version(self) -> str:
        """``"2005"``, ``"2017"`` or ``"2025"`` (see the module docstring for the rules)."""
        if self.flag is not None:
            bits = self.flag >> 2
            return "2005" if bits == 0 else "2017" if bits == 1 else "2025"
        if self.st in ("44", "45"):
            return "2025"
        if self.qn is None or len(self.mn) == 14:
            return "2005"
        return "2017"

    @property
    def ack_required(self) -> bool:
        """Flag bit A; no Flag means no answer is expected."""
        return self.flag is not None and bool(self.flag & FLAG_ACK)

    @property
    def split(self) -> bool:
        """The packet is one fragment of a split upload (PNUM and PNO present)."""
        return self.pnum is not None and self.pno is not None

    @property
    def resend(self) -> bool:
        """HJ 212-2025 ``RF=1``: the upload re-sends stored data."""
        return self.extra.get("RF") == "1"

    @property
    def qn_valid(self) -> bool:
        """QN has the standard form YYYYMMDDhhmmsszzz (17 digits)."""
        qn = self.qn
        return qn is not None and len(qn) == 17 and qn.isascii() and qn.isdigit()


# -- parsing ---------------------------------------------------------------


def _has_space(text: str) -> bool:
    return " " in text or "\t" in text or "\r" in text or "\n" in text


def _echo_safe(value: str) -> bool:
    """A value that can be written back into a header unchanged."""
    return value.isprintable() and "=" not in value and "&" not in value


def _no_equals(value: str) -> bool:
    return "=" not in value


def _small_int(text: str, digits: int) -> int | None:
    """A non-negative decimal of at most ``digits`` ASCII digits, else None."""
    if 0 < len(text) <= digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def _find_cp(text: str) -> int:
    """Index of the ``CP=`` field (at the start or after a separator), or -1."""
    at = text.find("CP=")
    while at > 0 and text[at - 1] not in ";, \t":
        at = text.find("CP=", at + 1)
    return at


def _split_cp(text: str, at: int) -> tuple[str, str]:
    """Split what follows ``CP=`` at ``at`` into (CP body, text after the closing ``&&``)."""
    if not text.startswith("&&", at):
        rest = text[at:].strip()
        if not rest.startswith("&&"):
            return (rest[:-2] if rest.endswith("&&") else rest), ""
        text, at = rest, 0
    close = text.rfind("&&", at + 2)
    if close < 0:
        return text[at + 2:], ""
    tail = text[close + 2:]
    return text[at + 2:close], tail.strip(" \t\r\n\x00;,") if tail else ""


def parse_cp(body: str) -> CP:
    """Read a CP body (the text between the ``&&`` markers)."""
    if body[:3] in ("{0x", "{0X"):
        raise PacketError("encrypted_cp", "CP is SM4-encrypted; decrypt it first")
    cp = CP()
    if not body:
        return cp
    strip = _has_space(body)
    canonical = _SUFFIXES.get
    group = cp
    last_code = ""  # consecutive items of one factor share its dict
    values: dict[str, str] = {}
    for piece in body.replace(";", ",").split(","):
        key, _, value = piece.partition("=")
        if strip:
            key = key.strip()
            value = value.strip()
        code, dash, suffix = key.rpartition("-")
        if dash and code:
            if code != last_code:
                items = group.devices if code[:2] == _DEVICE_PREFIX else group.factors
                values = items.get(code)  # type: ignore[assignment]
                if values is None:
                    values = items[code] = {}
                last_code = code
            values[canonical(suffix, suffix)] = value
        elif not key:
            continue
        elif key == _DATA_TIME or (len(key) == 8 and key.lower() == "datatime"):
            if group.data_time is None:
                group.data_time = value
            else:
                group = CP(data_time=value)
                cp.more.append(group)
                last_code = ""
        else:
            group.params[key] = value
    return cp


def parse_segment(segment: bytes | str) -> Packet:
    """Read a data segment; raises only ``PacketError``, whatever the input."""
    if isinstance(segment, str):
        text = segment
    elif isinstance(segment, (bytes, bytearray, memoryview)):
        try:
            text = str(segment, "utf-8")
        except UnicodeDecodeError as error:
            raise PacketError("not_utf8", f"byte {error.start} is not UTF-8") from None
    else:
        raise PacketError("bad_type", f"expected bytes or str, got {type(segment).__name__}")

    at = _find_cp(text)
    if at < 0:
        raise PacketError("no_cp", "no CP= field")
    body, tail = _split_cp(text, at + 3)
    head = text[:at] + ";" + tail if tail else text[:at]
    if "," in head:
        head = head.replace(",", ";")
    strip = _has_space(head)
    # Without controls or '&' anywhere in the header, only '=' is left to check per value.
    echo_ok = _no_equals if not strip and head.isprintable() and "&" not in head else _echo_safe

    fields: dict[str, str] = {}
    extra: dict[str, str] = {}
    for item in head.split(";"):
        key, sep, value = item.partition("=")
        if strip:
            key = key.strip()
            value = value.strip()
        if not key:
            if sep or value:
                raise PacketError("bad_field", f"field without a name: {item[:40]!r}")
            continue
        name = _HEADER_KEYS.get(key)
        if name is not None:
            fields[name] = value
        elif sep and key.isprintable() and "&" not in key and echo_ok(value):
            extra[key] = value
        else:
            raise PacketError("bad_field", f"unreadable field {item[:40]!r}")

    cn = fields.get("CN")
    if not cn:
        raise PacketError("missing_cn", "no CN")
    if not (len(cn) <= 8 and cn.isascii() and cn.isdigit()):
        raise PacketError("bad_cn", f"CN {cn[:20]!r} is not a number")
    mn = fields.get("MN")
    if not mn:
        raise PacketError("missing_mn", "no MN")
    if not echo_ok(mn):
        raise PacketError("bad_mn", f"MN {mn[:40]!r} cannot be echoed")
    qn = fields.get("QN") or None
    if qn is not None and not echo_ok(qn):
        raise PacketError("bad_qn", f"QN {qn[:40]!r} cannot be echoed")
    st = fields.get("ST") or None
    if st is not None and not echo_ok(st):
        raise PacketError("bad_st", f"ST {st[:20]!r} cannot be echoed")
    pw = fields.get("PW") or None
    if pw is not None and not echo_ok(pw):
        raise PacketError("bad_pw", "PW cannot be echoed")

    flag = None
    if text_flag := fields.get("Flag"):
        flag = _small_int(text_flag, 3)
        if flag is None or flag > 255:
            raise PacketError("bad_flag", f"Flag {text_flag[:20]!r} is not 0..255")
    pnum = pno = None
    text_pnum, text_pno = fields.get("PNUM"), fields.get("PNO")
    if text_pnum or text_pno:
        pnum = _small_int(text_pnum or "", 4)
        if not pnum:
            raise PacketError("bad_pnum", f"PNUM {str(text_pnum)[:20]!r} is not 1..9999")
        pno = _small_int(text_pno or "", 4)
        if not pno or pno > pnum:
            raise PacketError("bad_pno", f"PNO {str(text_pno)[:20]!r} is not 1..PNUM")

    return Packet(qn, st, cn, pw, mn, flag, pnum, pno, parse_cp(body), extra)


#: QN;ST;CN;PW;MN;Flag;CP=&&DataTime=..;rest&& with values parse_segment would take as they are
#: (no spaces, nothing to strip or refuse): the PW class is printable ASCII but for ``& , ; =``.
_PLAIN_UPLOAD = re.compile(
    r"QN=([0-9]{17});ST=([0-9]{2});CN=(2011|2051|2061|2031);PW=([!-%'-+\--:<>-~]{1,64});"
    r"MN=([0-9A-Za-z]{1,32});Flag=([0-9]{1,3});CP=&&DataTime=([0-9]{14})[;,]([^&]*)&&"
)


def read_plain_upload(segment: bytes) -> tuple[Packet, str] | None:
    """A data upload in the common shape: (its packet without factors, the CP text after DataTime), else None.

    The packet equals ``parse_segment(segment)`` but for ``cp``, which holds only
    ``data_time``; the rest of the CP is for ``PointBuilder.convert_plain``.
    """
    try:
        match = _PLAIN_UPLOAD.fullmatch(segment.decode())
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    qn, st, cn, pw, mn, text_flag, data_time, rest = match.groups()
    flag = int(text_flag)
    if flag > 255:
        return None
    return Packet(qn, st, cn, pw, mn, flag, None, None, CP(data_time), {}), rest


# -- building --------------------------------------------------------------


def _check_token(what: str, value: str, *, empty: bool = False) -> str:
    """Reject what would not read back identically: separators, controls, edge spaces."""
    if (
        not isinstance(value, str)
        or (not value and not empty)
        or not value.isprintable()
        or value != value.strip()
        or ";" in value or "," in value or "=" in value or "&" in value
    ):
        raise ValueError(f"{what} {value!r} cannot be written into a segment")
    return value


def _check_value(what: str, value: str) -> str:
    """CP values may be empty and contain ``=``; they may not hold separators."""
    if (
        not isinstance(value, str)
        or not value.isprintable()
        or value != value.strip()
        or ";" in value or "," in value or "&" in value
    ):
        raise ValueError(f"{what} {value!r} cannot be written into a CP")
    return value


def _build_items(kind: str, items: dict[str, dict[str, str]], parts: list[str]) -> None:
    for code, values in items.items():
        _check_token(f"{kind} code", code)
        if (kind == "device") != code.startswith(_DEVICE_PREFIX):
            raise ValueError(f"{kind} code {code!r}: device codes, and only they, start with SB")
        if not values:
            raise ValueError(f"{kind} {code!r} has no values")
        pieces = []
        for suffix, value in values.items():
            _check_token("suffix", suffix)
            if "-" in suffix or _SUFFIXES.get(suffix, suffix) != suffix:
                raise ValueError(f"suffix {suffix!r} of {code!r} is not canonical")
            pieces.append(f"{code}-{suffix}={_check_value(code, value)}")
        parts.append(",".join(pieces))


def _build_group(cp: CP, parts: list[str]) -> None:
    if cp.data_time is not None:
        parts.append(f"DataTime={_check_value('DataTime', cp.data_time)}")
    for key, value in cp.params.items():
        _check_token("CP key", key)
        if "-" in key or key.lower() == "datatime":
            raise ValueError(f"CP key {key!r} would read back as a factor or DataTime")
        parts.append(f"{key}={_check_value(key, value)}")
    _build_items("factor", cp.factors, parts)
    _build_items("device", cp.devices, parts)


def build_cp(cp: CP) -> str:
    """The CP body in canonical order: DataTime, params, factors, devices, then further groups."""
    parts: list[str] = []
    _build_group(cp, parts)
    if cp.more:
        if cp.data_time is None:
            raise ValueError("a CP with further groups needs its own DataTime")
        for group in cp.more:
            if group.data_time is None or group.more:
                raise ValueError("each further CP group needs a DataTime and no groups of its own")
            _build_group(group, parts)
    body = ";".join(parts)
    if body[:3] in ("{0x", "{0X"):
        raise ValueError("a CP body starting with {0x would read back as SM4-encrypted")
    return body


def build_segment(packet: Packet) -> str:
    """The canonical segment: QN;ST;CN;PW;MN;Flag;[PNUM;PNO;][extra;]CP=&&...&&."""
    parts: list[str] = []
    if packet.qn is not None:
        parts.append(f"QN={_check_token('QN', packet.qn)}")
    if packet.st is not None:
        parts.append(f"ST={_check_token('ST', packet.st)}")
    if not (isinstance(packet.cn, str) and len(packet.cn) <= 8 and packet.cn.isascii() and packet.cn.isdigit()):
        raise ValueError(f"CN {packet.cn!r} must be 1 to 8 digits")
    parts.append(f"CN={packet.cn}")
    if packet.pw is not None:
        parts.append(f"PW={_check_token('PW', packet.pw)}")
    parts.append(f"MN={_check_token('MN', packet.mn)}")
    flag = packet.flag
    if flag is not None:
        if not isinstance(flag, int) or not 0 <= flag <= 255:
            raise ValueError(f"Flag {flag!r} is not 0..255")
        parts.append(f"Flag={flag}")
    if packet.pnum is not None or packet.pno is not None:
        pnum, pno = packet.pnum, packet.pno
        if pnum is None or pno is None or not 1 <= pno <= pnum <= 9999:
            raise ValueError(f"PNUM {pnum!r} / PNO {pno!r}: need 1 <= PNO <= PNUM <= 9999")
        if flag is None or not flag & FLAG_SPLIT:
            raise ValueError("PNUM/PNO need Flag bit D")
        parts.append(f"PNUM={pnum};PNO={pno}")
    for key, value in packet.extra.items():
        _check_token("field name", key)
        if key.upper() in ("QN", "ST", "CN", "PW", "MN", "FLAG", "PNUM", "PNO", "CP") or " " in key:
            raise ValueError(f"extra field {key!r} collides with a standard field or holds a space")
        parts.append(f"{key}={_check_token(key, value, empty=True)}")
    parts.append(f"CP=&&{build_cp(packet.cp)}&&")
    return ";".join(parts)


# -- flags and times -------------------------------------------------------


def flag_for(version: str, *, ack: bool = False, split: bool = False) -> int:
    """The Flag value for a protocol version and the A and D bits."""
    if version not in VERSION_BITS:
        raise ValueError(f"unknown HJ 212 version {version!r} (one of {', '.join(VERSION_BITS)})")
    return VERSION_BITS[version] << 2 | (FLAG_SPLIT if split else 0) | (FLAG_ACK if ack else 0)


def format_time(when: datetime) -> str:
    """``YYYYMMDDhhmmss`` of the wall-clock fields as given (pass the devices' local time)."""
    return f"{when.year:04d}{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}{when.second:02d}"


def make_qn(when: datetime) -> str:
    """A request number ``YYYYMMDDhhmmsszzz`` (milliseconds) for ``when``."""
    return f"{format_time(when)}{when.microsecond // 1000:03d}"


def parse_time(text: str) -> datetime:
    """Read ``YYYYMMDDhhmmss`` (devices also send 17 digits with milliseconds); raises ValueError."""
    if len(text) not in (14, 17) or not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a HJ 212 time: {text!r}")
    return datetime(
        int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14]),
        int(text[14:17] or 0) * 1000,
    )
