"""Every write to accounts goes through here.

Services that the management API calls take an optional ``caller`` (accounts.selectors.Caller).
With one, they refuse privilege escalation with PermissionDenied: nobody gives away, takes away or
reshapes a permission they do not hold themselves, nor changes their own roles. Without one, the
write comes from a trusted operator (a management command, the admin, a migration).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

import audit
from accounts.models import ADMIN_ROLE, MANAGEMENT_PERMISSIONS, Permission, Role, RoleAssignment, User
from accounts.selectors import Caller, Holdings, caller_holds, management_holders_exist, subject_access

UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE unique_violation

# --- The rule of every action that hands out a credential ------------------------------------------


def caller_holds_check(*, caller: Caller, carries: Holdings, doing: str) -> None:
    """Refuse (PermissionDenied) unless the caller holds every role and every permission in
    `carries`: what a credential it would mint or see would carry, or what a principal it would
    switch off holds. The one rule behind client secrets (create, rotate, reset: management API and
    Django admin), API keys (create, rotate, reveal: dashboard and commands) and disabling a client:
    no action hands its caller more than the caller holds. Operators hold everything."""
    if not caller_holds(caller=caller, carries=carries):
        raise PermissionDenied(f"cannot {doing}: it carries roles or permissions you do not hold")


@contextmanager
def administration_kept(caller: Caller | None) -> Iterator[None]:
    """Around a change made by a caller (the management API, Django admin): if some active principal
    held every management permission before it, one must after it, or the change is refused (and,
    raised inside its transaction, undone). Nobody can lock everyone out of the provider. The
    shell (caller None) is how an operator repairs a provider, so it is not held to this."""
    if caller is None:
        yield
        return
    before = management_holders_exist()
    yield
    if before and not management_holders_exist():
        raise PermissionDenied("this would leave nobody holding every management permission")


def _refuse_admin_role_change(role: Role, *, wanted: set[str] | None, require_mfa: bool | None = None) -> None:
    """The built-in idp-admin role always holds every management permission, requires a second
    factor of its holders and is never deleted (wanted None): it is how a provider is administered
    and recovered."""
    if role.name != ADMIN_ROLE or role.application_id is not None:
        return
    if wanted is None:
        raise PermissionDenied(f"the built-in role {ADMIN_ROLE} cannot be deleted")
    if not set(MANAGEMENT_PERMISSIONS) <= wanted:
        raise PermissionDenied(f"the built-in role {ADMIN_ROLE} keeps every management permission")
    if require_mfa is False:
        raise PermissionDenied(f"the built-in role {ADMIN_ROLE} always requires a second factor")


@transaction.atomic
def user_create(
    *,
    username: str,
    email: str,
    password: str,
    actor: audit.Actor,
    is_staff: bool = False,
    first_name: str = "",
    last_name: str = "",
) -> User:
    """Create an active user; the password must pass the configured validators. A name or address
    already taken is a ValidationError on its field, even when a concurrent request took it."""
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff,
        is_superuser=is_staff,
    )
    user.full_clean(exclude=["password"])
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.error_list}) from None
    user.set_password(password)
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives the refusal
            user.save()
    except IntegrityError as exc:
        # full_clean saw no twin, but a concurrent request wrote one since: the unique indexes
        # (username, its keys, the e-mail's lower case) refuse it, and so do we, as full_clean would.
        refusal = _unique_refusal(exc)
        if refusal is None:
            raise
        raise refusal from None
    audit.record(audit.Action.USER_CREATED, actor=actor, target=audit.Target.user(user))
    return user


def _unique_refusal(exc: IntegrityError) -> ValidationError | None:
    """The ValidationError naming the field whose unique index refused a user (None: another error)."""
    if getattr(exc.__cause__, "sqlstate", None) != UNIQUE_VIOLATION:
        return None
    constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or ""
    if "email" in constraint:
        return ValidationError({"email": "A user with that email address already exists."})
    return ValidationError({"username": "A user with this username, or one that looks the same, already exists."})


@transaction.atomic
def user_deactivate(*, user_id: int, actor: audit.Actor, caller: Caller | None = None, reason: str = "") -> User:
    """Switch a user off: they can no longer sign in, and their tokens stop working at once
    (introspection, userinfo, refresh and the management API all check is_active). Deactivating
    an inactive user changes and records nothing."""
    user = User.objects.select_for_update(no_key=True).get(pk=user_id)
    if caller is not None:
        if user.pk == caller.user_id:
            raise PermissionDenied("cannot deactivate yourself")
        if user.is_staff or user.is_superuser:
            raise PermissionDenied("staff accounts are managed in the admin, not through the API")
        if not caller.holds(subject_access(user_id=user.pk, all_clients=True).permissions):
            raise PermissionDenied("cannot deactivate a user holding permissions you do not hold")
    if not user.is_active:
        return user
    with administration_kept(caller):
        user.is_active = False
        user.save(update_fields=["is_active", "updated_at"])
    audit.record(audit.Action.USER_DEACTIVATED, actor=actor, target=audit.Target.user(user), data={"reason": reason})
    return user


# --- RBAC ----------------------------------------------------------------------------------------


def _holder_target(*, user: Any = None, group: Any = None, client: Any = None) -> audit.Target:
    if user is not None:
        return audit.Target.user(user)
    if group is not None:
        return audit.Target.of(group)
    return audit.Target.client(client)


def _codenames(role: Role) -> set[str]:
    return set(role.permissions.values_list("codename", flat=True))


def _refuse_unless_held(caller: Caller | None, codenames: Iterable[str], doing: str) -> None:
    if caller is not None and not caller.holds(codenames):
        raise PermissionDenied(f"cannot {doing} a role with permissions you do not hold")


def _refuse_self(caller: Caller | None, *, user: Any = None, group: Any = None, client: Any = None) -> None:
    """Nobody changes their own roles, not even through a group they belong to (an operator may)."""
    if caller is None or caller.is_operator:
        return
    if user is not None and user.pk == caller.user_id:
        raise PermissionDenied("cannot change your own roles")
    if client is not None and client.pk == caller.client_pk:
        raise PermissionDenied("cannot change the roles of your own service account")
    if group is not None and caller.user_id is not None and group.user_set.filter(pk=caller.user_id).exists():
        raise PermissionDenied("cannot change the roles of a group you belong to")


@transaction.atomic
def permission_ensure(*, codename: str, actor: audit.Actor, description: str = "") -> Permission:
    """The permission with this codename, created (and audited) if it does not exist yet."""
    permission = Permission.objects.filter(codename=codename).first()
    if permission is not None:
        return permission
    permission = Permission(codename=codename, description=description)
    permission.full_clean()
    permission.save()
    audit.record(audit.Action.PERMISSION_CREATED, actor=actor, target=audit.Target.of(permission))
    return permission


@transaction.atomic
def permission_create(*, codename: str, actor: audit.Actor, description: str = "") -> Permission:
    """A new permission; a codename already taken is a ValidationError. Creating one gives it to
    nobody, so it needs no check against the caller."""
    permission = Permission(codename=codename, description=description)
    permission.full_clean()
    permission.save()
    audit.record(audit.Action.PERMISSION_CREATED, actor=actor, target=audit.Target.of(permission))
    return permission


@transaction.atomic
def role_create(
    *,
    name: str,
    actor: audit.Actor,
    description: str = "",
    application: Any = None,
    permissions: Iterable[str] = (),
    caller: Caller | None = None,
    require_mfa: bool = False,
) -> Role:
    """A global role, or a client's own role with application. Unknown permissions are created,
    except for a caller, who can only bundle permissions they hold (so they exist). require_mfa:
    its holders sign in with a second factor."""
    permissions = sorted(set(permissions))
    _refuse_unless_held(caller, permissions, "create")
    if Role.objects.filter(name=name, application=application).exists():
        raise ValidationError({"name": "a role with this name already exists"})
    role = Role(name=name, description=description, application=application, require_mfa=require_mfa)
    role.full_clean()
    role.save()
    role.permissions.set([permission_ensure(codename=codename, actor=actor) for codename in permissions])
    audit.record(
        audit.Action.ROLE_CREATED,
        actor=actor,
        target=audit.Target.of(role),
        client_id=application.client_id if application is not None else "",
        data={"name": name, "permissions": permissions} | ({"require_mfa": True} if require_mfa else {}),
    )
    return role


@transaction.atomic
def role_update(
    *,
    role_id: int,
    actor: audit.Actor,
    description: str | None = None,
    permissions: Iterable[str] | None = None,
    caller: Caller | None = None,
    require_mfa: bool | None = None,
) -> Role:
    """Change a role's description, replace its permissions and/or whether its holders need a
    second factor (None leaves each as it is). A caller must hold every permission the role has
    before and after. No change records nothing."""
    role = Role.objects.select_for_update(no_key=True).get(pk=role_id)
    current = _codenames(role)
    wanted = current if permissions is None else set(permissions)
    _refuse_unless_held(caller, current | wanted, "change")
    _refuse_admin_role_change(role, wanted=wanted, require_mfa=require_mfa)
    changes: dict[str, Any] = {}
    if require_mfa is not None and require_mfa != role.require_mfa:
        role.require_mfa = require_mfa
        role.save(update_fields=["require_mfa"])
        changes["require_mfa"] = require_mfa
    if description is not None and description != role.description:
        role.description = description
        role.full_clean()
        role.save(update_fields=["description"])
        changes["description"] = description
    if wanted != current:
        with administration_kept(caller):
            role.permissions.set([permission_ensure(codename=codename, actor=actor) for codename in sorted(wanted)])
        changes["added"] = sorted(wanted - current)
        changes["removed"] = sorted(current - wanted)
    if changes:
        audit.record(
            audit.Action.ROLE_UPDATED,
            actor=actor,
            target=audit.Target.of(role),
            client_id=role.application.client_id if role.application is not None else "",
            data={"name": role.name, **changes},
        )
    return role


@transaction.atomic
def role_delete(*, role_id: int, actor: audit.Actor, caller: Caller | None = None) -> None:
    """Delete a role. Its holders lose it first through role_revoke, one audited revocation each."""
    role = Role.objects.select_for_update().get(pk=role_id)
    codenames = _codenames(role)
    _refuse_unless_held(caller, codenames, "delete")
    _refuse_admin_role_change(role, wanted=None)
    with administration_kept(caller):
        for assignment in role.assignments.select_related("user", "group", "client"):
            role_revoke(assignment=assignment, actor=actor, caller=caller)
    audit.record(
        audit.Action.ROLE_DELETED,
        actor=actor,
        target=audit.Target.of(role),
        client_id=role.application.client_id if role.application is not None else "",
        data={"name": role.name, "permissions": sorted(codenames)},
    )
    role.delete()


@transaction.atomic
def admin_role_ensure(*, actor: audit.Actor) -> Role:
    """The global role ADMIN_ROLE holding every management permission, created or completed if
    needed (migration 0004 makes it on every install; this repairs a database that lost it)."""
    permissions = [
        permission_ensure(codename=codename, description=description, actor=actor)
        for codename, description in MANAGEMENT_PERMISSIONS.items()
    ]
    role = Role.objects.filter(name=ADMIN_ROLE, application__isnull=True).first()
    if role is None:
        role = role_create(
            name=ADMIN_ROLE,
            description="Administers this identity provider through its management API.",
            permissions=list(MANAGEMENT_PERMISSIONS),
            actor=actor,
        )
        # Its holders administer the provider: they sign in with a second factor (migration 0008).
        Role.objects.filter(pk=role.pk).update(require_mfa=True)
        role.require_mfa = True
        return role
    role.permissions.add(*permissions)
    return role


@transaction.atomic
def role_grant(
    *,
    role: Role,
    actor: audit.Actor,
    user: Any = None,
    group: Any = None,
    client: Any = None,
    caller: Caller | None = None,
) -> RoleAssignment:
    """Give the role to exactly one holder. Granting a role already held changes nothing."""
    if [user, group, client].count(None) != 2:
        raise ValidationError("a role is held by exactly one of a user, a group or a client")
    if client is not None and client.authorization_grant_type != client.GRANT_CLIENT_CREDENTIALS:
        raise ValidationError({"client_id": "only a client_credentials client has a service account"})
    _refuse_self(caller, user=user, group=group, client=client)
    _refuse_unless_held(caller, _codenames(role), "grant")
    assignment, created = RoleAssignment.objects.get_or_create(role=role, user=user, group=group, client=client)
    if created:
        audit.record(
            audit.Action.ROLE_GRANTED,
            actor=actor,
            target=_holder_target(user=user, group=group, client=client),
            client_id=role.application.client_id if role.application is not None else "",
            data={"role": role.name, "role_id": role.pk},
        )
    return assignment


@transaction.atomic
def role_revoke(*, assignment: RoleAssignment, actor: audit.Actor, caller: Caller | None = None) -> None:
    """Take a role back. Revoking an assignment already gone changes and records nothing."""
    role = assignment.role
    _refuse_self(caller, user=assignment.user, group=assignment.group, client=assignment.client)
    _refuse_unless_held(caller, _codenames(role), "revoke")
    if not RoleAssignment.objects.select_for_update().filter(pk=assignment.pk).exists():
        return
    target = _holder_target(user=assignment.user, group=assignment.group, client=assignment.client)
    with administration_kept(caller):
        assignment.delete()
    audit.record(
        audit.Action.ROLE_REVOKED,
        actor=actor,
        target=target,
        client_id=role.application.client_id if role.application is not None else "",
        data={"role": role.name, "role_id": role.pk},
    )
