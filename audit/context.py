"""Who and where a request comes from, for the audit events it records: source IP, user agent and
request id, held in a context variable for the request's duration (threads and async safe)."""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
USER_AGENT_MAX = 512


@dataclass(frozen=True)
class RequestContext:
    source_ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


NO_REQUEST = RequestContext()
_current: ContextVar[RequestContext] = ContextVar("audit_request_context", default=NO_REQUEST)


def current() -> RequestContext:
    return _current.get()


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None  # a unix socket, or anything that is not an address


def _trusted_proxies() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _networks(tuple(getattr(settings, "IDP_TRUSTED_PROXIES", [])))


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    # Parsed once per value of the setting (tests change it), not on every request.
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, unless that is a trusted proxy (IDP_TRUSTED_PROXIES);
    then the rightmost X-Forwarded-For address that is not a trusted proxy.

    Rightmost, because each proxy appends the peer it saw: everything left of our own proxies'
    entries is whatever the client chose to send. A malformed header falls back to REMOTE_ADDR.

    Worked out once per request (the middleware, the rate limits, the log line and audit events
    all ask) and kept on it.
    """
    known = request.__dict__.get(_CLIENT_IP_ATTRIBUTE, _UNKNOWN)
    if known is not _UNKNOWN:
        return known
    address = _client_ip(request)
    request.__dict__[_CLIENT_IP_ATTRIBUTE] = address
    return address


_CLIENT_IP_ATTRIBUTE = "_idp_client_ip"
_UNKNOWN = object()


def _client_ip(request: HttpRequest) -> str | None:
    peer = _ip(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return None
    trusted = _trusted_proxies()
    if not trusted or not _is_in(peer, trusted):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            return peer  # garbage in the chain: trust none of it
        if not _is_in(address, trusted):
            return address
    return peer


def _is_in(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    parsed = ipaddress.ip_address(address)
    return any(parsed in network for network in networks)


def _from_trusted_proxy(request: HttpRequest) -> bool:
    peer = _ip(request.META.get("REMOTE_ADDR", ""))
    return peer is not None and _is_in(peer, _trusted_proxies())


def request_id_for(request: HttpRequest) -> str:
    """The X-Request-ID of a trusted proxy (IDP_TRUSTED_PROXIES) when it is a sane token, else a
    fresh one. A client's own is replaced: it must not choose the id its log lines and audit events
    are found by (nor make them collide with another request's)."""
    offered = request.META.get("HTTP_X_REQUEST_ID", "")
    if offered and _REQUEST_ID.fullmatch(offered) and _from_trusted_proxy(request):
        return offered
    return uuid.uuid4().hex


class AuditContextMiddleware:
    """Sets the request context for audit.record and returns the request id as X-Request-ID, so
    support can find a request's events and log lines. The source IP is REMOTE_ADDR: the address
    that reached this process, or the client's as a trusted proxy forwarded it (client_ip)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        context = RequestContext(
            source_ip=client_ip(request),
            # PostgreSQL text cannot hold NUL: a user agent carrying one would make its event a 500.
            user_agent=request.META.get("HTTP_USER_AGENT", "").replace("\x00", "")[:USER_AGENT_MAX],
            request_id=request_id_for(request),
        )
        # For the error pages (idp.http.errors); HttpRequest does not declare it.
        request.request_id = context.request_id  # type: ignore[attr-defined]
        token = _current.set(context)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response["X-Request-ID"] = context.request_id
        return response
