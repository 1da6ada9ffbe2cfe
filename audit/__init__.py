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
    CODE_ISSUED = "code.issued"
    TOKEN_REUSE_DETECTED = "token.reuse_detected"
    CONSENT_REVOKED = "consent.revoked"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_LOCKED_OUT = "login.locked_out"
    LOGOUT = "logout"
    ADMIN_CHANGED = "admin.changed"
    ALERT_BRUTEFORCE = "alert.bruteforce"
    SIGNING_KEY_CREATED = "signing_key.created"
    SIGNING_KEY_ROTATED = "signing_key.rotated"
    SIGNING_KEY_ROTATION_REQUESTED = "signing_key.rotation_requested"
    SIGNING_KEY_WITHDRAWN = "signing_key.withdrawn"
    ENCRYPTION_KEY_ROTATED = "encryption_key.rotated"
    USER_CREATED = "user.created"
    USER_DEACTIVATED = "user.deactivated"
    CLIENT_DISABLED = "client.disabled"
    ROLE_CREATED = "role.created"
    ROLE_UPDATED = "role.updated"
    ROLE_DELETED = "role.deleted"
    ROLE_GRANTED = "role.granted"
    ROLE_REVOKED = "role.revoked"
    PERMISSION_CREATED = "permission.created"
    APIKEY_CREATED = "apikey.created"
    APIKEY_ROTATED = "apikey.rotated"
    APIKEY_REVEALED = "apikey.revealed"
    APIKEY_REVOKED = "apikey.revoked"
    APIKEY_EXPIRED = "apikey.expired"
    APIKEY_SCHEDULED = "apikey.scheduled"
    MFA_ENROLLED = "mfa.enrolled"
    MFA_REMOVED = "mfa.removed"
    MFA_RESET = "mfa.reset"
    MFA_CHALLENGE_FAILED = "mfa.challenge_failed"
    MFA_RECOVERY_CODE_USED = "mfa.recovery_code_used"
    MFA_RECOVERY_CODES_REGENERATED = "mfa.recovery_codes_regenerated"
    SESSION_ENDED = "session.ended"
    LOGOUT_DELIVERED = "logout.delivered"
    LOGOUT_DELIVERY_FAILED = "logout.delivery_failed"
    PASSWORD_RESET_REQUESTED = "password.reset_requested"
    PASSWORD_RESET_LINK_REFUSED = "password.reset_link_refused"
    PASSWORD_CHANGED = "password.changed"
    EMAIL_VERIFICATION_SENT = "email.verification_sent"
    EMAIL_VERIFICATION_LINK_REFUSED = "email.verification_link_refused"
    EMAIL_VERIFIED = "email.verified"
    EMAIL_CHANGED = "email.changed"
    USER_REGISTERED = "user.registered"
    UPSTREAM_LINKED = "upstream.linked"
    UPSTREAM_SIGNIN_FAILED = "upstream.signin_failed"


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
    def api_key(cls, key: Any) -> Actor:
        return cls("apikey", str(key.public_id))

    @classmethod
    def anonymous(cls) -> Actor:
        """Someone not signed in (a failed sign-in); the request context says from where."""
        return cls("anonymous", "")

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
    def api_key(cls, key: Any) -> Target:
        return cls("apikey", str(key.public_id))

    @classmethod
    def of(cls, obj: Any) -> Target:
        return cls(obj._meta.label_lower, str(obj.pk))


# The key of the advisory lock that once serialised every append (accounts migrations 0005 and
# 0006 still take it, as written then). Appends no longer lock anything: see seal().
CHAIN_LOCK = 0x1D9A0D17
# The key of the advisory lock one sealer holds while it links events into the chain.
SEAL_LOCK = 0x1D9A5EA1
SEAL_BATCH = 1000


def record(
    action: Action,
    *,
    actor: Actor,
    target: Target | None = None,
    client_id: str = "",
    outcome: str = "success",
    data: dict[str, Any] | None = None,
) -> None:
    """Insert one event. Call it inside the transaction of the change it describes: the event
    commits or rolls back with it.

    ``data`` must never hold a secret (token, code, client secret, API key, password): ids, not
    values. One INSERT, no lock and no read of the chain: concurrent writers never wait for each
    other here. The event joins the hash chain when ``seal`` links it, about a second after its
    transaction commits; until then the database refuses any change to it but that seal.
    """
    import json

    from django.core.serializers.json import DjangoJSONEncoder
    from django.utils import timezone

    from audit import context
    from audit.models import AuditEvent  # as django.contrib.auth.get_user does: no model import at app load

    request = context.current()
    # What the database gives back must hash the same: plain JSON values only.
    payload = json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder))
    AuditEvent(
        created_at=timezone.now(),
        action=str(action),
        actor_type=actor.type,
        actor_id=actor.id,
        target_type=target.type if target else "",
        target_id=target.id if target else "",
        client_id=client_id,
        outcome=outcome,
        source_ip=request.source_ip or "",
        user_agent=request.user_agent,
        request_id=request.request_id,
        data=payload,
    ).save()


def seal(*, batch: int = SEAL_BATCH) -> int:
    """Link the committed events that are not yet in the chain, oldest id first, after its head;
    returns how many were sealed. Runs until none is left (one transaction per batch).

    One sealer at a time: on PostgreSQL a second caller finds the seal lock taken and returns 0 at
    once, so beat may start it while another still runs. The queue is every unsealed row, not the
    ids after the last sealed one: an event whose transaction committed late (with a lower id than
    events already sealed) is sealed by the next pass, at a later position, never skipped.
    """
    from audit import sealing

    sealed = 0
    while True:
        count = sealing.seal_batch(lock_key=SEAL_LOCK, batch=batch)
        sealed += max(count, 0)
        if count < batch:  # the queue is empty, or another sealer holds the lock (-1)
            return sealed


# Checkpoints: idp signs the head (this app knows no JOSE) and stores the result through these.
from audit.checkpoints import ChainHead, chain_head, checkpoint_latest, checkpoint_store, export_records  # noqa: E402
from audit.sealing import unsealed  # noqa: E402

__all__ = [
    "Action",
    "Actor",
    "ChainHead",
    "Target",
    "chain_head",
    "checkpoint_latest",
    "checkpoint_store",
    "export_records",
    "record",
    "seal",
    "unsealed",
]
