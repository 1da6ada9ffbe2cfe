"""CORS for the endpoints that declare cors=True (idp.http.policy): browser-based clients at the
origins in settings plus each active client's registered allowed_origins.

django-cors-headers (CorsMiddleware below) answers CORS on those endpoints only, the settings'
origins itself; it asks the receiver below about any other origin. The registered origins are read
once into the shared cache (Redis), beside the cached clients, so every web process gives the same
answer, and become stale with them whenever any client is saved or deleted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import corsheaders.middleware
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from idp.http.policy import endpoint_of
from idp.models import LOOPBACK_HOSTS, Application
from idp.oauth.clients import client_cache

# The registered origins are kept with the cached clients (idp.oauth.clients.client_cache): any
# save or delete of any client makes both stale, in every process, by the same mark.
_CACHE_KEY = "cors:client-origins"


def origin_validate(origin: str) -> None:
    """An origin as browsers send it: https (http only for loopback), a host, no path or query."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        raise ValidationError(f"{origin[:80]} is not an origin") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValidationError(f"{origin[:80]} is not an origin (scheme://host[:port])")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationError(f"{origin[:80]} must be an origin only: no path, query or user")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS | {"localhost"}:
        raise ValidationError(f"{origin[:80]} must use https (http only for loopback)")
    if "*" in origin or (port is not None and not 0 < port < 65536):
        raise ValidationError(f"{origin[:80]} is not an origin")


def client_origins() -> frozenset[str]:
    """Every active client's registered origins, from the shared cache when present."""
    origins = client_cache.get_or_read(_CACHE_KEY, _client_origins_read)
    return origins if origins is not None else frozenset()


def _client_origins_read() -> frozenset[str]:
    values = Application.objects.filter(is_active=True).exclude(allowed_origins="")
    return frozenset(
        origin.rstrip("/").lower()
        for value in values.values_list("allowed_origins", flat=True)
        for origin in value.split()
    )


def cors_allow_client_origin(sender: Any, request: HttpRequest, **kwargs: Any) -> bool:
    """corsheaders.signals.check_request_enabled receiver: a registered origin on a CORS endpoint."""
    origin = request.headers.get("origin")
    if not origin or not endpoint_of(request).cors:
        return False
    return origin.lower() in client_origins()


class CorsMiddleware(corsheaders.middleware.CorsMiddleware):
    """django-cors-headers, on the endpoints that declare cors=True (its path regex matches none)."""

    def is_enabled(self, request: HttpRequest) -> bool:
        return endpoint_of(request).cors
