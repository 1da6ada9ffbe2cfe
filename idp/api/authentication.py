"""How the management API recognises its callers: bearer tokens issued by this provider, and API
keys (apikeys.authentication) whose own rate-limit bucket is spent as they verify."""

from __future__ import annotations

from typing import Any

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework.request import Request

from accounts.credentials import authorization_parse
from apikeys import authentication as apikeys_authentication
from idp.http import ratelimit


class BearerAuthentication(OAuth2Authentication):
    """DOT's token check, for a token in the Authorization header only (RFC 6750 §2.1).

    oauthlib would also take ``access_token`` from a form body (§2.2, which DOT does not refuse),
    and a query string (§2.3, which DOT refuses under COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT).
    Both end up in logs and caches more easily than a header, so neither authenticates here.

    A user's token gives (user, token); a client_credentials token gives (None, token): its
    subject is the client's service account (see accounts.permissions.HasPermission).
    """

    www_authenticate_realm = "idp"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        if authorization_parse(request.META.get("HTTP_AUTHORIZATION")).bearer is None:
            return None
        # Django's request, not DRF's: DOT reads request.POST, which on DRF's request would parse
        # the JSON body before the caller is known (a malformed body answered 400 instead of 401).
        django_request = request._request
        authenticated = super().authenticate(django_request)
        if authenticated is None and not getattr(django_request, "oauth2_error", None):
            # RFC 6750 §3.1: a token was presented and is not valid (unknown, expired, revoked).
            # DOT's own attribute (its authenticate_header reads it), which HttpRequest does not declare.
            django_request.oauth2_error = {"error": "invalid_token"}  # type: ignore[attr-defined]
        return authenticated


class ApiKeyAuthentication(apikeys_authentication.ApiKeyAuthentication):
    """apikeys' check, and the key's own bucket (idp.http.ratelimit, api.key) spent once it
    verified: over its limit the request is a 429 before any view code runs."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        authenticated = super().authenticate(request)
        if authenticated is not None:
            ratelimit.api_key_verified(public_id=authenticated[1].key.public_id)
        return authenticated
