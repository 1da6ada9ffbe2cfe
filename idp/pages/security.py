"""The dashboard's security page (/dashboard/security/): the signed-in user's second factors, and
managing them. Thin adapters over idp.mfa.factors.

Every change to someone's factors (adding an authenticator app, removing one, renaming or
removing a passkey, new recovery codes) needs a second factor proved recently when they have one
(idp.mfa.signin.session_is_fresh: level MFA within MFA_FRESH_SECONDS); otherwise the change is not made and the
browser goes to the second step (mfa-verify), which comes back here. A user with no factor sets up
their first with a signed-in session only. GETs change nothing; every POST either redirects back
with a message (post/redirect/get) or, for new recovery codes, answers with them once (no-store).
A device that is not the user's is a 404, as one that does not exist.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

import audit
from idp.http.policy import endpoint
from idp.mfa import factors, totp
from idp.mfa.signin import session_is_fresh, step_up
from idp.pages.factors import CODE_MAX, totp_enrolment_confirm, totp_enrolment_pending, totp_enrolment_start, with_next

PASSKEY_NAME_MAX = 64  # WebAuthnCredential.name (django-otp's Device.name) holds 64


def may_change_factors(request: HttpRequest) -> bool:
    """A user with a factor changes factors only with a fresh one; a user without sets up a first."""
    return session_is_fresh(request) or not factors.user_has_factor(user=request.user)


def _to_page() -> HttpResponseRedirect:
    return redirect("security")


def _to_verify() -> HttpResponseRedirect:
    return HttpResponseRedirect(with_next("mfa-verify", reverse("security")))


def _page(request: HttpRequest, *, status: int = 200) -> HttpResponse:
    user = request.user
    held = factors.factors_of(user=user)
    context: dict[str, Any] = {
        "factors": held,
        "fresh": session_is_fresh(request),
        "passkey_name_max": PASSKEY_NAME_MAX,
        "pending": None,
    }
    pending = totp_enrolment_pending(request, user=user) if held.totp is None else None
    if pending is not None:
        seed = totp.seed_decrypt(pending)
        context["pending"] = pending
        context["secret"] = totp.seed_base32(seed)
        context["qr_svg"] = totp.qr_svg(totp.provisioning_uri(seed=seed, account=user.get_username()))
    return render(request, "registration/security.html", context, status=status)


@sensitive_variables("codes")
def _show_codes(request: HttpRequest, codes: list[str]) -> HttpResponse:
    """The one response holding the new recovery codes: no-store, so no cache or back button keeps them."""
    response = render(request, "registration/security_recovery_codes.html", {"codes": codes})
    add_never_cache_headers(response)
    return response


class PasskeyNameForm(forms.Form):
    name = forms.CharField(max_length=PASSKEY_NAME_MAX, strip=True)

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise forms.ValidationError("A name cannot hold control characters.")
        return name


@endpoint(cache="no-store")
class SecurityView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return _page(request)


class SecurityActionView(LoginRequiredMixin, View):
    """POST only (a GET is a 405): checks the factor is fresh (or that this is a first factor)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST" and request.user.is_authenticated and not may_change_factors(request):
            messages.info(request, "Confirm it is you with your second factor first, then try again.")
            return _to_verify()
        return super().dispatch(request, *args, **kwargs)


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class AppStartView(SecurityActionView):
    """A new authenticator app, waiting for its first code (the page shows its QR code and secret)."""

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            totp_enrolment_start(request, user=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        return _to_page()


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
@method_decorator(sensitive_post_parameters("code"), name="dispatch")
class AppConfirmView(SecurityActionView):
    """The app's first code confirms it, and counts as the second factor it is (the session steps
    up). A first factor comes with the user's recovery codes, shown in the answer."""

    @method_decorator(sensitive_variables("codes"))
    def post(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if totp_enrolment_pending(request, user=user) is None:
            messages.error(request, "Start setting up an authenticator app first.")
            return _to_page()
        code = str(request.POST.get("code", ""))[:CODE_MAX]
        device = totp_enrolment_confirm(request, user=user, code=code)
        if device is None:
            messages.error(request, "That code is not right. Enter the code your app shows now.")
            return _page(request, status=400)
        step_up(request, method="otp")
        if not factors.recovery_codes_exist(user=user):
            messages.success(request, "Your authenticator app is set up.")
            codes = factors.recovery_codes_generate(user=user, actor=audit.Actor.user(user))
            return _show_codes(request, codes)
        messages.success(request, "Your authenticator app is set up.")
        return _to_page()


def _removal_refused(request: HttpRequest, error: ValidationError) -> HttpResponse:
    if getattr(error, "code", None) == "last_factor":
        messages.error(
            request,
            "This is your last second factor, and your account must have one: add another before removing it.",
        )
    else:
        messages.error(request, " ".join(error.messages))
    return _to_page()


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class AppRemoveView(SecurityActionView):
    def post(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        app = factors.factors_of(user=user).totp
        if app is None:
            raise Http404("no authenticator app")
        try:
            factors.factor_remove(user=user, factor="totp", device_id=app.pk, actor=audit.Actor.user(user))
        except ValidationError as error:
            return _removal_refused(request, error)
        except ObjectDoesNotExist:
            raise Http404("no authenticator app") from None
        messages.success(request, "Your authenticator app is removed.")
        return _to_page()


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class PasskeyRenameView(SecurityActionView):
    def post(self, request: HttpRequest, credential_id: int) -> HttpResponse:
        form = PasskeyNameForm(request.POST)
        if not form.is_valid():
            for error in form.errors.get("name", []):
                messages.error(request, f"The passkey was not renamed: {error}")
            return _page(request, status=400)
        try:
            factors.passkey_rename(
                user=request.user,
                credential_id=credential_id,
                name=form.cleaned_data["name"],
                actor=audit.Actor.user(request.user),
            )
        except ObjectDoesNotExist:
            raise Http404("no such passkey") from None
        messages.success(request, "The passkey is renamed.")
        return _to_page()


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class PasskeyRemoveView(SecurityActionView):
    def post(self, request: HttpRequest, credential_id: int) -> HttpResponse:
        user = request.user
        try:
            factors.factor_remove(user=user, factor="webauthn", device_id=credential_id, actor=audit.Actor.user(user))
        except ValidationError as error:
            return _removal_refused(request, error)
        except ObjectDoesNotExist:
            raise Http404("no such passkey") from None
        messages.success(request, "The passkey is removed.")
        return _to_page()


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class RecoveryCodesView(SecurityActionView):
    """A new set of recovery codes (the old set stops working), shown once in the answer."""

    @method_decorator(sensitive_variables("codes"))
    def post(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if not factors.user_has_factor(user=user):
            messages.error(request, "Recovery codes stand in for a second factor: set one up first.")
            return _to_page()
        codes = factors.recovery_codes_generate(user=user, actor=audit.Actor.user(user))
        return _show_codes(request, codes)
