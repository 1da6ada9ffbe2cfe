"""Signed checkpoints of the audit chain: the provider's signing key vouches for the chain head
(hash, count, last event id, time) in a compact JWS, so a third party holding an export and the
published JWKS can check that nothing before a checkpoint was altered, removed or reordered.

The payload: {"iss": issuer, "head": hash, "count": events, "last_id": event id, "iat": epoch},
protected header {"alg": "RS256", "kid": ..., "typ": "audit-checkpoint+jwt"}.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.conf import settings
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

import audit
from audit import chain
from audit.models import AuditCheckpoint
from idp.keys.signing import signing_key_active, signing_keys_published

CHECKPOINT_TYP = "audit-checkpoint+jwt"
CHECKPOINT_ALG = "RS256"
_HASH = re.compile(r"[0-9a-f]{64}")


def audit_checkpoint_create(*, now: datetime) -> AuditCheckpoint | None:
    """Seal what is committed, then sign the audit chain's head with the active signing key and
    store it. Safe to run twice: an unchanged head is not signed again (the existing checkpoint is
    returned). Records no audit event, which would move the head it signs. None while the chain is
    empty."""
    audit.seal()
    head = audit.chain_head()
    if head.last_event_id is None:
        return None
    latest = audit.checkpoint_latest()
    if latest is not None and latest.head_hash == head.head:
        return latest
    key = signing_key_active(CHECKPOINT_ALG)
    payload = {
        "iss": settings.ISSUER,
        "head": head.head,
        "count": head.count,
        "last_id": head.last_event_id,
        "iat": int(now.timestamp()),
    }
    token = jws.JWS(json.dumps(payload, separators=(",", ":")).encode())
    token.add_signature(
        key.jwk,
        alg=CHECKPOINT_ALG,
        protected=json.dumps({"alg": CHECKPOINT_ALG, "kid": key.kid, "typ": CHECKPOINT_TYP}),
    )
    return audit.checkpoint_store(head=head, jws=token.serialize(compact=True), kid=key.kid, created_at=now)


def audit_checkpoint_verify(token: str, *, keys: jwk.JWKSet) -> dict[str, Any]:
    """The verified payload of a checkpoint JWS; ValueError saying why when it does not verify
    with one of `keys` (by kid, RS256 only) or is not a checkpoint."""
    if not isinstance(token, str) or not token:
        raise ValueError("no JWS")
    signed = jws.JWS()
    try:
        signed.deserialize(token)
        header = signed.jose_header
    except (JWException, ValueError) as error:
        raise ValueError("not a compact JWS") from error
    if not isinstance(header, dict) or header.get("typ") != CHECKPOINT_TYP or header.get("alg") != CHECKPOINT_ALG:
        raise ValueError(f"not an {CHECKPOINT_ALG} {CHECKPOINT_TYP}")
    key = keys.get_key(str(header.get("kid", "")))
    if key is None:
        raise chain.KeyWithdrawn(f"signed with key {header.get('kid')!r}, which the JWKS does not hold")
    signed.allowed_algs = [CHECKPOINT_ALG]
    try:
        signed.verify(key, alg=CHECKPOINT_ALG)
        payload = json.loads(signed.payload)
    except (JWException, ValueError) as error:
        raise ValueError("the signature does not verify") from error
    if not (
        isinstance(payload, dict)
        and type(payload.get("count")) is int
        and payload["count"] > 0
        and isinstance(payload.get("head"), str)
        and _HASH.fullmatch(payload["head"])
        and type(payload.get("last_id")) is int
    ):
        raise ValueError("the payload is not a checkpoint")
    return payload


def jwks_parse(text: str | bytes) -> jwk.JWKSet:
    """A JWKS document's public keys; ValueError when it is not one."""
    try:
        keys = jwk.JWKSet.from_json(text)
    except (JWException, ValueError, TypeError) as error:
        raise ValueError("not a JWKS document") from error
    if not keys["keys"]:
        raise ValueError("the JWKS holds no keys")
    return keys


def jwks_published() -> jwk.JWKSet:
    """The keys this provider publishes, from its own database (none before the first key)."""
    keys = jwk.JWKSet()
    for public in signing_keys_published():
        keys.add(jwk.JWK(**public))
    return keys
