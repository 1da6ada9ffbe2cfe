"""oauthlib's OpenID Connect server, narrowed to what this provider offers."""

from typing import Any

from oauthlib.openid import Server as OpenIDServer

# Authorization code (with PKCE) is the only front-channel flow; implicit and hybrid response
# types are gone (RFC 9700 §2.1.2), as are the password and device grants.
RESPONSE_TYPES = {"code"}
GRANT_TYPES = {"authorization_code", "client_credentials", "refresh_token"}


class Server(OpenIDServer):
    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        # Unknown response and grant types then get oauthlib's own RFC 6749 answers
        # (unsupported_response_type, unsupported_grant_type).
        self._response_types = {k: v for k, v in self._response_types.items() if k in RESPONSE_TYPES}
        self._grant_types = {k: v for k, v in self._grant_types.items() if k in GRANT_TYPES}
        # Only our opaque bearer tokens open the userinfo endpoint; an ID token is not an access
        # token (oauthlib would otherwise accept any JWT it recognises as one).
        self._tokens = {k: v for k, v in self._tokens.items() if k == "Bearer"}
