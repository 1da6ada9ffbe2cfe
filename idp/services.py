"""Writes of the provider core that are not protocol steps: clients and remembered consent."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import identify_hasher, make_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import clear_expired, revoke_access_token

import audit
from accounts.selectors import Caller
from accounts.services import administration_kept, caller_holds_check
from idp.models import AccessToken, Application, Consent, Grant, IDToken, RefreshToken, SigningKey
from idp.oauth.access_tokens import jti_denylist_clean
from idp.oauth.generators import ClientSecretGenerator
from idp.selectors import client_carries

# How long a rotated-out client secret may keep working, at most.
MAX_SECRET_GRACE_SECONDS = 30 * 24 * 3600

GRANT_TYPES = {
    "authorization_code": Application.GRANT_AUTHORIZATION_CODE,
    "client_credentials": Application.GRANT_CLIENT_CREDENTIALS,
}


@dataclass(frozen=True)
class IssuedClient:
    application: Application
    client_secret: str | None  # the raw secret, handed out once; None for a public client


@transaction.atomic
def client_create(
    *,
    name: str,
    client_type: str,
    grant: str,
    caller: Caller,
    redirect_uris: list[str] = (),  # type: ignore[assignment]
    post_logout_redirect_uris: list[str] = (),  # type: ignore[assignment]
    scopes: list[str] = (),  # type: ignore[assignment]
    skip_consent: bool = False,
    require_pkce: bool = False,
    id_token_signed_response_alg: str = SigningKey.Algorithm.RS256,
    access_token_format: str = Application.AccessTokenFormat.OPAQUE,
    access_token_audience: str = "",
    is_resource_server: bool = False,
) -> IssuedClient:
    """Register a client. Returns its raw secret once; only the keyed hash is stored. The caller
    must hold what the secret carries (client_register)."""
    if grant not in GRANT_TYPES:
        raise ValidationError({"grant": f"grant must be one of {', '.join(GRANT_TYPES)}"})
    if client_type not in {Application.CLIENT_CONFIDENTIAL, Application.CLIENT_PUBLIC}:
        raise ValidationError({"client_type": "type must be confidential or public"})
    if grant == "client_credentials" and client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValidationError({"client_type": "client_credentials needs a confidential client"})
    application = Application(
        name=name,
        client_type=client_type,
        authorization_grant_type=GRANT_TYPES[grant],
        redirect_uris=" ".join(redirect_uris),
        post_logout_redirect_uris=" ".join(post_logout_redirect_uris),
        allowed_scopes=" ".join(scopes),
        skip_authorization=skip_consent,
        require_pkce=require_pkce,
        algorithm=id_token_signed_response_alg,
        access_token_format=access_token_format,
        access_token_audience=access_token_audience,
        is_resource_server=is_resource_server,
    )
    return client_register(application=application, caller=caller)


@transaction.atomic
def client_register(*, application: Application, caller: Caller) -> IssuedClient:
    """Save a new, unsaved client with a secret we generate (never one a person chose).

    Shared by the management API, the provisioning command and the admin. A client registered for
    scope idp.manage obtains tokens that act with the full rights of any administrator who signs in
    to it, so its secret carries every management permission: the caller must hold them all
    (caller_holds_check). Raises ValidationError for a bad client, PermissionDenied for that.
    """
    caller_holds_check(
        caller=caller, carries=client_carries(application=application, saved=False), doing="register this client"
    )
    confidential = application.client_type == Application.CLIENT_CONFIDENTIAL
    secret = ClientSecretGenerator().hash() if confidential else ""
    application.client_secret = secret
    application.hash_client_secret = True
    application.full_clean(exclude=["client_secret", "user"])
    application.save()
    audit.record(
        audit.Action.CLIENT_CREATED,
        actor=caller.actor,
        target=audit.Target.client(application),
        client_id=application.client_id,
        data={
            "type": application.client_type,
            "grant": application.authorization_grant_type,
            "scopes": application.scope_list,
        },
    )
    return IssuedClient(application=application, client_secret=secret or None)


@transaction.atomic
def client_secret_reset(*, application_id: int, caller: Caller) -> str:
    """Replace a confidential client's secret at once (the old one stops working). Returns the new
    raw secret, once, to a caller holding what it carries (caller_holds_check)."""
    application = Application.objects.select_for_update(no_key=True).get(pk=application_id)
    if application.client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValueError("only confidential clients have a secret")
    caller_holds_check(caller=caller, carries=client_carries(application=application), doing="reset this secret")
    secret = ClientSecretGenerator().hash()
    application.client_secret = secret
    application.previous_client_secret = ""
    application.previous_client_secret_expires_at = None
    application.save(
        update_fields=["client_secret", "previous_client_secret", "previous_client_secret_expires_at", "updated"]
    )
    audit.record(
        audit.Action.CLIENT_SECRET_ROTATED,
        actor=caller.actor,
        target=audit.Target.client(application),
        client_id=application.client_id,
        data={"grace_seconds": 0},
    )
    return secret


@dataclass(frozen=True)
class RotatedSecret:
    client_secret: str  # the raw new secret, handed out once
    previous_secret_expires_at: datetime | None  # until when the old one still works; None: it stopped


@transaction.atomic
def client_secret_rotate(
    *, application_id: int, grace_seconds: int, caller: Caller, now: datetime | None = None
) -> RotatedSecret:
    """Give a confidential client a new secret, keeping the current one valid for grace_seconds
    (0: it stops at once) so the client's deployments can switch over without an outage.

    Returns the new raw secret once, to a caller holding every role and permission it carries
    (caller_holds_check); both are stored only as keyed hashes. Rotating again during a grace
    period ends that period: only the newest two secrets ever work.
    """
    if not 0 <= grace_seconds <= MAX_SECRET_GRACE_SECONDS:
        raise ValidationError({"grace_seconds": f"must be between 0 and {MAX_SECRET_GRACE_SECONDS}"})
    application = Application.objects.select_for_update(no_key=True).get(pk=application_id)
    if application.client_type != Application.CLIENT_CONFIDENTIAL or not application.client_secret:
        raise ValidationError({"client_id": "only a confidential client has a secret"})
    caller_holds_check(caller=caller, carries=client_carries(application=application), doing="rotate this secret")
    now = now or timezone.now()
    previous = application.client_secret
    try:
        identify_hasher(previous)
    except ValueError:  # a client saved with hash_client_secret off: hash it now, as DOT would
        previous = make_password(previous, hasher=settings.OAUTH2_PROVIDER["CLIENT_SECRET_HASHER"])
    expires_at = now + timedelta(seconds=grace_seconds) if grace_seconds else None
    secret = ClientSecretGenerator().hash()
    application.client_secret = secret
    application.hash_client_secret = True
    application.previous_client_secret = previous if expires_at else ""
    application.previous_client_secret_expires_at = expires_at
    application.save(
        update_fields=[
            "client_secret",
            "hash_client_secret",
            "previous_client_secret",
            "previous_client_secret_expires_at",
            "updated",
        ]
    )
    audit.record(
        audit.Action.CLIENT_SECRET_ROTATED,
        actor=caller.actor,
        target=audit.Target.client(application),
        client_id=application.client_id,
        data={"grace_seconds": grace_seconds},
    )
    return RotatedSecret(client_secret=secret, previous_secret_expires_at=expires_at)


@transaction.atomic
def client_disable(
    *, application_id: int, actor: audit.Actor, caller: Caller | None = None, reason: str = ""
) -> Application:
    """Switch a client off: it gets no more tokens and its tokens stop working (Application.is_usable).
    Not the client the caller's own token came from, nor one whose service account holds what the
    caller does not (as for deactivating a user), nor the last administrator's. Disabling a
    disabled client records nothing."""
    application = Application.objects.select_for_update(no_key=True).get(pk=application_id)
    if caller is not None and application.pk == caller.application_pk:
        raise PermissionDenied("cannot disable the client your token was issued to")
    if caller is not None:
        caller_holds_check(caller=caller, carries=client_carries(application=application), doing="disable this client")
    if not application.is_active:
        return application
    with administration_kept(caller):
        application.is_active = False
        application.save(update_fields=["is_active", "updated"])
    audit.record(
        audit.Action.CLIENT_DISABLED,
        actor=actor,
        target=audit.Target.client(application),
        client_id=application.client_id,
        data={"reason": reason},
    )
    return application


@transaction.atomic
def consent_grant(*, user_id: int, application: Application, scopes: list[str], remember: bool) -> Consent | None:
    """The user allowed these scopes for the client on the consent page. With remember, the
    decision is kept (added to what was allowed before) so the page is not shown again for them."""
    consent = None
    if remember:
        consent, _ = Consent.objects.select_for_update().get_or_create(
            user_id=user_id, application=application, defaults={"scope": ""}
        )
        merged = sorted(set(consent.scope.split()) | set(scopes))
        if merged != sorted(consent.scope.split()):
            consent.scope = " ".join(merged)
            consent.save(update_fields=["scope", "updated_at"])
    audit.record(
        audit.Action.CONSENT_GRANTED,
        actor=audit.Actor("user", str(user_id)),
        target=audit.Target.client(application),
        client_id=application.client_id,
        data={"scope": scopes, "remembered": remember},
    )
    return consent


@transaction.atomic
def consent_revoke(*, user: Any, client_id: str, actor: audit.Actor) -> bool:
    """Withdraw a user's remembered consent for a client and end the client's access: every token
    it holds for the user (refresh-token families included) and every code not yet redeemed.

    Safe to call twice: the second call finds nothing, changes nothing and records nothing.
    Returns whether there was anything to withdraw."""
    application = Application.objects.filter(client_id=client_id).first()
    if application is None:
        return False
    consent = Consent.objects.select_for_update().filter(user=user, application=application).first()
    # An unredeemed code would still buy tokens after the revocation. Redeemed ones stay: they
    # are how a code presented again is recognised as reuse (validator.validate_code).
    codes, _ = Grant.objects.filter(user=user, application=application, redeemed_at__isnull=True).delete()
    if consent is not None:
        consent.delete()
        audit.record(
            audit.Action.CONSENT_REVOKED,
            actor=actor,
            target=audit.Target.client(application),
            client_id=application.client_id,
            data={"scope": consent.scope.split(), "pending_codes": codes},
        )
    revoked = user_tokens_revoke(user_id=user.pk, actor=actor, reason="consent_revoked", application=application)
    return consent is not None or codes > 0 or revoked > 0


@transaction.atomic
def user_tokens_revoke(
    *,
    user_id: int,
    actor: audit.Actor,
    reason: str,
    application: Application | None = None,
    session_id: str | None = None,
    id_tokens: bool = False,
) -> int:
    """Revoke a user's live tokens at one client, or at every client, or those issued through one
    browser session (session_id, idp.oauth.sessions): each refresh token with its whole family,
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
