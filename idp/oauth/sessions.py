"""The browser session a credential is issued through: its id is the `sid` of OpenID Connect
Front-/Back-Channel Logout, put in ID tokens and kept on every code and token issued through the
session (idp.models.SessionBound), so that signing that session out revokes its tokens and no
others.

The id is random and says nothing about the session's key (which is a credential: whoever holds it
is signed in). It lives in the session itself, so it follows the session across web processes,
and stays when a sign-in cycles the session key for the same person; a sign-in as someone else
flushes the session and so starts a new one.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.http import HttpRequest

import audit
from idp.sessions.backend import CLIENTS_KEY, SID_KEY
from idp.sessions.services import EndedSession, session_end_by_key

SESSION_ID_KEY = SID_KEY
# Where a request that ended sessions keeps them, for the signed-out page (Front-Channel Logout).
ENDED_ATTRIBUTE = "_idp_ended_sessions"


def browser_session_id(request: HttpRequest) -> str:
    """The id of this request's browser session, made on first use."""
    session_id = request.session.get(SESSION_ID_KEY)
    if not isinstance(session_id, str) or not session_id:
        session_id = secrets.token_urlsafe(24)
        request.session[SESSION_ID_KEY] = session_id
    return session_id


def browser_session_id_get(request: HttpRequest) -> str:
    """The id of this request's browser session if it has one; "" otherwise (nothing was issued
    through it)."""
    session_id = request.session.get(SESSION_ID_KEY)
    return session_id if isinstance(session_id, str) else ""


def browser_session_client_add(request: HttpRequest, client_id: str) -> None:
    """A client signed in through this browser session (a code was issued to it): it is told
    when the session ends (Back-/Front-Channel Logout) and shown on the sessions page."""
    clients = request.session.get(CLIENTS_KEY)
    clients = [c for c in clients if isinstance(c, str)] if isinstance(clients, list) else []
    if client_id not in clients:
        request.session[CLIENTS_KEY] = [*clients, client_id]


def sessions_ended_note(request: HttpRequest, ended: list[EndedSession]) -> None:
    """Keep sessions this request ended, for the signed-out page's front-channel iframes."""
    setattr(request, ENDED_ATTRIBUTE, [*sessions_ended(request), *ended])


def sessions_ended(request: HttpRequest) -> list[EndedSession]:
    found = getattr(request, ENDED_ATTRIBUTE, None)
    return list(found) if isinstance(found, list) else []


def session_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """user_logged_out receiver: a browser session ends (the provider's "Sign out", RP-initiated
    logout, Django admin's "Log out", "Sign out everywhere") through the one path
    (idp.sessions.services): its row goes, every token and code issued through it is revoked at
    every client (token.revoked), session.ended is recorded and its clients are told. Tokens of the
    user's other sessions and devices stay. Django sends the signal before it empties the session."""
    if request is None or user is None:
        return
    session_key = request.session.session_key
    if not session_key:
        return  # never saved: no row, nothing issued through it
    ended = session_end_by_key(session_key=session_key, actor=audit.Actor.user(user), reason="logout")
    if ended is not None:
        sessions_ended_note(request, [ended])
