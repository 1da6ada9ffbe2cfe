"""Ending sessions: one path for every way a session ends (the user's "Sign out" and "Sign out
everywhere", RP-initiated logout, staff in admin and the API, deactivation, a reset of second
factors, and the password engineer's reset and change).

Ending a session deletes its row (the browser is signed out at its next request: its key finds
nothing), revokes every code and token issued through it (idp.oauth.tokens.user_tokens_revoke by
sid), records session.ended, and once the transaction commits asks Celery to tell each client
signed in through it (Back-Channel Logout). What the signed-out page needs for Front-Channel
Logout is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction

import audit
from accounts.selectors import Caller, holdings_of
from accounts.services import caller_holds_check
from idp.models import Application, BrowserSession
from idp.oauth.tokens import user_tokens_revoke
from idp.sessions.selectors import session_get_for_user


@dataclass(frozen=True)
class EndedSession:
    public_id: str
    user_id: int | None
    sid: str
    issuer: str
    client_ids: list[str]


def _issuer_of(row: BrowserSession) -> str:
    return settings.ISSUER or row.issuer


def _end(row: BrowserSession, *, actor: audit.Actor, reason: str) -> EndedSession:
    ended = EndedSession(
        public_id=row.public_id,
        user_id=row.user_id,
        sid=row.sid,
        issuer=_issuer_of(row),
        client_ids=list(row.client_ids),
    )
    BrowserSession.objects.filter(pk=row.pk).delete()
    if row.user_id is None:
        return ended  # nobody signed in: nothing was issued, nobody to tell
    if row.sid:
        user_tokens_revoke(user_id=row.user_id, actor=actor, reason=reason, session_id=row.sid, id_tokens=True)
    audit.record(
        audit.Action.SESSION_ENDED,
        actor=actor,
        target=audit.Target("user", str(row.user_id)),
        data={"session": row.public_id, "reason": reason[:200], "clients": ended.client_ids},
    )
    receivers = Application.objects.filter(client_id__in=ended.client_ids, is_active=True).exclude(
        backchannel_logout_uri=""
    )
    for client_id in receivers.values_list("client_id", flat=True):
        transaction.on_commit(partial(_backchannel_logout_enqueue, client_id, row.user_id, row.sid, ended.issuer))
    return ended


def _backchannel_logout_enqueue(client_id: str, user_id: int, sid: str, issuer: str) -> None:
    from idp.sessions.tasks import deliver_backchannel_logout

    deliver_backchannel_logout.apply_async(
        args=[client_id, user_id, sid, issuer], queue=settings.IDP_LOGOUT_QUEUE or None
    )


@transaction.atomic
def session_end(*, public_id: str, actor: audit.Actor, reason: str) -> EndedSession | None:
    """End one session by its public id (a caller checks it may: selectors.session_get_for_user).
    Safe to call twice: a session already ended is None and records nothing."""
    row = BrowserSession.objects.select_for_update().filter(public_id=public_id).first()
    if row is None:
        return None
    return _end(row, actor=actor, reason=reason)


@transaction.atomic
def session_end_by_key(*, session_key: str, actor: audit.Actor, reason: str) -> EndedSession | None:
    """End the session a browser presents (its raw key, hashed for the lookup): signing out."""
    row = BrowserSession.objects.select_for_update().filter(session_key=session_key).first()
    if row is None:
        return None
    return _end(row, actor=actor, reason=reason)


@transaction.atomic
def sessions_end(
    *, user_id: int, actor: audit.Actor, reason: str, keep_session_key: str | None = None
) -> list[EndedSession]:
    """user_sessions_end, returning what was ended (for the signed-out page's front-channel)."""
    rows = BrowserSession.objects.select_for_update().filter(user_id=user_id).order_by("pk")
    kept_sid = None
    if keep_session_key:
        rows = rows.exclude(session_key=keep_session_key)
        kept_sid = BrowserSession.objects.filter(session_key=keep_session_key).values_list("sid", flat=True).first()
    ended = [_end(row, actor=actor, reason=reason) for row in rows]
    # Tokens outlive the row of the session they were issued through (a sign-in as someone else in
    # that browser flushes it, clearsessions deletes it once expired): "every session but this one"
    # revokes theirs too, or a password changed to lock an intruder out would leave them theirs.
    user_tokens_revoke(user_id=user_id, actor=actor, reason=reason, keep_session_id=kept_sid or None, id_tokens=True)
    return ended


def user_sessions_end(*, user_id: int, actor: audit.Actor, reason: str, keep_session_key: str | None = None) -> int:
    """End every session of a user but the one whose key is keep_session_key (the browser asking,
    after a password change): each signed out, its tokens revoked, its clients told. Safe to
    call twice. Returns how many sessions ended."""
    return len(sessions_end(user_id=user_id, actor=actor, reason=reason, keep_session_key=keep_session_key))


def on_user_saved(
    sender: object, instance: object, created: bool = False, update_fields: object = None, **kwargs: object
) -> None:
    """post_save of a user: a user switched off (accounts.services.user_deactivate, the is_active
    box in Django admin, the shell) is signed out everywhere, in the same transaction. accounts
    cannot call idp (STYLE §1), so idp listens to the model it owns."""
    if created or getattr(instance, "is_active", True):
        return
    if update_fields is not None and "is_active" not in update_fields:  # type: ignore[operator]
        return
    user_id = getattr(instance, "pk", None)
    if isinstance(user_id, int) and BrowserSession.objects.filter(user_id=user_id).exists():
        user_sessions_end(user_id=user_id, actor=audit.Actor.system("deactivation"), reason="user_deactivated")


# --- Staff (Django admin, the management API) ------------------------------------------------------


def staff_may_end_check(*, caller: Caller, user: Any) -> None:
    """Refuse (PermissionDenied) unless the caller may see and end this user's sessions: they must
    hold every role and permission the user holds (caller_holds_check), so a lesser staff member
    cannot keep signing an administrator out; a staff account's only a superuser (or the shell)."""
    caller_holds_check(caller=caller, carries=holdings_of(user_id=user.pk), doing="end this user's sessions")
    if (user.is_staff or user.is_superuser) and not caller.is_operator and caller.user_id != user.pk:
        raise PermissionDenied("cannot end this user's sessions: only a superuser ends those of staff")


@transaction.atomic
def staff_sessions_end(*, caller: Caller, user: Any, reason: str, public_id: str | None = None) -> int:
    """A staff member ends one session of a user (public_id; 404 if not the user's) or all of them,
    after staff_may_end_check. Returns how many ended."""
    staff_may_end_check(caller=caller, user=user)
    reason = f"staff: {reason}"[:200] if reason else "staff"
    if public_id is None:
        return user_sessions_end(user_id=user.pk, actor=caller.actor, reason=reason)
    session = session_get_for_user(user_id=user.pk, public_id=public_id)
    return 0 if session_end(public_id=session.public_id, actor=caller.actor, reason=reason) is None else 1
