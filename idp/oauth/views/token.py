"""The token endpoint (RFC 6749 §3.2): DOT's, in one transaction per request."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views

from idp.http.policy import endpoint
from idp.oauth.clients import client_read_ahead
from idp.oauth.validator import token_request_opened


def basic_challenge(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """RFC 6749 §5.2: a 401 invalid_client of an endpoint where clients authenticate carries the
    challenge of HTTP Basic, the scheme they may use (oauthlib's is Bearer, a protected resource's,
    which tells a client nothing it can answer)."""
    if response.status_code == 401:
        response["WWW-Authenticate"] = 'Basic realm="idp"'
    return response


@endpoint(
    rate="token",
    rate_methods=("POST",),
    cache="no-store",
    cors=True,
    errors="json",
    single_valued_params=True,
    read_ahead=client_read_ahead,
)
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(sensitive_post_parameters("client_secret", "code", "code_verifier", "refresh_token"), name="dispatch")
class TokenView(dot_views.TokenView):
    def authorization_flow_token_response(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # DOT's version re-reads the issued access token after answering, to send its
        # app_authorized signal (nothing here uses it: the validator records token.issued
        # itself). A concurrent refresh-token reuse may already have revoked that token, turning
        # an answered request into a 500; it also costs a query on the hottest path. The answer
        # is oauthlib's, unchanged.
        # One transaction per token request: the code and refresh-token row locks taken by the
        # validator hold until the tokens are saved, so concurrent redemptions serialise. A
        # client_credentials request locks nothing before it saves: DOT's own transaction around
        # the save (the token and its audit row) is all of it, with no savepoint inside ours.
        whole = nullcontext() if request.POST.get("grant_type") == "client_credentials" else transaction.atomic()
        with whole, token_request_opened():
            _uri, headers, body, status = self.create_token_response(request)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        return basic_challenge(request, response)
