"""Writes of the provider core that are not protocol steps: clients and remembered consent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.hashers import identify_hasher, make_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

import audit
from accounts.models import MANAGEMENT_PERMISSIONS
from accounts.permissions import MANAGE_SCOPE
from accounts.selectors import Caller
from idp.models import Application, Consent, Grant, RefreshToken
from idp.oauth.generators import ClientSecretGenerator

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
    actor: audit.Actor,
    redirect_uris: list[str] = (),  # type: ignore[assignment]
    post_logout_redirect_uris: list[str] = (),  # type: ignore[assignment]
    scopes: list[str] = (),  # type: ignore[assignment]
    skip_consent: bool = False,
    require_pkce: bool = False,
    caller: Caller | None = None,
) -> IssuedClient:
    """Register a client. Returns its raw secret once; only the keyed hash is stored.

    A client registered for scope idp.manage can obtain tokens that act with the full rights of
    any administrator who signs in to it, so a caller must hold every management permission to
    register one.
    """
    if grant not in GRANT_TYPES:
        raise ValidationError({"grant": f"grant must be one of {', '.join(GRANT_TYPES)}"})
    if client_type not in {Application.CLIENT_CONFIDENTIAL, Application.CLIENT_PUBLIC}:
        raise ValidationError({"client_type": "type must be confidential or public"})
    if grant == "client_credentials" and client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValidationError({"client_type": "client_credentials needs a confidential client"})
    if caller is not None and MANAGE_SCOPE in scopes and not caller.holds(MANAGEMENT_PERMISSIONS):
        raise PermissionDenied(f"only a holder of every management permission may register a {MANAGE_SCOPE} client")
    application = Application(
        name=name,
        client_type=client_type,
        authorization_grant_type=GRANT_TYPES[grant],
        redirect_uris=" ".join(redirect_uris),
        post_logout_redirect_uris=" ".join(post_logout_redirect_uris),
        allowed_scopes=" ".join(scopes),
        skip_authorization=skip_consent,
        require_pkce=require_pkce,
    )
    return client_register(application=application, actor=actor)


@transaction.atomic
def client_register(*, application: Application, actor: audit.Actor) -> IssuedClient:
    """Save a new, unsaved client with a secret we generate (never one a person chose).

    Shared by the provisioning command and the admin. Raises ValidationError for a bad client.
    """
    confidential = application.client_type == Application.CLIENT_CONFIDENTIAL
    secret = ClientSecretGenerator().hash() if confidential else ""
    application.client_secret = secret
    application.hash_client_secret = True
    application.full_clean(exclude=["client_secret", "user"])
    application.save()
    audit.record(
        audit.Action.CLIENT_CREATED,
        actor=actor,
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
def client_secret_reset(*, application_id: int, actor: audit.Actor) -> str:
    """Replace a confidential client's secret at once (the old one stops working). Returns the new
    raw secret, once."""
    application = Application.objects.select_for_update().get(pk=application_id)
    if application.client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValueError("only confidential clients have a secret")
    secret = ClientSecretGenerator().hash()
    application.client_secret = secret
    application.previous_client_secret = ""
    application.previous_client_secret_expires_at = None
    application.save(
        update_fields=["client_secret", "previous_client_secret", "previous_client_secret_expires_at", "updated"]
    )
    audit.record(
        audit.Action.CLIENT_SECRET_ROTATED,
        actor=actor,
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
    *, application_id: int, grace_seconds: int, actor: audit.Actor, now: datetime | None = None
) -> RotatedSecret:
    """Give a confidential client a new secret, keeping the current one valid for grace_seconds
    (0: it stops at once) so the client's deployments can switch over without an outage.

    Returns the new raw secret once; both are stored only as keyed hashes. Rotating again during a
    grace period ends that period: only the newest two secrets ever work.
    """
    if not 0 <= grace_seconds <= MAX_SECRET_GRACE_SECONDS:
        raise ValidationError({"grace_seconds": f"must be between 0 and {MAX_SECRET_GRACE_SECONDS}"})
    application = Application.objects.select_for_update().get(pk=application_id)
    if application.client_type != Application.CLIENT_CONFIDENTIAL or not application.client_secret:
        raise ValidationError({"client_id": "only a confidential client has a secret"})
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
        actor=actor,
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
    Not the client the caller's own token came from. Disabling a disabled client records nothing."""
    application = Application.objects.select_for_update().get(pk=application_id)
    if caller is not None and application.pk == caller.application_pk:
        raise PermissionDenied("cannot disable the client your token was issued to")
    if not application.is_active:
        return application
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
def consent_remember(*, user_id: int, application: Application, scopes: list[str]) -> Consent:
    """Remember that the user allowed these scopes for the client (added to what was allowed)."""
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
        data={"scope": scopes, "remembered": True},
    )
    return consent


def code_reuse_revoke(*, grant: Grant, actor: audit.Actor) -> None:
    """An authorization code came back after it was redeemed: someone else may hold it, so the
    tokens its first redemption bought are revoked, refresh-token family included (RFC 6749
    §4.1.2, RFC 9700 §4.2.1)."""
    access = grant.access_token
    if access is None:
        return  # already revoked, or refreshed away and covered by the family's own rotation
    refresh = RefreshToken.objects.filter(access_token=access).first()
    if refresh is not None and refresh.token_family:
        RefreshToken.revoke_family(refresh.token_family)
    elif refresh is not None:
        refresh.revoke()
    else:
        access.revoke()
    audit.record(
        audit.Action.TOKEN_REVOKED,
        actor=actor,
        target=audit.Target.user(grant.user),
        client_id=grant.application.client_id,
        outcome="reuse_detected",
        data={"reason": "authorization code reused", "grant": grant.pk},
    )
