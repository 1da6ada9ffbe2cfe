"""The revocation endpoint (RFC 7009): DOT's, with the Basic challenge on a failed Basic login."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views

from idp.http.policy import endpoint
from idp.oauth.clients import client_read_ahead
from idp.oauth.views.token import basic_challenge


@endpoint(
    rate="revoke",
    cache="no-store",
    cors=True,
    errors="json",
    single_valued_params=True,
    read_ahead=client_read_ahead,
)
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(sensitive_post_parameters("token", "client_secret"), name="dispatch")
class RevokeTokenView(dot_views.RevokeTokenView):
    """RFC 7009 revocation (DOT's), with RFC 6749 §5.2's Basic challenge on a failed Basic login."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return basic_challenge(request, super().post(request, *args, **kwargs))
