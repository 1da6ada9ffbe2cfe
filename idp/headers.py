"""Response headers set by path: the Content-Security-Policy exceptions and Cache-Control no-store."""

from __future__ import annotations

from collections.abc import Callable

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

# Pages rendered by libraries whose markup we do not own, and what each needs beyond the policy
# in settings.CONTENT_SECURITY_POLICY. Scripts stay 'self' everywhere: only styles are relaxed.
# - Django admin: several of its templates and widgets carry style="..." attributes.
# - Swagger UI (drf-spectacular's page): a <style> element in the page, and the bundle sets
#   styles inline as it renders. Its script is served as a file (SpectacularSwaggerSplitView).
_INLINE_STYLE_PREFIXES = ("/admin/", "/api/docs/")

# Responses that carry a token, a secret or a person's data (RFC 6749 §5.1: token responses are
# no-store); neither a browser nor a proxy may keep them.
_NO_STORE_PREFIXES = ("/api/", "/oauth/token/", "/oauth/userinfo/", "/oauth/introspect/", "/oauth/revoke/")


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware, with styles relaxed on the library pages named above."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only and request.path_info.startswith(_INLINE_STYLE_PREFIXES):
            parts.update = {**(parts.update or {}), "style-src": ["'unsafe-inline'"]}
        return parts


class NoStoreMiddleware:
    """Cache-Control: no-store on every response of the management API and the token-bearing
    OAuth endpoints, unless the view chose its own caching."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith(_NO_STORE_PREFIXES) and not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
            response["Pragma"] = "no-cache"
        return response
