"""The audit trail. Every app records through ``audit.record(...)``; nothing else writes the model.

A leaf app: Django and the standard library only. Rows hold copied identifiers, never foreign
keys, so deleting a user or a client never deletes its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    TOKEN_ISSUED = "token.issued"
    TOKEN_REFRESHED = "token.refreshed"
    TOKEN_REVOKED = "token.revoked"
    CONSENT_GRANTED = "consent.granted"
    CLIENT_CREATED = "client.created"
    CLIENT_SECRET_ROTATED = "client.secret_rotated"
    SIGNING_KEY_CREATED = "signing_key.created"
    USER_CREATED = "user.created"
    USER_DEACTIVATED = "user.deactivated"
    CLIENT_DISABLED = "client.disabled"
    ROLE_CREATED = "role.created"
    ROLE_UPDATED = "role.updated"
    ROLE_DELETED = "role.deleted"
    ROLE_GRANTED = "role.granted"
    ROLE_REVOKED = "role.revoked"
    PERMISSION_CREATED = "permission.created"


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, a client, or the system itself."""

    type: str
    id: str

    @classmethod
    def user(cls, user: Any) -> Actor:
        return cls("user", str(user.pk))

    @classmethod
    def client(cls, client: Any) -> Actor:
        return cls("client", str(client.client_id))

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls("system", name)


@dataclass(frozen=True)
class Target:
    """What it was done to, by copied identifier."""

    type: str
    id: str

    @classmethod
    def user(cls, user: Any) -> Target:
        return cls("user", str(user.pk))

    @classmethod
    def client(cls, client: Any) -> Target:
        return cls("client", str(client.client_id))

    @classmethod
    def of(cls, obj: Any) -> Target:
        return cls(obj._meta.label_lower, str(obj.pk))


def record(
    action: Action,
    *,
    actor: Actor,
    target: Target | None = None,
    client_id: str = "",
    outcome: str = "success",
    data: dict[str, Any] | None = None,
) -> None:
    """Append one event. Call it inside the transaction of the change it describes.

    ``data`` must never hold a secret (token, code, client secret, password): log ids, not values.
    """
    from audit.models import AuditEvent  # as django.contrib.auth.get_user does: no model import at app load

    AuditEvent.objects.create(
        action=str(action),
        actor_type=actor.type,
        actor_id=actor.id,
        target_type=target.type if target else "",
        target_id=target.id if target else "",
        client_id=client_id,
        outcome=outcome,
        data=data or {},
    )


__all__ = ["Action", "Actor", "Target", "record"]
