"""Tokens after they are issued: revoking them (one, a user's at a client, a browser session's),
clearing the expired ones, answering a replayed code, and reading an ID token handed back as a
hint. Issuance itself is the validator's (idp.oauth.validator)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from jwcrypto import jws, jwt
from jwcrypto.common import JWException
from oauth2_provider.models import clear_expired, revoke_access_token

import audit
from idp.keys import signing as keys
from idp.models import AccessToken, Application, Grant, IDToken, RefreshToken
from idp.oauth.access_tokens import jti_denylist_clean


@transaction.atomic
def user_tokens_revoke(
    *,
    user_id: int,
    actor: audit.Actor,
    reason: str,
    application: Application | None = None,
    session_id: str | None = None,
    keep_session_id: str | None = None,
    id_tokens: bool = False,
) -> int:
    """Revoke a user's live tokens at one client, or at every client, or those issued through one
    browser session (session_id, idp.oauth.sessions), or all but those of one (keep_session_id,
    including those of sessions whose rows are gone): each refresh token with its whole family,
    then any access token left. One token.revoked per client that had any. With id_tokens the ID
    tokens of the revoked access tokens go too (a deleted ID token is no longer accepted as an
    id_token_hint), and so do the session's codes not redeemed yet.

    Safe to call twice: the second call finds nothing and records nothing. Returns how many access
    and refresh tokens were revoked."""
    access = AccessToken.objects.filter(user_id=user_id)
    refresh = RefreshToken.objects.filter(user_id=user_id, revoked__isnull=True)
    if application is not None:
        access, refresh = access.filter(application=application), refresh.filter(application=application)
    if session_id is not None:
        access, refresh = access.filter(session_id=session_id), refresh.filter(session_id=session_id)
        Grant.objects.filter(user_id=user_id, session_id=session_id, redeemed_at__isnull=True).delete()
    if keep_session_id is not None:
        access, refresh = access.exclude(session_id=keep_session_id), refresh.exclude(session_id=keep_session_id)
        Grant.objects.filter(user_id=user_id, redeemed_at__isnull=True).exclude(session_id=keep_session_id).delete()
    # Locked in DOT's order (refresh, then access), so a refresh running now either commits first
    # (its new token joins a family swept below) or waits, then finds its token revoked
    # (validator._save_bearer_token re-checks under the same lock).
    live_refresh = list(refresh.select_for_update().values_list("pk", "application_id", "token_family"))
    live_access = list(access.select_for_update().values_list("pk", "application_id", "id_token_id"))
    counts: dict[int, list[int]] = {}
    for _, application_id, _ in live_access:
        counts.setdefault(application_id, [0, 0])[0] += 1
    for _, application_id, _ in live_refresh:
        counts.setdefault(application_id, [0, 0])[1] += 1
    for family in {family for _, _, family in live_refresh if family}:
        RefreshToken.revoke_family(family)
    for token in RefreshToken.objects.filter(pk__in=[pk for pk, _, family in live_refresh if not family]):
        token.revoke()
    AccessToken.objects.filter(pk__in=[pk for pk, _, _ in live_access]).delete()
    if id_tokens:
        IDToken.objects.filter(pk__in=[id_token for _, _, id_token in live_access if id_token]).delete()
        if session_id is not None:
            IDToken.objects.filter(user_id=user_id, session_id=session_id).delete()
    clients = Application.objects.in_bulk(list(counts))
    for application_id in sorted(counts):
        access_count, refresh_count = counts[application_id]
        audit.record(
            audit.Action.TOKEN_REVOKED,
            actor=actor,
            target=audit.Target("user", str(user_id)),
            client_id=clients[application_id].client_id,
            data={"reason": reason, "access_tokens": access_count, "refresh_tokens": refresh_count},
        )
    return sum(access_count + refresh_count for access_count, refresh_count in counts.values())


@transaction.atomic
def tokens_revoke(
    *, actor: audit.Actor, reason: str, access_token_ids: Iterable[int] = (), refresh_token_ids: Iterable[int] = ()
) -> int:
    """Revoke single tokens, each with its partner, as DOT does (revoke_access_token, and
    RefreshToken.revoke, which keeps the row as the tombstone reuse detection needs). One
    token.revoked per token really revoked: one already revoked or gone changes and records
    nothing, so this is safe to call twice. Returns how many were revoked."""
    revoked = 0
    accesses = AccessToken.objects.select_for_update(of=("self",)).select_related("application")
    for access in accesses.filter(pk__in=list(access_token_ids)).order_by("pk"):
        bound = RefreshToken.objects.filter(access_token=access, revoked__isnull=True).exists()
        revoke_access_token(access)
        _token_revoked(access, actor=actor, reason=reason, access_tokens=1, refresh_tokens=int(bound))
        revoked += 1
    refreshes = RefreshToken.objects.select_for_update(of=("self",)).select_related("application")
    for refresh in refreshes.filter(pk__in=list(refresh_token_ids), revoked__isnull=True).order_by("pk"):
        had_access = refresh.access_token_id is not None
        refresh.revoke()
        _token_revoked(refresh, actor=actor, reason=reason, access_tokens=int(had_access), refresh_tokens=1)
        revoked += 1
    return revoked


def _token_revoked(
    token: AccessToken | RefreshToken, *, actor: audit.Actor, reason: str, access_tokens: int, refresh_tokens: int
) -> None:
    application = token.application
    # DOT's column is nullable, but every token the provider issues names its client.
    assert application is not None
    audit.record(
        audit.Action.TOKEN_REVOKED,
        actor=actor,
        target=audit.Target("user", str(token.user_id))
        if token.user_id is not None
        else audit.Target.client(application),
        client_id=application.client_id,
        data={"reason": reason, "access_tokens": access_tokens, "refresh_tokens": refresh_tokens},
    )


def tokens_clear_expired(*, now: datetime) -> int:
    """DOT's cleartokens (expired and revoked tokens and grants, in batches), then the deny-list
    rows of JWT access tokens that have expired since. Returns the deny-list rows removed."""
    clear_expired()
    return jti_denylist_clean(now=now)


def code_reuse_revoke(*, grant: Grant, actor: audit.Actor) -> None:
    """An authorization code came back after it was redeemed: someone else may hold it, so the
    tokens its first redemption bought are revoked, refresh-token family included (RFC 6749
    §4.1.2, RFC 9700 §4.2.1).

    Recorded as token.reuse_detected, as a rotated refresh token presented again is: both say a
    single-use credential was replayed. token.revoked follows when something was still live (the
    tokens may be gone already: revoked, or refreshed away and swept with their family)."""
    audit.record(
        audit.Action.TOKEN_REUSE_DETECTED,
        actor=actor,
        target=audit.Target.user(grant.user),
        client_id=grant.application.client_id,
        outcome="alert",
        data={"credential": "authorization_code", "grant": grant.pk},
    )
    access = grant.access_token
    if access is None:
        return
    refresh = RefreshToken.objects.filter(access_token=access, revoked__isnull=True).first()
    refresh_count = 0
    if refresh is not None and refresh.token_family:
        refresh_count = RefreshToken.objects.filter(token_family=refresh.token_family, revoked__isnull=True).count()
        RefreshToken.revoke_family(refresh.token_family)
    elif refresh is not None:
        refresh_count = 1
        refresh.revoke()
    else:
        access.revoke()
    audit.record(
        audit.Action.TOKEN_REVOKED,
        actor=actor,
        target=audit.Target.user(grant.user),
        client_id=grant.application.client_id,
        data={"reason": "reuse_detected", "access_tokens": 1, "refresh_tokens": refresh_count, "grant": grant.pk},
    )


@dataclass(frozen=True)
class IdTokenHint:
    """What an ID token this provider signed says about whom it was issued to, and when."""

    subject: str
    client_id: str  # the client it was issued to: azp, or its single audience
    audiences: tuple[str, ...]
    session_id: str  # the sid claim: the browser session it was issued through ("" if none)
    expired: bool


def id_token_hint_read(hint: str, *, issuer: str, now: datetime | None = None) -> IdTokenHint | None:
    """An ID token this provider signed (the key its kid names, that key's algorithm, this issuer),
    or None for anything else (another key, alg none, garbage, another issuer). Expired hints are
    read too, and say so: OIDC Core §3.1.2.1 and RP-Initiated Logout send back an ID token the
    client already holds, and its expiry says nothing about whom it names; whether an expired hint
    may be acted on is the caller's decision."""
    signed = keys.signed_token_parse(hint)
    if signed is None:
        return None
    try:
        token = jwt.JWT(jwt=hint, key=signed.key, algs=[signed.algorithm], check_claims={})
        claims = json.loads(token.claims)
    except (JWException, ValueError, TypeError, jws.InvalidJWSObject):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != issuer or not isinstance(claims.get("sub"), str):
        return None
    audience = claims.get("aud")
    audiences = tuple(audience) if isinstance(audience, list) else (audience,) if isinstance(audience, str) else ()
    if not audiences or not all(isinstance(item, str) for item in audiences):
        return None
    azp = claims.get("azp")
    client_id = azp if isinstance(azp, str) else audiences[0]
    expires = claims.get("exp")
    moment = (now or timezone.now()).timestamp()
    return IdTokenHint(
        subject=claims["sub"],
        client_id=client_id,
        audiences=audiences,
        session_id=claims["sid"] if isinstance(claims.get("sid"), str) else "",
        expired=not isinstance(expires, int | float) or expires <= moment,
    )
