"""The authorization endpoint (RFC 6749 §3.1, OIDC Core §3.1.2): DOT's, judged before sign-in,
with remembered consent, prompt, max_age, id_token_hint and form_post."""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import (
    OAuthToolkitError,
)
from oauth2_provider.forms import AllowForm
from oauth2_provider.oauth2_backends import _add_iss_to_redirect  # DOT's RFC 9207 helper
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    ConsentRequired,
    InvalidClientIdError,
    LoginRequired,
    OAuth2Error,
)

from accounts.models import User
from accounts.selectors import user_may_receive_tokens
from idp.http.policy import endpoint
from idp.mfa import levels
from idp.mfa.policy import level_required
from idp.mfa.signin import pending_get, session_authentication
from idp.models import Application
from idp.oauth import claims, consent, tokens
from idp.oauth.sessions import browser_session_client_add, browser_session_id
from idp.pages.factors import with_next

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


def _verify_email_first(request: HttpRequest) -> HttpResponse:
    """The page a self-registered user with an unverified address sees instead of a code."""
    return render(request, "registration/email_unverified.html", status=403)


class InteractionRequired(OAuth2Error):
    """OIDC Core §3.1.2.6, for prompt=none: the session must step up, which needs the user."""

    error = "interaction_required"
    description = "a second factor is required"


class UnmetAuthenticationRequirements(OAuth2Error):
    """OpenID Connect Core Unmet Authentication Requirements 1.0: the essential acr asked for is
    none this provider can reach."""

    error = "unmet_authentication_requirements"
    description = "none of the essential acr values requested is supported"


class ConsentForm(AllowForm):
    remember = forms.BooleanField(required=False)


def _signed_in(request: HttpRequest) -> User:
    """The user of a request that got past DOT's LoginRequiredMixin."""
    return cast(User, request.user)


def _without(request: HttpRequest, *names: str) -> str:
    """This request's URL with some query parameters taken out."""
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return f"{request.path}?{query.urlencode()}"


@endpoint(rate="authorize", single_valued_params=True)
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

    # The view's response, whatever it is (an error page, an error redirect to the client): the
    # stubs narrow it to the redirect to the sign-in page Django's own returns.
    def handle_no_permission(self) -> HttpResponse:  # type: ignore[override]
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

        if pending_get(request) is not None:
            # A sign-in again (prompt=login, max_age) passed its password and waits for its
            # second factor: the session's earlier sign-in does not stand in for it.
            if silent:
                return self._refuse(LoginRequired, credentials, application)
            return HttpResponseRedirect(with_next("mfa-verify", request.get_full_path()))

        if not user_may_receive_tokens(request.user):
            # A self-registered user whose address is unverified gets no code for any client: the
            # person is told to verify it, a client asking silently gets access_denied.
            if silent:
                return self._refuse(AccessDeniedError, credentials, application)
            return _verify_email_first(request)

        hint = request.GET.get("id_token_hint")
        named = tokens.id_token_hint_read(hint, issuer=oauth2_settings.oidc_issuer(request)) if hint else None
        if hint and (named is None or named.subject != str(request.user.pk)):
            if silent:
                return self._refuse(LoginRequired, credentials, application)
            return self._sign_in_again(request, "id_token_hint")  # as the user the client expects
        if self._authentication_too_old(request):
            if silent:
                return self._refuse(LoginRequired, credentials, application)
            return self._sign_in_again(request, "max_age")
        below = self._below_level(request, application)
        if below is not None:
            # Step-up (acr_values, claims' acr, the client's or the user's roles' policy): the user
            # proves a second factor only, before any code. An essential acr nobody can reach fails.
            if below is UnmetAuthenticationRequirements:
                return self._refuse(UnmetAuthenticationRequirements, credentials, application)
            if silent:
                return self._refuse(InteractionRequired, credentials, application)
            return HttpResponseRedirect(with_next("mfa-verify", request.get_full_path()))

        if prompt & {"consent", "login", "create"} or "resource" in request.GET:
            return super().get(request, *args, **kwargs)
        shared = [*scopes, *claims.claim_scopes(claims=credentials.get("claims"), registered=application.scope_list)]
        consented = application.skip_authorization or consent.consent_covers(
            user_id=_signed_in(request).pk, client_id=credentials["client_id"], scopes=shared
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
            asked = claims.claim_scopes(claims=context.get("claims"), registered=application.scope_list)
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
        authentication = session_authentication(request)
        return authentication is None or (timezone.now() - authentication.auth_time).total_seconds() > int(raw)

    @staticmethod
    def _requested(request: HttpRequest, claims: Any = None) -> levels.Requested:
        """The level asked for: acr_values, and the claims parameter (the request's, or the
        consent form's, whichever asks for more)."""
        asked: list[levels.Requested] = []
        for raw in (request.GET.get("claims"), claims):
            parsed: Any = raw
            if isinstance(raw, str):
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = None  # oauthlib refuses a malformed claims parameter before this
            asked.append(levels.requested(acr_values=request.GET.get("acr_values"), claims=parsed))
        return max(asked, key=lambda one: (one.essential, one.level or 0))

    def _below_level(self, request: HttpRequest, application: Application, claims: Any = None) -> Any:
        """None when the session's sign-in is strong enough for this request; otherwise what is
        missing: a level to step up to, or UnmetAuthenticationRequirements."""
        asked = self._requested(request, claims)
        if asked.essential and asked.values and asked.level is None:
            return UnmetAuthenticationRequirements
        needed = level_required(user=request.user, application=application)
        if asked.level is not None:
            needed = max(needed, asked.level)
        authentication = session_authentication(request)
        if authentication is None or authentication.level < needed:
            return needed
        return None

    def _refuse(self, error_class: type, credentials: dict, application: Application) -> HttpResponse:
        error = error_class(state=credentials.get("state"))
        error.redirect_uri = credentials["redirect_uri"]  # validated by oauthlib above
        return self.error_response(
            OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]), application
        )

    def form_valid(self, form: ConsentForm) -> HttpResponse:
        # DOT looks the client up with .get() before oauthlib validates anything, so an unknown
        # client_id in a posted form would be a 500; it is oauthlib's invalid_client_id page.
        application = Application.objects.filter(client_id=form.cleaned_data.get("client_id") or "").first()
        if application is None:
            return self.error_response(OAuthToolkitError(error=InvalidClientIdError()), None)
        # The consent form answers a page get() showed, but is a request of its own, and a code
        # comes of it: everything get() demands of the session holds here too (a sign-in waiting
        # for its second factor, max_age, the level the client, the user's roles and the request,
        # as the form carries it, ask for). If not, the authorization request starts over.
        if not user_may_receive_tokens(self.request.user):
            return _verify_email_first(self.request)
        if (
            pending_get(self.request) is not None
            or self._authentication_too_old(self.request)
            or self._below_level(self.request, application, claims=form.cleaned_data.get("claims")) is not None
        ):
            return HttpResponseRedirect(self.request.get_full_path())
        self.consent_given = True
        self.remember_consent = bool(form.cleaned_data.get("remember"))
        return super().form_valid(form)

    def create_authorization_response(self, request: HttpRequest, scopes: str, credentials: dict, allow: bool) -> Any:
        # The consent, then the code: one transaction, so a consent is kept (and recorded) only
        # with the code it let through. oauthlib answers most refusals with an error redirect
        # rather than an exception, hence the look at the answer.
        credentials["session_id"] = browser_session_id(request)  # idp.oauth.validator binds the code to it
        authentication = session_authentication(request)
        if authentication is not None:
            # How the user authenticated, kept on the code and its tokens (idp.oauth.validator).
            credentials["authentication"] = {
                "auth_time": authentication.auth_time,
                "amr": list(authentication.amr),
                "acr": self._requested(request, credentials.get("claims")).acr_for(authentication.level),
            }
        with transaction.atomic():
            if allow and self.consent_given:
                application = Application.objects.get(client_id=credentials["client_id"])
                asked = claims.claim_scopes(claims=credentials.get("claims"), registered=application.scope_list)
                consent.consent_grant(
                    user_id=_signed_in(request).pk,
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
            else:
                browser_session_client_add(request, credentials["client_id"])  # told when the session ends
        return result
