"""Our oauthlib request validator: DOT's, extended at its documented seams."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

import audit
from idp.models import RefreshToken


class IdpValidator(OAuth2Validator):
    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        # A client without a stored secret (a public client) never authenticates by secret, and
        # an empty presented secret never matches anything.
        if not provided_secret or not stored_secret:
            return False
        return super()._check_secret(provided_secret, stored_secret)

    def _authenticate_basic_auth(self, request: Any) -> bool:
        # DOT lets base64's ValueError for a non-ASCII Authorization header escape as a 500;
        # it is a failed client authentication like any other malformed header.
        try:
            return super()._authenticate_basic_auth(request)
        except ValueError:
            return False

    def _save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> None:
        # DOT calls this inside transaction.atomic, so the tokens and the audit row commit together.
        if request.grant_type == "refresh_token":
            # Two refreshes with the same token can both pass validate_refresh_token before either
            # rotates it. Re-check under a row lock: the second one finds it rotated and gets
            # invalid_grant (DOT's grace-period branch would instead try to hand it the first
            # one's tokens, which hashed storage no longer has).
            presented = request.refresh_token_instance
            if not RefreshToken.objects.select_for_update().filter(pk=presented.pk, revoked__isnull=True).exists():
                raise errors.InvalidGrantError(request=request)
        super()._save_bearer_token(token, request, *args, **kwargs)
        refreshed = request.grant_type == "refresh_token"
        user = getattr(request, "user", None)
        audit.record(
            audit.Action.TOKEN_REFRESHED if refreshed else audit.Action.TOKEN_ISSUED,
            actor=audit.Actor.client(request.client),
            target=audit.Target.user(user) if user is not None else audit.Target.client(request.client),
            client_id=request.client.client_id,
            data={"grant": request.grant_type, "scope": token.get("scope", "")},
        )

    def get_additional_claims(self) -> dict[str, Any]:
        # Request-agnostic (no request argument), so discovery can list these claims. Each claim
        # is released only with its scope (OAuth2Validator.oidc_claim_scope).
        return {
            "name": lambda request: request.user.get_full_name() or request.user.get_username(),
            "given_name": lambda request: request.user.first_name,
            "family_name": lambda request: request.user.last_name,
            "preferred_username": lambda request: request.user.get_username(),
            "email": lambda request: request.user.email,
        }
