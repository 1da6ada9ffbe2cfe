"""How the /api/v1 API accepts API keys, beside bearer access tokens."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.credentials import authorization_parse
from apikeys.keyformat import looks_like_key
from apikeys.services import apikey_use


class InvalidApiKey(exceptions.AuthenticationFailed):
    error_code = "invalid_token"  # RFC 6750 §3.1: the credential presented is not valid


class ApiKeyAuthentication(BaseAuthentication):
    """An API key in ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

    Claims only credentials that carry the key prefix (anything else is left to the bearer token
    authenticator). A key's request acts as its user, or for a machine client's key as that
    client's service account (user None), with the key's scopes and roles (request.auth is an
    apikeys.selectors.VerifiedKey). Unknown, revoked, expired and past-grace keys are one 401.
    """

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        presented = request.META.get("HTTP_X_API_KEY")
        if presented is None:
            bearer = authorization_parse(request.META.get("HTTP_AUTHORIZATION")).bearer
            if bearer is None or not looks_like_key(bearer):
                return None
            presented = bearer
        verified = apikey_use(presented=presented.strip())
        if verified is None:
            raise InvalidApiKey("the api key is not valid")
        return verified.user, verified

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="idp", error="invalid_token"'
