"""Sans-IO HJ 212 codec (HJ/T 212-2005, HJ 212-2017, HJ 212-2025): no Twisted here.

``crc`` checksum, ``frame`` stream framing, ``packet`` data-segment parse/build,
``replies`` platform answers and commands, ``reassembly`` split packets,
``sm4`` HJ 212-2025 CP encryption (imports ``cryptography``, so not loaded here).
"""

from .crc import format_crc, hj212_crc
from .frame import Frame, FrameDecoder, FrameEvent, Garbage, encode_frame
from .packet import CP, Packet, PacketError, build_segment, parse_segment

__all__ = [
    "CP",
    "Frame",
    "FrameDecoder",
    "FrameEvent",
    "Garbage",
    "Packet",
    "PacketError",
    "build_segment",
    "encode_frame",
    "format_crc",
    "hj212_crc",
    "parse_segment",
]
