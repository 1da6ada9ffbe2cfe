"""Signing in: the sign-in page, the audit events of every sign-in (this page's and the admin's:
Django's and django-axes' signals), and the brute-force watch that raises alert.bruteforce. The
audit app records what it is told; what counts as an event, and when an alert is due, is decided
here. Receivers are connected in IdpConfig.ready()."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpResponse, HttpResponseRedirect

import audit
from audit import context
from idp.http.policy import endpoint
from idp.mfa import factors, levels
from idp.mfa.policy import level_required
from idp.mfa.signin import pending_start, signin_finish
from idp.models import Application

log = logging.getLogger("audit")


@endpoint(rate="signin", rate_methods=("POST",))
class SignInView(LoginView):
    """Django's sign-in page; when a client sent login_hint (OIDC Core §3.1.2.1) with the
    authorization request it comes back from, the username field starts with it.

    The password is the first step. A user who has a second factor, or must have one (a role, the
    client, Django admin or the authorization request asks for it), is not signed in yet: the
    session holds a pending sign-in and the second step follows (idp.pages.factors)."""

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        backend = getattr(user, "backend", "django.contrib.auth.backends.ModelBackend")
        next_to = self.get_redirect_url()
        has_factor = factors.user_has_factor(user=user)
        if has_factor or _level_wanted(user, next_to) >= levels.Level.MFA:
            from idp.pages.factors import with_next  # the pages import this module's receivers

            pending_start(self.request, user=user, backend=backend, amr=["pwd"])
            return HttpResponseRedirect(with_next("mfa-verify" if has_factor else "mfa-enrol", next_to))
        signin_finish(self.request, user=user, backend=backend, amr=["pwd"])
        return HttpResponseRedirect(self.get_success_url())

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # The passwordless passkey button, when passkey sign-in is on (idp.mfa.passkeys); the
        # "Create an account" link when self-registration is (idp.pages.account); a button per
        # enabled upstream provider (idp.federation).
        from idp.federation.selectors import upstream_list_enabled

        return super().get_context_data(**kwargs) | {
            "passkey_signin": settings.OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN,
            "self_registration": settings.SELF_REGISTRATION,
            "upstreams": list(upstream_list_enabled()),
        }

    def get_initial(self) -> dict[str, Any]:
        initial = super().get_initial()
        next_url = self.request.GET.get("next", "")
        if next_url.startswith("/oauth/authorize/"):
            hint = parse_qs(urlsplit(next_url).query).get("login_hint", [""])[0]
            if hint and len(hint) <= 150:
                initial["username"] = hint
        return initial


def _level_wanted(user: Any, next_to: str) -> levels.Level:
    """The level the page this sign-in returns to will need: Django admin's, or an authorization
    request's (its client's setting, its acr_values or claims), and always the user's roles'."""
    if next_to.startswith(("/admin/", "/dashboard/")):  # staff: a second factor (idp.admin_site, the dashboard)
        return level_required(user=user, admin=True)
    application = None
    wanted = None
    if next_to.startswith("/oauth/authorize/"):
        query = parse_qs(urlsplit(next_to).query)
        application = Application.objects.filter(client_id=query.get("client_id", [""])[0][:100]).first()
        claims: Any = None
        try:
            claims = json.loads(query.get("claims", ["null"])[0])
        except ValueError:
            claims = None
        wanted = levels.requested(acr_values=query.get("acr_values", [None])[0], claims=claims).level
    needed = level_required(user=user, application=application)
    return max(needed, wanted) if wanted is not None else needed


# --- Sign-in events ----------------------------------------------------------------------------------


def on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """A sign-in, with the methods it used (RFC 8176 amr) when it went through our sign-in."""
    methods = getattr(request, "idp_amr", None)
    data = {"methods": list(methods), "acr": levels.level_of_amr(methods).acr} if methods else {}
    audit.record(audit.Action.LOGIN_SUCCEEDED, actor=audit.Actor.user(user), target=audit.Target.user(user), data=data)


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:  # signing out without a session is not an event
        audit.record(audit.Action.LOGOUT, actor=audit.Actor.user(user), target=audit.Target.user(user))


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    """A failed sign-in: the account it named, if that account exists (a username that is no
    account may be a password typed in the wrong field, so it is not recorded), then the
    brute-force watch."""
    factor = credentials.get("factor")
    if factor:  # a wrong second factor (idp.pages.factors): the account is known, the factor named
        username = _record_for_account(
            audit.Action.MFA_CHALLENGE_FAILED,
            username=credentials.get("username"),
            outcome="failure",
            data={"factor": str(factor)[:16]},
        )
    else:
        username = _record_for_account(
            audit.Action.LOGIN_FAILED, username=credentials.get("username"), outcome="failure"
        )
    _watch_bruteforce(username=username, source_ip=context.current().source_ip)


def on_locked_out(sender: Any, request: Any, username: str | None, ip_address: str | None, **kwargs: Any) -> None:
    """django-axes' user_locked_out: repeated failures locked a username or an address out.

    Axes sends it again for each attempt made during the lockout; only the failure that started
    it has a count (axes_failures_since_start), so the lockout is recorded once. As for failed
    sign-ins, a username that is no account is not recorded.
    """
    if getattr(request, "axes_failures_since_start", None) is None:
        return
    _record_for_account(
        audit.Action.LOGIN_LOCKED_OUT,
        username=username,
        outcome="alert",
        data={"failures": request.axes_failures_since_start},
    )


def _record_for_account(
    action: audit.Action, *, username: Any, outcome: str, data: dict[str, Any] | None = None
) -> str:
    """Record a sign-in event of an anonymous caller against the account it named. A name that is
    no account is not recorded (it may be a password typed in the wrong field), only that the
    account was unknown. Returns the name as recorded (at most 150 characters)."""
    name = str(username or "")[:150]
    user = get_user_model().objects.filter(username=name).first() if name else None
    audit.record(
        action,
        actor=audit.Actor.anonymous(),
        target=audit.Target.user(user) if user is not None else None,
        outcome=outcome,
        data=(data or {}) | ({} if user is not None or not name else {"account": "unknown"}),
    )
    return name


def _watch_bruteforce(*, username: str, source_ip: str | None) -> None:
    """Count failures per account and per source IP in a fixed window (Redis, shared by every
    process); the failure that reaches the threshold raises one alert per window."""
    threshold = settings.AUDIT_BRUTEFORCE_THRESHOLD
    window = settings.AUDIT_BRUTEFORCE_WINDOW_SECONDS
    subjects = []
    if username:
        subjects.append(("account", hashlib.sha256(username.lower().encode()).hexdigest()[:32], username))
    if source_ip:
        subjects.append(("ip", source_ip, source_ip))
    for kind, key, shown in subjects:
        counter = f"audit:failed-logins:{kind}:{key}"
        cache.add(counter, 0, timeout=window)
        try:
            failures = cache.incr(counter)
        except ValueError:  # expired between add and incr: this failure starts a new window
            cache.add(counter, 1, timeout=window)
            failures = 1
        if failures != threshold:
            continue
        user = get_user_model().objects.filter(username=shown).first() if kind == "account" else None
        audit.record(
            audit.Action.ALERT_BRUTEFORCE,
            actor=audit.Actor.system("bruteforce-watch"),
            target=audit.Target.user(user) if user is not None else None,
            outcome="alert",
            data={"by": kind, "failures": failures, "window_seconds": window}
            | ({"source_ip": source_ip} if kind == "ip" else {}),
        )
        # A stable event name for log-based alerting; the username is not logged (it may be a
        # mistyped password), the account's id is when there is one.
        log.warning(
            "alert.bruteforce by=%s failures=%d window_seconds=%d user_id=%s source_ip=%s",
            kind,
            failures,
            window,
            user.pk if user is not None else "-",
            source_ip or "-",
            extra={"event": "alert.bruteforce"},
        )
