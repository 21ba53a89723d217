"""SM4 encryption of the CP of HJ 212-2025 (section 6.4, appendix A.2).

What the standard specifies, as transcribed from its text and appendix A.2
examples (public test vectors extracted from the PDF; the examples' ciphertext
is reproduced exactly by this module, see ``tests/test_hj212_sm4.py``):

* SM4 (GB/T 32907), 16-byte key, ECB mode, "Nopadding": the characters between
  ``CP=&&`` and the closing ``&&`` are encrypted 16 at a time; a last group of
  fewer than 16 stays plaintext.  A CP shorter than 16 is sent as is.
* The ciphertext is written as a C array of upper-case hex bytes,
  ``{0xE4,0x3E,...}``, followed by the plaintext tail:
  ``CP=&&{0xE4,...,0xA4}g=N&&``.
* The CRC is computed over the plaintext segment, before encryption.
* The example key is sixteen 0x30 bytes (``TEST_KEY``); real keys are
  registered per device.  Commands 2000-2999, 1014 and 3020 are to be
  encrypted on public networks.
* The examples' length field holds the plaintext length, which cannot frame
  the longer ciphertext.  ``encode_encrypted_frame`` writes the transmitted
  length; ``FrameDecoder`` accepts both (length repair of encrypted CPs).

Groups are counted in UTF-8 bytes (the examples are ASCII); a group boundary
may split a Chinese character, so the byte-level functions are the exact ones
and the ``str`` functions carry such a tail as surrogate escapes.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .crc import hj212_crc
from .frame import Frame

__all__ = [
    "TEST_KEY",
    "SM4Error",
    "decrypt_cp",
    "decrypt_cp_bytes",
    "decrypt_frame",
    "decrypt_segment",
    "encode_encrypted_frame",
    "encrypt_cp",
    "encrypt_cp_bytes",
    "encrypt_segment",
    "is_encrypted",
    "parse_key",
]

#: The key of the appendix A.2 examples: sixteen ASCII "0" (0x30).
TEST_KEY = b"0" * 16

_BLOCK = 16
_CP_OPEN = b"CP=&&"
_CP_CLOSE = b"&&"
_HEX = frozenset(b"0123456789abcdefABCDEF")


class SM4Error(ValueError):
    """A bad key, or a ciphertext that is not ``{0x..,...}`` whole blocks."""


def parse_key(key: bytes | str) -> bytes:
    """A 16-byte key from bytes, 32 hex digits, or 16 ASCII characters."""
    if isinstance(key, str):
        if len(key) == 2 * _BLOCK:
            try:
                key = bytes.fromhex(key)
            except ValueError:
                raise SM4Error("a 32-character key must be hex") from None
        else:
            key = key.encode("utf-8")
    key = bytes(key)
    if len(key) != _BLOCK:
        raise SM4Error(f"an SM4 key has 16 bytes, not {len(key)}")
    return key


@lru_cache(maxsize=4096)
def _cipher(key: bytes) -> Cipher:
    return Cipher(algorithms.SM4(key), modes.ECB())


def _ecb(key: bytes | str, data: bytes, decrypt: bool) -> bytes:
    cipher = _cipher(parse_key(key))
    context = cipher.decryptor() if decrypt else cipher.encryptor()
    return context.update(data) + context.finalize()


def is_encrypted(cp_text: str | bytes) -> bool:
    """True if a CP body is in the encrypted ``{0x..`` form."""
    head = cp_text[:3]
    return head in ("{0x", "{0X") if isinstance(head, str) else head in (b"{0x", b"{0X")


def encrypt_cp_bytes(plain: bytes, key: bytes | str) -> bytes:
    """Encrypt a CP body: whole 16-byte groups become ``{0x..,...}``, the rest stays plain."""
    whole = len(plain) - len(plain) % _BLOCK
    if not whole:
        return bytes(plain)
    cipher = _ecb(key, plain[:whole], decrypt=False)
    return b"{" + b",".join(b"0x%02X" % byte for byte in cipher) + b"}" + plain[whole:]


def decrypt_cp_bytes(text: bytes, key: bytes | str) -> bytes:
    """Decrypt a CP body; a body that is not encrypted is returned unchanged."""
    if not is_encrypted(text):
        return bytes(text)
    close = text.find(b"}")
    if close < 0:
        raise SM4Error("encrypted CP has no closing '}'")
    cipher = bytearray()
    for item in text[1:close].split(b","):
        item = item.strip()
        if item[:2] in (b"0x", b"0X"):
            item = item[2:]
        if not 1 <= len(item) <= 2 or not _HEX.issuperset(item):
            raise SM4Error(f"encrypted CP holds {item[:8]!r}, not a 0xNN byte")
        cipher.append(int(item, 16))
    if len(cipher) % _BLOCK:
        raise SM4Error(f"encrypted CP has {len(cipher)} bytes, not whole 16-byte groups")
    return _ecb(key, bytes(cipher), decrypt=True) + text[close + 1:]


def encrypt_cp(cp_text: str, key: bytes | str) -> str:
    """``encrypt_cp_bytes`` for text."""
    return encrypt_cp_bytes(cp_text.encode("utf-8"), key).decode("utf-8", "surrogateescape")


def decrypt_cp(cp_text: str, key: bytes | str) -> str:
    """``decrypt_cp_bytes`` for text; a wrong key shows up as SM4Error (not UTF-8)."""
    plain = decrypt_cp_bytes(cp_text.encode("utf-8", "surrogateescape"), key)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise SM4Error("decrypted CP is not UTF-8: wrong key?") from None


def _cp_span(segment: bytes) -> tuple[int, int]:
    start = segment.find(_CP_OPEN)
    end = segment.rfind(_CP_CLOSE)
    if start < 0 or end < start + len(_CP_OPEN):
        raise SM4Error("segment has no CP=&&...&& field")
    return start + len(_CP_OPEN), end


def _as_bytes(segment: bytes | str) -> bytes:
    return segment.encode("utf-8", "surrogateescape") if isinstance(segment, str) else bytes(segment)


def decrypt_segment(segment: bytes | str, key: bytes | str) -> bytes:
    """The plaintext segment (input for ``parse_segment``); unencrypted segments come back unchanged."""
    data = _as_bytes(segment)
    start, end = _cp_span(data)
    if not is_encrypted(data[start:end]):
        return data
    return data[:start] + decrypt_cp_bytes(data[start:end], key) + data[end:]


def encrypt_segment(segment: bytes | str, key: bytes | str) -> bytes:
    """The segment with its CP encrypted."""
    data = _as_bytes(segment)
    start, end = _cp_span(data)
    return data[:start] + encrypt_cp_bytes(data[start:end], key) + data[end:]


def encode_encrypted_frame(segment: bytes | str, key: bytes | str) -> bytes:
    """A frame with encrypted CP: CRC of the plaintext, length of what is sent."""
    plain = _as_bytes(segment)
    wire = encrypt_segment(plain, key)
    if len(wire) > 9999:
        raise ValueError(f"encrypted segment of {len(wire)} bytes does not fit the length field")
    return b"##%04d%b%04X\r\n" % (len(wire), wire, hj212_crc(plain))


def decrypt_frame(frame: Frame, key: bytes | str) -> tuple[bytes, bool]:
    """(plaintext segment, CRC ok) of a received frame.

    The CRC counts as ok if it matches the plaintext (the standard) or the bytes
    as sent (``frame.crc_ok``, senders that encrypt first).
    """
    plain = decrypt_segment(frame.segment, key)
    return plain, frame.crc_ok or hj212_crc(plain) == frame.received_crc
