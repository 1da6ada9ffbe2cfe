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
from idp.oauth.tokens import user_tokens_revoke

SESSION_ID_KEY = "idp_sid"


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


def session_tokens_revoke(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """user_logged_out receiver: a browser session ends (the provider's "Sign out", RP-initiated
    logout, Django admin's "Log out"): every token and code issued through it is revoked, at every
    client, audited as token.revoked; tokens of the user's other sessions and devices stay. Django
    sends the signal before it empties the session, so its id is still there to read."""
    session_id = browser_session_id_get(request) if request is not None else ""
    if user is None or not session_id:
        return  # no session, or nothing was issued through it
    user_tokens_revoke(
        user_id=user.pk, session_id=session_id, actor=audit.Actor.user(user), reason="logout", id_tokens=True
    )
