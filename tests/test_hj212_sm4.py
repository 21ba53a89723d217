"""SM4 CP encryption reproduces the HJ 212-2025 appendix A.2 examples and the SM4 standard vector."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingest_twisted.hj212.frame import FrameDecoder
from ingest_twisted.hj212.packet import PacketError, parse_segment
from ingest_twisted.hj212.sm4 import (
    TEST_KEY,
    SM4Error,
    decrypt_cp,
    decrypt_cp_bytes,
    decrypt_frame,
    decrypt_segment,
    encode_encrypted_frame,
    encrypt_cp,
    encrypt_cp_bytes,
    encrypt_segment,
    is_encrypted,
    parse_key,
)

HEAD = "QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&"
# Appendix A.2, example with 13 whole groups (208 characters); CRC of the plaintext segment: 2200.
CP_13 = ("DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;"
         "a01012-Min=9.3,a01012-Avg=9.3,a01012-Max=9.3,a01012-Flag=N;"
         "a01014-Min=3.20,a01014-Avg=3.211,a01014-Max=3.212,a01014-Flag=N")
CIPHER_13 = (
    "E43E159ACFAB242CB53155FB8B9281A1A242577ABFAED881BE88B72D69FC55ED1A80119FAAC8B3CD33D285CC76F57F2C"
    "A7F88B9573C6647E0F07E24609BD6B63EB20C5B9784F28E71D2F4994FF61D9E1C2B3075592B4D1E09C4D8BB27BE97B55"
    "9E3DA6643781A6F477769DEEB009B10DFFF3426922725D607DC4480F0CAC5F70DB2587B124BCB281592721D6E4BC180A"
    "97E5E111499CBE822E31C8D7761553543AA24207C290997BBDE64F9266BC5F529A172E381C1D898CA1A0D771A914A7B2"
    "D7467C70B94F1D4A7B0350A48DBF8B41"
)
# Appendix A.2, example with 9 whole groups and a 3-character plaintext tail; CRC B541.
CP_9 = ("DataTime=20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;"
        "a01014-Min=3.20,a01014-Avg=3.20,a01014-Max=3.20,a01014-Flag=N")
CIPHER_9 = (
    "E43E159ACFAB242CB53155FB8B9281A1A242577ABFAED881BE88B72D69FC55ED1A80119FAAC8B3CD33D285CC76F57F2C"
    "A7F88B9573C6647E0F07E24609BD6B63EB20C5B9784F28E71D2F4994FF61D9E13B391A1D2A454B65388D5D9435DBF021"
    "528C7BF9755EF16518710C0CAC0ADEF9C5156CD0A5A17674AC0ED2ABC40023E9EF70128554B82438E91ADCE98A0D03A4"
)


def c_array(hex_text: str) -> str:
    return "{" + ",".join(f"0x{hex_text[i:i + 2]}" for i in range(0, len(hex_text), 2)) + "}"


def test_sm4_standard_vector():
    vector = bytes.fromhex("0123456789abcdeffedcba9876543210")
    encrypted = encrypt_cp_bytes(vector, "0123456789abcdeffedcba9876543210")
    assert encrypted.decode() == c_array("681EDF34D206965E86B3E94F536E4246")
    assert decrypt_cp_bytes(encrypted, vector) == vector


def test_keys():
    assert parse_key("30" * 16) == parse_key("0" * 16) == parse_key(TEST_KEY) == bytes([0x30] * 16)
    for bad in (b"short", "x" * 32, "0" * 17, "密钥" * 8):
        with pytest.raises(SM4Error):
            parse_key(bad)


def test_appendix_a2_whole_groups():
    assert encrypt_cp(CP_13, TEST_KEY) == c_array(CIPHER_13)
    assert decrypt_cp(c_array(CIPHER_13), TEST_KEY) == CP_13


def test_appendix_a2_plaintext_tail():
    assert len(CP_9) % 16 == 3
    assert encrypt_cp(CP_9, TEST_KEY) == c_array(CIPHER_9) + "g=N"
    assert decrypt_cp(c_array(CIPHER_9) + "g=N", TEST_KEY) == CP_9


def test_the_standards_encrypted_frame_decodes():
    """Printed as ``##0295...{0x..}&&2200``: plaintext length, CRC of the plaintext."""
    raw = b"##0295" + (HEAD + c_array(CIPHER_13) + "&&").encode() + b"2200\r\n"
    [frame] = FrameDecoder().feed(raw)
    assert frame.declared_length == 295 and not frame.length_ok and not frame.crc_ok
    with pytest.raises(PacketError) as caught:
        parse_segment(frame.segment)
    assert caught.value.kind == "encrypted_cp"
    plain, crc_ok = decrypt_frame(frame, TEST_KEY)
    assert crc_ok and plain == (HEAD + CP_13 + "&&").encode()
    packet = parse_segment(plain)
    assert packet.version == "2025" and packet.cp.factors["a01014"]["Avg"] == "3.211"


def test_encrypted_frames_we_send_carry_their_real_length():
    segment = HEAD + CP_9 + "&&"
    raw = encode_encrypted_frame(segment, TEST_KEY)
    assert raw.endswith(b"g=N&&B541\r\n")
    [frame] = FrameDecoder().feed(raw)
    assert frame.length_ok and not frame.crc_ok
    plain, crc_ok = decrypt_frame(frame, TEST_KEY)
    assert crc_ok and parse_segment(plain) == parse_segment(segment)


def test_plain_and_short_cps_are_left_alone():
    assert encrypt_cp("DataTime=1", TEST_KEY) == "DataTime=1"  # under 16 characters
    assert not is_encrypted("DataTime=1") and is_encrypted("{0xE4}") and is_encrypted(b"{0X01}")
    segment = (HEAD + "DataTime=20240520210600&&").encode()
    assert decrypt_segment(segment, TEST_KEY) == segment
    assert decrypt_segment(encrypt_segment(segment, TEST_KEY), TEST_KEY) == segment


@pytest.mark.parametrize("text", [b"{0xE4,0x3E", b"{0xE4,0xZZ}", b"{0xE4,0x3E}", b"{0x1234}"])
def test_malformed_ciphertext(text):
    with pytest.raises(SM4Error):
        decrypt_cp_bytes(text, TEST_KEY)


def test_segment_without_cp():
    with pytest.raises(SM4Error):
        decrypt_segment(b"QN=1;CN=2011", TEST_KEY)


def test_wrong_key_does_not_give_the_plaintext():
    encrypted = encrypt_cp(CP_13, TEST_KEY).encode()
    assert decrypt_cp_bytes(encrypted, b"1" * 16) != CP_13.encode()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.binary(min_size=16, max_size=16))
def test_round_trip(text, key):
    if len(text.encode()) < 16:
        assume(not is_encrypted(text))  # a short CP is sent in clear, so it must not look encrypted
    encrypted = encrypt_cp(text, key)
    assert decrypt_cp(encrypted, key) == text
    raw = text.encode("utf-8")
    assert decrypt_cp_bytes(encrypt_cp_bytes(raw, key), key) == raw
