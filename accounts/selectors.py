"""Reads of accounts."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q, QuerySet
from oauth2_provider.models import get_application_model

import audit
from accounts.models import Permission, Role, RoleAssignment, User

T = TypeVar("T")
logger = logging.getLogger(__name__)


class MarkedCache:
    """Reads kept in the shared cache (Redis) for as long as nothing they depend on has changed.

    Every entry carries the generation mark it was read under and counts only while that mark is
    current; forget() replaces the mark, which makes every entry stale in every process at once.
    Mark and entry come back in one round trip. The receivers that call forget() do so at once
    (for reads later in the same transaction) and again after the commit (a concurrent request
    may have cached what it read before the commit in between).

    Without a shared cache (`make run` on its embedded defaults keeps one per process) nothing is
    kept: one process could not tell the others that something changed. When Redis is unreachable,
    reads go to the database; a change cannot then replace the mark, and its save fails rather than
    leave entries that would be stale once Redis is back.
    """

    def __init__(self, name: str, *, seconds: int) -> None:
        self.mark_key = f"idp:{name}:mark"
        self.entry_prefix = f"idp:{name}:"
        # Invalidation is by the mark; the timeout bounds what an unsignalled bulk update() leaves.
        self.seconds = seconds

    def entry_key(self, key: str) -> str:
        # Hashed: a key may hold whatever a request said, of any length and alphabet.
        return self.entry_prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    def read_names(self, key: str) -> list[str]:
        """The cache entries get_or_read(key) reads, in one get_many (to read them ahead)."""
        return [self.mark_key, self.entry_key(key)]

    def get_or_read(self, key: str, read: Callable[[], T | None]) -> T | None:
        """The cached value for key, else read() (a None from it is not kept)."""
        if "RedisCache" not in settings.CACHES["default"]["BACKEND"]:
            return read()
        entry_key = self.entry_key(key)
        try:
            found = cache.get_many(self.read_names(key))
        except Exception:  # noqa: BLE001 - any failure of the cache's client: read, keep nothing
            logger.warning("shared cache unavailable; %s read from the database", self.entry_prefix, exc_info=True)
            return read()
        mark, entry = found.get(self.mark_key), found.get(entry_key)
        if mark is not None and entry is not None and entry[0] == mark:
            return entry[1]
        value = read()
        if value is None:
            return None
        if mark is None:
            mark = uuid.uuid4().hex
            if not cache.add(self.mark_key, mark, timeout=None):
                return value  # another process set one meanwhile; the next read keeps the value
        cache.set(entry_key, (mark, value), self.seconds)
        return value

    def forget(self, **kwargs: Any) -> None:
        """Signal receiver: every entry is stale from now on."""
        self._mark_replace()
        transaction.on_commit(self._mark_replace)

    def _mark_replace(self) -> None:
        cache.set(self.mark_key, uuid.uuid4().hex, timeout=None)


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


# Every token, introspection and API call asks what its subject holds; who holds what changes
# rarely. Any change to roles, assignments, permissions or group membership makes all of it stale
# (accounts.apps connects the receivers).
access_cache = MarkedCache("access", seconds=300)


def subject_access(
    *,
    user_id: int | None = None,
    client_pk: int | None = None,
    application_pk: int | None = None,
    all_clients: bool = False,
    among: list[int] | None = None,
) -> Access:
    """Effective roles and permissions of a subject (subject_roles), limited to the role ids
    `among` when given (an API key's roles). From the shared cache, else one query."""
    key = f"{user_id}:{client_pk}:{application_pk}:{all_clients}:{sorted(among) if among is not None else None}"
    access = access_cache.get_or_read(
        key,
        lambda: _subject_access_read(
            user_id=user_id, client_pk=client_pk, application_pk=application_pk, all_clients=all_clients, among=among
        ),
    )
    assert access is not None  # noqa: S101 - the read always answers
    return access


def _subject_access_read(
    *,
    user_id: int | None,
    client_pk: int | None,
    application_pk: int | None,
    all_clients: bool,
    among: list[int] | None,
) -> Access:
    # One query, whatever the number of roles: each role with each of its permissions (a role
    # without any comes once, with None).
    roles = subject_roles(user_id=user_id, client_pk=client_pk, application_pk=application_pk, all_clients=all_clients)
    if among is not None:
        roles = roles.filter(pk__in=among)
    pairs = roles.values_list("name", "permissions__codename").distinct()
    names, codenames = set(), set()
    for name, codename in pairs:
        names.add(name)
        if codename is not None:
            codenames.add(codename)
    return Access(roles=sorted(names), permissions=sorted(codenames))


# --- The management API's callers and reads ------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who calls a service that checks privilege: the subject of a management API token (a user,
    or the service account of a client_credentials client) and what it holds through global roles,
    a signed-in person on the dashboard or in Django admin, or an operator.

    A client's own roles describe access to that client's application, never to the provider
    itself, so they count for nothing in `access` (else any client could mint itself
    administrators). An operator (a Django superuser in the admin, or the shell: management
    commands) holds everything, as Django's superuser does."""

    actor: audit.Actor
    access: Access
    application_pk: int | None  # the client the token was issued to (an API key may have none)
    user_id: int | None = None  # set for a user's token
    client_pk: int | None = None  # set for a service account's (client_credentials) token
    is_operator: bool = False
    # An API key acts with only the roles it carries (of those its owner holds): their ids.
    role_ids: frozenset[int] | None = None

    def holds(self, codenames: Iterable[str]) -> bool:
        return self.is_operator or set(codenames) <= set(self.access.permissions)

    @classmethod
    def operator(cls, actor: audit.Actor) -> Caller:
        """The shell (a management command) or the system: trusted with everything."""
        return cls(actor=actor, access=Access(roles=[], permissions=[]), application_pk=None, is_operator=True)


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


def caller_for_person(*, user: User) -> Caller:
    """A signed-in person on the dashboard or in Django admin. A superuser is an operator there, as
    Django makes them; anyone else holds what their roles give, and being staff adds nothing."""
    if user.is_superuser:
        return replace(Caller.operator(audit.Actor.user(user)), user_id=user.pk)
    return Caller(
        actor=audit.Actor.user(user), access=subject_access(user_id=user.pk), application_pk=None, user_id=user.pk
    )


@dataclass(frozen=True)
class Holdings:
    """Roles (by id, global and every client's) and permissions: what a caller holds, or what a
    credential would carry."""

    role_ids: frozenset[int] = frozenset()
    permissions: frozenset[str] = frozenset()

    def __or__(self, other: Holdings) -> Holdings:
        return Holdings(self.role_ids | other.role_ids, self.permissions | other.permissions)


def holdings_of(
    *, user_id: int | None = None, client_pk: int | None = None, among: Iterable[int] | None = None
) -> Holdings:
    """Every role a user (directly or through groups) or a service account holds, for every client,
    with their permissions; only the roles `among` when given (an API key's). One query."""
    roles = subject_roles(user_id=user_id, client_pk=client_pk, all_clients=True)
    if among is not None:
        roles = roles.filter(pk__in=list(among))
    role_ids, codenames = set(), set()
    for role_id, codename in roles.values_list("pk", "permissions__codename").distinct():
        role_ids.add(role_id)
        if codename is not None:
            codenames.add(codename)
    return Holdings(frozenset(role_ids), frozenset(codenames))


def caller_holdings(*, caller: Caller) -> Holdings:
    """What a (non-operator) caller holds, for comparing with what a credential would carry."""
    if caller.user_id is not None:
        held = holdings_of(user_id=caller.user_id, among=caller.role_ids)
    elif caller.client_pk is not None:
        held = holdings_of(client_pk=caller.client_pk, among=caller.role_ids)
    else:
        held = Holdings()
    # The management permissions a caller holds through global roles count as held too (they are
    # what the idp.manage scope of a client or key can exercise).
    return held | Holdings(permissions=frozenset(caller.access.permissions))


def caller_holds(*, caller: Caller, carries: Holdings) -> bool:
    """Whether the caller holds every role and permission in `carries` (an operator holds all);
    accounts.services.caller_holds_check refuses on it."""
    if caller.is_operator:
        return True
    held = caller_holdings(caller=caller)
    return carries.role_ids <= held.role_ids and carries.permissions <= held.permissions


def management_holders_exist() -> bool:
    """Whether some active principal (a user, directly or through a group, or the service account
    of an active client) holds every management permission through global roles."""
    from accounts.models import MANAGEMENT_PERMISSIONS

    needed = set(MANAGEMENT_PERMISSIONS)
    global_roles: dict[int, set[str]] = {}
    rows = Role.objects.filter(application__isnull=True, permissions__codename__in=needed).values_list(
        "pk", "permissions__codename"
    )
    for role_id, codename in rows:
        global_roles.setdefault(role_id, set()).add(codename)
    held: dict[tuple[str, int], set[str]] = {}
    assignments = RoleAssignment.objects.filter(role_id__in=global_roles).values_list(
        "role_id", "user_id", "user__is_active", "group_id", "client_id", "client__is_active"
    )
    group_roles: dict[int, set[str]] = {}
    for role_id, user_id, user_active, group_id, client_id, client_active in assignments:
        if user_id is not None and user_active:
            held.setdefault(("user", user_id), set()).update(global_roles[role_id])
        elif client_id is not None and client_active:
            held.setdefault(("client", client_id), set()).update(global_roles[role_id])
        elif group_id is not None:
            group_roles.setdefault(group_id, set()).update(global_roles[role_id])
    if group_roles:
        members = User.objects.filter(is_active=True, groups__in=list(group_roles)).values_list("pk", "groups")
        for user_id, group_id in members:
            if group_id in group_roles:
                held.setdefault(("user", user_id), set()).update(group_roles[group_id])
    return any(codenames >= needed for codenames in held.values())


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


def user_requires_mfa(*, user_id: int) -> bool:
    """Whether a role the user holds (global or any client's, directly or through a group)
    requires a second factor of its holders."""
    return subject_roles(user_id=user_id, all_clients=True).filter(require_mfa=True).exists()


def user_may_receive_tokens(user: Any) -> bool:
    """Whether clients may be given tokens for this user: a self-registered user only once their
    address is verified (idp.oauth: the authorization endpoint, codes and refresh tokens)."""
    return not getattr(user, "is_self_registered", False) or bool(user.email_verified and user.email)
