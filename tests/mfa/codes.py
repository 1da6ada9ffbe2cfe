"""TOTP codes as an authenticator app computes them (RFC 6238 over RFC 4226, SHA-1, 6 digits, 30 s),
written here from the RFCs so that the provider's codes are checked against an implementation
that is not its own (django-otp's)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time


def totp_code(seed: bytes, *, at: float | None = None, steps: int = 0) -> str:
    """The code for the time `at` (now), `steps` time steps later (negative: earlier)."""
    counter = int((time.time() if at is None else at) // 30) + steps
    digest = hmac.new(seed, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def seed_from_secret(secret: str) -> bytes:
    """The seed an app reads from the base32 secret shown at enrolment."""
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def test_rfc_6238_vector():
    # RFC 6238 Appendix B, SHA-1, T = 59 s: 94287082 (8 digits; the last 6 here).
    assert totp_code(b"12345678901234567890", at=59) == "287082"
