"""Clients: registering them, their secrets (rotation with a grace period, reset), switching them
off, and reading them, from the shared cache on the hot path.

Client authentication on every token, introspection and revocation request reads the client from
the shared cache rather than the database (client_cached). Any save or delete of any client
(services, admin, shell) makes every cached client stale (idp.apps connects the receivers), so a
disabled client, a rotated secret or a changed client_id takes effect on the next request in every
process. See accounts.selectors.MarkedCache.

A client's secret is handed out only to a caller holding what it carries (client_carries,
accounts.services.caller_holds_check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.hashers import identify_hasher, make_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

import audit
from accounts.credentials import authorization_parse
from accounts.models import MANAGEMENT_PERMISSIONS, ROLES_READ, USERS_READ
from accounts.permissions import MANAGE_SCOPE
from accounts.selectors import Caller, Holdings, MarkedCache, holdings_of
from accounts.services import administration_kept, caller_holds_check
from idp.models import Application, SigningKey
from idp.oauth.generators import ClientSecretGenerator

# How long a rotated-out client secret may keep working, at most.
MAX_SECRET_GRACE_SECONDS = 30 * 24 * 3600


GRANT_TYPES = {
    "authorization_code": Application.GRANT_AUTHORIZATION_CODE,
    "client_credentials": Application.GRANT_CLIENT_CREDENTIALS,
}

client_cache = MarkedCache("clients", seconds=300)


def client_read_ahead(request: HttpRequest) -> list[str]:
    """The cache entries client_cached reads for the client a request names in HTTP Basic (the way
    confidential clients authenticate), for an endpoint's read_ahead (idp.http.policy): read in the
    request's rate-limit round trip. Only a read: the client is authenticated when the view gets
    there, against what came back."""
    basic = authorization_parse(request.META.get("HTTP_AUTHORIZATION")).basic
    return client_cache.read_names(basic[0]) if basic is not None and basic[0] else []


def client_cached(*, client_id: str) -> Application | None:
    """The Application with this client_id, usable or not; None when there is none."""
    return client_cache.get_or_read(client_id, lambda: _client_read(client_id))


def _client_read(client_id: str) -> Application | None:
    try:
        # Unknown ids are not kept (get_or_read keeps no None): anyone can send any number of them.
        return Application.objects.filter(client_id=client_id).first()
    except ValueError:  # a NUL byte: PostgreSQL cannot even be asked (DOT answers "no client" too)
        return None


def client_list() -> QuerySet[Application]:
    return Application.objects.all()


def client_get(*, client_id: str) -> Application:
    """Raises Application.DoesNotExist."""
    return Application.objects.get(client_id=client_id)


def client_carries(*, application: Application, saved: bool = True) -> Holdings:
    """What a client's secret carries: every role its service account holds (for every client) with
    their permissions; when the client is registered for the management API's scope, every
    management permission (a client for idp.manage obtains tokens that administer the provider);
    for a resource server, reading users and roles (introspection tells whose a token is and what
    it holds); and for a client that skips consent, reading users (it receives the profile of
    whoever signs in to it without their being asked). A client not saved yet holds no role."""
    carried = holdings_of(client_pk=application.pk) if saved else Holdings()
    if MANAGE_SCOPE in application.scope_list:
        carried = carried | Holdings(permissions=frozenset(MANAGEMENT_PERMISSIONS))
    if application.is_resource_server:
        carried = carried | Holdings(permissions=frozenset({USERS_READ, ROLES_READ}))
    if application.skip_authorization:
        carried = carried | Holdings(permissions=frozenset({USERS_READ}))
    return carried


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
    redirect_uris: Sequence[str] = (),
    post_logout_redirect_uris: Sequence[str] = (),
    scopes: Sequence[str] = (),
    skip_consent: bool = False,
    require_pkce: bool = False,
    id_token_signed_response_alg: str = SigningKey.Algorithm.RS256,
    access_token_format: str = Application.AccessTokenFormat.OPAQUE,
    access_token_audience: str = "",
    is_resource_server: bool = False,
    require_mfa: bool = False,
    backchannel_logout_uri: str = "",
    backchannel_logout_session_required: bool = False,
    frontchannel_logout_uri: str = "",
    frontchannel_logout_session_required: bool = False,
) -> IssuedClient:
    """Register a client. Returns its raw secret once; only the keyed hash is stored. The caller
    must hold what the secret carries (client_register). require_mfa: every sign-in to it uses a
    second factor."""
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
        require_mfa=require_mfa,
        backchannel_logout_uri=backchannel_logout_uri,
        backchannel_logout_session_required=backchannel_logout_session_required,
        frontchannel_logout_uri=frontchannel_logout_uri,
        frontchannel_logout_session_required=frontchannel_logout_session_required,
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
        }
        | ({"require_mfa": True} if application.require_mfa else {}),
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
