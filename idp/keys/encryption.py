"""Rotating the key-encryption key: re-encrypt everything stored under IDP_KEY_ENCRYPTION_KEYS (the
signing keys' private halves, API keys' pending secrets, authenticator apps' seeds, upstream
providers' client secrets) under the first
of them, so the older keys can leave the environment."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

import audit
from apikeys.services import apikey_secrets_reencrypt, rows_reencrypt
from idp.models import SigningKey, TotpDevice, UpstreamProvider


@dataclass(frozen=True)
class Reencrypted:
    signing_keys: int
    apikey_secrets: int
    totp_seeds: int = 0
    upstream_secrets: int = 0

    @property
    def total(self) -> int:
        return self.signing_keys + self.apikey_secrets + self.totp_seeds + self.upstream_secrets


@transaction.atomic
def signing_keys_reencrypt() -> int:
    """Re-encrypt every signing key's private half (next, active and retired) under the first of
    KEY_ENCRYPTION_KEYS, locking each row. A row already under that key is left alone, so a second
    run changes nothing. Returns how many were re-encrypted; raises ImproperlyConfigured, changing
    nothing, when a row is under none of the configured keys."""
    return rows_reencrypt(
        SigningKey.objects.select_for_update().order_by("pk").only("pk", "kid", "private_key_encrypted"),
        field="private_key_encrypted",
        describe=lambda key: f"signing key {key.kid}",
    )


@transaction.atomic
def totp_seeds_reencrypt() -> int:
    """As signing_keys_reencrypt, for the seeds of authenticator apps (idp.mfa.totp)."""
    return rows_reencrypt(
        TotpDevice.objects.select_for_update().order_by("pk").only("pk", "user_id", "secret_encrypted"),
        field="secret_encrypted",
        describe=lambda device: f"the authenticator app of user {device.user_id}",
    )


@transaction.atomic
def upstream_secrets_reencrypt() -> int:
    """As signing_keys_reencrypt, for the client secrets of upstream providers (idp.federation)."""
    return rows_reencrypt(
        UpstreamProvider.objects.exclude(client_secret_encrypted="")
        .select_for_update()
        .order_by("pk")
        .only("pk", "slug", "client_secret_encrypted"),
        field="client_secret_encrypted",
        describe=lambda provider: f"the client secret of upstream {provider.slug}",
    )


@transaction.atomic
def encryption_key_rotate(*, actor: audit.Actor) -> Reencrypted:
    """Re-encrypt every stored ciphertext under the first of KEY_ENCRYPTION_KEYS, in one
    transaction: all rows or none. Safe to run twice (the second run finds nothing to do and
    records nothing). With one key configured it is a no-op; with a ciphertext under none of the
    keys it raises ImproperlyConfigured and changes nothing.

    Every process must already have the new key in its list (new first, old after) before this
    runs: afterwards a process knowing only the old key can no longer decrypt.
    """
    result = Reencrypted(
        signing_keys=signing_keys_reencrypt(),
        apikey_secrets=apikey_secrets_reencrypt(),
        totp_seeds=totp_seeds_reencrypt(),
        upstream_secrets=upstream_secrets_reencrypt(),
    )
    if result.total:
        # Counts only: never a key, nor anything derived from one.
        audit.record(
            audit.Action.ENCRYPTION_KEY_ROTATED,
            actor=actor,
            data={
                "signing_keys": result.signing_keys,
                "apikey_secrets": result.apikey_secrets,
                "totp_seeds": result.totp_seeds,
                "upstream_secrets": result.upstream_secrets,
                "keys_configured": len(settings.KEY_ENCRYPTION_KEYS),
            },
        )
    return result
