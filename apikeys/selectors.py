"""Reads of API keys: verification (the hot path), introspection and the dashboard's lists."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet
from django.utils import timezone

import audit
from accounts.models import APIKEYS_MANAGE
from accounts.selectors import Access, Caller, caller_for_person, subject_access, user_may_receive_tokens
from apikeys.keyformat import key_digest, key_parse
from apikeys.models import ApiKey


@dataclass(frozen=True)
class VerifiedKey:
    """A key that verified: what DRF puts in request.auth. It answers the few questions the
    permission classes ask of an access token (user_id, allow_scopes) and knows its caller."""

    key: ApiKey

    @property
    def user_id(self) -> int | None:
        return self.key.user_id

    @property
    def user(self) -> Any:
        return self.key.user

    @property
    def scopes(self) -> list[str]:
        return self.key.scope_list

    def allow_scopes(self, scopes: list[str]) -> bool:
        return set(scopes) <= set(self.scopes)

    def access(self) -> Access:
        """The key's roles that its owner still holds, as seen by the key's client (global roles
        plus that client's own), with their permissions. Live: a role taken from the owner is
        gone from the key at once."""
        role_ids = getattr(self.key, "role_pks", None)  # read with the key (apikey_verify, narrow)
        return apikey_access(
            key=self.key,
            application_pk=self.key.application_id,
            role_ids=list(role_ids) if role_ids is not None else None,
        )

    def caller(self) -> Caller:
        """The management API's view: global roles only (accounts.selectors.Caller). It acts with
        no more than the key's roles, also when it would mint a credential."""
        role_ids = list(self.key.roles.values_list("pk", flat=True))
        return Caller(
            actor=audit.Actor.api_key(self.key),
            access=apikey_access(key=self.key, application_pk=None, role_ids=role_ids),
            application_pk=self.key.application_id,
            user_id=self.key.user_id,
            client_pk=self.key.application_id if self.key.user_id is None else None,
            role_ids=frozenset(role_ids),
        )


def apikey_access(*, key: ApiKey, application_pk: int | None, role_ids: list[int] | None = None) -> Access:
    if role_ids is None:
        role_ids = list(key.roles.values_list("pk", flat=True))
    if not role_ids:
        return Access(roles=[], permissions=[])
    if key.user_id is not None:
        return subject_access(user_id=key.user_id, application_pk=application_pk, among=role_ids)
    return subject_access(client_pk=key.application_id, application_pk=application_pk, among=role_ids)


# What verification and an introspection answer read (apikey_claims): the key's own columns they
# use, its client's id and state, its user's name and state. Not the whole user and client rows.
INTROSPECTION_FIELDS = (
    "public_id",
    "secret_hash",
    "scope",
    "created_at",
    "expires_at",
    "grace_ends_at",
    "revoked_at",
    "user__username",
    "user__is_active",
    "user__is_self_registered",
    "user__email",
    "user__email_verified",
    "application__client_id",
    "application__is_active",
)


def apikey_verify(*, presented: str, now: datetime | None = None, narrow: bool = False) -> VerifiedKey | None:
    """The key behind a presented string if it is usable now: well formed with a valid checksum,
    known, matching in constant time, neither revoked, expired nor past its grace period, and its
    owner active. None otherwise, for whatever reason (callers must not tell them apart).
    A read only: apikeys.services.apikey_use also records the use. `narrow` reads only what an
    introspection answer needs (INTROSPECTION_FIELDS)."""
    parsed = key_parse(presented)
    if parsed is None:
        return None
    keys = ApiKey.objects.select_related("user", "application")
    if narrow:  # for an introspection answer only: request.user of an API call needs the whole user
        keys = keys.only(*INTROSPECTION_FIELDS)
        if connection.vendor == "postgresql":  # the key's role ids in the same read: one query
            held = ApiKey.roles.through.objects.filter(apikey_id=OuterRef("pk")).values("role_id")
            keys = keys.annotate(role_pks=ArraySubquery(held))
    key = keys.filter(public_id=parsed.public_id).first()
    if key is None or not hmac.compare_digest(key.secret_hash, key_digest(parsed.key)):
        return None
    now = now or timezone.now()
    if not key.is_usable(now):
        return None
    if (key.user is not None and not (key.user.is_active and user_may_receive_tokens(key.user))) or (
        key.application is not None and not key.application.is_active
    ):
        return None  # a self-registered owner's address unverified (changed): as its refresh tokens
    return VerifiedKey(key=key)


def apikey_claims(*, verified: VerifiedKey, issuer: str) -> dict[str, Any]:
    """The RFC 7662 answer for a usable API key: the members an access token's answer has, with
    token_type "api_key" (an unusable key answers only {"active": false}, the caller's business)."""
    key = verified.key
    access = verified.access()
    if key.user_id is not None:
        subject = str(key.user_id)
    else:
        assert key.application is not None  # apikeys_apikey_has_owner: a key without a user has a client
        subject = key.application.client_id
    answer: dict[str, Any] = {
        "active": True,
        "token_type": "api_key",
        "scope": key.scope,
        "sub": subject,
        "iat": int(key.created_at.timestamp()),
        "iss": issuer,
        "roles": access.roles,
        "permissions": access.permissions,
    }
    if key.application is not None:
        answer["client_id"] = key.application.client_id
    if key.user is not None:
        answer["username"] = key.user.get_username()
    ends = [moment for moment in (key.expires_at, key.grace_ends_at) if moment is not None]
    if ends:
        answer["exp"] = int(min(ends).timestamp())
    return answer


def apikeys_managed_by(*, user: Any) -> bool:
    """Whether a person manages other principals' keys: holds idp.apikeys.manage (a superuser does).
    Being staff gives nothing by itself."""
    return caller_for_person(user=user).holds([APIKEYS_MANAGE])


def apikey_list_for(*, user: Any) -> QuerySet[ApiKey]:
    """The keys a dashboard user may see: their own; a holder of idp.apikeys.manage sees every key."""
    keys = ApiKey.objects.select_related("user", "application", "successor", "rotated_from").prefetch_related("roles")
    return keys if apikeys_managed_by(user=user) else keys.filter(user=user)


def apikey_get_for(*, user: Any, key_id: int) -> ApiKey:
    """One key the user may see; the same ApiKey.DoesNotExist for missing and not theirs."""
    return apikey_list_for(user=user).get(pk=key_id)


def apikey_manageable_by(*, key: ApiKey, user: Any, manages_keys: bool | None = None) -> bool:
    """Who may rotate, reveal and schedule a key (and so see its secrets): its user, and a holder of
    idp.apikeys.manage for machine clients' keys (apikeys.services then also checks that they hold
    every role the key carries). Such a holder may revoke any key but never sees a user's secret.
    manages_keys: apikeys_managed_by(user=user), when the caller knows it already."""
    if key.user_id == user.pk:
        return True
    if key.user_id is not None:
        return False
    return apikeys_managed_by(user=user) if manages_keys is None else manages_keys


def apikeys_due(*, now: datetime) -> QuerySet[ApiKey]:
    """Keys whose rotation is due: scheduled, not yet rotated, still usable."""
    return ApiKey.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        next_rotation_at__lte=now,
        revoked_at__isnull=True,
        grace_ends_at__isnull=True,
    )


def apikeys_pending_past_grace(*, now: datetime) -> QuerySet[ApiKey]:
    """Successors whose secret was never revealed and whose predecessor's grace period is over,
    whatever became of the predecessor since (revoked, or ended early by its own expiry)."""
    return ApiKey.objects.filter(rotated_from__grace_ends_at__lte=now).exclude(pending_secret="")


def apikeys_ended(*, now: datetime) -> QuerySet[ApiKey]:
    """Keys whose grace period or lifetime ran out and whose end is not recorded yet."""
    return ApiKey.objects.filter(
        Q(grace_ends_at__lte=now) | Q(expires_at__lte=now), ended_at__isnull=True, revoked_at__isnull=True
    )


def apikeys_rotation_upcoming(*, now: datetime, within: timedelta) -> QuerySet[ApiKey]:
    """Live, scheduled keys whose rotation falls within `within` from now or is already overdue
    (the sweep has not run), soonest first: what apikeys_due will hand the sweep next."""
    return (
        ApiKey.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
            next_rotation_at__lte=now + within,
            revoked_at__isnull=True,
            grace_ends_at__isnull=True,
        )
        .select_related("user", "application")
        .order_by("next_rotation_at", "pk")
    )
