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
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from jwcrypto import jwk, jws
from jwcrypto.common import JWException
from oauth2_provider.settings import oauth2_settings

from idp.models import SigningKey

KEY_PARAMETERS: dict[str, dict[str, Any]] = {
    SigningKey.Algorithm.RS256: {"kty": "RSA", "size": 2048},
    SigningKey.Algorithm.ES256: {"kty": "EC", "crv": "P-256"},
    SigningKey.Algorithm.EDDSA: {"kty": "OKP", "crv": "Ed25519"},
}


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    algorithm: str
    jwk: jwk.JWK


def key_ring() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.KEY_ENCRYPTION_KEYS])


@functools.lru_cache(maxsize=32)
def _decrypt(kid: str, private_key_encrypted: str) -> jwk.JWK:
    # Keyed by the ciphertext as well as the kid, so this cache holds immutable facts only: the
    # database alone decides which key is active, and every process agrees with it.
    return jwk.JWK.from_pem(key_ring().decrypt(private_key_encrypted.encode()))


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
