"""Request guards that run before any view."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, HttpResponseRedirect, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware

from idp.http.errors import error_body_ensure
from idp.http.policy import endpoint_of
from idp.http.ratelimit import RateLimited, rate_limited, too_many_requests


def _bad_request(description: str) -> JsonResponse:
    return JsonResponse({"error": "invalid_request", "error_description": description}, status=400)


class ParameterGuardMiddleware:
    """Answers 400 for a query or form value holding a NUL byte or longer than
    IDP_MAX_PARAMETER_LENGTH, and for a parameter repeated on an endpoint that declares
    single_valued_params (idp.http.policy), before any view or database sees it.

    No legitimate OAuth parameter needs any of these, PostgreSQL cannot store NUL in text, and one
    check here covers every endpoint, DOT's and ours alike.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.max_length = settings.IDP_MAX_PARAMETER_LENGTH

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            sources = [request.GET]
            if request.method == "POST" and request.content_type in {
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            }:
                sources.append(request.POST)
            # RFC 6749 §3.1: request parameters must not be included more than once.
            unique = endpoint_of(request).single_valued_params
            for source in sources:
                for key, values in source.lists():
                    if "\x00" in key or len(key) > self.max_length:
                        return _bad_request("a parameter name is malformed")
                    if unique and len(values) > 1:
                        return _bad_request(f"{key[:40]} is given more than once")
                    for value in values:
                        if "\x00" in value:
                            return _bad_request(f"{key[:40]} must not contain NUL bytes")
                        if len(value) > self.max_length:
                            return _bad_request(f"{key[:40]} is longer than {self.max_length} characters")
        except (RequestDataTooBig, TooManyFieldsSent):
            return JsonResponse(
                {"error": "invalid_request", "error_description": "request body is too large"}, status=413
            )
        except (BadRequest, MultiPartParserError, UnicodeDecodeError):
            return _bad_request("request body is malformed")
        return self.get_response(request)


class JsonErrorBodyMiddleware:
    """Every 4xx on an API, OAuth or discovery path carries a JSON error body (idp.http.errors)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return error_body_ensure(request, self.get_response(request))


class RateLimitMiddleware:
    """Answers 429 with Retry-After once a request goes over a rate limit of its endpoint group
    (idp.http.ratelimit, settings.IDP_RATE_LIMITS), before any view runs; after it, counts what the
    request proved (a client's or an API key's own bucket) or failed to."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return rate_limited(request, self.get_response)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A caller that proved who it is while the view ran, with its own bucket used up."""
        if isinstance(exception, RateLimited):
            return too_many_requests(exception.refusal)
        return None


class SecurityMiddleware(DjangoSecurityMiddleware):
    """Django's, with the HTTPS redirect skipped for endpoints that declare https_only=False (the
    probes and the scraper that reach gunicorn directly, without the TLS proxy)."""

    def process_request(self, request: HttpRequest) -> HttpResponsePermanentRedirect | None:
        if self.redirect and not request.is_secure() and not endpoint_of(request).https_only:
            return None
        return super().process_request(request)


class SecondFactorRequiredMiddleware:
    """The dashboard (/dashboard/: API keys, signing keys, the security page) needs the sign-in
    level its user must have (idp.mfa.policy; staff: a second factor, as for Django admin): a
    session below it (signed in before a role that requires one was granted, or before second
    factors existed) goes to the second step first and comes back. The authorization endpoint and
    Django admin check the same themselves."""

    PREFIX = "/dashboard/"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if request.path_info.startswith(self.PREFIX) and user is not None and user.is_authenticated:
            from idp.mfa.policy import level_required
            from idp.mfa.signin import session_authentication
            from idp.pages.factors import with_next

            authentication = session_authentication(request)
            needed = level_required(user=user, admin=user.is_staff)
            if authentication is None or authentication.level < needed:
                return HttpResponseRedirect(with_next("mfa-verify", request.get_full_path()))
        return self.get_response(request)
