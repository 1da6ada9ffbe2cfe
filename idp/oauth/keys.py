"""Signing keys: kept in the database, private halves encrypted at rest with Fernet."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from jwcrypto import jwk

import audit
from idp.models import SigningKey

RSA_KEY_BITS = 2048


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    jwk: jwk.JWK


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.KEY_ENCRYPTION_KEYS])


@functools.lru_cache(maxsize=16)
def _decrypt(kid: str, private_key_encrypted: str) -> jwk.JWK:
    # Keyed by the ciphertext as well as the kid, so this cache holds immutable facts only: the
    # database alone decides which key is active, and every process agrees with it.
    return jwk.JWK.from_pem(_fernet().decrypt(private_key_encrypted.encode()))


def signing_key_active() -> ActiveKey:
    """The key that signs now; one indexed query, decryption cached per process."""
    row = SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).values_list("kid", "private_key_encrypted").first()
    if row is None:
        raise ImproperlyConfigured("No active signing key: run `python manage.py ensure_signing_key`.")
    kid, encrypted = row
    return ActiveKey(kid=kid, jwk=_decrypt(kid, encrypted))


def signing_keys_published() -> list[dict[str, Any]]:
    """Public JWKs of every key relying parties may meet: next, active and retired."""
    return list(SigningKey.objects.order_by("-created_at").values_list("public_jwk", flat=True))


def signing_key_ensure(*, actor: audit.Actor) -> tuple[SigningKey, bool]:
    """Return the active signing key, creating an RS256 key when there is none.

    Safe to run from several processes at once: a partial unique index allows one active key,
    and the loser of a race returns the winner's key. Returns (key, created).
    """
    existing = SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).first()
    if existing is not None:
        return existing, False
    private = jwk.JWK.generate(kty="RSA", size=RSA_KEY_BITS)
    kid = private.thumbprint()
    public = private.export_public(as_dict=True)
    public.update({"kid": kid, "alg": "RS256", "use": "sig"})
    pem = private.export_to_pem(private_key=True, password=None)
    try:
        with transaction.atomic():
            key = SigningKey.objects.create(
                kid=kid,
                algorithm="RS256",
                status=SigningKey.Status.ACTIVE,
                private_key_encrypted=_fernet().encrypt(pem).decode(),
                public_jwk=public,
            )
            audit.record(audit.Action.SIGNING_KEY_CREATED, actor=actor, target=audit.Target.of(key), data={"kid": kid})
    except IntegrityError:
        return SigningKey.objects.get(status=SigningKey.Status.ACTIVE), False
    return key, True
