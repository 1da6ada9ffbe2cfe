"""Staff pages on the dashboard (/dashboard/) that act on idp's own data: the signing keys, and a
"rotate now" per algorithm. Thin adapters over idp.oauth.keys; the API-key pages are apikeys'.

Only staff holding idp.rotate_signingkey see them (superusers hold every permission): anyone
else signed in gets 403, anyone signed out the sign-in page. Every POST redirects back to the
page with a message (post/redirect/get).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin, PermissionRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache

import audit
from idp.models import SigningKey
from idp.oauth.keys import signing_key_rotate_now, signing_keys_overview


def _duration_text(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


def _time_text(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class KeyChain:
    """One algorithm's keys as the page shows them, in lifecycle order (next, active, retired)."""

    algorithm: str
    keys: list[SigningKey]
    is_configured: bool  # an algorithm dropped from IDP_SIGNING_ALGORITHMS still lists its keys, unrotatable
    next_ready_at: datetime | None  # when the next key may take over, if that is still to come

    @property
    def label(self) -> str:
        return dict(SigningKey.Algorithm.choices).get(self.algorithm, self.algorithm)


def _chains(*, now: datetime) -> list[KeyChain]:
    prepublish = timedelta(seconds=settings.SIGNING_KEY_PREPUBLISH_SECONDS)
    chains = []
    for algorithm, keys in signing_keys_overview().items():
        upcoming = next((key for key in keys if key.status == SigningKey.Status.NEXT), None)
        ready_at = upcoming.created_at + prepublish if upcoming is not None else None
        chains.append(
            KeyChain(
                algorithm=algorithm,
                keys=keys,
                is_configured=algorithm in settings.SIGNING_ALGORITHMS,
                next_ready_at=ready_at if ready_at is not None and ready_at > now else None,
            )
        )
    return chains


class SigningKeyStaffMixin(LoginRequiredMixin, PermissionRequiredMixin):
    """Signed out: the sign-in page. Signed in without staff status and the permission: 403.
    Both are required, so granting the permission to a non-staff account does not open the page."""

    permission_required = "idp.rotate_signingkey"

    def has_permission(self) -> bool:
        return self.request.user.is_staff and super().has_permission()


@method_decorator(never_cache, name="dispatch")
class SigningKeyListView(SigningKeyStaffMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        context = {
            "chains": _chains(now=timezone.now()),
            "prepublish_text": _duration_text(settings.SIGNING_KEY_PREPUBLISH_SECONDS),
        }
        return render(request, "idp/signing_keys.html", context)


@method_decorator(never_cache, name="dispatch")
class SigningKeyRotateView(SigningKeyStaffMixin, View):
    """POST only (GET is a 405). The algorithm comes from the path: anything not configured is a
    404 before the service runs, so an odd segment can neither fail the request nor touch a key."""

    def post(self, request: HttpRequest, algorithm: str) -> HttpResponse:
        if algorithm not in settings.SIGNING_ALGORITHMS:
            raise Http404("no such signing algorithm")
        result = signing_key_rotate_now(algorithm=algorithm, now=timezone.now(), actor=audit.Actor.user(request.user))
        if result.ready_at is not None:
            window = _duration_text(settings.SIGNING_KEY_PREPUBLISH_SECONDS)
            messages.info(
                request,
                f"{algorithm}: the next key has been published for less than {window}; "
                f"it takes over at {_time_text(result.ready_at)}.",
            )
        else:
            assert result.withdraw_previous_at is not None
            messages.success(
                request,
                f"{algorithm}: key {result.rotated_kid} now signs; "
                f"the previous key stays published until {_time_text(result.withdraw_previous_at)}.",
            )
        return redirect("signing-keys")
