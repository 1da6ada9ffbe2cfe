"""Signals of Django auth, Django admin and django-oauth-toolkit, turned into audit events. Wired
in AuditConfig.ready(); each receiver is one audit.record call (plus the brute-force watch)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache

import audit
from audit import context

log = logging.getLogger("audit")


def on_token_issued(sender: Any, request: Any, token: Any, **kwargs: Any) -> None:
    """oauth2_provider.signals.app_authorized, sent by idp's validator inside the token request's
    transaction (with oauthlib's request), for every access token it issues."""
    refreshed = getattr(request, "grant_type", "") == "refresh_token"
    application = token.application
    audit.record(
        audit.Action.TOKEN_REFRESHED if refreshed else audit.Action.TOKEN_ISSUED,
        actor=audit.Actor.client(application),
        target=audit.Target.user(token.user) if token.user_id is not None else audit.Target.client(application),
        client_id=application.client_id,
        data={"grant": getattr(request, "grant_type", ""), "scope": token.scope},
    )


def on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit.record(audit.Action.LOGIN_SUCCEEDED, actor=audit.Actor.user(user), target=audit.Target.user(user))


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:  # signing out without a session is not an event
        audit.record(audit.Action.LOGOUT, actor=audit.Actor.user(user), target=audit.Target.user(user))


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    """A failed sign-in: the account it named, if that account exists (a username that is no
    account may be a password typed in the wrong field, so it is not recorded), then the
    brute-force watch."""
    username = str(credentials.get("username") or "")[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    audit.record(
        audit.Action.LOGIN_FAILED,
        actor=audit.Actor.anonymous(),
        target=audit.Target.user(user) if user is not None else None,
        outcome="failure",
        data={} if user is not None else {"account": "unknown"},
    )
    _watch_bruteforce(username=username, source_ip=context.current().source_ip)


def on_locked_out(sender: Any, request: Any, username: str | None, ip_address: str | None, **kwargs: Any) -> None:
    """django-axes' user_locked_out: repeated failures locked a username or an address out.

    Axes sends it again for each attempt made during the lockout; only the failure that started
    it has a count (axes_failures_since_start), so the lockout is recorded once. As for failed
    sign-ins, a username that is no account is not recorded.
    """
    if getattr(request, "axes_failures_since_start", None) is None:
        return
    name = str(username or "")[:150]
    user = get_user_model().objects.filter(username=name).first() if name else None
    audit.record(
        audit.Action.LOGIN_LOCKED_OUT,
        actor=audit.Actor.anonymous(),
        target=audit.Target.user(user) if user is not None else None,
        outcome="alert",
        data={"failures": request.axes_failures_since_start}
        | ({} if user is not None or not name else {"account": "unknown"}),
    )


def _watch_bruteforce(*, username: str, source_ip: str | None) -> None:
    """Count failures per account and per source IP in a fixed window (Redis, shared by every
    process); the failure that reaches the threshold raises one alert per window."""
    threshold = settings.AUDIT_BRUTEFORCE_THRESHOLD
    window = settings.AUDIT_BRUTEFORCE_WINDOW_SECONDS
    subjects = []
    if username:
        subjects.append(("account", hashlib.sha256(username.lower().encode()).hexdigest()[:32], username))
    if source_ip:
        subjects.append(("ip", source_ip, source_ip))
    for kind, key, shown in subjects:
        counter = f"audit:failed-logins:{kind}:{key}"
        cache.add(counter, 0, timeout=window)
        try:
            failures = cache.incr(counter)
        except ValueError:  # expired between add and incr: this failure starts a new window
            cache.add(counter, 1, timeout=window)
            failures = 1
        if failures != threshold:
            continue
        user = get_user_model().objects.filter(username=shown).first() if kind == "account" else None
        audit.record(
            audit.Action.ALERT_BRUTEFORCE,
            actor=audit.Actor.system("bruteforce-watch"),
            target=audit.Target.user(user) if user is not None else None,
            outcome="alert",
            data={"by": kind, "failures": failures, "window_seconds": window}
            | ({"source_ip": source_ip} if kind == "ip" else {}),
        )
        # A stable event name for log-based alerting; the username is not logged (it may be a
        # mistyped password), the account's id is when there is one.
        log.warning(
            "alert.bruteforce by=%s failures=%d window_seconds=%d user_id=%s source_ip=%s",
            kind,
            failures,
            window,
            user.pk if user is not None else "-",
            source_ip or "-",
            extra={"event": "alert.bruteforce"},
        )


def on_admin_logentry(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Every add, change and delete made in Django admin (its LogEntry), as admin.changed."""
    if not created:
        return
    verbs = {1: "added", 2: "changed", 3: "deleted"}
    audit.record(
        audit.Action.ADMIN_CHANGED,
        actor=audit.Actor("user", str(instance.user_id)),
        target=audit.Target(
            f"{instance.content_type.app_label}.{instance.content_type.model}" if instance.content_type_id else "",
            str(instance.object_id or ""),
        ),
        data={
            "change": verbs.get(instance.action_flag, str(instance.action_flag)),
            "object": str(instance.object_repr)[:200],
            "message": instance.get_change_message()[:500],
        },
    )
