"""Unified social credit code (统一社会信用代码, GB 32100-2015): the enterprise key of the registry.

The check digit catches most typing errors in hand-written registry files, so it is verified on load.
"""

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, ...


def check_digit(body: str) -> str:
    """Check character for the first 17 characters of a credit code (must be in ALPHABET)."""
    total = sum(_VALUE[c] * w for c, w in zip(body, _WEIGHTS, strict=True))
    return ALPHABET[-total % 31]


def problem(code: str) -> str | None:
    """Why `code` is not a valid credit code, or None if it is (upper case expected)."""
    if len(code) != 18:
        return f"must be 18 characters, got {len(code)}"
    bad = sorted({c for c in code if c not in _VALUE})
    if bad:
        return f"characters not allowed in a credit code: {''.join(bad)!r} (allowed: digits and {ALPHABET[10:]})"
    if not code[2:8].isdigit():
        return f"characters 3-8 must be an administrative division code (6 digits), got {code[2:8]!r}"
    expected = check_digit(code[:17])
    if code[17] != expected:
        return f"check digit is {code[17]!r}, expected {expected!r}"
    return None


def org_code_check_digit(body: str) -> str:
    """GB 11714 check character for the 8-character organisation code body (characters 9-16 of a credit code)."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c, 36) * w for c, w in zip(body, weights, strict=True))
    digit = 11 - total % 11
    return {10: "X", 11: "0"}.get(digit, str(digit))
