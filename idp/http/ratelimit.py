"""Request rate limits per endpoint group and per caller: client IP, client, signed-in user and API
key, with limits' moving (sliding) window, counters in Redis so every process shares them.

Nobody spends a bucket that is not theirs. Every request counts against its source address
before the view runs. A client's (or an API key's) own bucket keeps only requests that proved
they are that client (authenticated with its secret) or that key (it verified), and one over the
limit is refused when it proves itself, with nothing done (RateLimited, answered by
RateLimitMiddleware; ApiRateLimited, answered by DRF). So that a client's request costs one round
trip to Redis, the place is taken before the view, in the round trip of the address's windows,
for the client the request names in HTTP Basic, and given back as soon as the request does not
prove it is that client (a wrong secret, a refusal by another window, an error): a request that
only names a client holds a place for the milliseconds until its secret is checked. Anyone can
name a client_id or a key's public id, so a request merely naming one must not use up its owner's
allowance. A failed attempt counts against the pair of what it named and the address it came from
(`<group>.client_failures`, `api.key_failures`), so guessing at a client's secret throttles the
guesser alone; before the view, a request whose failures from this address are used up is
refused, whether its guess is right or not. Public clients have no bucket of their own: they have
no secret, and one public client is many devices.

The limits are settings.IDP_RATE_LIMITS; the storage is settings.IDP_RATE_LIMIT_STORAGE_URL.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
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
from idp.ops.cache import read_ahead_backend, read_ahead_keys, reading_ahead

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
    held: _Held | None = None  # a place in a client's bucket taken before the view (_before)


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
    the client's own bucket, once per request, and is refused (RateLimited) when that is used up.
    When the place it spends was taken before the view for the client its Authorization header
    named (_before), the proof keeps it: no second round trip."""
    proofs = _proofs.get()
    if proofs is None or proofs.group not in _CLIENT_GROUPS or proofs.client_id is not None:
        return
    proofs.client_id = client_id
    rule, identity = f"{proofs.group}.client", _digest(client_id)
    held = proofs.held
    if held is not None and (held.rule, held.identity) == (rule, identity):
        proofs.held = None  # proved: the place stays taken
        if not held.allowed:
            raise RateLimited(_refusal(rule, identity))
        return
    if refusal := _hit(rule, identity):
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


def _before(request: HttpRequest, group: str, reads: list[str]) -> _Sent:
    """Before the view: the address (and the signed-in user) are counted; the failures from this
    address of the client or key the request names are only looked at. All in one round trip
    (_windows), with the cache entries `reads` that the view will read (the endpoint's read_ahead):
    a request refused by one window has still counted in the others it spends.

    In the same round trip, a request that names a client in HTTP Basic takes a place in that
    client's own bucket (a hold): kept if the request then proves it is that client
    (client_authenticated), given back as soon as it does not (_release, when the view returns or
    when another window refuses the request). Nobody keeps a place in a bucket that is not theirs:
    a request that only names a client occupies one for the milliseconds until its secret is
    checked, and it is refused (by its address's windows) long before it could hold many."""
    ip = client_ip(request)
    checks: list[_Check] = []
    if ip:
        checks.append(_Check(f"{group}.ip", ip, spend=True))
    if group != "api" and f"{group}.user" in settings.IDP_RATE_LIMITS and (user_id := _session_user_id(request)):
        checks.append(_Check(f"{group}.user", user_id, spend=True))
    if group in _CLIENT_GROUPS and ip and (client_id := _client_id(request)):
        checks.append(_Check(f"{group}.client_failures", _pair(client_id, ip), spend=False))
    if group in _CLIENT_GROUPS and (named := _basic_client_id(request)):
        checks.append(_Check(f"{group}.client", _digest(named), spend=True, hold=True))
    if group == "api" and ip and (public_id := _api_key_public_id(request)):
        checks.append(_Check("api.key_failures", _pair(public_id, ip), spend=False))
    return _windows_reading(checks, reads)


def _basic_client_id(request: HttpRequest) -> str | None:
    """The client_id of the request's HTTP Basic credentials, if it has them and it is well formed."""
    basic = authorization_parse(request.META.get("HTTP_AUTHORIZATION")).basic
    return basic[0] if basic is not None and _CLIENT_ID.fullmatch(basic[0]) else None


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
    policy = endpoint_of(request)  # the view's declaration (idp.http.policy)
    group = policy.rate_group(request.method)
    if group is None:
        return view(request)
    sent = _before(request, group, policy.read_ahead(request) if policy.read_ahead else [])
    if sent.refusal is not None:
        return too_many_requests(sent.refusal)
    proofs = _Proofs(group=group, held=sent.held)
    token = _proofs.set(proofs)
    try:
        with sent.ahead:
            response = view(request)
    finally:
        _proofs.reset(token)
        if proofs.held is not None:  # the client it named never proved itself
            _release(proofs.held)
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


def spend(rule: str, identity: str) -> Refusal | None:
    """One hit on a rule of IDP_RATE_LIMITS for an identity a view learns only from the request's
    form (the e-mail address a password reset names), hashed here; a Refusal when over the limit
    (answer it with too_many_requests). Only for what every request spends whatever it names, so
    that a refusal tells nothing about the identity. Fails open, as _hit."""
    return _hit(rule, _digest(identity))


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
    """One window to look at for one identity: spend one from it (hit), or only test it. A hold is
    a hit that refuses nothing by itself: whoever proves the identity keeps it (or is refused then,
    when it was not allowed), anyone else gives it back."""

    rule: str
    identity: str
    spend: bool
    hold: bool = False


@dataclass(frozen=True)
class _Held:
    """A place taken in a bucket before the view (or, when `allowed` is false, found full)."""

    rule: str
    identity: str
    allowed: bool
    key: str  # the window's Redis key
    # The moving window's entry the hit pushed: the request's timestamp as the library's script
    # wrote it (a Lua number, which Redis turns into text with "%.17g").
    entry: str


@dataclass(frozen=True)
class _Sent:
    """What the round trip before the view came back with."""

    refusal: Refusal | None = None
    ahead: AbstractContextManager[None] = field(default_factory=nullcontext)  # the read-ahead's context
    held: _Held | None = None


def _windows(checks: list[_Check]) -> Refusal | None:
    return _windows_reading(checks, []).refusal


def _windows_reading(checks: list[_Check], reads: list[str]) -> _Sent:
    """The windows of one request, in one round trip to Redis: the limits library's own moving-window
    scripts, sent as one pipeline (so every window keeps the library's storage and meaning: a hit
    counts only when allowed, a test counts nothing). The first refusal in `checks` order, with its
    reset read only then. Fails open (see _hit).

    With the cache entries `reads` in the same pipeline when the cache lives on the same Redis: a
    context in which the cache answers those reads from what came back. A hold is taken only in
    Redis (where a place can be given back); elsewhere it is left to client_authenticated."""
    try:
        limiter = _limiter(settings.IDP_RATE_LIMIT_STORAGE_URL)
        storage = limiter.storage if isinstance(limiter.storage, RedisStorage) else None
        wanted = [
            (check, _item(spec))
            for check in checks
            if (spec := settings.IDP_RATE_LIMITS.get(check.rule)) and (storage is not None or not check.hold)
        ]
        if not wanted:
            return _Sent()
        held: _Held | None = None
        ahead: AbstractContextManager[None] = nullcontext()
        if storage is not None:
            allowed, ahead, now = _redis_windows(storage, wanted, reads)
            for (check, item), ok in zip(wanted, allowed, strict=True):
                if check.hold:
                    key = storage.prefixed_key(item.key_for(check.rule, check.identity))
                    held = _Held(rule=check.rule, identity=check.identity, allowed=ok, key=key, entry=f"{now:.17g}")
        else:  # memory:// (tests of the embedded default): one call each
            allowed = [
                limiter.hit(item, check.rule, check.identity)
                if check.spend
                else limiter.test(item, check.rule, check.identity)
                for check, item in wanted
            ]
        for (check, _), ok in zip(wanted, allowed, strict=True):
            if not ok and not check.hold:
                if held is not None:
                    _release(held)
                return _Sent(refusal=_refusal(check.rule, check.identity))
    except Exception:  # noqa: BLE001 - any storage failure: limits raise the client library's errors
        log.warning("rate limit storage unavailable; request not limited", exc_info=True)
        return _Sent()
    return _Sent(ahead=ahead, held=held)


def _refusal(rule: str, identity: str) -> Refusal:
    """A refusal by the rule's window for this identity, with the seconds until it lets one in."""
    item = _item(settings.IDP_RATE_LIMITS[rule])
    reset_at = _limiter(settings.IDP_RATE_LIMIT_STORAGE_URL).get_window_stats(item, rule, identity).reset_time
    return Refusal(rule=rule, retry_after_seconds=max(1, math.ceil(reset_at - time.time())))


def _release(held: _Held) -> None:
    """Give back a place held for a client that did not prove itself (nothing was taken when the
    bucket was full). Fails open, with a warning: the place then expires with the window."""
    if not held.allowed:
        return
    try:
        storage = cast(RedisStorage, _limiter(settings.IDP_RATE_LIMIT_STORAGE_URL).storage)
        cast(redis.Redis, storage.get_connection()).lrem(held.key, 1, held.entry)
    except Exception:  # noqa: BLE001 - as _windows_reading
        log.warning("rate limit storage unavailable; a held place was not given back", exc_info=True)


def _redis_windows(
    storage: RedisStorage, wanted: list[tuple[_Check, limits.RateLimitItem]], reads: list[str]
) -> tuple[list[bool], AbstractContextManager[None], float]:
    """MovingWindowRateLimiter.hit and .test, for several windows in one pipeline. EVALSHA of the
    storage's registered scripts; when Redis does not know them (a restart, SCRIPT FLUSH), they are
    loaded and only the windows that were refused for it are sent again, so none is spent twice.
    With an MGET of the cache entries `reads` at the end, when the cache is on the same Redis."""
    connection = cast(redis.Redis, storage.get_connection())
    backend = read_ahead_backend(settings.IDP_RATE_LIMIT_STORAGE_URL) if reads else None
    keys = read_ahead_keys(backend, reads) if backend is not None else []
    now, sent_at = time.time(), time.monotonic()
    replies = _windows_send(storage, connection, wanted, now, keys)
    ahead: AbstractContextManager[None] = nullcontext()
    if keys:
        values = replies.pop()
        if backend is not None and not isinstance(values, Exception):
            ahead = reading_ahead(backend, reads, values, at=sent_at)
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
    allowed = [
        bool(reply) if check.spend else (int(reply[1]) if reply else 0) <= item.amount - 1
        for (check, item), reply in zip(wanted, replies, strict=True)
    ]
    return allowed, ahead, now


def _windows_send(
    storage: RedisStorage,
    connection: redis.Redis,
    wanted: list[tuple[_Check, limits.RateLimitItem]],
    now: float,
    reads: list[str] | None = None,
) -> list[Any]:
    """The windows' scripts as one pipeline, then an MGET of the Redis keys `reads` if any; the
    replies in order (errors as exceptions, not raised)."""
    pipe = connection.pipeline(transaction=False)
    for check, item in wanted:
        key = storage.prefixed_key(item.key_for(check.rule, check.identity))
        expiry, amount = item.get_expiry(), item.amount
        if check.spend:
            pipe.evalsha(storage.lua_acquire_moving_window.sha, 1, key, now, amount, expiry, 1)
        else:
            pipe.evalsha(storage.lua_moving_window.sha, 1, key, now - expiry, amount)
    if reads:
        pipe.mget(reads)
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
