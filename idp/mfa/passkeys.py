"""Passkeys and security keys (WebAuthn), through django-otp-webauthn and py_webauthn.

The library's four ceremony views, fitted to our sign-in (idp.mfa.signin) instead of django-otp's
session verification (we run no OTPMiddleware: `user.is_verified` does not exist here):

- Registration is for the signed-in user, or for the pending sign-in's user while that user has no
  factor yet (enrolment during sign-in, which the new passkey then finishes). A user who already
  has a factor adds another only with a second factor proved in the last MFA_FRESH_SECONDS: a
  stolen password, or a stolen session of a password sign-in, cannot add an attacker's passkey.
- Authentication proves a second factor for the pending sign-in, steps a signed-in session up,
  or, for nobody (passwordless, OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN), signs in with a passkey
  that verified its user (PIN or biometrics: the state requires it, py_webauthn enforces it).
  A wrong passkey for a known user is a failed sign-in of that account for django-axes and the
  audit (mfa.challenge_failed), like a wrong code; a locked-out account is refused (429).

Each ceremony's state is bound to whom it began for, and single-use (popped before verifying).
Refusals are 4xx JSON in both shapes: the library's {"detail", "code"} (its scripts show
`detail`) and ours {"error", "error_description"}.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import get_token
from django.utils import timezone
from django_otp_webauthn import exceptions as refusals
from django_otp_webauthn import views as otp_views
from django_otp_webauthn.helpers import WebAuthnHelper
from django_otp_webauthn.models import AbstractWebAuthnCredential
from django_otp_webauthn.utils import rewrite_exceptions
from webauthn.helpers.exceptions import WebAuthnException

import audit
from idp.http.policy import endpoint
from idp.mfa import factors
from idp.mfa.levels import amr_with
from idp.mfa.signin import Pending, pending_get, session_is_fresh, signin_finish
from idp.pages.factors import (
    factor_failed,
    factor_proved,
    first_codes_owed,
    is_locked,
    next_url,
    second_step_attempt,
    second_step_user,
)

# A passwordless sign-in proves no password: it signs in through Django's model backend.
_BACKEND = "django.contrib.auth.backends.ModelBackend"
# The library's session keys (a ceremony begun by its views completes in ours, and the reverse).
_REGISTER_STATE = "otp_webauthn_register_state"
_AUTHENTICATE_STATE = "otp_webauthn_authentication_state"
_CEREMONY = {"rate": "signin", "rate_methods": ("POST",), "cache": "no-store", "errors": "json"}


def _origin(request: HttpRequest) -> str:
    if settings.ISSUER:
        parts = urlsplit(settings.ISSUER)
        return f"{parts.scheme}://{parts.netloc}"
    return f"{request.scheme}://{request.get_host()}"


def relying_party_id(request: HttpRequest) -> str:
    """The WebAuthn relying party id: the issuer's host name (in development, where the issuer is
    the request's own host, that host: WebAuthn needs a name such as localhost, not an address)."""
    return urlsplit(_origin(request)).hostname or "localhost"


def passkey_method(credential: AbstractWebAuthnCredential) -> str:
    """The RFC 8176 amr value of a credential: `swk` for a passkey that syncs between devices
    (backup-eligible), `hwk` for one bound to its device."""
    return "swk" if credential.backup_eligible else "hwk"


class PasskeyHelper(WebAuthnHelper):
    def get_allowed_origins(self) -> list[str]:
        # WebAuthn §7.2 step 9: an assertion made for another origin (a look-alike site relaying
        # the ceremony) is refused: this is what makes a passkey phishing-resistant.
        return [_origin(self.request)]

    def create_credential(self, user: Any, response: Any, parsed_credential: Any, original_data: dict) -> Any:
        credential = super().create_credential(user, response, parsed_credential, original_data)
        # The library leaves the name empty; the user renames it on the security page.
        kind = "Synced passkey" if credential.backup_eligible else "Passkey"
        credential.name = f"{kind} added {timezone.localdate():%Y-%m-%d}"
        return credential


class LockedOut(refusals.OTPWebAuthnApiError):
    status_code = 429
    default_detail = "Too many failed attempts. Try again later."
    default_code = "locked_out"


class _Ceremony:
    """What the four views share: JSON bodies parsed without a 5xx, and refusals in both shapes."""

    request: HttpRequest

    @property
    def data(self) -> Any:
        return self.request.data  # type: ignore[attr-defined]  # set by the library's dispatch

    def _parse_request_data(self, request: HttpRequest) -> Any:
        if (request.content_type or "").split(";", 1)[0] != "application/json":
            return request.POST  # not a JSON object: py_webauthn's parsers refuse it (422)
        if not request.body:
            return {}
        try:
            return json.loads(request.body)
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
            raise refusals.MalformedRequest() from exc

    def handle_exception(self, exc: Exception) -> JsonResponse:
        if not isinstance(exc, refusals.OTPWebAuthnApiError):
            raise exc
        detail = str(exc.detail)
        description = "".join(ch for ch in detail if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\')[:200]
        response = JsonResponse(
            {"error": exc.code, "error_description": description, "detail": detail, "code": exc.code},
            status=exc.status_code,
        )
        if isinstance(exc, LockedOut):
            response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
        return response


@contextmanager
def _verifying(code: str) -> Iterator[None]:
    """py_webauthn's refusals as the library's 422s, including those its mapping misses and
    malformed values that slip past its parsers (a userHandle that is not base64url)."""
    try:
        with rewrite_exceptions(logger=otp_views._get_pywebauthn_logger()):
            yield
    except refusals.OTPWebAuthnApiError:
        raise
    except (WebAuthnException, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise refusals.UnprocessableEntity(code=code, detail="The passkey response is not valid.") from exc


def _state_pop(request: HttpRequest, key: str, *, uid: int | None) -> dict[str, Any]:
    """The ceremony's state, removed before anything is verified (and the removal saved, so a
    failure cannot leave it to be used again), and only for the user it was begun for."""
    state = request.session.pop(key, None)
    request.session.save()
    if not isinstance(state, dict) or state.get("uid") != uid:
        raise refusals.InvalidState()
    return state


# --- Registration --------------------------------------------------------------------------------


def registrant(request: HttpRequest) -> tuple[Any, Pending | None]:
    """Who may register a passkey now: the pending sign-in's user while they have no factor (their
    first, at enrolment), else the signed-in user, who needs a fresh second factor once they have
    one. Raises the library's 403s otherwise."""
    pending = pending_get(request)
    if pending is not None:
        if factors.user_has_factor(user=pending.user):
            raise refusals.NotVerified(detail="Verify it's you with your second factor first.")
        return pending.user, pending
    user = request.user
    if not user.is_authenticated:
        raise refusals.NotAuthenticated()
    if factors.user_has_factor(user=user) and not session_is_fresh(request):
        raise refusals.NotVerified(detail="Confirm it's you with your second factor, then add the passkey.")
    return user, None


class _Registration(_Ceremony):
    def initial(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        # Not the library's: its check calls django-otp's user.is_verified(), which we do not have.
        self.user, self.pending = registrant(request)

    def get_user(self) -> Any:
        return self.user


@endpoint(**_CEREMONY)
class RegistrationBeginView(_Registration, otp_views.BeginCredentialRegistrationView):
    def post(self, *args: Any, **kwargs: Any) -> JsonResponse:
        options, state = self.get_helper().register_begin(user=self.user)
        self.request.session[_REGISTER_STATE] = {**state, "uid": self.user.pk}
        return JsonResponse(options)


@endpoint(**_CEREMONY)
class RegistrationCompleteView(_Registration, otp_views.CompleteCredentialRegistrationView):
    """Saves the passkey and records mfa.enrolled; a pending sign-in it was the first factor of is
    finished with it. No django-otp otp_login: the session's methods are ours (idp.mfa.signin)."""

    def post(self, *args: Any, **kwargs: Any) -> JsonResponse:
        request, user = self.request, self.user
        state = _state_pop(request, _REGISTER_STATE, uid=user.pk)
        first = not factors.user_has_factor(user=user)
        try:
            with transaction.atomic(), _verifying("invalid_registration_response"):
                credential = self.get_helper().register_complete(user=user, state=state, data=self.data)
                factors.passkey_enrolled(user=user, credential=credential, actor=audit.Actor.user(user))
        except IntegrityError as exc:
            # A credential id already registered (to anyone): a client made it up.
            raise refusals.UnprocessableEntity(
                code="credential_exists", detail="This passkey is already registered."
            ) from exc
        if self.pending is not None:
            factor_proved(request, user=user, pending=self.pending, method=passkey_method(credential))
        if first:
            first_codes_owed(request, user=user)  # this session, and no other, collects the first codes
        # The enrolment page goes on to the first recovery codes (a form POST, with this token:
        # signing in rotated the one the page has).
        return JsonResponse({"id": credential.pk, "redirect_url": next_url(request), "csrf_token": get_token(request)})


# --- Authentication ------------------------------------------------------------------------------


class _Authentication(_Ceremony):
    def initial(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        # For the pending sign-in's user (a second factor), the signed-in user (a step-up), or
        # nobody (passwordless): the passkey then names its user, and must verify them.
        self.user, self.pending = second_step_user(request)
        if self.user is None and not settings.OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN:
            raise refusals.PasswordlessLoginDisabled()
        if self.user is not None and is_locked(request, self.user):
            raise LockedOut()

    def get_user(self) -> Any:
        return self.user


@endpoint(**_CEREMONY)
class AuthenticationBeginView(_Authentication, otp_views.BeginCredentialAuthenticationView):
    def post(self, *args: Any, **kwargs: Any) -> JsonResponse:
        options, state = self.get_helper().authenticate_begin(
            user=self.user, require_user_verification=self.user is None
        )
        self.request.session[_AUTHENTICATE_STATE] = {**state, "uid": self.user.pk if self.user else None}
        return JsonResponse(options)


@endpoint(**_CEREMONY)
class AuthenticationCompleteView(_Authentication, otp_views.CompleteCredentialAuthenticationView):
    def post(self, *args: Any, **kwargs: Any) -> JsonResponse:
        if self.user is None:
            return self._complete()
        with second_step_attempt(self.user):  # one attempt at a time per user (idp.pages.factors)
            # A refusal is answered from inside, not raised through: the attempt's transaction
            # keeps what it recorded (the failure, the spent ceremony state).
            try:
                if is_locked(self.request, self.user):
                    raise LockedOut()
                return self._complete()
            except refusals.OTPWebAuthnApiError as refused:
                return self.handle_exception(refused)

    def _complete(self) -> JsonResponse:
        request, user = self.request, self.user
        try:
            state = _state_pop(request, _AUTHENTICATE_STATE, uid=user.pk if user else None)
            with _verifying("invalid_authentication_response"):
                # Refuses a credential of anyone but `user` (CredentialUserMismatch).
                credential = self.get_helper().authenticate_complete(user=user, state=state, data=self.data)
            self.check_device_usable(credential)  # confirmed, and its user active
        except refusals.OTPWebAuthnApiError:
            if user is not None:
                # Counted against the account being signed in to, as a wrong code is. A failed
                # passwordless attempt names nobody: a made-up credential id must not lock anyone out.
                factor_failed(request, user=user, factor="webauthn")
            raise
        method = passkey_method(credential)
        if user is None:
            if is_locked(request, credential.user):
                raise LockedOut()
            signin_finish(request, user=credential.user, backend=_BACKEND, amr=amr_with([method, "user"]))
        else:
            factor_proved(request, user=user, pending=self.pending, method=method)
        return JsonResponse({"id": credential.pk, "redirect_url": next_url(request)})
