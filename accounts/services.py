"""Every write to accounts goes through here."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.db import transaction

import audit
from accounts.models import Permission, Role, RoleAssignment, User


@transaction.atomic
def user_create(*, username: str, email: str, password: str, actor: audit.Actor, is_staff: bool = False) -> User:
    """Create an active user; the password must pass the configured validators."""
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.full_clean(exclude=["password"])
    validate_password(password, user=user)
    user.set_password(password)
    user.save()
    audit.record(audit.Action.USER_CREATED, actor=actor, target=audit.Target.user(user))
    return user


# --- RBAC ----------------------------------------------------------------------------------------


def _holder_target(*, user: Any = None, group: Any = None, client: Any = None) -> audit.Target:
    if user is not None:
        return audit.Target.user(user)
    if group is not None:
        return audit.Target.of(group)
    return audit.Target.client(client)


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
def role_create(
    *,
    name: str,
    actor: audit.Actor,
    description: str = "",
    application: Any = None,
    permissions: list[str] = (),  # type: ignore[assignment]
) -> Role:
    """A global role, or a client's own role with application; unknown permissions are created."""
    role = Role(name=name, description=description, application=application)
    role.full_clean()
    role.save()
    role.permissions.set([permission_ensure(codename=codename, actor=actor) for codename in permissions])
    audit.record(
        audit.Action.ROLE_CREATED,
        actor=actor,
        target=audit.Target.of(role),
        client_id=application.client_id if application is not None else "",
        data={"name": name, "permissions": sorted(permissions)},
    )
    return role


@transaction.atomic
def role_grant(
    *, role: Role, actor: audit.Actor, user: Any = None, group: Any = None, client: Any = None
) -> RoleAssignment:
    """Give the role to exactly one holder. Granting a role already held changes nothing."""
    assignment, created = RoleAssignment.objects.get_or_create(role=role, user=user, group=group, client=client)
    if created:
        audit.record(
            audit.Action.ROLE_GRANTED,
            actor=actor,
            target=_holder_target(user=user, group=group, client=client),
            client_id=role.application.client_id if role.application_id else "",
            data={"role": role.name, "role_id": role.pk},
        )
    return assignment


@transaction.atomic
def role_revoke(*, assignment: RoleAssignment, actor: audit.Actor) -> None:
    role = assignment.role
    target = _holder_target(user=assignment.user, group=assignment.group, client=assignment.client)
    assignment.delete()
    audit.record(
        audit.Action.ROLE_REVOKED,
        actor=actor,
        target=target,
        client_id=role.application.client_id if role.application_id else "",
        data={"role": role.name, "role_id": role.pk},
    )
