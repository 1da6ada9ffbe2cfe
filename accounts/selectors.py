"""Reads of accounts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.db.models import Q, QuerySet
from oauth2_provider.models import get_application_model

import audit
from accounts.models import Permission, Role, RoleAssignment, User


def user_standard_claims(user: User) -> dict[str, Any]:
    """The OpenID Connect standard claims (Core §5.1) this user has; empty values are left out,
    since an empty string is not a claim value. Which of them are released is the caller's
    business (scopes, the claims request parameter)."""
    address = {
        "street_address": user.street_address,
        "locality": user.locality,
        "region": user.region,
        "postal_code": user.postal_code,
        "country": user.country,
    }
    address = {key: value for key, value in address.items() if value}
    if address:
        lines = [
            address.get("street_address", ""),
            " ".join(filter(None, [address.get("postal_code"), address.get("locality")])),
        ]
        lines += [address.get("region", ""), address.get("country", "")]
        address["formatted"] = "\n".join(line for line in lines if line)
    claims: dict[str, Any] = {
        "name": user.get_full_name(),
        "given_name": user.first_name,
        "family_name": user.last_name,
        "preferred_username": user.get_username(),
        "locale": user.locale,
        "zoneinfo": user.zoneinfo,
        "updated_at": int(user.updated_at.timestamp()) if user.updated_at else None,
        "email": user.email,
        "email_verified": user.email_verified if user.email else None,
        "phone_number": user.phone_number,
        "phone_number_verified": user.phone_number_verified if user.phone_number else None,
        "address": address or None,
    }
    return {key: value for key, value in claims.items() if value not in ("", None)}


@dataclass(frozen=True)
class Access:
    """What a subject holds: role names and permission codenames, sorted."""

    roles: list[str]
    permissions: list[str]


def subject_roles(
    *,
    user_id: int | None = None,
    client_pk: int | None = None,
    application_pk: int | None = None,
    all_clients: bool = False,
) -> QuerySet[Role]:
    """The roles a user holds (directly and through groups) or a machine client's service account
    holds, as seen by one client: global roles plus that client's own roles (all clients' roles
    with all_clients). May repeat a role; use .distinct() or values."""
    if (user_id is None) == (client_pk is None):
        raise ValueError("give exactly one of user_id and client_pk")
    holder = (
        Q(assignments__client_id=client_pk)
        if client_pk is not None
        else (Q(assignments__user_id=user_id) | Q(assignments__group__user__id=user_id))
    )
    roles = Role.objects.filter(holder)
    if not all_clients:
        roles = roles.filter(Q(application__isnull=True) | Q(application_id=application_pk))
    return roles


def subject_access(
    *,
    user_id: int | None = None,
    client_pk: int | None = None,
    application_pk: int | None = None,
    all_clients: bool = False,
    among: list[int] | None = None,
) -> Access:
    """Effective roles and permissions of a subject (subject_roles), limited to the role ids
    `among` when given (an API key's roles). Two queries, whatever the number of roles."""
    roles = subject_roles(user_id=user_id, client_pk=client_pk, application_pk=application_pk, all_clients=all_clients)
    if among is not None:
        roles = roles.filter(pk__in=among)
    found = dict(roles.values_list("pk", "name").distinct())
    codenames = Permission.objects.filter(roles__pk__in=list(found)).values_list("codename", flat=True).distinct()
    return Access(roles=sorted(set(found.values())), permissions=sorted(codenames))


# --- The management API's callers and reads ------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who calls the management API: the subject of a bearer token (a user, or the service
    account of a client_credentials client) and what it holds through global roles. A client's
    own roles describe access to that client's application, never to the provider itself, so they
    count for nothing here (else any client could mint itself administrators). Services check
    privilege escalation against it."""

    actor: audit.Actor
    access: Access
    application_pk: int | None  # the client the token was issued to (an API key may have none)
    user_id: int | None = None  # set for a user's token
    client_pk: int | None = None  # set for a service account's (client_credentials) token

    def holds(self, codenames: Iterable[str]) -> bool:
        return set(codenames) <= set(self.access.permissions)


def caller_get(*, user: User | None, application: Any) -> Caller:
    """The caller behind a token: its user, or else the token's client as a service account."""
    if user is not None:
        return Caller(
            actor=audit.Actor.user(user),
            access=subject_access(user_id=user.pk),
            application_pk=application.pk,
            user_id=user.pk,
        )
    return Caller(
        actor=audit.Actor.client(application),
        access=subject_access(client_pk=application.pk),
        application_pk=application.pk,
        client_pk=application.pk,
    )


def user_list() -> QuerySet[User]:
    return User.objects.all()


def user_get(*, user_id: int) -> User:
    """Raises User.DoesNotExist."""
    return User.objects.get(pk=user_id)


def permission_list() -> QuerySet[Permission]:
    return Permission.objects.all()


def role_list() -> QuerySet[Role]:
    return Role.objects.select_related("application").prefetch_related("permissions")


def role_get(*, role_id: int) -> Role:
    """Raises Role.DoesNotExist."""
    return role_list().get(pk=role_id)


def role_assignment_list() -> QuerySet[RoleAssignment]:
    return RoleAssignment.objects.select_related("role", "role__application", "user", "group", "client")


def role_assignment_get(*, assignment_id: int) -> RoleAssignment:
    """Raises RoleAssignment.DoesNotExist."""
    return role_assignment_list().get(pk=assignment_id)


def group_get(*, group_id: int) -> Group:
    """Raises Group.DoesNotExist."""
    return Group.objects.get(pk=group_id)


def client_get(*, client_id: str) -> Any:
    """The client (the swappable OAuth application model) with this client_id; raises its
    DoesNotExist."""
    return get_application_model().objects.get(client_id=client_id)
