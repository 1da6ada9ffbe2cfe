"""The pages of signing in through an upstream: start (to the upstream), callback (back from it)
and link (prove the local account that has the upstream's e-mail address).

Both start and callback are sign-in endpoints: the sign-in rate-limit group, and django-axes'
lockout (by address before anything, by account once the callback knows whose it is). The local
sign-in then completes as the password sign-in does (idp.pages.signin.SignInView.form_valid):
pending_start/signin_finish, the second-factor policy, the amr `fed`."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from accounts.models import User
from idp.federation import client, services
from idp.federation.client import UpstreamError, UpstreamIdentity
from idp.federation.selectors import upstream_enabled_get
from idp.http.lockout import signin_locked_out
from idp.http.policy import endpoint
from idp.mfa import factors, levels
from idp.mfa.signin import pending_start, session_authentication, signin_finish
from idp.models import UpstreamProvider
from idp.pages.factors import next_url, with_next
from idp.pages.signin import _level_wanted

SIGNIN_BACKEND = "django.contrib.auth.backends.ModelBackend"
LINK_KEY = "idp_upstream_link"

# What a person reads for each refusal: never what the upstream or an attacker sent.
MESSAGES = {
    "unknown_upstream": "This directory is not offered here.",
    "upstream_access_denied": "The sign-in at your directory was cancelled or refused.",
    "upstream_error": "Your directory could not sign you in.",
    "upstream_unavailable": "Your directory cannot be reached right now. Try again later.",
    "state_mismatch": "This sign-in link is not valid here any more. Start again.",
    "state_expired": "This sign-in took too long. Start again.",
    "user_inactive": "This account is switched off.",
    "email_taken_unverified": "An account with your e-mail address exists here but its address is not "
    "verified, so it cannot be linked. Ask an operator.",
    "nothing_to_link": "There is no sign-in waiting to be linked. Start again.",
    "link_refused": "This account cannot be linked to that directory identity.",
}


def _refused(request: HttpRequest, *, upstream: str, reason: str, status: int = 400, user: Any = None) -> HttpResponse:
    services.upstream_signin_failed(upstream=upstream, reason=reason, user=user)
    message = MESSAGES.get(reason, "The sign-in through your directory failed. Start again.")
    response = render(request, "registration/upstream_error.html", {"message": message}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _safe_next(request: HttpRequest, wanted: str) -> str:
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return wanted
    return next_url(request)


@endpoint(rate="signin")
class UpstreamStartView(View):
    """To the upstream's authorization endpoint, keeping a safe `next` for the way back."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        provider = upstream_enabled_get(slug=slug)
        if provider is None:
            return _refused(request, upstream=slug, reason="unknown_upstream", status=404)
        if AxesProxyHandler.is_locked(request):
            return signin_locked_out(request, None, None)
        callback = request.build_absolute_uri(reverse("upstream-callback", args=[provider.slug]))
        try:
            return client.authorization_start(request, provider=provider, callback=callback, next_to=next_url(request))
        except UpstreamError as exc:
            return _refused(request, upstream=provider.slug, reason=exc.reason)


@endpoint(rate="signin")
class UpstreamCallbackView(View):
    """Back from the upstream: the callback validated (client.authorization_finish), then the
    identity signs in, is created, or waits for its local account to be proved."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        provider = upstream_enabled_get(slug=slug)
        if provider is None:
            return _refused(request, upstream=slug, reason="unknown_upstream", status=404)
        if AxesProxyHandler.is_locked(request):
            return signin_locked_out(request, None, None)
        try:
            finished = client.authorization_finish(request, provider=provider)
        except UpstreamError as exc:
            return _refused(request, upstream=provider.slug, reason=exc.reason)
        outcome = services.upstream_signin(provider=provider, identity=finished.identity)
        next_to = _safe_next(request, finished.next_to)
        if outcome.kind == "refused" or outcome.user is None:
            # Recorded by the service.
            message = MESSAGES.get(outcome.reason, "The sign-in through your directory failed. Start again.")
            response = render(request, "registration/upstream_error.html", {"message": message}, status=403)
            response["Cache-Control"] = "no-store"
            return response
        if outcome.kind == "link_needed":
            request.session[LINK_KEY] = {
                "provider": provider.pk,
                "identity": asdict(finished.identity),
                "uid": outcome.user.pk,
                "at": time.time(),
                "next": next_to,
            }
            return HttpResponseRedirect(reverse("upstream-link"))
        user = outcome.user
        if AxesProxyHandler.is_locked(request, credentials={"username": user.get_username()}):
            return signin_locked_out(request, None, None)
        # As the password sign-in (SignInView.form_valid): a brokered sign-in is one factor.
        has_factor = factors.user_has_factor(user=user)
        if has_factor or _level_wanted(user, next_to) >= levels.Level.MFA:
            pending_start(request, user=user, backend=SIGNIN_BACKEND, amr=["fed"])
            return HttpResponseRedirect(with_next("mfa-verify" if has_factor else "mfa-enrol", next_to))
        signin_finish(request, user=user, backend=SIGNIN_BACKEND, amr=["fed"])
        return HttpResponseRedirect(next_to)


def _pending_link(request: HttpRequest) -> tuple[UpstreamProvider, UpstreamIdentity, User, str] | None:
    held = request.session.get(LINK_KEY)
    if not isinstance(held, dict) or time.time() - float(held.get("at") or 0) > client.STATE_SECONDS:
        request.session.pop(LINK_KEY, None)
        return None
    provider_pk, user_pk = held.get("provider"), held.get("uid")
    if not isinstance(provider_pk, int) or not isinstance(user_pk, int):
        request.session.pop(LINK_KEY, None)
        return None
    provider = UpstreamProvider.objects.filter(pk=provider_pk, is_enabled=True).first()
    user = User.objects.filter(pk=user_pk, is_active=True).first()
    try:
        data = dict(held["identity"])
        identity = UpstreamIdentity(**(data | {"role_values": tuple(data.get("role_values") or ())}))
    except (KeyError, TypeError, ValueError):
        identity = None
    if provider is None or user is None or identity is None or identity.issuer != provider.issuer:
        request.session.pop(LINK_KEY, None)
        return None
    return provider, identity, user, str(held.get("next") or "")


def _proved(request: HttpRequest, user: User) -> bool:
    """Whether this session signed in as `user` after the link was asked for, with the user's
    second factor if the user has one."""
    authentication = session_authentication(request)
    if authentication is None or request.user.pk != user.pk:
        return False
    if authentication.auth_time.timestamp() < float(request.session[LINK_KEY]["at"]):
        return False
    return not factors.user_has_factor(user=user) or authentication.level >= levels.Level.MFA


@endpoint(rate="signin", rate_methods=("POST",))
class UpstreamLinkView(View):
    """A local account has the upstream's e-mail address: its owner signs in to it (password, and
    second factor when it has one: the sign-in page), then confirms the link here."""

    def get(self, request: HttpRequest) -> HttpResponse:
        pending = _pending_link(request)
        if pending is None:
            return _refused(request, upstream="-", reason="nothing_to_link")
        provider, _identity, user, _next = pending
        context = {
            "provider": provider,
            "proved": _proved(request, user),
            "signin_url": with_next("login", reverse("upstream-link")),
        }
        response = render(request, "registration/upstream_link.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
        pending = _pending_link(request)
        if pending is None:
            return _refused(request, upstream="-", reason="nothing_to_link")
        provider, identity, user, next_to = pending
        if not _proved(request, user):
            return _refused(request, upstream=provider.slug, reason="link_not_proved", status=403, user=user)
        try:
            services.upstream_link_create(provider=provider, identity=identity, user=user)
        except PermissionDenied:
            return _refused(request, upstream=provider.slug, reason="link_refused", status=403, user=user)
        request.session.pop(LINK_KEY, None)
        return HttpResponseRedirect(_safe_next(request, next_to))
