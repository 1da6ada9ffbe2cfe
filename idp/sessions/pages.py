"""The dashboard's sessions page (/dashboard/sessions/): where the signed-in user is signed in,
and signing any of those out. Thin adapters over idp.sessions.selectors and services.

A session that is not the user's is a 404, as one that does not exist, and nothing ends. Ending
this very session, or "Sign out everywhere", signs this browser out too: the signed-out page then
tells the clients of every session ended (Front-Channel Logout)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views import View

import audit
from idp.http.policy import endpoint
from idp.oauth.sessions import sessions_ended_note
from idp.oauth.views.logout import signed_out_page
from idp.sessions import selectors, services


def _user_id(request: HttpRequest) -> int:
    user_id = request.user.pk
    assert isinstance(user_id, int)  # LoginRequiredMixin: someone is signed in
    return user_id


@endpoint(cache="no-store")
class SessionListView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        rows = list(selectors.sessions_of_user(user_id=_user_id(request)))
        views = selectors.session_views(rows, current_key=request.session.session_key)
        return render(request, "idp/sessions.html", {"sessions": views})


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class SessionEndView(LoginRequiredMixin, View):
    """POST: end one of the user's sessions; this one's is a sign-out."""

    def post(self, request: HttpRequest, public_id: str) -> HttpResponse:
        session = selectors.session_get_for_user(user_id=_user_id(request), public_id=public_id)  # 404 if not theirs
        current = selectors.session_views([session], current_key=request.session.session_key)[0].is_current
        if current:
            logout(request)  # the same path, through idp.oauth.sessions
            return signed_out_page(request)
        services.session_end(public_id=session.public_id, actor=audit.Actor.user(request.user), reason="user")
        messages.success(request, "That session is signed out.")
        return redirect("sessions")


@endpoint(rate="signin", rate_methods=("POST",), cache="no-store")
class SessionsEndAllView(LoginRequiredMixin, View):
    """POST: "Sign out everywhere": every session of the user ends, this one last."""

    def post(self, request: HttpRequest) -> HttpResponse | HttpResponseRedirect:
        ended = services.sessions_end(
            user_id=_user_id(request),
            actor=audit.Actor.user(request.user),
            reason="user_everywhere",
            keep_session_key=request.session.session_key,
        )
        sessions_ended_note(request, ended)
        logout(request)
        return signed_out_page(request)
