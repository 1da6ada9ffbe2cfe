"""DOT's endpoint views, extended where the provider differs: database signing keys, remembered
consent, and an introspection endpoint for authenticated confidential clients only."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import InvalidOIDCClientError, InvalidOIDCRedirectURIError, OAuthToolkitError
from oauth2_provider.forms import AllowForm
from oauth2_provider.oauth2_backends import _add_iss_to_redirect  # DOT's RFC 9207 helper
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.oauth2.rfc6749.errors import ConsentRequired, InvalidClientIdError, LoginRequired

import audit
from apikeys.selectors import apikey_claims, presented_as_api_key
from apikeys.services import apikey_use
from idp import services
from idp.metrics import introspection_counted
from idp.models import Application
from idp.oauth import keys, selectors


class ConsentForm(AllowForm):
    remember = forms.BooleanField(required=False)


def _without(request: HttpRequest, *names: str) -> str:
    """This request's URL with some query parameters taken out."""
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return f"{request.path}?{query.urlencode()}"


@method_decorator(never_cache, name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")  # the consent form is CSRF-checked in post()
class AuthorizationView(dot_views.AuthorizationView):
    """DOT's authorization endpoint with the OpenID Connect behaviour it leaves to us:
    authorization requests by POST, prompt=none, max_age, id_token_hint, and remembered consent
    ("remember this decision", a Consent row)."""

    form_class = ConsentForm
    consent_given = False  # the user answered the consent page (not a remembered consent)
    remember_consent = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # OIDC Core §3.1.2.1: the request may come as a form POST. It is the same request as a
        # GET, so it is answered by one: a 303 to the GET form (no CSRF token: it comes from the
        # client's page, not ours). Our consent form always carries its CSRF token.
        if request.method == "POST" and "csrfmiddlewaretoken" not in request.POST:
            return HttpResponseRedirect(f"{request.path}?{request.POST.urlencode()}", status=303)
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return csrf_protect(super().post)(request, *args, **kwargs)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Only a signed-in user gets here: DOT's dispatch sends anyone else to sign in, or
        # answers prompt=none with login_required.
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError:
            return super().get(request, *args, **kwargs)  # DOT renders or redirects the error
        application = Application.objects.get(client_id=credentials["client_id"])
        prompt = set(request.GET.get("prompt", "").split())
        silent = "none" in prompt

        hint = request.GET.get("id_token_hint")
        if hint and selectors.id_token_hint_subject(hint, issuer=oauth2_settings.oidc_issuer(request)) != str(
            request.user.pk
        ):
            if silent:
                return self._refuse(LoginRequired, credentials, application)
            return self._sign_in_again(request, "id_token_hint")  # as the user the client expects
        if self._authentication_too_old(request):
            if silent:
                return self._refuse(LoginRequired, credentials, application)
            return self._sign_in_again(request, "max_age")

        if prompt & {"consent", "login", "create"} or "resource" in request.GET:
            return super().get(request, *args, **kwargs)
        shared = [*scopes, *selectors.claim_scopes(claims=credentials.get("claims"), registered=application.scope_list)]
        consented = application.skip_authorization or selectors.consent_covers(
            user_id=request.user.pk, client_id=credentials["client_id"], scopes=shared
        )
        if not consented:
            if silent:
                return self._refuse(ConsentRequired, credentials, application)
            return super().get(request, *args, **kwargs)
        if isinstance(credentials.get("ui_locales"), list):
            credentials["ui_locales"] = " ".join(credentials["ui_locales"])
        try:
            uri, _headers, _body, _status = self.create_authorization_response(
                request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
            )
        except OAuthToolkitError as error:
            return self.error_response(error, application)
        return self.redirect(uri, application)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # The consent page lists what the claims parameter asks for beside the scopes.
        context = super().get_context_data(**kwargs)
        application = context.get("application")
        if application is not None and "scopes_descriptions" in context:
            asked = selectors.claim_scopes(claims=context.get("claims"), registered=application.scope_list)
            all_scopes = get_scopes_backend().get_all_scopes()
            extra = [all_scopes[scope] for scope in asked if scope not in context.get("scopes", [])]
            context["scopes_descriptions"] = [*context["scopes_descriptions"], *extra]
        return context

    def redirect(self, redirect_to: str, application: Application | None) -> HttpResponse:
        # RFC 9207 §2: every authorization response names the issuer, error responses included
        # (DOT adds it to successful ones only). Replacing an existing iss keeps this idempotent.
        issuer = oauth2_settings.oauth2_authorization_server_issuer(self.request)
        return super().redirect(_add_iss_to_redirect(redirect_to, issuer), application)

    def _sign_in_again(self, request: HttpRequest, satisfied: str) -> HttpResponse:
        """End the session and come back after a fresh sign-in, without the parameter that asked
        for it (it is then satisfied, and would otherwise ask again)."""
        logout(request)
        return redirect_to_login(_without(request, satisfied, "prompt"), settings.LOGIN_URL)

    def _authentication_too_old(self, request: HttpRequest) -> bool:
        """max_age (OIDC Core §3.1.2.1): the sign-in is older than the client accepts."""
        raw = request.GET.get("max_age", "")
        if not raw.isdigit():
            return False
        signed_in = request.user.last_login
        return signed_in is None or (timezone.now() - signed_in).total_seconds() > int(raw)

    def _refuse(self, error_class: type, credentials: dict, application: Application) -> HttpResponse:
        error = error_class(state=credentials.get("state"))
        error.redirect_uri = credentials["redirect_uri"]  # validated by oauthlib above
        return self.error_response(
            OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]), application
        )

    def form_valid(self, form: ConsentForm) -> HttpResponse:
        # DOT looks the client up with .get() before oauthlib validates anything, so an unknown
        # client_id in a posted form would be a 500; it is oauthlib's invalid_client_id page.
        if not Application.objects.filter(client_id=form.cleaned_data.get("client_id") or "").exists():
            return self.error_response(OAuthToolkitError(error=InvalidClientIdError()), None)
        self.consent_given = True
        self.remember_consent = bool(form.cleaned_data.get("remember"))
        return super().form_valid(form)

    def create_authorization_response(self, request: HttpRequest, scopes: str, credentials: dict, allow: bool) -> Any:
        # The consent, then the code: one transaction, so a consent is kept (and recorded) only
        # with the code it let through. oauthlib answers most refusals with an error redirect
        # rather than an exception, hence the look at the answer.
        with transaction.atomic():
            if allow and self.consent_given:
                application = Application.objects.get(client_id=credentials["client_id"])
                asked = selectors.claim_scopes(claims=credentials.get("claims"), registered=application.scope_list)
                services.consent_grant(
                    user_id=request.user.pk,
                    application=application,
                    scopes=[*scopes.split(), *asked],
                    remember=self.remember_consent,
                )
            result = super().create_authorization_response(
                request=request, scopes=scopes, credentials=credentials, allow=allow
            )
            answer = parse_qs(urlsplit(result[0] or "").query)
            if "error" in answer or "code" not in answer:
                transaction.set_rollback(True)
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
    """DOT's discovery document, corrected for what this provider really supports.

    The document follows from settings and the issuer alone, so each process builds it once per
    issuer (one in production; in development the issuer is the request's host) and serves the
    same bytes after that: every process derives the same document."""

    _documents: dict[str, bytes] = {}

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        issuer = oauth2_settings.oidc_issuer(request)
        document = self._documents.get(issuer)
        if document is None:
            document = json.dumps(self._document(request, *args, **kwargs)).encode()
            if len(self._documents) >= 16:  # development: any port of an allowed host is an issuer
                self._documents.clear()
            self._documents[issuer] = document
        return HttpResponse(document, content_type="application/json")

    def _document(self, request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
        data = json.loads(super().get(request, *args, **kwargs).content)
        data.update(
            {
                # Keys live in the database, which DOT's document cannot see (it looks for a PEM
                # in settings and would otherwise announce HS256 only): one chain per algorithm.
                "id_token_signing_alg_values_supported": list(settings.SIGNING_ALGORITHMS),
                "grant_types_supported": list(oauth2_settings.OAUTH2_GRANT_TYPES_SUPPORTED),
                "code_challenge_methods_supported": ["S256"],
                "revocation_endpoint": self._get_endpoint_url(request, "revoke-token", required=True),
                "introspection_endpoint": self._get_endpoint_url(request, "introspect", required=True),
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "response_modes_supported": ["query"],
                "prompt_values_supported": ["none", "login", "consent"],
                "claims_parameter_supported": True,
                "claim_types_supported": ["normal"],
                "request_parameter_supported": False,
                "request_uri_parameter_supported": False,
            }
        )
        data["claims_supported"] = sorted(data["claims_supported"] + ["iss", "aud", "exp", "iat", "auth_time", "nonce"])
        return data


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
    """RFC 7662 introspection of access tokens, refresh tokens and API keys, for confidential
    clients that authenticate (Basic or body).

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
        if len(request.POST.getlist("token")) > 1:
            # RFC 6749 §3.2: parameters must not repeat. Which copy counts would otherwise be up to
            # each parser, and a gateway checking the first could disagree with us about the last.
            return JsonResponse(
                {"error": "invalid_request", "error_description": "token given more than once"}, status=400
            )
        if not token:
            return JsonResponse({"error": "invalid_request", "error_description": "token is required"}, status=400)
        issuer = oauth2_settings.oidc_issuer(request)
        if presented_as_api_key(token):
            # An API key: verified exactly as /api/v1 verifies it, answered as a token would be.
            verified = apikey_use(presented=token)
            answer = apikey_claims(verified=verified, issuer=issuer) if verified else selectors.INACTIVE
        else:
            answer = selectors.token_introspect(
                token=token, token_type_hint=request.POST.get("token_type_hint"), issuer=issuer
            )
        introspection_counted(active=bool(answer.get("active")))
        response = JsonResponse(answer)
        response["Cache-Control"] = "no-store"
        return response


class UserInfoView(dot_views.UserInfoView):
    """DOT's userinfo, without the access token in the query string: RFC 9700 §4.3.2 and RFC 6750
    §5.3 forbid it (it lands in proxy and browser logs), and DOT's own BCP switch
    (COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT) guards only its protected-resource decorator,
    not this view. The header (and RFC 6750 §2.2's form body) still work."""

    def _create_userinfo_response(self, request: HttpRequest) -> HttpResponse:
        if "access_token" in request.GET:
            response = JsonResponse(
                {"error": "invalid_request", "error_description": "send the access token in the Authorization header"},
                status=400,
            )
            response["WWW-Authenticate"] = 'Bearer realm="idp", error="invalid_request"'
            response["Cache-Control"] = "no-store"
            return response
        return super()._create_userinfo_response(request)


class LogoutView(dot_views.RPInitiatedLogoutView):
    """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), stricter than DOT's: the
    provider redirects only to a registered post-logout URI of the client an id_token_hint we
    signed names, and without a redirect the user lands on a signed-out page."""

    def validate_logout_request(
        self, id_token_hint: str | None, client_id: str | None, post_logout_redirect_uri: str | None
    ) -> tuple[Any, Any]:
        if post_logout_redirect_uri and not id_token_hint:
            raise InvalidOIDCRedirectURIError("post_logout_redirect_uri needs an id_token_hint.")
        if client_id and not Application.objects.filter(client_id=client_id).exists():
            raise InvalidOIDCClientError()  # DOT would look it up with .get() and fail with a 500
        return super().validate_logout_request(id_token_hint, client_id, post_logout_redirect_uri)

    def do_logout(
        self,
        application: Application | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
        token_user: Any = None,
    ) -> HttpResponse:
        user = token_user or self.request.user
        with transaction.atomic():
            # OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS: the user's tokens at every client end with the
            # session. Revoked here, audited, before DOT's do_logout (which then finds none left).
            if oauth2_settings.OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS and user.is_authenticated:
                signed_in = self.request.user
                services.user_tokens_revoke(
                    user_id=user.pk,
                    actor=audit.Actor.user(signed_in) if signed_in.is_authenticated else audit.Actor.anonymous(),
                    reason="logout",
                    id_tokens=True,
                )
            response = super().do_logout(application, post_logout_redirect_uri, state, token_user)
        if post_logout_redirect_uri:
            return response
        return render(self.request, "registration/logged_out.html")
