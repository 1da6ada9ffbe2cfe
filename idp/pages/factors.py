"""The second step of signing in: prove a second factor (authenticator app, recovery code; passkeys
through idp.mfa.passkeys), or set one up when one is required and there is none. The same pages
step a signed-in session up to a higher level (an authorization request asked for it).

The second step is limited and locked out as the password step is: the same rate-limit group
(signin), and a wrong code is a failed sign-in of that account to django-axes (user_login_failed),
counted per username and per address together with wrong passwords; the audit records it as
mfa.challenge_failed (idp.pages.signin.on_login_failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import signals as auth_signals
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.debug import sensitive_post_parameters

import audit
from idp.http.lockout import signin_locked_out
from idp.http.policy import endpoint
from idp.mfa import factors, totp
from idp.mfa.levels import amr_with
from idp.mfa.signin import Pending, pending_get, signin_finish, step_up

CODE_MAX = 64  # longer than any code: the rest is not read


def next_url(request: HttpRequest) -> str:
    """Where to go once done: `next`, if it is on this site."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return wanted
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def with_next(name: str, next_to: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_to})}"


def second_step_user(request: HttpRequest) -> tuple[Any, Pending | None]:
    """Whom the second step is for: the pending sign-in's user, else the signed-in user (a step
    up); (None, None) for nobody."""
    pending = pending_get(request)
    if pending is not None:
        return pending.user, pending
    if request.user.is_authenticated:
        return request.user, None
    return None, None


def factor_proved(request: HttpRequest, *, user: Any, pending: Pending | None, method: str) -> None:
    """A second factor was proved: finish the pending sign-in with it, or step the session up."""
    if pending is not None:
        signin_finish(request, user=user, backend=pending.backend, amr=amr_with(pending.amr, method))
    else:
        step_up(request, method=method)


# --- An authenticator app being set up belongs to the session that started it: another session
# (someone else holding the password) neither sees its seed nor confirms it, and starting again
# always makes a new seed.
_TOTP_ENROLMENT_KEY = "idp_totp_enrolment"
# The first recovery codes are handed out once, to the session that set up a first factor.
_FIRST_CODES_KEY = "idp_first_recovery_codes"


def totp_enrolment_start(request: HttpRequest, *, user: Any) -> None:
    device = factors.totp_enrol_begin(user=user)
    request.session[_TOTP_ENROLMENT_KEY] = device.pk


def totp_enrolment_pending(request: HttpRequest, *, user: Any) -> Any:
    return factors.totp_pending(user=user, device_id=request.session.get(_TOTP_ENROLMENT_KEY))


def totp_enrolment_confirm(request: HttpRequest, *, user: Any, code: str) -> Any:
    device = factors.totp_confirm(
        user=user, device_id=request.session.get(_TOTP_ENROLMENT_KEY), code=code, actor=audit.Actor.user(user)
    )
    if device is not None:
        request.session.pop(_TOTP_ENROLMENT_KEY, None)
    return device


def first_codes_owed(request: HttpRequest, *, user: Any) -> None:
    """This session set up the user's first factor: it may collect the first recovery codes."""
    request.session[_FIRST_CODES_KEY] = user.pk


def is_locked(request: HttpRequest, user: Any) -> bool:
    return AxesProxyHandler.is_locked(request, credentials={"username": user.get_username()})


def factor_failed(request: HttpRequest, *, user: Any, factor: str) -> None:
    """A wrong second factor: a failed sign-in of this account for django-axes (and the audit)."""
    credentials = {"username": user.get_username(), "factor": factor}
    try:
        auth_signals.user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    except ValueError:
        # django-axes' cache handler adds then increments a counter: a success elsewhere (the
        # same address) that resets it in between makes the increment fail. Once more, anew.
        auth_signals.user_login_failed.send(sender=__name__, credentials=credentials, request=request)


@contextmanager
def second_step_attempt(user: Any) -> Iterator[None]:
    """One attempt at a user's second factor at a time: the user's row is locked from the lockout
    check until the attempt is counted, so simultaneous guesses cannot all pass the check before
    any of them counts (each finds the failures of those before it)."""
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        yield


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
@method_decorator(sensitive_post_parameters("code"), name="dispatch")
class FactorVerifyView(View):
    """Prove a second factor: a code from the authenticator app, a recovery code, or a passkey."""

    template_name = "registration/verify.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        user, pending = second_step_user(request)
        if user is None:
            return HttpResponseRedirect(with_next("login", next_url(request)))
        held = factors.factors_of(user=user)
        if not held.any:
            return HttpResponseRedirect(with_next("mfa-enrol", next_url(request)))
        return self._page(request, held=held, pending=pending)

    def post(self, request: HttpRequest) -> HttpResponse:
        user, pending = second_step_user(request)
        if user is None:
            return HttpResponseRedirect(with_next("login", next_url(request)))
        with second_step_attempt(user):
            return self._attempt(request, user=user, pending=pending)

    def _attempt(self, request: HttpRequest, *, user: Any, pending: Pending | None) -> HttpResponse:
        if is_locked(request, user):
            return signin_locked_out(request, None, None)
        method = request.POST.get("method")
        code = str(request.POST.get("code", ""))[:CODE_MAX]
        held = factors.factors_of(user=user)
        if method == "totp" and held.totp is not None:
            proved = factors.totp_verify(user=user, code=code) is not None
            amr = "otp"
        elif method == "recovery" and held.any:
            proved = factors.recovery_code_use(user=user, code=code)
            amr = "rec"
        else:
            return self._page(request, held=held, pending=pending, error="Choose a way to verify.", status=400)
        if not proved:
            factor_failed(request, user=user, factor=method)
            return self._page(request, held=held, pending=pending, error="That code is not right.", method=method)
        factor_proved(request, user=user, pending=pending, method=amr)
        return HttpResponseRedirect(next_url(request))

    def _page(
        self,
        request: HttpRequest,
        *,
        held: factors.Factors,
        pending: Pending | None,
        error: str = "",
        method: str = "",
        status: int = 200,
    ) -> HttpResponse:
        context = {
            "factors": held,
            "next": next_url(request),
            "error": error,
            "method": method,
            "step_up": pending is None,
        }
        return render(request, self.template_name, context, status=status)


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
@method_decorator(sensitive_post_parameters("code"), name="dispatch")
class FactorEnrolView(View):
    """Set up a first second factor, when one is required and the user has none: an authenticator
    app (QR code and secret, confirmed by its first code) or a passkey. Adding factors beyond the
    first is the security page's (idp.pages.security)."""

    template_name = "registration/enrol.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        user, _pending = second_step_user(request)
        if user is None:
            return HttpResponseRedirect(with_next("login", next_url(request)))
        if factors.user_has_factor(user=user):
            return HttpResponseRedirect(with_next("mfa-verify", next_url(request)))
        return self._page(request, user=user)

    def post(self, request: HttpRequest) -> HttpResponse:
        user, pending = second_step_user(request)
        if user is None:
            return HttpResponseRedirect(with_next("login", next_url(request)))
        if factors.user_has_factor(user=user):
            return HttpResponseRedirect(with_next("mfa-verify", next_url(request)))
        if request.POST.get("action") == "start":
            totp_enrolment_start(request, user=user)
            return HttpResponseRedirect(with_next("mfa-enrol", next_url(request)))
        code = str(request.POST.get("code", ""))[:CODE_MAX]
        device = totp_enrolment_confirm(request, user=user, code=code)
        if device is None:
            return self._page(request, user=user, error="That code is not right. Enter the code your app shows now.")
        factor_proved(request, user=user, pending=pending, method="otp")
        codes = factors.recovery_codes_generate(user=user, actor=audit.Actor.user(user))
        return render(request, "registration/recovery_codes.html", {"codes": codes, "next": next_url(request)})

    def _page(self, request: HttpRequest, *, user: Any, error: str = "") -> HttpResponse:
        device = totp_enrolment_pending(request, user=user)
        context: dict[str, Any] = {"next": next_url(request), "error": error, "device": device}
        if device is not None:
            seed = totp.seed_decrypt(device)
            context["secret"] = totp.seed_base32(seed)
            context["qr_svg"] = totp.qr_svg(totp.provisioning_uri(seed=seed, account=user.get_username()))
        return render(request, self.template_name, context)


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class FirstRecoveryCodesView(View):
    """After a first passkey was set up (idp.mfa.passkeys): the recovery codes, made once, for the
    session that set it up (first_codes_owed), when the user has none yet. POST only: it makes
    codes. Any other session (one signed in with a password alone, say) gets none: with a recovery
    code it could otherwise prove a second factor it does not have."""

    def post(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            return HttpResponseRedirect(with_next("login", next_url(request)))
        user = request.user
        owed = request.session.pop(_FIRST_CODES_KEY, None) == user.pk
        if not owed or not factors.user_has_factor(user=user) or factors.recovery_codes_exist(user=user):
            return HttpResponseRedirect(next_url(request))
        codes = factors.recovery_codes_generate(user=user, actor=audit.Actor.user(user))
        return render(request, "registration/recovery_codes.html", {"codes": codes, "next": next_url(request)})
