"""Response headers an endpoint declares (idp.http.policy): the Content-Security-Policy's allowance
for inline styles, and Cache-Control no-store."""

from __future__ import annotations

from collections.abc import Callable

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from idp.http.policy import endpoint_of


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware, with inline styles allowed on the pages that declare inline_styles:
    pages rendered by libraries whose markup we do not own (Django admin's templates carry style
    attributes; Swagger UI sets styles as it renders). Scripts stay 'self' everywhere."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only and endpoint_of(request).inline_styles:
            parts.update = {**(parts.update or {}), "style-src": ["'unsafe-inline'"]}
        return parts


class NoStoreMiddleware:
    """Cache-Control: no-store on every response of an endpoint that declares it (those that carry a
    token, a secret or a person's data; RFC 6749 §5.1), unless the view chose its own caching."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if endpoint_of(request).cache == "no-store" and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
            response["Pragma"] = "no-cache"
        return response
