"""Account self-service pages: password reset by e-mail, password change, the e-mail address and
its verification, self-registration. Adapters over Django's own auth views and forms (subclassed
at their seams) and accounts.services; the mails are sent by Celery tasks (accounts.tasks).

- Reset (/accounts/password/reset/): the request only enqueues the task that looks the address up,
  so the answer (and the work behind it) is the same whether an account has it or not; limited per
  client address (group reset) and per e-mail address named (reset.address). The link, built from
  the issuer, leads to Django's PasswordResetConfirmView: single-use, expiring, never a sign-in.
- Change (/dashboard/password/) and the address (/dashboard/account/): the current password again,
  checked through django-axes' authenticate (wrong ones count toward the sign-in lockout), and a
  fresh second factor when the user has one (idp.mfa.signin.session_is_fresh, as the security page).
- A password set by either ends every other session of the user and revokes their tokens
  (_other_sessions_end, through idp.sessions.services); the session that changed it stays signed
  in, a reset signs nobody in.
- Registration (/accounts/register/) answers 404 unless settings.SELF_REGISTRATION.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm, PasswordResetForm, SetPasswordForm
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.password_validation import password_validators_help_text_html
from django.contrib.auth.views import (
    INTERNAL_RESET_SESSION_TOKEN,
    PasswordResetConfirmView,
    PasswordResetView,
)
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode
from django.views import View
from django.views.decorators.debug import sensitive_post_parameters

import audit
from accounts import services
from accounts.models import User
from accounts.tokens import TOKEN_MAX, email_verification_token
from audit.context import client_ip
from idp.http.policy import endpoint
from idp.http.ratelimit import spend, too_many_requests
from idp.mfa import factors
from idp.mfa.signin import session_is_fresh
from idp.oauth.tokens import user_tokens_revoke
from idp.pages.factors import with_next
from idp.sessions.services import user_sessions_end

EMAIL_MAX = 254  # RFC 5321's path limit, and Django's EmailField
PASSWORD_MAX = 1024  # longer than any password anyone types: hashing more is only work for an attacker


def _other_sessions_end(request: HttpRequest, user: Any, reason: str) -> None:
    """The user's password changed: every other session of theirs ends (signed out, its tokens
    revoked, its applications told: idp.sessions.services), and so do their tokens issued
    outside any browser session. The request's own session stays signed in when it is the user's
    (the change page; update_session_auth_hash has given it a new key already)."""
    own = request.user.is_authenticated and request.user.pk == user.pk
    with transaction.atomic():
        user_sessions_end(
            user_id=user.pk,
            actor=audit.Actor.user(user),
            reason=reason,
            keep_session_key=request.session.session_key if own else None,
        )
        user_tokens_revoke(user_id=user.pk, actor=audit.Actor.user(user), reason=reason, session_id="", id_tokens=True)


def _me(request: HttpRequest) -> User:
    """The signed-in user (the views using it require one)."""
    return cast(User, request.user)


def _password_help() -> str:
    return password_validators_help_text_html()


# --- Password reset ----------------------------------------------------------------------------------


class ResetRequestForm(PasswordResetForm):
    email = forms.EmailField(label="E-mail address", max_length=EMAIL_MAX, widget=forms.EmailInput())


@endpoint(rate="reset", rate_methods=("POST",), cache="no-store")
class ResetRequestView(PasswordResetView):
    form_class = ResetRequestForm
    http_method_names = ["get", "post"]  # FormView would take a PUT for a POST
    template_name = "registration/password_reset_form.html"
    success_url = reverse_lazy("password-reset-done")

    def form_valid(self, form: ResetRequestForm) -> HttpResponse:
        # Every request spends its address's allowance, whether an account has it or not.
        email = form.cleaned_data["email"]
        refusal = spend("reset.address", email.lower())
        if refusal is not None:
            return too_many_requests(refusal)
        services.password_reset_enqueue(email=email, source_ip=client_ip(self.request))
        return HttpResponseRedirect(self.get_success_url())

    def form_invalid(self, form: ResetRequestForm) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=form), status=400)


class ResetPasswordForm(SetPasswordForm):
    """Django's form, with sizes bounded before anything hashes them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("new_password1", "new_password2"):
            field = cast(forms.CharField, self.fields[name])
            field.max_length = PASSWORD_MAX
            field.widget.attrs["maxlength"] = str(PASSWORD_MAX)


@endpoint(rate="reset", cache="no-store")
@method_decorator(sensitive_post_parameters("new_password1", "new_password2"), name="dispatch")
class ResetConfirmView(PasswordResetConfirmView):
    """Django's view: the link's token moves into the session, then the new password. A forged,
    expired or used link is a 400 page saying so, recorded (password.reset_link_refused)."""

    form_class = ResetPasswordForm
    http_method_names = ["get", "post"]
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password-reset-complete")
    post_reset_login = False  # the user signs in again, second factor included

    def get_user(self, uidb64: str) -> Any:
        if len(uidb64) > 32:
            return None
        return super().get_user(uidb64)

    def dispatch(self, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if len(str(kwargs.get("token", ""))) > TOKEN_MAX:
            kwargs["token"] = "-"
        response = super().dispatch(*args, **kwargs)
        if not self.validlink and response.status_code == 200:  # the "link is invalid" page
            audit.record(
                audit.Action.PASSWORD_RESET_LINK_REFUSED,
                actor=audit.Actor.anonymous(),
                target=audit.Target.user(self.user) if self.user is not None else None,
                outcome="failure",
            )
            response.status_code = 400
        return response

    def form_valid(self, form: ResetPasswordForm) -> HttpResponse:
        user = services.user_password_set(
            user_id=self.user.pk,
            password=form.cleaned_data["new_password1"],
            actor=audit.Actor.user(self.user),
            via="reset_link",
        )
        self.request.session.pop(INTERNAL_RESET_SESSION_TOKEN, None)
        _other_sessions_end(self.request, user, reason="password_reset")
        return HttpResponseRedirect(self.get_success_url())

    def form_invalid(self, form: ResetPasswordForm) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=form), status=400)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(**kwargs) | {"password_help": _password_help()}


# --- The signed-in user's password and address ---------------------------------------------------------


class FreshFactorRequiredMixin(LoginRequiredMixin):
    """A user with a second factor proves it recently (session_is_fresh) before this page: the
    browser goes to the second step, which comes back here, as the security page does."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if user.is_authenticated and not session_is_fresh(request) and factors.user_has_factor(user=user):
            if request.method == "POST":
                messages.info(request, "Confirm it is you with your second factor first, then try again.")
            return HttpResponseRedirect(with_next("mfa-verify", request.path))
        return super().dispatch(request, *args, **kwargs)


def _password_confirmed(request: HttpRequest, password: str) -> bool:
    """The signed-in user's password, checked as a sign-in checks it: through django-axes, so a
    wrong one counts toward the lockout of the username and of the address (and is recorded as
    login.failed), and a locked-out user is refused whatever they type."""
    user = request.user
    return authenticate(request, username=user.get_username(), password=password) is not None


class ChangePasswordForm(PasswordChangeForm):
    def __init__(self, user: Any, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.request = request
        for name in ("old_password", "new_password1", "new_password2"):
            field = cast(forms.CharField, self.fields[name])
            field.max_length = PASSWORD_MAX
            field.widget.attrs["maxlength"] = str(PASSWORD_MAX)

    def clean_old_password(self) -> str:
        old_password: str = self.cleaned_data["old_password"]
        if not _password_confirmed(self.request, old_password):
            raise ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


@endpoint(rate="account", rate_methods=("POST",), cache="no-store")
@method_decorator(sensitive_post_parameters("old_password", "new_password1", "new_password2"), name="dispatch")
class PasswordChangePageView(FreshFactorRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return self._page(ChangePasswordForm(request.user, request=request))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ChangePasswordForm(request.user, request.POST, request=request)
        if not form.is_valid():
            return self._page(form, status=400)
        user = services.user_password_set(
            user_id=_me(request).pk,
            password=form.cleaned_data["new_password1"],
            actor=audit.Actor.user(request.user),
            via="change",
        )
        update_session_auth_hash(request, user)  # this session stays signed in; the others end
        _other_sessions_end(request, user, reason="password_changed")
        messages.success(request, "Your password is changed. You are signed out everywhere else.")
        return redirect("account")

    def _page(self, form: ChangePasswordForm, *, status: int = 200) -> HttpResponse:
        context = {"form": form, "password_help": _password_help()}
        return render(self.request, "registration/password_change.html", context, status=status)


class EmailChangeForm(forms.Form):
    email = forms.EmailField(label="New e-mail address", max_length=EMAIL_MAX)
    password = forms.CharField(label="Your password", max_length=PASSWORD_MAX, strip=False)


def _account_page(request: HttpRequest, form: EmailChangeForm | None = None, *, status: int = 200) -> HttpResponse:
    context = {"email_form": form or EmailChangeForm(), "self_registration": settings.SELF_REGISTRATION}
    return render(request, "registration/account.html", context, status=status)


@endpoint(cache="no-store")
class AccountView(LoginRequiredMixin, View):
    """The signed-in user's address (verified or not) and the ways to change it and the password."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return _account_page(request)


@endpoint(rate="account", rate_methods=("POST",), cache="no-store")
@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class EmailChangeView(FreshFactorRequiredMixin, View):
    """POST only: a new address, after the password; unverified until its link is followed."""

    def post(self, request: HttpRequest) -> HttpResponse:
        form = EmailChangeForm(request.POST)
        if not form.is_valid():
            return _account_page(request, form, status=400)
        if not _password_confirmed(request, form.cleaned_data["password"]):
            form.add_error("password", "Your password is not right.")
            return _account_page(request, form, status=400)
        try:
            services.user_email_change(
                user_id=_me(request).pk, email=form.cleaned_data["email"], actor=audit.Actor.user(request.user)
            )
        except ValidationError as error:
            for message in getattr(error, "message_dict", {}).get("email", error.messages):
                form.add_error("email", message)
            return _account_page(request, form, status=400)
        messages.success(request, "Your e-mail address is changed. Follow the link we sent to it to verify it.")
        return redirect("account")


@endpoint(rate="resend", rate_methods=("POST",), cache="no-store")
class VerificationResendView(LoginRequiredMixin, View):
    """POST only: the verification link of the user's address, again (resend.user, resend.ip)."""

    def post(self, request: HttpRequest) -> HttpResponse:
        user = _me(request)
        if user.email and not user.email_verified:
            with transaction.atomic():
                services.email_verification_enqueue(user_id=user.pk)
            messages.success(request, f"We sent a new verification link to {user.email}.")
        else:
            messages.info(request, "Your e-mail address needs no verification.")
        return redirect("account")


# --- E-mail verification links ---------------------------------------------------------------------


def _link_user(uidb64: str) -> User | None:
    if len(uidb64) > 32:
        return None
    try:
        return User.objects.filter(pk=int(force_str(urlsafe_base64_decode(uidb64))), is_active=True).first()
    except (TypeError, ValueError, OverflowError):
        return None


@endpoint(rate="reset", cache="no-store")
class EmailVerifyView(View):
    """The link from the verification mail. A GET only shows a button (mail scanners follow links);
    the POST verifies. Single-use: verifying spends the link, and a changed address voids it."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = _link_user(kwargs["uidb64"])
        token = str(kwargs["token"])
        if user is None or not email_verification_token.check_token(user, token):
            audit.record(
                audit.Action.EMAIL_VERIFICATION_LINK_REFUSED,
                actor=audit.Actor.anonymous(),
                target=audit.Target.user(user) if user is not None else None,
                outcome="failure",
            )
            return render(request, "registration/email_verify.html", {"validlink": False}, status=400)
        self.user = user
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
        return render(request, "registration/email_verify.html", {"validlink": True, "email": self.user.email})

    def post(self, request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
        services.user_email_verify(
            user_id=self.user.pk, email=self.user.email, actor=audit.Actor.user(self.user), via="link"
        )
        return render(request, "registration/email_verify.html", {"verified": True, "email": self.user.email})


# --- Self-registration -------------------------------------------------------------------------------


class RegistrationForm(forms.Form):
    username = forms.CharField(label="Username", max_length=150)
    email = forms.EmailField(label="E-mail address", max_length=EMAIL_MAX)
    password1 = forms.CharField(label="Password", max_length=PASSWORD_MAX, strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(
        label="Password again", max_length=PASSWORD_MAX, strip=False, widget=forms.PasswordInput
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") and data.get("password2") and data["password1"] != data["password2"]:
            self.add_error("password2", "The two passwords differ.")
        return data


def _registration_on() -> None:
    if not settings.SELF_REGISTRATION:
        raise Http404("self-registration is off")


@endpoint(rate="register", rate_methods=("POST",), cache="no-store")
@method_decorator(sensitive_post_parameters("password1", "password2"), name="dispatch")
class RegisterView(View):
    """A new account, or (for an address that has one) a notice mailed to that account: the same
    answer either way, "check your e-mail"."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        _registration_on()
        if request.user.is_authenticated and request.method in ("GET", "POST"):
            return redirect("account")  # signed in: there is an account already
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._page(RegistrationForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = RegistrationForm(request.POST)
        if not form.is_valid():
            return self._page(form, status=400)
        try:
            services.user_register(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
        except ValidationError as error:
            for field, found in error.message_dict.items():
                name = {"password": "password1"}.get(field, field)
                for message in found:
                    form.add_error(name if name in form.fields else None, message)
            return self._page(form, status=400)
        return HttpResponseRedirect(reverse("register-done"))

    def _page(self, form: RegistrationForm, *, status: int = 200) -> HttpResponse:
        context = {"form": form, "password_help": _password_help()}
        return render(self.request, "registration/register.html", context, status=status)


@endpoint(cache="no-store")
class RegisterDoneView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        _registration_on()
        return render(request, "registration/register_done.html")
