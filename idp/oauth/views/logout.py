"""Signing out: RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and the provider's own
"Sign out", both ending one browser session and what it issued, and the signed-out page that
tells browser-only clients (Front-Channel Logout 1.0).

Front-channel logout needs the browser: the signed-out page loads each ended session's clients'
frontchannel_logout_uri in hidden iframes, and its Content-Security-Policy allows exactly those
origins as frame-src (this response only). When the sign-out then continues elsewhere (the
client's post_logout_redirect_uri, or the sign-in page after "Sign out"), the page continues there
by a meta refresh once it has loaded (iframes included), with a link for browsers that do not
refresh; no script, which the CSP forbids inline. Without iframes to load, the browser is
redirected at once, as before."""

from __future__ import annotations

import hmac
from typing import Any

from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import (
    ClientIdMissmatch,
    InvalidIDTokenError,
    InvalidOIDCClientError,
    InvalidOIDCRedirectURIError,
    LogoutDenied,
    OIDCError,
)
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import add_params_to_uri

from idp.http.policy import endpoint
from idp.models import Application
from idp.oauth import tokens
from idp.oauth.sessions import browser_session_id_get, sessions_ended
from idp.sessions.logout import FrontChannelLogout, frontchannel_logout_uris


@endpoint(single_valued_params=True)
@method_decorator(never_cache, name="dispatch")
class LogoutView(dot_views.RPInitiatedLogoutView):
    """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2-3), made safe to link to.

    - It ends only the browser session it is asked in, and only when that session's user confirms
      on a CSRF-protected POST. The question is skipped only for an id_token_hint that names this
      very session (its sid) and user, is unexpired, and was issued to the client that asks.
    - Ending the session revokes what was issued through it (idp.oauth.sessions), nothing else: the
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
            logout(request)  # idp.oauth.sessions revokes what the session issued
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
                logout(self.request)  # and what the session issued (idp.oauth.sessions)
        except OIDCError as error:
            return self.error_response(error)
        return self._finish(application, params["post_logout_redirect_uri"], data.get("state"))

    def _judge(
        self, *, id_token_hint: str | None, client_id: str | None, post_logout_redirect_uri: str | None
    ) -> tuple[Application | None, tokens.IdTokenHint | None]:
        """The client asking (client_id, or the client the hint was issued to) and the hint, read
        but not trusted beyond its signature. A redirect needs a hint (it ties the URI to a client),
        a client_id must be the hint's, and the URI must be registered for that client, exactly."""
        hint = None
        if id_token_hint:
            hint = tokens.id_token_hint_read(id_token_hint, issuer=oauth2_settings.oidc_issuer(self.request))
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

    def _names_this_session(self, hint: tokens.IdTokenHint | None, application: Application | None) -> bool:
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
            if not frontchannel_of(self.request):
                return OAuth2ResponseRedirect(target, application.get_allowed_schemes())
            return signed_out_page(self.request, continue_to=target)
        return signed_out_page(self.request)


# Seconds the signed-out page waits, once loaded, before it continues (its iframes have loaded).
CONTINUE_AFTER_SECONDS = 1


def frontchannel_of(request: HttpRequest) -> list[str]:
    """The front-channel logout URIs of the sessions this request ended (idp.oauth.sessions)."""
    uris: list[str] = []
    for ended in sessions_ended(request):
        for uri in frontchannel_logout_uris(client_ids=ended.client_ids, issuer=ended.issuer, sid=ended.sid):
            if uri not in uris:
                uris.append(uri)
    return uris


def signed_out_page(request: HttpRequest, *, continue_to: str | None = None, status: int = 200) -> HttpResponse:
    """The signed-out page, with the front-channel iframes of the sessions this request ended. It
    continues to `continue_to` (a URI the caller has validated) after they load; with no iframe to
    load it redirects there at once."""
    uris = frontchannel_of(request)
    if continue_to and not uris:
        return HttpResponseRedirect(continue_to)
    response = render(
        request,
        "registration/logged_out.html",
        {"frontchannel_uris": uris, "continue_to": continue_to, "continue_after": CONTINUE_AFTER_SECONDS},
        status=status,
    )
    if uris:
        # Front-Channel Logout 1.0 §3: the OP's page frames the RPs' URIs; this response alone.
        response._csp_update = {"frame-src": FrontChannelLogout(uris).origins}  # type: ignore[attr-defined]
    add_never_cache_headers(response)
    return response


@endpoint()
@method_decorator(never_cache, name="dispatch")
class SignOutView(auth_views.LogoutView):
    """The provider's own "Sign out" (POST, CSRF-protected): the browser session ends, and the
    tokens issued through it with it (idp.oauth.sessions), as with RP-initiated logout. Then the
    sign-in page (or a safe `next`), through the signed-out page when clients are to be told."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        logout(request)
        return signed_out_page(request, continue_to=self.get_success_url())
