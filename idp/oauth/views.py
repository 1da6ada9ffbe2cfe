"""DOT's endpoint views, extended where the provider differs: database signing keys, remembered
consent, and an introspection endpoint for authenticated confidential clients only."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.forms import AllowForm
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.oauth2.rfc6749.errors import InvalidClientIdError

from idp import services
from idp.models import Application
from idp.oauth import keys, selectors


class ConsentForm(AllowForm):
    remember = forms.BooleanField(required=False)


@method_decorator(never_cache, name="dispatch")
class AuthorizationView(dot_views.AuthorizationView):
    """The consent screen, with "remember this decision" stored as a Consent row."""

    form_class = ConsentForm
    remember_consent = False

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._approve_remembered(request) or super().get(request, *args, **kwargs)

    def _approve_remembered(self, request: HttpRequest) -> HttpResponse | None:
        prompt = set(request.GET.get("prompt", "").split())
        # prompt=consent asks for the screen again; prompt=login is DOT's to handle; resource
        # indicators take DOT's full path.
        if prompt & {"consent", "login", "create"} or "resource" in request.GET:
            return None
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError:
            return None  # DOT's own path renders the error page or redirects the error
        if not selectors.consent_covers(user_id=request.user.pk, client_id=credentials["client_id"], scopes=scopes):
            return None
        application = Application.objects.get(client_id=credentials["client_id"])
        if isinstance(credentials.get("ui_locales"), list):
            credentials["ui_locales"] = " ".join(credentials["ui_locales"])
        try:
            uri, _headers, _body, _status = self.create_authorization_response(
                request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
            )
        except OAuthToolkitError as error:
            return self.error_response(error, application)
        return self.redirect(uri, application)

    def form_valid(self, form: ConsentForm) -> HttpResponse:
        # DOT looks the client up with .get() before oauthlib validates anything, so an unknown
        # client_id in a posted form would be a 500; it is oauthlib's invalid_client_id page.
        if not Application.objects.filter(client_id=form.cleaned_data.get("client_id") or "").exists():
            return self.error_response(OAuthToolkitError(error=InvalidClientIdError()), None)
        self.remember_consent = bool(form.cleaned_data.get("remember"))
        return super().form_valid(form)

    def create_authorization_response(self, request: HttpRequest, scopes: str, credentials: dict, allow: bool) -> Any:
        result = super().create_authorization_response(
            request=request, scopes=scopes, credentials=credentials, allow=allow
        )
        # Reached only when the code was issued (failures raise), so only a real "allow" is kept.
        if allow and self.remember_consent:
            application = Application.objects.get(client_id=credentials["client_id"])
            services.consent_remember(user_id=request.user.pk, application=application, scopes=scopes.split())
        return result


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(sensitive_post_parameters("client_secret", "code", "code_verifier", "refresh_token"), name="dispatch")
class TokenView(dot_views.TokenView):
    def authorization_flow_token_response(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # DOT's version re-reads the issued access token after answering, to send its
        # app_authorized signal (which nothing here uses). A concurrent refresh-token reuse may
        # already have revoked that token, turning an answered request into a 500; it also costs a
        # query on the hottest path. The answer is oauthlib's, unchanged.
        # One transaction per token request: the code and refresh-token row locks taken by the
        # validator hold until the tokens are saved, so concurrent redemptions serialise.
        with transaction.atomic():
            _uri, headers, body, status = self.create_token_response(request)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        return response


class ConnectDiscoveryInfoView(dot_views.ConnectDiscoveryInfoView):
    """DOT's discovery document, corrected for what this provider really supports."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        data = json.loads(super().get(request, *args, **kwargs).content)
        data.update(
            {
                # Keys live in the database, which DOT's document cannot see (it looks for a PEM
                # in settings and would otherwise announce HS256 only).
                "id_token_signing_alg_values_supported": ["RS256"],
                "grant_types_supported": list(oauth2_settings.OAUTH2_GRANT_TYPES_SUPPORTED),
                "code_challenge_methods_supported": ["S256"],
                "revocation_endpoint": self._get_endpoint_url(request, "revoke-token", required=True),
                "introspection_endpoint": self._get_endpoint_url(request, "introspect", required=True),
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "response_modes_supported": ["query"],
                "claims_parameter_supported": False,
                "request_parameter_supported": False,
                "request_uri_parameter_supported": False,
            }
        )
        data["claims_supported"] = sorted(data["claims_supported"] + ["iss", "aud", "exp", "iat", "auth_time", "nonce"])
        return JsonResponse(data)


@method_decorator(csrf_exempt, name="dispatch")
class JwksInfoView(View):
    """The JSON Web Key Set: the public halves of the signing keys kept in the database.

    Public and cookie-free, so CSRF does not apply: a write method gets a plain 405.
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = JsonResponse({"keys": keys.signing_keys_published()})
        max_age = oauth2_settings.OIDC_JWKS_MAX_AGE_SECONDS
        response["Cache-Control"] = f"public, max-age={max_age}"
        return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(sensitive_post_parameters("token", "client_secret"), name="dispatch")
class IntrospectTokenView(OAuthLibMixin, View):
    """RFC 7662 introspection, for confidential clients that authenticate (Basic or body).

    POST only: a token in a query string ends up in access logs.
    """

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.authenticate_client(request):
            response = JsonResponse(
                {"error": "invalid_client", "error_description": "client authentication failed"}, status=401
            )
            response["WWW-Authenticate"] = 'Basic realm="idp"'
            return response
        token = request.POST.get("token", "")
        if not token:
            return JsonResponse({"error": "invalid_request", "error_description": "token is required"}, status=400)
        answer = selectors.token_introspect(
            token=token,
            token_type_hint=request.POST.get("token_type_hint"),
            issuer=oauth2_settings.oidc_issuer(request),
        )
        response = JsonResponse(answer)
        response["Cache-Control"] = "no-store"
        return response
