"""Helpers shared by the field-side tests."""

from __future__ import annotations

import struct


def telegraf_float32(words: list[int], byte_order: str) -> float:
    """Decode as Telegraf's modbus plugin does (type_conversions32.go), independently of the encoder."""
    raw = struct.pack(">HH", *words)
    value = {
        "ABCD": lambda b: int.from_bytes(b, "big"),
        "DCBA": lambda b: int.from_bytes(b, "little"),
        "BADC": lambda b: int.from_bytes(b[0:2], "little") << 16 | int.from_bytes(b[2:4], "little"),
        "CDAB": lambda b: int.from_bytes(b[2:4], "big") << 16 | int.from_bytes(b[0:2], "big"),
    }[byte_order](raw)
    return struct.unpack(">f", value.to_bytes(4, "big"))[0]
