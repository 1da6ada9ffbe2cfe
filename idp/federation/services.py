"""What a validated upstream identity does here: sign in through its link, or create the user
just in time, or wait for the person to prove the local account that has its e-mail address; and
the roles its claims map to, granted and taken back through accounts.services (audited)."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import audit
from accounts.models import RoleAssignment, User
from accounts.services import role_grant, role_revoke, user_create, user_email_verify
from idp.federation.client import UpstreamIdentity
from idp.federation.selectors import role_mappable
from idp.models import UpstreamLink, UpstreamProvider

USERNAME_BASE_MAX = 30
USERNAME_TRIES = 6


@dataclass(frozen=True)
class Outcome:
    """signed_in: `user` may sign in. link_needed: a local account (`user`) has the upstream's
    e-mail address: its owner proves it before any link. refused: `reason` says why."""

    kind: Literal["signed_in", "link_needed", "refused"]
    user: User | None = None
    reason: str = ""


def upstream_actor(provider: UpstreamProvider) -> audit.Actor:
    return audit.Actor.system(f"upstream:{provider.slug}")


def upstream_signin_failed(*, upstream: str, reason: str, user: User | None = None) -> None:
    """Record a refused upstream sign-in (a forged or replayed callback, an upstream error, ...)."""
    audit.record(
        audit.Action.UPSTREAM_SIGNIN_FAILED,
        actor=audit.Actor.anonymous(),
        target=audit.Target.user(user) if user is not None else None,
        outcome="failure",
        # The slug of an unknown upstream is whatever the path held: no NUL into jsonb.
        data={"upstream": upstream[:40].replace("\x00", ""), "reason": reason[:40]},
    )


@transaction.atomic
def upstream_signin(*, provider: UpstreamProvider, identity: UpstreamIdentity) -> Outcome:
    """An upstream vouched for `identity`. Its link (issuer and sub, never the e-mail) names the
    local user; without one, a user is created just in time unless a local account already has
    the address. Roles are mapped on every sign-in. Refusals are recorded."""
    link = (
        UpstreamLink.objects.select_for_update()
        .select_related("user")
        .filter(issuer=identity.issuer, subject=identity.subject)
        .first()
    )
    if link is not None:
        user = link.user
        if not user.is_active:
            upstream_signin_failed(upstream=provider.slug, reason="user_inactive", user=user)
            return Outcome("refused", user, "user_inactive")
        link.last_signin_at = timezone.now()
        link.save(update_fields=["last_signin_at"])
        upstream_roles_sync(link=link, provider=provider, identity=identity)
        return Outcome("signed_in", user)
    if identity.email:
        local = User.objects.filter(email__iexact=identity.email).first()
        if local is not None:
            # Never linked on the address alone: whoever controls an upstream account with this
            # address is not thereby the owner of the local account.
            if not local.is_active:
                upstream_signin_failed(upstream=provider.slug, reason="user_inactive", user=local)
                return Outcome("refused", local, "user_inactive")
            if not local.email_verified:
                upstream_signin_failed(upstream=provider.slug, reason="email_taken_unverified", user=local)
                return Outcome("refused", local, "email_taken_unverified")
            return Outcome("link_needed", local)
    try:
        with transaction.atomic():
            user = _user_create_just_in_time(provider=provider, identity=identity)
            link = UpstreamLink.objects.create(
                provider=provider,
                issuer=identity.issuer,
                subject=identity.subject,
                user=user,
                last_signin_at=timezone.now(),
            )
    except (IntegrityError, ValidationError):
        # Claims our user rules refuse (an address that is none), or a concurrent first sign-in
        # of the same identity or address won: this one is refused and may start again.
        upstream_signin_failed(upstream=provider.slug, reason="user_not_created")
        return Outcome("refused", None, "user_not_created")
    audit.record(
        audit.Action.UPSTREAM_LINKED,
        actor=upstream_actor(provider),
        target=audit.Target.user(user),
        data={"upstream": provider.slug, "how": "just_in_time"},
    )
    upstream_roles_sync(link=link, provider=provider, identity=identity)
    return Outcome("signed_in", user)


@transaction.atomic
def upstream_link_create(*, provider: UpstreamProvider, identity: UpstreamIdentity, user: User) -> UpstreamLink:
    """Link an upstream identity to a local user who has just proved the account (its password,
    and its second factor when it has one). Linking the same pair again changes nothing; an
    identity linked to someone else is refused (PermissionDenied)."""
    existing = UpstreamLink.objects.select_for_update().filter(issuer=identity.issuer, subject=identity.subject).first()
    if existing is not None:
        if existing.user_id != user.pk:
            raise PermissionDenied("this upstream identity is linked to another account")
        return existing
    if not user.is_active or not user.email_verified:
        raise PermissionDenied("this account cannot be linked")
    link = UpstreamLink.objects.create(
        provider=provider, issuer=identity.issuer, subject=identity.subject, user=user, last_signin_at=timezone.now()
    )
    audit.record(
        audit.Action.UPSTREAM_LINKED,
        actor=audit.Actor.user(user),
        target=audit.Target.user(user),
        data={"upstream": provider.slug, "how": "proved_local_account"},
    )
    upstream_roles_sync(link=link, provider=provider, identity=identity)
    return link


def upstream_roles_sync(*, link: UpstreamLink, provider: UpstreamProvider, identity: UpstreamIdentity) -> None:
    """Grant the roles the identity's claim values map to and take back those the mapping granted
    before and no longer maps. A role the user held otherwise (granted by hand) is never taken
    back, nor counted as the mapping's. Roles that are not mappable (selectors.role_mappable) are
    skipped, even if a mapping names one."""
    actor = upstream_actor(provider)
    values = set(identity.role_values)
    wanted = {
        mapping.role_id: mapping.role
        for mapping in provider.role_mappings.select_related("role")
        if mapping.value in values and role_mappable(mapping.role)
    }
    mapped = {int(role_id) for role_id in link.mapped_role_ids if isinstance(role_id, int)}
    held = set(RoleAssignment.objects.filter(user=link.user).values_list("role_id", flat=True))
    for role_id, role in sorted(wanted.items()):
        if role_id not in held:
            role_grant(role=role, user=link.user, actor=actor)
            mapped.add(role_id)
    for role_id in sorted(mapped - wanted.keys()):
        assignment = RoleAssignment.objects.filter(role_id=role_id, user=link.user).first()
        if assignment is not None:
            role_revoke(assignment=assignment, actor=actor)
        mapped.discard(role_id)
    if sorted(mapped) != link.mapped_role_ids:
        link.mapped_role_ids = sorted(mapped)
        link.save(update_fields=["mapped_role_ids"])


def _usernames(identity: UpstreamIdentity) -> Iterator[str]:
    """Usernames to try: the upstream's preferred_username (else the e-mail's local part), kept
    to ASCII letters, digits and @.+-_ (no look-alike letters), then with a random suffix."""
    wanted = identity.preferred_username or identity.email.split("@")[0]
    base = re.sub(r"[^\w.@+-]", "", unicodedata.normalize("NFKC", wanted), flags=re.ASCII)[:USERNAME_BASE_MAX]
    if base:
        yield base
    for _ in range(USERNAME_TRIES):
        yield f"{base or 'user'}-{secrets.token_hex(3)}"


def _user_create_just_in_time(*, provider: UpstreamProvider, identity: UpstreamIdentity) -> User:
    """A new user from the upstream's claims, with no usable password (it signs in through the
    upstream). The address counts as verified only when the upstream says so and the operator
    trusts that upstream's addresses."""
    for username in _usernames(identity):
        try:
            with transaction.atomic():
                user = user_create(
                    username=username,
                    email=identity.email,
                    # user_create wants a password that passes the validators: a random one,
                    # made unusable below before the transaction commits.
                    password=secrets.token_urlsafe(32),
                    actor=upstream_actor(provider),
                    first_name=identity.given_name,
                    last_name=identity.family_name,
                )
        except ValidationError as exc:
            if "username" in getattr(exc, "error_dict", {}) and "email" not in exc.error_dict:
                continue  # taken, or refused by the username rules: the next candidate
            raise
        user.set_unusable_password()
        user.save(update_fields=["password"])
        if identity.email_verified and provider.trust_email and identity.email:
            # Recorded as email.verified by this upstream, as any other way an address is verified.
            user = user_email_verify(
                user_id=user.pk, email=identity.email, actor=upstream_actor(provider), via="upstream"
            )
        return user
    raise ValidationError({"username": "no free username"})
