"""Writes of the provider core that are not protocol steps: clients and remembered consent."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

import audit
from idp.models import Application, Consent, Grant, RefreshToken
from idp.oauth.generators import ClientSecretGenerator

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
) -> IssuedClient:
    """Register a client. Returns its raw secret once; only the keyed hash is stored."""
    if grant not in GRANT_TYPES:
        raise ValueError(f"grant must be one of {', '.join(GRANT_TYPES)}")
    if grant == "client_credentials" and client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValueError("client_credentials needs a confidential client")
    if client_type not in {Application.CLIENT_CONFIDENTIAL, Application.CLIENT_PUBLIC}:
        raise ValueError("type must be confidential or public")
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
    application.save(update_fields=["client_secret", "updated"])
    audit.record(
        audit.Action.CLIENT_SECRET_ROTATED,
        actor=actor,
        target=audit.Target.client(application),
        client_id=application.client_id,
    )
    return secret


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
