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

from django.contrib.auth import logout
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


def session_end(request: HttpRequest, *, reason: str) -> int:
    """Sign this browser session out: revoke every token and code issued through it (at every
    client, audited as token.revoked) and end the Django session. Tokens of the user's other
    sessions and devices are untouched. Returns how many tokens were revoked."""
    revoked = 0
    user = request.user
    session_id = browser_session_id_get(request)
    if user.is_authenticated and session_id:
        revoked = user_tokens_revoke(
            user_id=user.pk, session_id=session_id, actor=audit.Actor.user(user), reason=reason, id_tokens=True
        )
    logout(request)
    return revoked
