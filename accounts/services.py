"""Every write to accounts goes through here.

Services that the management API calls take an optional ``caller`` (accounts.selectors.Caller).
With one, they refuse privilege escalation with PermissionDenied: nobody gives away, takes away or
reshapes a permission they do not hold themselves, nor changes their own roles. Without one, the
write comes from a trusted operator (a management command, the admin, a migration).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

import audit
from accounts.models import ADMIN_ROLE, MANAGEMENT_PERMISSIONS, Permission, Role, RoleAssignment, User
from accounts.selectors import Caller, Holdings, caller_holds, management_holders_exist, subject_access
from accounts.tokens import email_verification_token, password_reset_token

log = logging.getLogger(__name__)

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
    is_self_registered: bool = False,
) -> User:
    """Create an active user; the password must pass the configured validators. A name or address
    already taken is a ValidationError on its field, even when a concurrent request took it. A
    user with an address is mailed its verification link once the creation commits."""
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff,
        is_superuser=is_staff,
        is_self_registered=is_self_registered,
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
    if user.email:
        email_verification_enqueue(user_id=user.pk)
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


# --- Account self-service: passwords, e-mail verification, registration ---------------------------
# The mails are sent by Celery tasks (accounts.tasks), each calling one of the *_send services
# below; web requests only enqueue them (after their transaction commits), so a request does the
# same work whatever account it names.

# Without IDP_ISSUER (development only: production refuses to start without it) links point here,
# where `make run` serves; never at the Host header of the request that asked for the mail.
DEVELOPMENT_BASE_URL = "http://localhost:8000"


def _link(name: str, *, user: User, token: str) -> str:
    """An absolute link to an account page, from the configured issuer: a request's Host header
    never decides where a reset link points (reset-link poisoning)."""
    path = reverse(name, kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": token})
    return (settings.ISSUER or DEVELOPMENT_BASE_URL) + path


def _mail(*, template: str, to: str, context: dict[str, Any]) -> None:
    """A plain-text mail through Django's e-mail backend (EMAIL_URL): templates/email/<template>_subject.txt
    and <template>.txt. Failures raise (SMTPException, OSError): the task retries them."""
    subject = " ".join(render_to_string(f"email/{template}_subject.txt", context).split())
    body = render_to_string(f"email/{template}.txt", context)
    send_mail(subject, body, None, [to], fail_silently=False)


def _enqueue(task_name: str, **kwargs: Any) -> None:
    """Send a mail task once the current transaction commits (nothing for a rolled-back write). A
    broker that cannot be reached is logged, not raised: the change it follows has committed."""
    from accounts import tasks  # the tasks call these services

    task = getattr(tasks, task_name)
    transaction.on_commit(functools.partial(task.delay, **kwargs), robust=True)


def password_reset_enqueue(*, email: str, source_ip: str | None) -> None:
    """Ask for the reset mail of whichever account has this address: the lookup happens in the
    task, so the request does the same work whether one does or not."""
    _enqueue("send_password_reset", email=email[:254], source_ip=source_ip)


def password_reset_send(*, email: str, source_ip: str | None = None) -> int:
    """Mail a reset link to each active account with this address and a usable password (one at
    most: addresses are unique), recorded as password.reset_requested. An address with no account
    gets nothing, and nothing is recorded. Returns how many mails were sent."""
    sent = 0
    users = User.objects.filter(email__iexact=email, is_active=True)
    for user in users:
        if not user.has_usable_password() or not user.email:
            continue
        link = _link("password-reset-confirm", user=user, token=password_reset_token.make_token(user))
        context = {"user": user, "link": link, "minutes": settings.PASSWORD_RESET_TIMEOUT // 60}
        _mail(template="password_reset", to=user.email, context=context)
        audit.record(
            audit.Action.PASSWORD_RESET_REQUESTED,
            actor=audit.Actor.anonymous(),
            target=audit.Target.user(user),
            data={"requested_from": source_ip or ""},
        )
        sent += 1
    return sent


@transaction.atomic
def user_password_set(*, user_id: int, password: str, actor: audit.Actor, via: str) -> User:
    """Set a user's password (already checked against the validators by the form that took it),
    recorded as password.changed. Every reset link sent before stops working (its hash covers the
    password), and so does every other session at its next request (the session auth hash):
    ending those sessions and their tokens is the caller's (idp.pages.account)."""
    user = User.objects.select_for_update(no_key=True).get(pk=user_id)
    user.set_password(password)
    user.save(update_fields=["password", "updated_at"])
    audit.record(audit.Action.PASSWORD_CHANGED, actor=actor, target=audit.Target.user(user), data={"via": via})
    return user


def email_verification_enqueue(*, user_id: int) -> None:
    _enqueue("send_email_verification", user_id=user_id)


def email_verification_send(*, user_id: int) -> bool:
    """Mail the verification link of the user's current address, unless it is verified already
    (or there is none, or no user): a retry or a late task sends nothing then. Recorded as
    email.verification_sent."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.email or user.email_verified:
        return False
    link = _link("email-verify", user=user, token=email_verification_token.make_token(user))
    context = {"user": user, "link": link, "days": max(1, settings.EMAIL_VERIFICATION_TIMEOUT // 86400)}
    _mail(template="email_verification", to=user.email, context=context)
    audit.record(
        audit.Action.EMAIL_VERIFICATION_SENT, actor=audit.Actor.system("accounts"), target=audit.Target.user(user)
    )
    return True


@transaction.atomic
def user_email_verify(*, user_id: int, email: str, actor: audit.Actor, via: str) -> User:
    """Mark the user's address verified: by its link (via "link", `email` the address the link
    was for) or by an operator (via "operator"). Recorded as email.verified with who did it. An
    address that changed since, or one verified already, changes and records nothing."""
    user = User.objects.select_for_update(no_key=True).get(pk=user_id)
    if user.email_verified or not user.email or user.email.lower() != email.lower():
        return user
    user.email_verified = True
    user.save(update_fields=["email_verified", "updated_at"])
    audit.record(audit.Action.EMAIL_VERIFIED, actor=actor, target=audit.Target.user(user), data={"via": via})
    return user


@transaction.atomic
def user_email_change(*, user_id: int, email: str, actor: audit.Actor) -> User:
    """Give the user a new address, unverified until its own link (mailed once this commits) is
    followed; the old address is told of the change. The same address again changes nothing. One
    already used by another account is a ValidationError on email."""
    user = User.objects.select_for_update(no_key=True).get(pk=user_id)
    old = user.email
    if old.lower() == email.lower():
        return user
    user.email, user.email_verified = email, False
    user.full_clean(exclude=["password", "username"])
    try:
        with transaction.atomic():
            user.save(update_fields=["email", "email_verified", "updated_at"])
    except IntegrityError as exc:
        refusal = _unique_refusal(exc)
        if refusal is None:
            raise
        raise refusal from None
    audit.record(audit.Action.EMAIL_CHANGED, actor=actor, target=audit.Target.user(user))
    email_verification_enqueue(user_id=user.pk)
    if old:
        _enqueue("send_email_changed_notice", user_id=user.pk, old_email=old)
    return user


def email_changed_notice_send(*, user_id: int, old_email: str) -> bool:
    """Tell the previous address that the account's address changed (not to which one)."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return False
    _mail(template="email_changed", to=old_email, context={"user": user})
    return True


def user_register(*, username: str, email: str, password: str) -> User | None:
    """Self-registration: a new user (no role, unverified address, is_self_registered), mailed
    its verification link. When an account already has the address, that account is mailed a
    notice instead and None is returned: the caller answers both the same way, and both spend
    a password hash, so neither the answer nor its time tells whether the address is known.
    Refusals (a username taken, a password the validators refuse) are ValidationErrors, judged
    before the address is looked at, so that they do not depend on it either."""
    candidate = User(username=username, email=email)
    candidate.full_clean(exclude=["password"], validate_constraints=False)  # the address's uniqueness: below
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise ValidationError({"password": exc.error_list}) from None
    if User.objects.filter(email__iexact=email).exists():
        make_password(password)  # the work a creation does, so the answer takes as long
        _registered_notice(email=email)
        return None
    try:
        with transaction.atomic():
            user = user_create(
                username=username,
                email=email,
                password=password,
                actor=audit.Actor.anonymous(),
                is_self_registered=True,
            )
            audit.record(audit.Action.USER_REGISTERED, actor=audit.Actor.user(user), target=audit.Target.user(user))
    except ValidationError as error:
        if "email" in getattr(error, "error_dict", {}):  # taken meanwhile by a concurrent request
            _registered_notice(email=email)
            return None
        raise
    return user


def _registered_notice(*, email: str) -> None:
    _enqueue("send_registration_notice", email=email[:254])


def registration_notice_send(*, email: str) -> bool:
    """Tell the account holding this address that someone tried to register with it."""
    user = User.objects.filter(email__iexact=email, is_active=True).first()
    if user is None:
        return False
    reset = (settings.ISSUER or DEVELOPMENT_BASE_URL) + reverse("password-reset")
    _mail(template="registration_notice", to=user.email, context={"user": user, "reset": reset})
    return True
