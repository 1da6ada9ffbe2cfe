"""The API key format, after GitHub's token format:

    idpk_<public id>_<secret><checksum>
    idpk_3hF9qk0LmZ2a_V1x0...(43 characters)...Q2b9Zx

- ``idpk_``: a fixed prefix, so people, logs and secret scanners recognise a key on sight;
- public id: 12 base62 characters (71 random bits), unique, shown on the dashboard and used to
  find the key's row in O(1); it reveals nothing about the secret;
- secret: 32 bytes from ``secrets`` (256 bits), base62, always 43 characters;
- checksum: CRC32 of everything before it, base62, 6 characters. A typo, a truncated paste or a
  random look-alike fails the checksum without a database lookup, and a scanner can tell a real
  key from noise offline. It is not a signature: anyone can compute it; the secret is the secret.

Base62 and underscores only, so a double click selects the whole key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from django.conf import settings

PREFIX = "idpk_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUBLIC_ID_LENGTH = 12
SECRET_BYTES = 32
SECRET_LENGTH = 43  # ceil(256 / log2(62))
CHECKSUM_LENGTH = 6  # ceil(32 / log2(62))
KEY_LENGTH = len(PREFIX) + PUBLIC_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH
# The one definition of the key's shape: its head (prefix and public id, which may be shown) and
# the whole key. Rate limits (idp.http.ratelimit) and the log's redaction (idp.ops.logs) use them.
KEY_HEAD = rf"{PREFIX}(?P<public_id>[0-9A-Za-z]{{{PUBLIC_ID_LENGTH}}})_"
_HEAD = re.compile(KEY_HEAD)
_SHAPE = re.compile(rf"{KEY_HEAD}[0-9A-Za-z]{{{SECRET_LENGTH}}}(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def public_id_new() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def key_new(public_id: str) -> str:
    """A fresh key with this public id: the only moment the whole secret exists."""
    secret = _base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_LENGTH)
    body = f"{PREFIX}{public_id}_{secret}"
    return body + _checksum(body)


@dataclass(frozen=True)
class ParsedKey:
    public_id: str
    key: str


def key_parse(candidate: str) -> ParsedKey | None:
    """The key's public id if `candidate` has the shape and a valid checksum, else None. Offline:
    no database, so garbage and typos cost nothing."""
    if len(candidate) != KEY_LENGTH:
        return None
    match = _SHAPE.fullmatch(candidate)
    if match is None:
        return None
    if not hmac.compare_digest(match.group("checksum"), _checksum(candidate[:-CHECKSUM_LENGTH])):
        return None
    return ParsedKey(public_id=match.group("public_id"), key=candidate)


def public_id_of(candidate: str) -> str | None:
    """The public id a presented value names, from its head alone (the rest unchecked): what a
    request claims to be, for rate limits, never a proof."""
    match = _HEAD.match(candidate)
    return match.group("public_id") if match else None


def looks_like_key(candidate: str) -> bool:
    """Has the prefix: meant as an API key, so other token checks need not try it."""
    return candidate.startswith(PREFIX)


def key_digest(key: str) -> str:
    """What the database stores: HMAC-SHA256 of the key under a pepper from the environment.

    Not a password hash (Argon2, PBKDF2): those slow down guessing of low-entropy secrets people
    choose. A 256-bit random secret cannot be guessed however fast each try is, so stretching buys
    nothing and would cost milliseconds of CPU on every verification. The pepper (which never
    reaches the database) means a stolen dump alone cannot even test a candidate key.
    """
    return hmac.new(settings.API_KEY_PEPPER.encode(), key.encode("ascii"), hashlib.sha256).hexdigest()
