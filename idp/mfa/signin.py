"""The sign-in that waits for its second factor, and what a session proved.

After the password, a user who has a second factor (or must have one) is not signed in: the
session holds a *pending sign-in* (the user, the methods so far, when) for MFA_PENDING_SECONDS,
and Django's auth.login runs only once the factor is proved (signin_finish). Nothing that needs a
signed-in user, an authorization code above all, can be had before then.

A signed-in session keeps how it authenticated (`idp_auth`: amr and auth_time, idp.mfa.levels);
a step-up adds a factor to it. Authorization codes carry it to tokens (idp.oauth.validator).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare

import audit
from idp.mfa.levels import Authentication, Level, amr_with

PENDING_KEY = "idp_pending_signin"
AUTH_KEY = "idp_auth"


@dataclass(frozen=True)
class Pending:
    user: Any
    backend: str
    amr: tuple[str, ...]


def pending_start(request: HttpRequest, *, user: Any, backend: str, amr: list[str]) -> None:
    """Hold a sign-in that passed its first factor. A new session key, as auth.login would give:
    whoever planted the session id before cannot ride on it."""
    if request.user.is_authenticated and request.user.pk != user.pk:
        auth.logout(request)  # someone else's session: it ends here, as auth.login would end it
    request.session.cycle_key()
    request.session[PENDING_KEY] = {
        "uid": user.pk,
        "backend": backend,
        "amr": list(amr),
        "at": timezone.now().timestamp(),
        "hash": user.get_session_auth_hash(),
    }


def pending_get(request: HttpRequest) -> Pending | None:
    """This session's pending sign-in, if it is recent and its user can still sign in (active,
    password unchanged since)."""
    held = request.session.get(PENDING_KEY)
    if not isinstance(held, dict):
        return None
    at = held.get("at")
    if not isinstance(at, int | float) or timezone.now().timestamp() - at > settings.MFA_PENDING_SECONDS:
        pending_clear(request)
        return None
    uid = held.get("uid")
    if not isinstance(uid, int):
        pending_clear(request)
        return None
    user = get_user_model().objects.filter(pk=uid, is_active=True).first()
    if user is None or not constant_time_compare(str(held.get("hash", "")), user.get_session_auth_hash()):
        pending_clear(request)
        return None
    return Pending(user=user, backend=str(held.get("backend")), amr=tuple(held.get("amr") or ()))


def pending_clear(request: HttpRequest) -> None:
    request.session.pop(PENDING_KEY, None)


def signin_finish(request: HttpRequest, *, user: Any, backend: str, amr: list[str]) -> None:
    """Sign the user in, with the methods used: the audit event (login.succeeded) names them."""
    request.idp_amr = amr  # type: ignore[attr-defined]  # read by idp.pages.signin.on_logged_in
    auth.login(request, user, backend=backend)
    # auth_time is the sign-in Django just recorded (last_login), to the microsecond.
    signed_in_at = user.last_login or timezone.now()
    request.session[AUTH_KEY] = Authentication(amr=tuple(amr), auth_time=signed_in_at).as_session()
    pending_clear(request)


def session_authentication(request: HttpRequest) -> Authentication | None:
    """How this session's user authenticated; None when nobody is signed in. A session signed in
    before second factors existed (or by a path that did not record it) counts as a password at
    its user's last sign-in."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    known = Authentication.from_session(request.session.get(AUTH_KEY))
    if known is not None:
        return known
    at: datetime = user.last_login or timezone.now()
    return Authentication(amr=("pwd",), auth_time=at)


def session_is_fresh(request: HttpRequest) -> bool:
    """Whether this session proved a second factor within MFA_FRESH_SECONDS: what changing one's
    factors needs (the security page, adding a passkey) once one has any."""
    authentication = session_authentication(request)
    if authentication is None or authentication.level < Level.MFA:
        return False
    return (timezone.now() - authentication.auth_time).total_seconds() <= settings.MFA_FRESH_SECONDS


def step_up(request: HttpRequest, *, method: str) -> Authentication:
    """A signed-in session proved one more factor: its methods grow, and it authenticated now."""
    before = session_authentication(request)
    assert before is not None  # noqa: S101 - only for a signed-in session
    after = Authentication(amr=tuple(amr_with(before.amr, method)), auth_time=timezone.now())
    request.session[AUTH_KEY] = after.as_session()
    user = request.user
    audit.record(
        audit.Action.LOGIN_SUCCEEDED,
        actor=audit.Actor.user(user),
        target=audit.Target.user(user),
        data={"methods": list(after.amr), "acr": after.acr, "step_up": True},
    )
    return after
