"""Request rate limits per endpoint group and per caller: client IP, client, signed-in user and API
key, with limits' moving (sliding) window, counters in Redis so every process shares them.

Which request counts against what is decided from the request alone, without a database query:
the client_id from HTTP Basic or the form, the API key's public id from its shape. The limits are
settings.IDP_RATE_LIMITS; the storage is settings.IDP_RATE_LIMIT_STORAGE_URL.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import unquote

import limits
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from audit.context import client_ip

if TYPE_CHECKING:  # rest_framework.views reads DRF's settings, which name ApiUserThrottle below
    from rest_framework.request import Request
    from rest_framework.views import APIView

log = logging.getLogger("idp.ratelimit")

KEY_PREFIX = "idp:rl"
# Everything a client can put in a key is bounded and hashed below, so a key stays short.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,100}")
_FORMS = {"application/x-www-form-urlencoded", "multipart/form-data"}
_API_KEY = re.compile(r"idpk_([0-9A-Za-z]{12})_")
# A storage that cannot connect must answer fast: the limiter then lets the request through.
_REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}

_GROUPS: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    # (path prefix, group, methods; None: all)
    ("/oauth/token/", "token", frozenset({"POST"})),
    ("/oauth/introspect/", "introspect", None),
    ("/oauth/revoke/", "revoke", None),
    ("/oauth/authorize/", "authorize", None),
    ("/accounts/login/", "signin", frozenset({"POST"})),
    ("/api/v1/", "api", None),
)


@dataclass(frozen=True)
class Refusal:
    """The limit a request went over, and whole seconds until the window lets one more in."""

    rule: str
    retry_after_seconds: int


def endpoint_group(request: HttpRequest) -> str | None:
    for prefix, group, methods in _GROUPS:
        if request.path.startswith(prefix) and (methods is None or request.method in methods):
            return group
    return None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _client_id(request: HttpRequest) -> str | None:
    """The client_id the request presents: HTTP Basic (RFC 6749 §2.3.1, form-encoded), else the
    form body or the query string. Unverified: a wrong one only counts against itself."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    candidate = None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except ValueError:  # not base64 (binascii.Error), non-ASCII, or not UTF-8 underneath
            decoded = ""
        candidate = unquote(decoded.partition(":")[0].replace("+", " "))
    elif request.method == "POST" and request.content_type in _FORMS:
        candidate = request.POST.get("client_id")
    if candidate is None:
        candidate = request.GET.get("client_id")
    return candidate if candidate and _CLIENT_ID.fullmatch(candidate) else None


def _api_key_public_id(request: HttpRequest) -> str | None:
    presented = request.META.get("HTTP_X_API_KEY", "")
    if not presented:
        scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
    match = _API_KEY.match(presented.strip())
    return match.group(1) if match else None


def _session_user_id(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    return str(user.pk) if user is not None and user.is_authenticated else None


def _identities(request: HttpRequest, group: str) -> list[tuple[str, str]]:
    """(key kind, identity) pairs this request counts against in its group."""
    found = []
    ip = client_ip(request)
    if ip:
        found.append(("ip", ip))
    kinds = {name.partition(".")[2] for name in settings.IDP_RATE_LIMITS if name.startswith(f"{group}.")}
    if "client" in kinds and (client_id := _client_id(request)):
        found.append(("client", _digest(client_id)))
    if "key" in kinds and (public_id := _api_key_public_id(request)):
        found.append(("key", public_id))
    # The API's user is its token's subject, known after DRF authenticates (ApiUserThrottle).
    if "user" in kinds and group != "api" and (user_id := _session_user_id(request)):
        found.append(("user", user_id))
    return found


@cache
def _storage(url: str) -> Storage:
    if url.startswith(("redis://", "rediss://")):
        return storage_from_string(url, key_prefix=KEY_PREFIX, **_REDIS_OPTIONS)
    return storage_from_string(url)


def rate_limit_hit(request: HttpRequest) -> Refusal | None:
    """Counts the request against every limit of its endpoint group that applies; the first limit
    it exceeds, if any. Fails open (see _hit)."""
    group = endpoint_group(request)
    if group is None:
        return None
    for kind, identity in _identities(request, group):
        refusal = _hit(f"{group}.{kind}", identity)
        if refusal is not None:
            return refusal
    return None


def _hit(rule: str, identity: str) -> Refusal | None:
    """One hit on one rule's window for one identity; a Refusal when it is over the limit.

    Fails open: when the storage is unreachable the request passes and a warning is logged, so an
    outage of Redis never turns into refused sign-ins or 500s.
    """
    spec = settings.IDP_RATE_LIMITS.get(rule)
    if not spec:
        return None
    item = limits.parse(spec)
    try:
        limiter = MovingWindowRateLimiter(_storage(settings.IDP_RATE_LIMIT_STORAGE_URL))
        if limiter.hit(item, rule, identity):
            return None
        reset_at = limiter.get_window_stats(item, rule, identity).reset_time
    except Exception:  # noqa: BLE001 - any storage failure: limits raise the client library's errors
        log.warning("rate limit storage unavailable; request not limited", exc_info=True)
        return None
    # Imported here: DRF imports this module (ApiUserThrottle) while it loads, possibly before
    # the models idp.activity needs are ready. Every 429 of both callers passes this line once.
    from idp.activity import refusal_note

    refusal_note()
    return Refusal(rule=rule, retry_after_seconds=max(1, math.ceil(reset_at - time.time())))


class ApiRateLimited(Throttled):
    default_detail = "too many requests, retry later"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__()  # the description without DRF's "Expected available in" suffix
        self.wait = retry_after_seconds  # DRF's handler turns it into Retry-After


class ApiUserThrottle(BaseThrottle):
    """The api.user limit, per authenticated subject of /api/v1/ (a bearer token's user or an API
    key's owner). A DRF throttle because the subject is known only after DRF authenticates; the
    per-address and per-key limits run earlier, in RateLimitMiddleware."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        user_id = getattr(request.user, "pk", None)
        if user_id is not None:
            refusal = _hit("api.user", str(user_id))
            if refusal is not None:
                raise ApiRateLimited(refusal.retry_after_seconds)
        return True


def too_many_requests(refusal: Refusal) -> JsonResponse:
    response = JsonResponse(
        {"error": "rate_limited", "error_description": "too many requests, retry later"}, status=429
    )
    response["Retry-After"] = str(refusal.retry_after_seconds)
    response["Cache-Control"] = "no-store"
    return response
