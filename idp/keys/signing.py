"""Signing keys: kept in the database, private halves encrypted at rest with Fernet, one chain per
algorithm moved on by a schedule.

A key is `next` from the moment it is made: published in the JWKS, signing nothing. It becomes
`active` when the key before it is rotated out, but never before it has been published for
SIGNING_KEY_PREPUBLISH_SECONDS, longer than the JWKS max-age, so every relying party that honours
that max-age knows it before the first token it signs. A `retired` key stays published until
the last token it signed has expired (withdraw_at), then it is deleted.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto.common import JWException
from oauth2_provider.settings import oauth2_settings

import audit
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
class ActiveKey:
    kid: str
    algorithm: str
    jwk: jwk.JWK


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


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.KEY_ENCRYPTION_KEYS])


@functools.lru_cache(maxsize=32)
def _decrypt(kid: str, private_key_encrypted: str) -> jwk.JWK:
    # Keyed by the ciphertext as well as the kid, so this cache holds immutable facts only: the
    # database alone decides which key is active, and every process agrees with it.
    return jwk.JWK.from_pem(_fernet().decrypt(private_key_encrypted.encode()))


@functools.lru_cache(maxsize=64)
def _public(kid: str, public_jwk: str) -> jwk.JWK:
    return jwk.JWK.from_json(public_jwk)


# Every token request signs, and every JWKS request, id_token_hint and JWT introspection reads
# the keys, which change a few times a month. Each process keeps one snapshot of them (one query)
# for SNAPSHOT_TTL_SECONDS at most, and forgets it at once when it changes a key itself. Another
# process may use a snapshot from before a change for those seconds, which the lifecycle makes
# harmless: a key is published a day before it signs, so a new key missing for seconds has
# signed nothing yet; a retired key signing for seconds more is still published; and a withdrawn
# key lingering for seconds verifies only tokens that have expired. A kid the snapshot does not
# know as a verifier is looked up in the database before it is refused: it may have started
# signing in another process since.
SNAPSHOT_TTL_SECONDS = 10


@dataclass(frozen=True)
class _Snapshot:
    expires_at: float
    published: list[dict[str, Any]]
    active: dict[str, tuple[str, str]]  # algorithm: (kid, encrypted private key)
    verifiers: dict[str, tuple[str, dict[str, Any]]]  # kid: (algorithm, public JWK), active or retired


_snapshot: _Snapshot | None = None


def _keys_snapshot() -> _Snapshot:
    global _snapshot
    cached = _snapshot
    if cached is not None and time.monotonic() < cached.expires_at:
        return cached
    rows = SigningKey.objects.order_by("algorithm", "-created_at").values_list(
        "kid", "algorithm", "status", "public_jwk", "private_key_encrypted"
    )
    published, active, verifiers = [], {}, {}
    for kid, algorithm, status, public, encrypted in rows:
        published.append(public)
        if status == SigningKey.Status.ACTIVE:
            active[algorithm] = (kid, encrypted)
        if status in (SigningKey.Status.ACTIVE, SigningKey.Status.RETIRED):
            verifiers[kid] = (algorithm, public)
    _snapshot = _Snapshot(time.monotonic() + SNAPSHOT_TTL_SECONDS, published, active, verifiers)
    return _snapshot


def signing_keys_published_forget() -> None:
    """Drop this process's snapshot of the keys: now, and again when the change commits."""
    _snapshot_drop()
    if connection.in_atomic_block:
        transaction.on_commit(_snapshot_drop)


def _snapshot_drop() -> None:
    global _snapshot
    _snapshot = None


def signing_key_active(algorithm: str = SigningKey.Algorithm.RS256) -> ActiveKey:
    """The key that signs now with `algorithm`, from the snapshot; decryption cached per process."""
    row = _keys_snapshot().active.get(algorithm)
    if row is None:  # made since the snapshot (ensure_signing_key), or missing altogether
        row = (
            SigningKey.objects.filter(status=SigningKey.Status.ACTIVE, algorithm=algorithm)
            .values_list("kid", "private_key_encrypted")
            .first()
        )
    if row is None:
        raise ImproperlyConfigured(f"No active {algorithm} signing key: run `python manage.py ensure_signing_key`.")
    kid, encrypted = row
    return ActiveKey(kid=kid, algorithm=algorithm, jwk=_decrypt(kid, encrypted))


def signing_keys_published() -> list[dict[str, Any]]:
    """Public JWKs of every key relying parties may meet: next, active and retired."""
    return _keys_snapshot().published


def signing_key_verifier(kid: str) -> tuple[str, jwk.JWK] | None:
    """(algorithm, public key) of a key that may have signed a token still alive: active or
    retired, never next (it has signed nothing). None for any other kid."""
    row = _keys_snapshot().verifiers.get(kid)
    if row is None:
        row = (
            SigningKey.objects.filter(kid=kid, status__in=[SigningKey.Status.ACTIVE, SigningKey.Status.RETIRED])
            .values_list("algorithm", "public_jwk")
            .first()
        )
    if row is None:
        return None
    algorithm, public = row
    return algorithm, _public(kid, json.dumps(public, sort_keys=True))


@dataclass(frozen=True)
class SignedToken:
    """A compact JWS whose kid names a key that may have signed it, not yet verified."""

    jws: jws.JWS
    header: dict[str, Any]
    algorithm: str
    key: jwk.JWK


def signed_token_parse(token: str) -> SignedToken | None:
    """Parse a token this provider may have signed: its header's kid names an active or retired
    key and its alg is that key's. None for anything else (garbage, no or unknown kid, a next or
    withdrawn key, another algorithm). The caller verifies with `key`, `algorithm` only."""
    signed = jws.JWS()
    try:
        signed.deserialize(token)
        header = signed.jose_header
    except (JWException, ValueError, TypeError):
        return None
    if not isinstance(header, dict):
        return None
    verifier = signing_key_verifier(str(header.get("kid", "")))
    if verifier is None or header.get("alg") != verifier[0]:
        return None
    return SignedToken(jws=signed, header=header, algorithm=verifier[0], key=verifier[1])


def signed_token_lifetime() -> timedelta:
    """The longest a token signed by a key can outlive the key's retirement."""
    return timedelta(seconds=max(oauth2_settings.ID_TOKEN_EXPIRE_SECONDS, oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS))


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
        private_key_encrypted=_fernet().encrypt(private.export_to_pem(private_key=True, password=None)).decode(),
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
    from idp.keys.checkpoints import CHECKPOINT_ALG, audit_checkpoint_create  # it signs with this module's keys

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
