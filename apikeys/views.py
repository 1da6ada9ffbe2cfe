"""The API-key dashboard (/dashboard/): pages for signed-in people, thin adapters over
apikeys.selectors and apikeys.services.

A raw key exists only in the response to the POST that made or revealed it (create, rotate,
reveal): never in the session, a message, the cache or a redirect, and that response is no-store.
Every other POST redirects to the list with a message (post/redirect/get).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables

import audit
from accounts.models import User
from accounts.selectors import Caller, caller_for_person
from apikeys.forms import ApiKeyCreateForm, ApiKeyRevokeForm, ApiKeyScheduleForm, form_add_service_error
from apikeys.models import ApiKey, KeyState
from apikeys.selectors import apikey_get_for, apikey_list_for, apikey_manageable_by, apikeys_managed_by
from apikeys.services import (
    apikey_create,
    apikey_reveal,
    apikey_revoke,
    apikey_role_choices,
    apikey_rotate,
    apikey_schedule,
    apikey_scope_choices,
)

KEYS_PER_PAGE = 50


def _person_caller(request: HttpRequest) -> Caller:
    """The signed-in person as the services' caller (every view here requires signing in)."""
    return caller_for_person(user=cast(User, request.user))


def _duration_text(duration: timedelta) -> str:
    hours = int(duration.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        days = hours // 24
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


@dataclass(frozen=True)
class KeyRow:
    """One key as the list shows it to one viewer, with the actions that viewer may take."""

    key: ApiKey
    state: KeyState
    can_manage: bool
    replaces: str  # the predecessor's public id, if the key came from a rotation
    has_pending_secret: bool  # ApiKey.has_revealable_secret

    @property
    def successor(self) -> ApiKey | None:
        return getattr(self.key, "successor", None)  # a reverse one-to-one raises when there is none

    @property
    def is_live(self) -> bool:
        return self.state in (KeyState.ACTIVE, KeyState.GRACE)

    @property
    def can_rotate(self) -> bool:
        return self.can_manage and self.state == KeyState.ACTIVE

    @property
    def can_reveal(self) -> bool:
        return self.can_manage and self.has_pending_secret

    @property
    def has_actions(self) -> bool:
        return self.can_reveal or self.can_rotate or self.is_live

    @property
    def rotate_every_text(self) -> str:
        return _duration_text(self.key.rotate_every) if self.key.rotate_every else ""

    @property
    def grace_text(self) -> str:
        return _duration_text(self.key.grace_period)


def _key_rows(keys: list[ApiKey], *, user: Any, now: datetime) -> list[KeyRow]:
    manages_keys = apikeys_managed_by(user=user)
    return [
        KeyRow(
            key=key,
            state=key.state(now),
            can_manage=apikey_manageable_by(key=key, user=user, manages_keys=manages_keys),
            replaces=key.rotated_from.public_id if key.rotated_from is not None else "",
            has_pending_secret=key.has_revealable_secret(now),
        )
        for key in keys
    ]


def _visible_key(request: HttpRequest, key_id: int) -> ApiKey:
    """The key if the viewer may see it: 404 alike for missing and not theirs."""
    try:
        return apikey_get_for(user=request.user, key_id=key_id)
    except ApiKey.DoesNotExist:
        raise Http404("no such key") from None


def _manageable_key(request: HttpRequest, key_id: int) -> ApiKey:
    """The key if the viewer may rotate, reveal and schedule it; a key manager may see a user's key
    but never its secrets, so that is a 403."""
    key = _visible_key(request, key_id)
    if not apikey_manageable_by(key=key, user=request.user):
        raise PermissionDenied("only the key's owner can do this")
    return key


def _to_list() -> HttpResponseRedirect:
    return redirect("apikeys:list")


@sensitive_variables("secret")
def _show_once(request: HttpRequest, *, key: ApiKey, secret: str, heading: str) -> HttpResponse:
    """The one response that holds a raw key. no-store: neither the browser's cache nor a proxy
    may keep it, and the back button cannot bring it back."""
    response = render(request, "apikeys/apikey_secret.html", {"key": key, "secret": secret, "heading": heading})
    add_never_cache_headers(response)
    return response


@method_decorator(never_cache, name="dispatch")
class ApiKeyListView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        keys = apikey_list_for(user=request.user)
        page = Paginator(keys, KEYS_PER_PAGE).get_page(request.GET.get("page"))
        rows = _key_rows(list(page.object_list), user=request.user, now=timezone.now())
        context = {"page": page, "rows": rows, "manages_keys": apikeys_managed_by(user=request.user)}
        return render(request, "apikeys/apikey_list.html", context)


@method_decorator(never_cache, name="dispatch")
class ApiKeyCreateView(LoginRequiredMixin, View):
    def _form(self, request: HttpRequest, data: Any = None) -> ApiKeyCreateForm:
        return ApiKeyCreateForm(
            data,
            scope_choices=apikey_scope_choices(),
            role_choices=apikey_role_choices(user=request.user),
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "apikeys/apikey_create.html", {"form": self._form(request)})

    @method_decorator(sensitive_variables("issued"))
    def post(self, request: HttpRequest) -> HttpResponse:
        form = self._form(request, request.POST)
        if form.is_valid():
            data = form.cleaned_data
            now = timezone.now()
            try:
                issued = apikey_create(
                    name=data["name"],
                    caller=_person_caller(request),
                    user=request.user,
                    scopes=data["scopes"],
                    role_ids=data["roles"],
                    expires_at=now + timedelta(days=data["expires_in_days"]) if data["expires_in_days"] else None,
                    rotate_every=timedelta(days=data["rotate_every_days"]) if data["rotate_every_days"] else None,
                    grace_period=timedelta(hours=data["grace_hours"]),
                    now=now,
                )
            except ValidationError as error:
                form_add_service_error(form, error)
            else:
                return _show_once(request, key=issued.key, secret=issued.secret, heading="Your new API key")
        return render(request, "apikeys/apikey_create.html", {"form": form}, status=400)


@method_decorator(never_cache, name="dispatch")
class ApiKeyRotateView(LoginRequiredMixin, View):
    @method_decorator(sensitive_variables("issued"))
    def post(self, request: HttpRequest, key_id: int) -> HttpResponse:
        key = _manageable_key(request, key_id)
        try:
            issued = apikey_rotate(key_id=key.pk, caller=_person_caller(request))
        except ValidationError as error:
            messages.error(request, f"{key.public_id} was not rotated: {' '.join(error.messages)}")
            return _to_list()
        return _show_once(request, key=issued.key, secret=issued.secret, heading="Key rotated: here is its successor")


@method_decorator(never_cache, name="dispatch")
class ApiKeyRevealView(LoginRequiredMixin, View):
    @method_decorator(sensitive_variables("secret"))
    def post(self, request: HttpRequest, key_id: int) -> HttpResponse:
        key = _manageable_key(request, key_id)
        try:
            secret = apikey_reveal(key_id=key.pk, caller=_person_caller(request))
        except ValidationError as error:
            messages.error(request, f"{key.public_id}: {' '.join(error.messages)}")
            return _to_list()
        return _show_once(request, key=key, secret=secret, heading="Your rotated API key")


@method_decorator(never_cache, name="dispatch")
class ApiKeyScheduleView(LoginRequiredMixin, View):
    def _render(self, request: HttpRequest, key: ApiKey, form: ApiKeyScheduleForm, status: int = 200) -> HttpResponse:
        return render(request, "apikeys/apikey_schedule.html", {"key": key, "form": form}, status=status)

    def get(self, request: HttpRequest, key_id: int) -> HttpResponse:
        key = _manageable_key(request, key_id)
        every = key.rotate_every
        whole_days = every is not None and every.total_seconds() % 86400 == 0
        initial = {
            "rotate_every_days": every.days if every is not None and whole_days else None,
            "grace_hours": int(key.grace_period.total_seconds() // 3600),
        }
        return self._render(request, key, ApiKeyScheduleForm(initial=initial))

    def post(self, request: HttpRequest, key_id: int) -> HttpResponse:
        key = _manageable_key(request, key_id)
        form = ApiKeyScheduleForm(request.POST)
        if form.is_valid():
            days = form.cleaned_data["rotate_every_days"]
            try:
                key = apikey_schedule(
                    key_id=key.pk,
                    actor=audit.Actor.user(request.user),
                    rotate_every=timedelta(days=days) if days else None,
                    grace_period=timedelta(hours=form.cleaned_data["grace_hours"]),
                )
            except ValidationError as error:
                form_add_service_error(form, error)
            else:
                if key.next_rotation_at is not None:
                    assert key.rotate_every is not None  # apikey_schedule plans a rotation only with a period
                    text = f"{key.public_id} now rotates every {_duration_text(key.rotate_every)}."
                else:
                    text = f"{key.public_id} now rotates only by hand."
                messages.success(request, text)
                return _to_list()
        return self._render(request, key, form, status=400)


@method_decorator(never_cache, name="dispatch")
class ApiKeyRevokeView(LoginRequiredMixin, View):
    """Owners revoke their keys; a holder of idp.apikeys.manage may revoke any key."""

    def get(self, request: HttpRequest, key_id: int) -> HttpResponse:
        key = _visible_key(request, key_id)
        return render(request, "apikeys/apikey_revoke.html", {"key": key, "form": ApiKeyRevokeForm()})

    def post(self, request: HttpRequest, key_id: int) -> HttpResponse:
        key = _visible_key(request, key_id)
        form = ApiKeyRevokeForm(request.POST)
        if not form.is_valid():
            return render(request, "apikeys/apikey_revoke.html", {"key": key, "form": form}, status=400)
        already = key.revoked_at is not None
        apikey_revoke(key_id=key.pk, actor=audit.Actor.user(request.user), reason=form.cleaned_data["reason"])
        if already:
            messages.info(request, f"{key.public_id} was already revoked.")
        else:
            messages.success(request, f"{key.public_id} is revoked: it no longer works.")
        return _to_list()
