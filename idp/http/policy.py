"""What happens to an endpoint's requests besides its view, declared on the view itself.

    @endpoint(rate="token", cache="no-store", cors=True, errors="json", single_valued_params=True)
    class TokenView(...): ...

The request pipeline reads the declaration (endpoint_of) instead of tables of paths: the rate-limit
group (idp.http.ratelimit), Cache-Control no-store and the error shape (idp.http.headers,
idp.http.errors), CORS (idp.http.cors), the repeated-parameter guard (idp.http.middleware), the
Content-Security-Policy's allowance for inline styles, and the HTTPS redirect. A view that declares
nothing is a page of ours: HTML errors, no CORS, no rate limit, redirected to https in production.

Third-party URL includes (Django admin) are declared by namespace, next to their route in
idp/urls.py (endpoint_for_namespace). A path that matches no route answers errors in the shape of
the area it is in: JSON under a first path segment where some view declares errors="json" (/api/,
/oauth/, /.well-known/), a page elsewhere; derived from the URL conf, not listed.

Finding the declaration costs one dictionary lookup for a route without parameters (the protocol
endpoints); a route with parameters is resolved once more, and the answer is kept on the request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

V = TypeVar("V")


@dataclass(frozen=True)
class Endpoint:
    """An endpoint's policy. The defaults are a page's."""

    rate: str | None = None  # rate-limit group: the "<group>." entries of settings.IDP_RATE_LIMITS
    rate_methods: frozenset[str] | None = None  # only requests with these methods count (None: all)
    cache: Literal["no-store"] | None = None  # on answers the view left without Cache-Control
    cors: bool = False  # browsers at allowed origins may call it (idp.http.cors)
    errors: Literal["json", "page"] = "page"  # RFC 6749 §5.2 JSON, or our error pages
    single_valued_params: bool = False  # RFC 6749 §3.1: a parameter given twice is a 400
    inline_styles: bool = False  # CSP style-src 'unsafe-inline' (library pages that need it)
    https_only: bool = True  # plain http is redirected to https in production (not for probes)
    # The cache entries the view will read, named from the request alone: read in the rate-limit
    # round trip before the view (idp.ops.cache, reading ahead). Must not raise.
    read_ahead: Callable[[HttpRequest], list[str]] | None = None

    def rate_group(self, method: str | None) -> str | None:
        if self.rate is None or (self.rate_methods is not None and method not in self.rate_methods):
            return None
        return self.rate


PAGE = Endpoint()
_ATTRIBUTE = "endpoint_policy"
_namespaces: dict[str, Endpoint] = {}


def endpoint(**policy: Any) -> Callable[[V], V]:
    """Declare a view's policy (a function view, or a class-based view's class)."""
    if policy.get("rate_methods") is not None:
        policy["rate_methods"] = frozenset(policy["rate_methods"])
    declared = Endpoint(**policy)

    def declare(view: V) -> V:
        setattr(view, _ATTRIBUTE, declared)
        return view

    return declare


def endpoint_for_namespace(namespace: str, **policy: Any) -> None:
    """Declare the policy of every view of a URL namespace we do not write (Django admin)."""
    _namespaces[namespace] = Endpoint(**policy)


def declared(view: Any) -> Endpoint | None:
    """A view function's declaration (as_view's function carries its class as view_class)."""
    found = getattr(view, _ATTRIBUTE, None)
    if found is None:
        found = getattr(getattr(view, "view_class", None), _ATTRIBUTE, None)
    if found is None:
        found = getattr(getattr(view, "cls", None), _ATTRIBUTE, None)  # DRF's as_view
    return found


def _routes(
    patterns: list[Any], prefix: str = "", namespace: str | None = None
) -> Iterator[tuple[str, Any, str | None]]:
    """(route, view, namespace) of every URL pattern, includes walked."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            yield route, pattern.callback, namespace


@dataclass(frozen=True)
class _Map:
    exact: dict[str, Endpoint]  # "/oauth/token/" -> its policy, for routes without parameters
    json_areas: tuple[str, ...]  # first path segments ("/api/") where a view answers JSON errors


@functools.cache
def _map() -> _Map:
    # Emptied with Django's own resolver cache when a test swaps ROOT_URLCONF (_urlconf_changed).
    exact: dict[str, Endpoint] = {}
    areas: set[str] = set()
    for route, view, namespace in _routes(get_resolver().url_patterns):
        policy = declared(view) or _namespaces.get(namespace or "") or PAGE
        if "<" not in route and "^" not in route and "(" not in route:
            exact.setdefault("/" + route, policy)
        if policy.errors == "json":
            areas.add("/" + route.split("/", 1)[0] + ("/" if "/" in route else ""))
    return _Map(exact=exact, json_areas=tuple(sorted(areas)))


@receiver(setting_changed)
def _urlconf_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "ROOT_URLCONF":
        _map.cache_clear()


def endpoint_of(request: HttpRequest) -> Endpoint:
    """The policy of the endpoint this request is for; kept on the request once found."""
    found: Endpoint | None = getattr(request, "_endpoint_policy", None)
    if found is not None:
        return found
    routes = _map()
    found = routes.exact.get(request.path_info)
    if found is None:
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            found = Endpoint(errors="json") if request.path_info.startswith(routes.json_areas) else PAGE
        else:
            found = declared(match.func) or _namespaces.get(match.namespace.split(":")[0]) or PAGE
    request._endpoint_policy = found  # type: ignore[attr-defined]  # a memo HttpRequest does not declare
    return found


def undeclared_views() -> list[str]:
    """Routes of our program endpoints (DRF API views and the OAuth views) that declare nothing: a
    system check (idp.checks) refuses them, so no new endpoint misses its policy."""
    missing = []
    for route, view, _namespace in _routes(get_resolver().url_patterns):
        module = getattr(getattr(view, "view_class", None) or getattr(view, "cls", None) or view, "__module__", "")
        if module.startswith(("idp.api.", "idp.oauth.")) and declared(view) is None:
            missing.append("/" + route)
    return missing


# The management API's endpoints (/api/v1/): rate limited, never cached, JSON errors.
MANAGEMENT_API: dict[str, Any] = {"rate": "api", "cache": "no-store", "errors": "json"}
