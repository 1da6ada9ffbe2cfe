"""The introspection endpoint (RFC 7662), for resource servers."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OauthlibRequest
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from apikeys.keyformat import key_parse, looks_like_key
from idp.http.policy import endpoint
from idp.models import Application
from idp.oauth import access_tokens, clients, introspection, introspection_cache
from idp.ops.metrics import introspection_counted


def _reads_ahead(request: HttpRequest) -> list[str]:
    """The cache entries a warm introspection reads, named from the request alone (read in the
    rate-limit round trip, idp.ops.cache): the client it authenticates as (HTTP Basic, as resource
    servers authenticate; a body client_id is read when the view gets there) and the kept answer
    for the token or API key it asks about. Only reads: nothing is revealed before the client has
    authenticated, and a name the view does not read in the end costs nothing but its bytes."""
    names = clients.client_read_ahead(request)
    token = request.POST.get("token", "")
    if looks_like_key(token):
        if (parsed := key_parse(token)) is not None:
            names += introspection_cache.lookup_names(introspection_cache.apikey_entry(parsed.public_id))
    elif token and not access_tokens.is_jwt(token):
        checksum = introspection_cache.checksum_of(token)
        names += introspection_cache.lookup_names(introspection_cache.token_entry(checksum))
    return names


@endpoint(
    rate="introspect",
    cache="no-store",
    errors="json",
    single_valued_params=True,
    read_ahead=_reads_ahead,
)
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(sensitive_post_parameters("token", "client_secret"), name="dispatch")
class IntrospectTokenView(OAuthLibMixin, View):
    """RFC 7662 introspection of access tokens, refresh tokens and API keys, for resource servers
    (confidential clients marked is_resource_server) that authenticate (Basic or body).

    POST only: a token in a query string ends up in access logs.
    """

    http_method_names = ["post"]

    def _authenticated_client(self, request: HttpRequest) -> Application | None:
        """The client the request authenticates as (our validator's rules: Basic or body, the
        previous secret in its grace period), or None."""
        core = self.get_oauthlib_core()
        uri, http_method, body, headers = core._extract_params(request)
        oauth_request = OauthlibRequest(uri, http_method, body, headers)
        if not core.server.request_validator.authenticate_client(oauth_request):
            return None
        return oauth_request.client

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            client = self._authenticated_client(request)
        except OAuth2Error as error:  # two authentication methods at once (the validator)
            return JsonResponse({"error": error.error, "error_description": error.description}, status=400)
        if client is None:
            response = JsonResponse(
                {"error": "invalid_client", "error_description": "client authentication failed"}, status=401
            )
            response["WWW-Authenticate"] = 'Basic realm="idp"'
            return response
        if not client.is_resource_server:
            # RFC 7662 §4: what a token is worth (whose it is, roles, permissions) only to the
            # protected resources an operator marked so; any other client learns nothing.
            return JsonResponse(
                {"error": "unauthorized_client", "error_description": "this client may not introspect tokens"},
                status=403,
            )
        token = request.POST.get("token", "")
        if not token:
            return JsonResponse({"error": "invalid_request", "error_description": "token is required"}, status=400)
        issuer = oauth2_settings.oidc_issuer(request)
        if looks_like_key(token):
            # An API key: verified exactly as /api/v1 verifies it, answered as a token would be.
            answer = introspection.apikey_introspect(presented=token, issuer=issuer)
        else:
            answer = introspection.token_introspect(
                token=token,
                token_type_hint=request.POST.get("token_type_hint"),
                issuer=issuer,
                client=client,
            )
        introspection_counted(active=bool(answer.get("active")))
        response = JsonResponse(answer)
        response["Cache-Control"] = "no-store"
        return response
