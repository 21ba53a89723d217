"""Packets the platform sends: answers to device packets and commands to devices.

Answers (``ST=91``, the system-interaction code) echo the request's QN, PW and
MN and carry the request's version bits in Flag with A = 0 (``Flag=4`` for 2017,
``Flag=8`` for 2025, ``Flag=0`` for 2005).  Commands carry the device's ST, a
new QN and Flag with A = 1: the device answers 9011 (QnRtn), then 9012 (ExeRtn).

Heartbeat (CN 9015, HJ 212-2025 table 12: "judge whether the link is online"):
the text available to us does not give the answer's CN.  9015 is a notification
from the device, and notifications are answered with 9013 (notification ack),
so ``heartbeat_ack`` answers 9013 by default; pass ``cn="9014"`` for platforms
that expect a data ack.  Answer only when ``request.ack_required``.

Time calibration (CN 1013, "on-site machine time calibration request", sent by
the device): answer 9013 if A = 1, then send the set-time command 1012 built by
``system_time`` (it also serves as the answer to a 1011 time upload).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from enum import IntEnum

from .frame import encode_frame
from .packet import CP, Packet, build_segment, flag_for, format_time, make_qn

__all__ = [
    "BACKFILL_CNS",
    "REPLY_ST",
    "ExeRtn",
    "QnRtn",
    "backfill_request",
    "data_ack",
    "data_ack_frame",
    "exe_rtn",
    "heartbeat_ack",
    "notify_ack",
    "qn_rtn",
    "system_time",
]

#: System code of answers (system interaction).
REPLY_ST = "91"
#: History commands a platform may ask for with BeginTime/EndTime: day, run time, minute, hour.
BACKFILL_CNS = frozenset({"2031", "2041", "2051", "2061"})


class QnRtn(IntEnum):
    """Codes of the request answer (CN 9011)."""

    READY = 1
    REFUSED = 2
    BAD_PW = 3
    BAD_MN = 4
    BAD_ST = 5
    BAD_FLAG = 6
    BAD_QN = 7
    BAD_CN = 8
    BAD_CRC = 9
    UNKNOWN = 100


class ExeRtn(IntEnum):
    """Codes of the execution result (CN 9012)."""

    SUCCESS = 1
    FAILED = 2
    BAD_CONDITION = 3
    TIMEOUT = 4
    BUSY = 5
    FAULT = 6
    NO_DATA = 100


def _answer(request: Packet, cn: str, params: dict[str, str] | None = None) -> Packet:
    return Packet(
        qn=request.qn, st=REPLY_ST, cn=cn, pw=request.pw, mn=request.mn,
        flag=flag_for(request.version), cp=CP(params=params or {}),
    )


def data_ack(request: Packet) -> Packet:
    """9014: the upload is stored (``CP=&&&&``)."""
    return _answer(request, "9014")


_ACK_TAILS: dict[tuple[str | None, str, str], str] = {}


def data_ack_frame(request: Packet) -> bytes:
    """``encode_frame(build_segment(data_ack(request)))``, from a cached per-device tail.

    A 9014 goes out for every upload, so only the QN is formatted per packet.
    """
    key = (request.pw, request.mn, request.version)
    tail = _ACK_TAILS.get(key)
    if tail is None:
        tail = build_segment(replace(data_ack(request), qn=None))
        if len(_ACK_TAILS) >= 100_000:
            _ACK_TAILS.clear()
        _ACK_TAILS[key] = tail
    if request.qn is None:
        return encode_frame(tail)
    return encode_frame(f"QN={request.qn};{tail}")


def qn_rtn(request: Packet, code: int = QnRtn.READY) -> Packet:
    """9011: the request is accepted (1) or refused, with the reason."""
    return _answer(request, "9011", {"QnRtn": str(int(code))})


def exe_rtn(request: Packet, code: int = ExeRtn.SUCCESS) -> Packet:
    """9012: how the command ended."""
    return _answer(request, "9012", {"ExeRtn": str(int(code))})


def notify_ack(request: Packet) -> Packet:
    """9013: a notification was received."""
    return _answer(request, "9013")


def heartbeat_ack(request: Packet, cn: str = "9013") -> Packet:
    """Answer to a heartbeat (9015, or vendor 9021); see the module docstring for the CN."""
    return _answer(request, cn)


def system_time(request: Packet, now: datetime) -> Packet:
    """1012: set the device clock to ``now`` (answer to 1013, and to 1011 uploads).

    ``now`` is written as given: pass the devices' local (Beijing) time.  A PolId
    in the request (clock of one analyser) is carried over.
    """
    params: dict[str, str] = {}
    pol_id = request.cp.params.get("PolId")
    if pol_id and pol_id.isprintable() and not any(c in pol_id for c in ";,=& "):
        params["PolId"] = pol_id
    params["SystemTime"] = format_time(now)
    return Packet(
        qn=make_qn(now), st=request.st, cn="1012", pw=request.pw, mn=request.mn,
        flag=flag_for(request.version, ack=True), cp=CP(params=params),
    )


def backfill_request(
    mn: str,
    pw: str,
    cn: str,
    begin: datetime,
    end: datetime,
    qn_time: datetime,
    version: str = "2017",
    *,
    st: str = "32",
) -> Packet:
    """Ask a device for its stored records of ``cn`` (2051 minute, 2061 hour, 2031 day, 2041 run time).

    Times are written as given (devices' local time); ``qn_time`` makes the QN
    that the device's 9011/9012 answers will echo.
    """
    if cn not in BACKFILL_CNS:
        raise ValueError(f"CN {cn!r} is not a history command ({', '.join(sorted(BACKFILL_CNS))})")
    if end < begin:
        raise ValueError("backfill range ends before it begins")
    return Packet(
        qn=make_qn(qn_time), st=st, cn=cn, pw=pw, mn=mn, flag=flag_for(version, ack=True),
        cp=CP(params={"BeginTime": format_time(begin), "EndTime": format_time(end)}),
    )
