"""DOT's endpoint views, extended where the provider differs: database signing keys, remembered
consent, and an introspection endpoint for authenticated confidential clients only."""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import (
    ClientIdMissmatch,
    InvalidIDTokenError,
    InvalidOIDCClientError,
    InvalidOIDCRedirectURIError,
    LogoutDenied,
    OAuthToolkitError,
    OIDCError,
)
from oauth2_provider.forms import AllowForm
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.oauth2_backends import _add_iss_to_redirect  # DOT's RFC 9207 helper
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OauthlibRequest
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2.rfc6749.errors import ConsentRequired, InvalidClientIdError, LoginRequired, OAuth2Error

import audit
from apikeys.selectors import apikey_claims, presented_as_api_key
from apikeys.services import apikey_use
from idp import services
from idp.metrics import introspection_counted
from idp.models import Application
from idp.oauth import keys, selectors
from idp.oauth.sessions import browser_session_id, browser_session_id_get

# The members of an authorization response (RFC 6749 §4.1.2, §4.1.2.1, RFC 9207).
_RESPONSE_PARAMETERS = ("code", "state", "iss", "error", "error_description", "error_uri")


def _form_post(request: HttpRequest, location: str) -> HttpResponse:
    """OAuth 2.0 Form Post Response Mode: a page whose form posts the response parameters to the
    redirect URI, submitted by a script of our own (CSP allows no inline script), or by hand."""
    parts = urlsplit(location)
    query = parse_qs(parts.query, keep_blank_values=True)
    fields = [(name, query.pop(name)[0]) for name in _RESPONSE_PARAMETERS if name in query]
    action = parts._replace(query=urlencode(query, doseq=True), fragment="").geturl()
    response = render(request, "oauth2_provider/form_post.html", {"action": action, "fields": fields})
    add_never_cache_headers(response)
    return response


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
        # OAuth 2.0 Form Post Response Mode: the answer (code or error) is posted to the client
        # instead of redirected (idp.oauth.server refuses every mode but query and form_post). The
        # consent form posts back to this same URL, so the query string still says so.
        self.form_post = request.GET.get("response_mode") == "form_post"
        return super().dispatch(request, *args, **kwargs)

    def handle_no_permission(self) -> HttpResponse:
        """Nobody is signed in. The request is judged first (RFC 6749 §4.1.2.1, OIDC Core
        §3.1.2.6): an unknown client or an unregistered redirect URI is an error page, any other
        error goes back to the client; only a valid request gets a sign-in form."""
        try:
            self.validate_authorization_request(self.request)
        except OAuthToolkitError as error:
            client_id = self.request.GET.get("client_id", "")
            redirects = getattr(error, "redirect_uri", None)  # FatalClientError has none: an error page
            application = Application.objects.filter(client_id=client_id).first() if redirects else None
            return self.error_response(error, application)
        return super().handle_no_permission()

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
        named = selectors.id_token_hint_read(hint, issuer=oauth2_settings.oidc_issuer(request)) if hint else None
        if hint and (named is None or named.subject != str(request.user.pk)):
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
        redirect_to = _add_iss_to_redirect(redirect_to, issuer)
        if getattr(self, "form_post", False):
            return _form_post(self.request, redirect_to)
        return super().redirect(redirect_to, application)

    def _sign_in_again(self, request: HttpRequest, satisfied: str) -> HttpResponse:
        """Come back after a fresh sign-in, without the parameter that asked for it (it is then
        satisfied, and would otherwise ask again). The session is not ended here: a page could
        otherwise sign anyone out by linking to this (logout CSRF); signing in again replaces it."""
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
        credentials["session_id"] = browser_session_id(request)  # idp.oauth.validator binds the code to it
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


def basic_challenge(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """RFC 6749 §5.2: a 401 invalid_client answers a client that authenticated with HTTP Basic with
    the Basic scheme's challenge (oauthlib's is Bearer, the protected resource's)."""
    if response.status_code == 401 and request.META.get("HTTP_AUTHORIZATION", "")[:6].lower() == "basic ":
        response["WWW-Authenticate"] = 'Basic realm="idp"'
    return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(sensitive_post_parameters("token", "client_secret"), name="dispatch")
class RevokeTokenView(dot_views.RevokeTokenView):
    """RFC 7009 revocation (DOT's), with RFC 6749 §5.2's Basic challenge on a failed Basic login."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return basic_challenge(request, super().post(request, *args, **kwargs))


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
        return basic_challenge(request, response)


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
                "response_modes_supported": ["query", "form_post"],
                "prompt_values_supported": ["none", "login", "consent"],
                "claims_parameter_supported": True,
                "claim_types_supported": ["normal"],
                "request_parameter_supported": False,
                "request_uri_parameter_supported": False,
            }
        )
        data["claims_supported"] = sorted(
            data["claims_supported"] + ["iss", "aud", "exp", "iat", "auth_time", "nonce", "sid"]
        )
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
                token=token,
                token_type_hint=request.POST.get("token_type_hint"),
                issuer=issuer,
                client=client,
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


def session_end(request: HttpRequest, *, reason: str) -> int:
    """Sign this browser session out: revoke every token and code issued through it (at every
    client, audited as token.revoked) and end the Django session. Tokens of the user's other
    sessions and devices are untouched. Returns how many tokens were revoked."""
    revoked = 0
    user = request.user
    session_id = browser_session_id_get(request)
    if user.is_authenticated and session_id:
        revoked = services.user_tokens_revoke(
            user_id=user.pk, session_id=session_id, actor=audit.Actor.user(user), reason=reason, id_tokens=True
        )
    logout(request)
    return revoked


@method_decorator(never_cache, name="dispatch")
class LogoutView(dot_views.RPInitiatedLogoutView):
    """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2-3), made safe to link to.

    - It ends only the browser session it is asked in, and only when that session's user confirms
      on a CSRF-protected POST. The question is skipped only for an id_token_hint that names this
      very session (its sid) and user, is unexpired, and was issued to the client that asks.
    - Ending the session revokes what was issued through it (session_end), nothing else: the
      user's other sessions and devices keep their tokens.
    - A hint alone (no session cookie, an expired or a foreign hint) revokes nothing; a valid
      signature still names the client whose registered post_logout_redirect_uri may be used.
    - Without a redirect the user lands on a signed-out page."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        params = {name: request.GET.get(name) for name in ("id_token_hint", "client_id", "post_logout_redirect_uri")}
        try:
            application, hint = self._judge(**params)
        except OIDCError as error:
            return self.error_response(error)
        state = request.GET.get("state")
        redirect_uri = params["post_logout_redirect_uri"]
        if not request.user.is_authenticated:
            return self._finish(application, redirect_uri, state)  # no session here: nothing to end
        if self._names_this_session(hint, application):
            session_end(request, reason="logout")
            return self._finish(application, redirect_uri, state)
        self.oidc_data = {**params, "state": state}
        context = self.get_context_data(form=self.get_form(self.get_form_class()), application=application)
        return self.render_to_response(context)

    def form_valid(self, form: Any) -> HttpResponse:
        data = form.cleaned_data
        params = {name: data.get(name) for name in ("id_token_hint", "client_id", "post_logout_redirect_uri")}
        try:
            application, _hint = self._judge(**params)
            if self.request.user.is_authenticated:
                if not data.get("allow"):
                    raise LogoutDenied()
                session_end(self.request, reason="logout")
        except OIDCError as error:
            return self.error_response(error)
        return self._finish(application, params["post_logout_redirect_uri"], data.get("state"))

    def _judge(
        self, *, id_token_hint: str | None, client_id: str | None, post_logout_redirect_uri: str | None
    ) -> tuple[Application | None, selectors.IdTokenHint | None]:
        """The client asking (client_id, or the client the hint was issued to) and the hint, read
        but not trusted beyond its signature. A redirect needs a hint (it ties the URI to a client),
        a client_id must be the hint's, and the URI must be registered for that client, exactly."""
        hint = None
        if id_token_hint:
            hint = selectors.id_token_hint_read(id_token_hint, issuer=oauth2_settings.oidc_issuer(self.request))
            if hint is None:
                raise InvalidIDTokenError()
        if client_id:
            application = Application.objects.filter(client_id=client_id).first()
            if application is None:
                raise InvalidOIDCClientError()
            if hint is not None and client_id not in hint.audiences:
                raise ClientIdMissmatch()
        else:
            application = Application.objects.filter(client_id=hint.client_id).first() if hint else None
        if post_logout_redirect_uri and hint is None:
            raise InvalidOIDCRedirectURIError("post_logout_redirect_uri needs an id_token_hint.")
        self.validate_post_logout_redirect_uri(application, post_logout_redirect_uri)
        return application, hint

    def _names_this_session(self, hint: selectors.IdTokenHint | None, application: Application | None) -> bool:
        session_id = browser_session_id_get(self.request)
        return (
            hint is not None
            and application is not None
            and not hint.expired
            and hint.subject == str(self.request.user.pk)
            and hint.client_id == application.client_id
            and bool(session_id)
            and hmac.compare_digest(hint.session_id, session_id)
        )

    def _finish(self, application: Application | None, redirect_uri: str | None, state: str | None) -> HttpResponse:
        if redirect_uri and application is not None:
            target = add_params_to_uri(redirect_uri, [("state", state)]) if state else redirect_uri
            return OAuth2ResponseRedirect(target, application.get_allowed_schemes())
        return render(self.request, "registration/logged_out.html")


@method_decorator(never_cache, name="dispatch")
class SignOutView(auth_views.LogoutView):
    """The provider's own "Sign out" (POST, CSRF-protected): the browser session ends, and so do
    the tokens issued through it, as with RP-initiated logout."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        session_end(request, reason="logout")
        return super().post(request, *args, **kwargs)
