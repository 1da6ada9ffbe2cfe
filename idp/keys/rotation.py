"""Signing keys over time: made, rotated on schedule or by "rotate now", withdrawn once every token
they signed has expired. Every change runs under one PostgreSQL advisory lock (and partial unique
indexes: one active and one next key per algorithm), so two workers, or a worker and a staff
member, never rotate a chain twice. Which key signs, and which keys are published, is
idp.keys.signing's; the audit checkpoint a rotation signs is idp.keys.checkpoints'.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from jwcrypto import jwk

import audit
from idp.keys.checkpoints import CHECKPOINT_ALG, audit_checkpoint_create
from idp.keys.signing import key_ring, signed_token_lifetime, signing_keys_published_forget
from idp.models import SigningKey

KEY_PARAMETERS: dict[str, dict[str, Any]] = {
    SigningKey.Algorithm.RS256: {"kty": "RSA", "size": 2048},
    SigningKey.Algorithm.ES256: {"kty": "EC", "crv": "P-256"},
    SigningKey.Algorithm.EDDSA: {"kty": "OKP", "crv": "Ed25519"},
}


# The PostgreSQL advisory lock that serialises every change to the key chains, so two beat
# workers (or a worker and a staff member's "rotate now") never rotate the same chain twice.
KEYS_LOCK = 0x1D9A5167


@dataclass(frozen=True)
class KeyChanges:
    """What one pass over the key chains did, by kid."""

    created: list[str]
    rotated: list[str]  # the kids that became active
    withdrawn: list[str]

    def __bool__(self) -> bool:
        return bool(self.created or self.rotated or self.withdrawn)


@dataclass(frozen=True)
class RotateNow:
    """The answer to a staff member's "rotate now": done (rotated_kid), or not before ready_at."""

    algorithm: str
    rotated_kid: str | None
    ready_at: datetime | None
    withdraw_previous_at: datetime | None = None  # when the key it replaced leaves the JWKS


def _lock() -> None:
    # On SQLite (the embedded development default) writes are serialised by the database itself;
    # the partial unique indexes (one active, one next per algorithm) hold on both.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [KEYS_LOCK])


def _create(algorithm: str, status: str, *, now: datetime, actor: audit.Actor) -> SigningKey:
    private = jwk.JWK.generate(**KEY_PARAMETERS[algorithm])
    kid = private.thumbprint()
    public = private.export_public(as_dict=True)
    public.update({"kid": kid, "alg": algorithm, "use": "sig"})
    key = SigningKey(
        kid=kid,
        algorithm=algorithm,
        status=status,
        private_key_encrypted=key_ring().encrypt(private.export_to_pem(private_key=True, password=None)).decode(),
        public_jwk=public,
        created_at=now,
    )
    if status == SigningKey.Status.ACTIVE:
        key.activated_at = now
        key.rotate_at = now + timedelta(seconds=settings.SIGNING_KEY_ROTATION_SECONDS)
    key.save()
    signing_keys_published_forget()
    audit.record(
        audit.Action.SIGNING_KEY_CREATED,
        actor=actor,
        target=audit.Target.of(key),
        data={"kid": kid, "algorithm": algorithm, "status": status},
    )
    return key


def _ready_at(upcoming: SigningKey) -> datetime:
    return upcoming.created_at + timedelta(seconds=settings.SIGNING_KEY_PREPUBLISH_SECONDS)


def _rotate(current: SigningKey, upcoming: SigningKey, *, now: datetime, actor: audit.Actor, reason: str) -> None:
    """`upcoming` signs from now on; `current` retires, published until its tokens expire."""
    current.status = SigningKey.Status.RETIRED
    current.retired_at = now
    current.rotate_at = None
    current.withdraw_at = now + signed_token_lifetime()
    current.save(update_fields=["status", "retired_at", "rotate_at", "withdraw_at"])
    upcoming.status = SigningKey.Status.ACTIVE
    upcoming.activated_at = now
    upcoming.rotate_at = now + timedelta(seconds=settings.SIGNING_KEY_ROTATION_SECONDS)
    upcoming.save(update_fields=["status", "activated_at", "rotate_at"])
    signing_keys_published_forget()
    audit.record(
        audit.Action.SIGNING_KEY_ROTATED,
        actor=actor,
        target=audit.Target.of(upcoming),
        data={
            "algorithm": upcoming.algorithm,
            "kid": upcoming.kid,
            "previous_kid": current.kid,
            "withdraw_previous_at": current.withdraw_at,
            "reason": reason,
        },
    )
    _create(upcoming.algorithm, SigningKey.Status.NEXT, now=now, actor=actor)  # published a whole period ahead


def _checkpoint_after_rotation(algorithm: str, *, now: datetime) -> None:
    # The audit checkpoints are signed with the RS256 key. Signing the head with the new key now,
    # in the rotation's transaction, keeps the latest checkpoint verifiable once the old key is
    # withdrawn (audit.chain passes over older checkpoints whose key is gone).
    if algorithm == CHECKPOINT_ALG:
        audit_checkpoint_create(now=now)


def _chain(algorithm: str) -> tuple[SigningKey | None, SigningKey | None]:
    keys = {key.status: key for key in SigningKey.objects.filter(algorithm=algorithm).exclude(status="retired")}
    return keys.get(SigningKey.Status.ACTIVE), keys.get(SigningKey.Status.NEXT)


def _withdraw_expired(*, now: datetime, actor: audit.Actor) -> list[str]:
    withdrawn = []
    for key in SigningKey.objects.filter(status=SigningKey.Status.RETIRED, withdraw_at__lte=now).order_by("pk"):
        withdrawn.append(key.kid)
        audit.record(
            audit.Action.SIGNING_KEY_WITHDRAWN,
            actor=actor,
            target=audit.Target.of(key),
            data={"kid": key.kid, "algorithm": key.algorithm},
        )
        key.delete()  # the private half goes with the row: nothing it signed is still valid
        signing_keys_published_forget()
    return withdrawn


@transaction.atomic
def signing_keys_ensure(*, actor: audit.Actor, now: datetime | None = None) -> list[SigningKey]:
    """Give every configured algorithm an active and a next key; returns the keys created.

    Safe to run from several processes at once (an advisory lock on PostgreSQL, partial unique
    indexes everywhere) and on every start: with the chains complete it changes nothing."""
    now = now or timezone.now()
    _lock()
    created = []
    for algorithm in settings.SIGNING_ALGORITHMS:
        current, upcoming = _chain(algorithm)
        if current is None:
            # A new chain signs at once: nothing can hold a token of this algorithm yet.
            created.append(_create(algorithm, SigningKey.Status.ACTIVE, now=now, actor=actor))
        if upcoming is None:
            created.append(_create(algorithm, SigningKey.Status.NEXT, now=now, actor=actor))
    return created


@transaction.atomic
def signing_keys_rotate_due(*, now: datetime, actor: audit.Actor) -> KeyChanges:
    """The scheduled pass (Celery beat, rotate-signing-keys): complete the chains, rotate every
    active key whose rotate_at has come (once its successor has been published long enough), and
    delete retired keys whose tokens have all expired. Serialised by one lock, so two workers
    running it at the same moment rotate each chain once: the second finds nothing due."""
    created = [key.kid for key in signing_keys_ensure(actor=actor, now=now)]
    rotated = []
    for algorithm in settings.SIGNING_ALGORITHMS:
        current, upcoming = _chain(algorithm)
        assert current is not None and upcoming is not None  # signing_keys_ensure completed the chain
        if current.rotate_at is not None and current.rotate_at <= now and _ready_at(upcoming) <= now:
            _rotate(current, upcoming, now=now, actor=actor, reason="scheduled")
            rotated.append(upcoming.kid)
            _checkpoint_after_rotation(algorithm, now=now)
    return KeyChanges(created=created, rotated=rotated, withdrawn=_withdraw_expired(now=now, actor=actor))


@transaction.atomic
def signing_key_rotate_now(*, algorithm: str, now: datetime, actor: audit.Actor) -> RotateNow:
    """A staff member's "rotate now": the next key takes over at once if it has been published
    long enough for every cached JWKS to hold it; otherwise the rotation is brought forward to
    that moment (the scheduled pass performs it) and ready_at says when. Safe to press twice."""
    if algorithm not in settings.SIGNING_ALGORITHMS:
        raise ValueError(f"{algorithm} is not a configured signing algorithm")
    signing_keys_ensure(actor=actor, now=now)
    current, upcoming = _chain(algorithm)
    assert current is not None and upcoming is not None
    ready_at = _ready_at(upcoming)
    if ready_at <= now:
        _rotate(current, upcoming, now=now, actor=actor, reason="manual")
        _checkpoint_after_rotation(algorithm, now=now)
        return RotateNow(
            algorithm=algorithm, rotated_kid=upcoming.kid, ready_at=None, withdraw_previous_at=current.withdraw_at
        )
    if current.rotate_at is None or current.rotate_at > ready_at:
        current.rotate_at = ready_at
        current.save(update_fields=["rotate_at"])
        # Recorded here, so the trail names who asked: the pass that performs it is the scheduler.
        audit.record(
            audit.Action.SIGNING_KEY_ROTATION_REQUESTED,
            actor=actor,
            target=audit.Target.of(current),
            data={"algorithm": algorithm, "kid": current.kid, "next_kid": upcoming.kid, "rotate_at": ready_at},
        )
    return RotateNow(algorithm=algorithm, rotated_kid=None, ready_at=ready_at)


def signing_keys_overview() -> dict[str, list[SigningKey]]:
    """Every stored key by algorithm, in lifecycle order (next, active, retired newest first)."""
    order = {SigningKey.Status.NEXT: 0, SigningKey.Status.ACTIVE: 1, SigningKey.Status.RETIRED: 2}
    chains: dict[str, list[SigningKey]] = {algorithm: [] for algorithm in settings.SIGNING_ALGORITHMS}
    for key in SigningKey.objects.order_by("-created_at"):
        chains.setdefault(key.algorithm, []).append(key)
    for keys in chains.values():
        keys.sort(key=lambda key: order[SigningKey.Status(key.status)])
    return chains
