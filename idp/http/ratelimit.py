"""Request rate limits per endpoint group and per caller: client IP, client, signed-in user and API
key, with limits' moving (sliding) window, counters in Redis so every process shares them.

Nobody spends a bucket that is not theirs. Every request counts against its source address
before the view runs. A client's (or an API key's) own bucket counts only requests that proved
they are that client (authenticated with its secret) or that key (it verified), at the moment they
prove it, and one over the limit is refused then with nothing done (RateLimited, answered by
RateLimitMiddleware; ApiRateLimited, answered by DRF). Anyone can name a client_id or a key's public
id, so a request merely naming one must not use up its owner's allowance. A failed attempt counts
against the pair of what it named and the address it came from (`<group>.client_failures`,
`api.key_failures`), so guessing at a client's secret throttles the guesser alone; before the
view, a request whose failures from this address are used up is refused, whether its guess is
right or not. Public clients have no bucket of their own: they have no secret, and one public
client is many devices.

The limits are settings.IDP_RATE_LIMITS; the storage is settings.IDP_RATE_LIMIT_STORAGE_URL.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import limits
import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from limits.storage import RedisStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import NoScriptError
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from accounts.credentials import authorization_parse
from apikeys.keyformat import public_id_of
from audit.context import client_ip
from idp.http.policy import endpoint_of

if TYPE_CHECKING:  # rest_framework.views reads DRF's settings, which name ApiUserThrottle below
    from rest_framework.request import Request
    from rest_framework.views import APIView

log = logging.getLogger("idp.http.ratelimit")

KEY_PREFIX = "idp:rl"
# Everything a client can put in a key is bounded and hashed below, so a key stays short.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,100}")
_FORMS = {"application/x-www-form-urlencoded", "multipart/form-data"}
# A storage that cannot connect must answer fast: the limiter then lets the request through.
_REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}

# Groups whose requests authenticate a client (RFC 6749 §2.3): token, introspection, revocation.
_CLIENT_GROUPS = frozenset({"token", "introspect", "revoke"})


@dataclass
class _Proofs:
    """What this request proved about its caller while it ran (set by the validator)."""

    group: str
    client_id: str | None = None  # the confidential client that authenticated with its secret
    client_failed: bool = False  # a client authentication that failed
    key_id: str | None = None  # the public id of the API key that verified


_proofs: ContextVar[_Proofs | None] = ContextVar("idp_rate_limit_proofs", default=None)


@dataclass(frozen=True)
class Refusal:
    """The limit a request went over, and whole seconds until the window lets one more in."""

    rule: str
    retry_after_seconds: int


class RateLimited(Exception):  # noqa: N818 - a refusal, not a fault
    """Raised where a request proves who it is and that caller's own bucket is used up; the
    middleware answers 429 (RateLimitMiddleware.process_exception), nothing is written."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.rule)
        self.refusal = refusal


def client_authenticated(*, client_id: str) -> None:
    """The request proved it is this confidential client (idp.oauth.validator): it spends one from
    the client's own bucket, once per request, and is refused (RateLimited) when that is used up."""
    proofs = _proofs.get()
    if proofs is None or proofs.group not in _CLIENT_GROUPS or proofs.client_id is not None:
        return
    proofs.client_id = client_id
    if refusal := _hit(f"{proofs.group}.client", _digest(client_id)):
        raise RateLimited(refusal)


def api_key_verified(*, public_id: str) -> None:
    """The request's API key verified (idp.api.authentication): it spends one from the key's own
    bucket, once per request, and is refused (ApiRateLimited, a DRF 429) when that is used up."""
    proofs = _proofs.get()
    if proofs is None or proofs.group != "api" or proofs.key_id is not None:
        return
    proofs.key_id = public_id
    if refusal := _hit("api.key", public_id):
        raise ApiRateLimited(refusal.retry_after_seconds)


def client_authentication_failed() -> None:
    """The request's client authentication failed (idp.oauth.validator)."""
    proofs = _proofs.get()
    if proofs is not None:
        proofs.client_failed = True


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _client_id(request: HttpRequest) -> str | None:
    """The client_id the request presents: HTTP Basic (RFC 6749 §2.3.1, form-encoded), else the
    form body or the query string. Unverified: a wrong one only counts against itself."""
    authorization = authorization_parse(request.META.get("HTTP_AUTHORIZATION"))
    candidate = None
    if authorization.scheme == "basic":
        basic = authorization.basic
        candidate = basic[0] if basic is not None else ""
    elif request.method == "POST" and request.content_type in _FORMS:
        candidate = request.POST.get("client_id")
    if candidate is None:
        candidate = request.GET.get("client_id")
    return candidate if candidate and _CLIENT_ID.fullmatch(candidate) else None


def _api_key_public_id(request: HttpRequest) -> str | None:
    presented = request.META.get("HTTP_X_API_KEY", "").strip()
    if not presented:
        presented = authorization_parse(request.META.get("HTTP_AUTHORIZATION")).bearer or ""
    return public_id_of(presented)


def _session_user_id(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    return str(user.pk) if user is not None and user.is_authenticated else None


def _pair(name: str, ip: str) -> str:
    return _digest(f"{name}|{ip}")


def _before(request: HttpRequest, group: str) -> Refusal | None:
    """Before the view: the address (and the signed-in user) are counted; the failures from this
    address of the client or key the request names are only looked at. All in one round trip
    (_windows): a request refused by one window has still counted in the others it spends."""
    ip = client_ip(request)
    checks: list[_Check] = []
    if ip:
        checks.append(_Check(f"{group}.ip", ip, spend=True))
    if group != "api" and f"{group}.user" in settings.IDP_RATE_LIMITS and (user_id := _session_user_id(request)):
        checks.append(_Check(f"{group}.user", user_id, spend=True))
    if group in _CLIENT_GROUPS and ip and (client_id := _client_id(request)):
        checks.append(_Check(f"{group}.client_failures", _pair(client_id, ip), spend=False))
    if group == "api" and ip and (public_id := _api_key_public_id(request)):
        checks.append(_Check("api.key_failures", _pair(public_id, ip), spend=False))
    return _windows(checks)


def _after(request: HttpRequest, group: str, proofs: _Proofs, response: HttpResponse) -> None:
    """After the view: a failed attempt spends the bucket of its (name, address) pair (a proven
    client or key spent its own bucket when it proved itself)."""
    ip = client_ip(request)
    if not ip:
        return
    if group in _CLIENT_GROUPS:
        if proofs.client_id is None and proofs.client_failed and (client_id := _client_id(request)):
            _hit(f"{group}.client_failures", _pair(client_id, ip))
    elif group == "api" and proofs.key_id is None and response.status_code == 401:
        if public_id := _api_key_public_id(request):
            _hit("api.key_failures", _pair(public_id, ip))


def rate_limited(request: HttpRequest, view: Callable[[HttpRequest], HttpResponse]) -> HttpResponse:
    """Run the view under the limits of the request's endpoint group: 429 with Retry-After, before
    the view, once the request is over one of them. Fails open (see _hit)."""
    group = endpoint_of(request).rate_group(request.method)  # the view's declaration (idp.http.policy)
    if group is None:
        return view(request)
    refusal = _before(request, group)
    if refusal is not None:
        return too_many_requests(refusal)
    proofs = _Proofs(group=group)
    token = _proofs.set(proofs)
    try:
        response = view(request)
    finally:
        _proofs.reset(token)
    _after(request, group, proofs, response)
    return response


@cache
def _storage(url: str) -> Storage:
    # Synchronous storage: only an async+ scheme would give the asyncio kind, and settings name a
    # redis(s):// URL or memory://.
    if url.startswith(("redis://", "rediss://")):
        return cast(Storage, storage_from_string(url, key_prefix=KEY_PREFIX, **_REDIS_OPTIONS))
    return cast(Storage, storage_from_string(url))


def _hit(rule: str, identity: str) -> Refusal | None:
    """One hit on one rule's window for one identity; a Refusal when it is over the limit.

    Fails open: when the storage is unreachable the request passes and a warning is logged, so an
    outage of Redis never turns into refused sign-ins or 500s.
    """
    return _window(rule, identity, spend=True)


def _full(rule: str, identity: str) -> Refusal | None:
    """Whether one more request would go over this rule's window for this identity, without
    counting one: a Refusal if so."""
    return _window(rule, identity, spend=False)


@cache
def _item(spec: str) -> limits.RateLimitItem:
    return limits.parse(spec)


@cache
def _limiter(url: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(_storage(url))


def _window(rule: str, identity: str, *, spend: bool) -> Refusal | None:
    return _windows([_Check(rule, identity, spend=spend)])


@dataclass(frozen=True)
class _Check:
    """One window to look at for one identity: spend one from it (hit), or only test it."""

    rule: str
    identity: str
    spend: bool


def _windows(checks: list[_Check]) -> Refusal | None:
    """The windows of one request, in one round trip to Redis: the limits library's own moving-window
    scripts, sent as one pipeline (so every window keeps the library's storage and meaning: a hit
    counts only when allowed, a test counts nothing). The first refusal in `checks` order, with its
    reset read only then. Fails open (see _hit)."""
    wanted = [(check, _item(spec)) for check in checks if (spec := settings.IDP_RATE_LIMITS.get(check.rule))]
    if not wanted:
        return None
    try:
        limiter = _limiter(settings.IDP_RATE_LIMIT_STORAGE_URL)
        if isinstance(limiter.storage, RedisStorage):
            allowed = _redis_windows(limiter.storage, wanted)
        else:  # memory:// (tests of the embedded default): one call each
            allowed = [
                limiter.hit(item, check.rule, check.identity)
                if check.spend
                else limiter.test(item, check.rule, check.identity)
                for check, item in wanted
            ]
        for (check, item), ok in zip(wanted, allowed, strict=True):
            if not ok:
                reset_at = limiter.get_window_stats(item, check.rule, check.identity).reset_time
                return Refusal(rule=check.rule, retry_after_seconds=max(1, math.ceil(reset_at - time.time())))
    except Exception:  # noqa: BLE001 - any storage failure: limits raise the client library's errors
        log.warning("rate limit storage unavailable; request not limited", exc_info=True)
    return None


def _redis_windows(storage: RedisStorage, wanted: list[tuple[_Check, limits.RateLimitItem]]) -> list[bool]:
    """MovingWindowRateLimiter.hit and .test, for several windows in one pipeline. EVALSHA of the
    storage's registered scripts; when Redis does not know them (a restart, SCRIPT FLUSH), they are
    loaded and only the windows that were refused for it are sent again, so none is spent twice."""
    connection = cast(redis.Redis, storage.get_connection())
    now = time.time()
    replies = _windows_send(storage, connection, wanted, now)
    unknown = [at for at, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if unknown:
        for script in (storage.lua_acquire_moving_window, storage.lua_moving_window):
            script.sha = connection.script_load(script.script)
        again = _windows_send(storage, connection, [wanted[at] for at in unknown], now)
        for at, reply in zip(unknown, again, strict=True):
            replies[at] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    # A test (the library's get_moving_window): [oldest, count] or nothing in the window.
    return [
        bool(reply) if check.spend else (int(reply[1]) if reply else 0) <= item.amount - 1
        for (check, item), reply in zip(wanted, replies, strict=True)
    ]


def _windows_send(
    storage: RedisStorage, connection: redis.Redis, wanted: list[tuple[_Check, limits.RateLimitItem]], now: float
) -> list[Any]:
    pipe = connection.pipeline(transaction=False)
    for check, item in wanted:
        key = storage.prefixed_key(item.key_for(check.rule, check.identity))
        expiry, amount = item.get_expiry(), item.amount
        if check.spend:
            pipe.evalsha(storage.lua_acquire_moving_window.sha, 1, key, now, amount, expiry, 1)
        else:
            pipe.evalsha(storage.lua_moving_window.sha, 1, key, now - expiry, amount)
    return list(pipe.execute(raise_on_error=False))


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
