"""Django admin's site, with our sign-in in front of it: its own login form would sign staff in
with a password alone. Staff and superusers reach it only with a second factor in the session
(idp.mfa.policy): a session below that level is sent to the second step first."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from idp.mfa.policy import level_required
from idp.mfa.signin import session_authentication


class IdpAdminSite(admin.AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        authentication = session_authentication(request)
        needed = level_required(user=request.user, admin=True)
        return authentication is not None and authentication.level >= needed

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        from idp.pages.factors import next_url, with_next

        next_to = next_url(request)
        if not next_to.startswith("/admin/"):
            next_to = "/admin/"
        if request.user.is_authenticated and request.user.is_active and request.user.is_staff:
            return HttpResponseRedirect(with_next("mfa-verify", next_to))  # signed in, below the level: step up
        return HttpResponseRedirect(with_next("login", next_to))
