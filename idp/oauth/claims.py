"""Which claims a client gets: scopes release the standard claims the user has; the claims
request parameter (OIDC Core §5.5) can ask for single claims, released only if the client is
registered for the claim's scope, so it never widens what the client may see."""

from __future__ import annotations

import json
from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator


def claim_scopes(*, claims: Any, registered: list[str]) -> list[str]:
    """The scopes whose claims the claims request parameter (OIDC Core §5.5) asks for, limited to
    the scopes the client is registered for: what the user is really asked to share."""
    if isinstance(claims, str):
        try:
            claims = json.loads(claims or "{}")
        except ValueError:
            return []
    if not isinstance(claims, dict):
        return []
    names = {
        name for target in ("userinfo", "id_token") if isinstance(claims.get(target), dict) for name in claims[target]
    }
    implied = {OAuth2Validator.oidc_claim_scope.get(name) for name in names}
    return [scope for scope in registered if scope in implied and scope != "openid"]
