"""How a request presents a credential in its Authorization header: the one parser of that header
for every part of the provider (client authentication's rate limits, the management API's bearer
tokens and API keys, the metrics token, the Basic challenge).

    Authorization: Basic base64(urlencode(client_id) ":" urlencode(client_secret))   RFC 6749 §2.3.1
    Authorization: Bearer <token>                                                     RFC 6750 §2.1

It only reads: whether a credential is valid is for whoever checks it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote_plus

# What a compact JWT (JWS) looks like in text: a header that starts '{"' in base64url, then two more
# segments. ID tokens, JWT access tokens, logout's id_token_hint (the log's redaction, idp.ops.logs).
COMPACT_JWT = r"eyJ[\w-]*\.[\w-]+\.[\w-]*"


@dataclass(frozen=True)
class Authorization:
    scheme: str  # lower case ("basic", "bearer"); "" when the header is absent or has no scheme
    credentials: str  # what follows the scheme, stripped

    @property
    def bearer(self) -> str | None:
        """The bearer token, if this is one."""
        return self.credentials if self.scheme == "bearer" and self.credentials else None

    @property
    def basic(self) -> tuple[str, str] | None:
        """HTTP Basic's (client_id, secret), form-decoded as RFC 6749 §2.3.1 has clients encode
        them; None for another scheme or a value that is not base64 of UTF-8 with a colon."""
        if self.scheme != "basic":
            return None
        try:
            decoded = base64.b64decode(self.credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        name, colon, secret = decoded.partition(":")
        if not colon:
            return None
        return unquote_plus(name), unquote_plus(secret)


def authorization_parse(value: str | None) -> Authorization:
    """The Authorization header's value, read (never raises)."""
    scheme, _, credentials = (value or "").strip().partition(" ")
    return Authorization(scheme=scheme.lower(), credentials=credentials.strip())
