"""JWT access tokens (RFC 9068) for the clients registered for them, and their deny-list.

A JWT access token is signed RS256 with the active key, header `typ: at+jwt` (RFC 9068 §2.1), and
carries iss, sub, aud, client_id, scope, jti, iat, exp and, when the roles scope was granted,
roles (§2.2, §2.2.3.1). A resource server can verify it with the JWKS alone; introspection
verifies it the same way and then asks the deny-list.

The token is still recorded as DOT's AccessToken row (digest only, with its jti), which refresh
tokens, userinfo and every revocation path rely on. DOT revokes by deleting that row, so the
row's deletion (idp.apps connects `access_token_deleted`) puts the jti on the deny-list: one row
per revoked token that has not yet expired, removed once it would have expired anyway.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from jwcrypto import jws, jwt
from jwcrypto.common import JWException
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749.tokens import random_token_generator

from accounts.selectors import subject_access
from idp.keys import signing as keys
from idp.models import AccessToken, Application, RevokedJti

JWT_ACCESS_TOKEN_TYP = "at+jwt"
JWT_ACCESS_TOKEN_ALG = "RS256"  # RFC 9068 §2.1: every resource server supports it


def is_jwt(token: str) -> bool:
    """Whether a presented token has the shape of a compact JWS. Opaque tokens (oauthlib's
    letters and digits) and API keys never contain a dot."""
    return token.count(".") == 2


def access_token_generate(request: Any) -> str:
    """DOT's ACCESS_TOKEN_GENERATOR: an opaque random token, or for a client registered for JWT
    access tokens an RFC 9068 JWT. Called by oauthlib after the grant is validated, with the
    lifetime already on the request."""
    client = request.client
    if client.access_token_format != Application.AccessTokenFormat.JWT:
        return random_token_generator(request)
    issuer = oauth2_settings.oidc_issuer(request)
    scopes = list(request.scopes or [])
    issued_at = int(timezone.now().timestamp())
    for_client = request.grant_type == "client_credentials" or request.user is None
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": client.client_id if for_client else str(request.user.pk),
        "aud": client.access_token_audience or issuer,
        "client_id": client.client_id,
        "scope": " ".join(scopes),
        "jti": secrets.token_urlsafe(24),
        "iat": issued_at,
        "exp": issued_at + int(request.expires_in),
    }
    if not for_client:
        from idp.oauth.validator import authentication_of  # the validator imports this module

        authentication = authentication_of(request)
        if authentication is not None and authentication.auth_time is not None:
            # RFC 9068 §2.2.1: how the user authenticated, as in the ID token.
            claims |= {
                "auth_time": int(authentication.auth_time.timestamp()),
                "acr": authentication.acr,
                "amr": list(authentication.amr),
            }
    if "roles" in scopes:
        access = (
            subject_access(client_pk=client.pk, application_pk=client.pk)
            if for_client
            else subject_access(user_id=request.user.pk, application_pk=client.pk)
        )
        claims["roles"] = access.roles
    key = keys.signing_key_active(JWT_ACCESS_TOKEN_ALG)
    token = jwt.JWT(header={"alg": JWT_ACCESS_TOKEN_ALG, "typ": JWT_ACCESS_TOKEN_TYP, "kid": key.kid}, claims=claims)
    token.make_signed_token(key.jwk)
    return token.serialize()


def unverified_jti_exp(token: str) -> tuple[str, datetime] | None:
    """The jti and exp of a JWT access token this provider has just minted (read without verifying:
    the caller holds the token it generated), for its AccessToken row; None for an opaque token.
    The row then expires exactly when the token does, so the deny-list entry its deletion makes
    (access_token_deleted) lasts exactly as long as the token could be presented."""
    if not is_jwt(token):
        return None
    signed = jws.JWS()
    signed.deserialize(token)
    payload = json.loads(signed.objects["payload"])
    return str(payload["jti"]), timestamp_datetime(int(payload["exp"]))


def jwt_access_token_claims(token: str, *, issuer: str, now: datetime) -> dict[str, Any] | None:
    """The claims of a JWT access token this provider signed and that has not expired, or None:
    another type (an ID token is `typ: JWT`), an unknown or withdrawn key, an algorithm other
    than its key's, a bad signature, another issuer, or missing claims. Says nothing about
    revocation (see jti_is_revoked)."""
    signed = keys.signed_token_parse(token)
    if signed is None or signed.header.get("typ") != JWT_ACCESS_TOKEN_TYP:
        return None  # RFC 9068 §4: the typ header keeps other JWTs from passing as access tokens
    try:
        signed.jws.verify(signed.key, alg=signed.algorithm)
        claims = json.loads(signed.jws.payload)
    except (JWException, ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != issuer:
        return None
    if not all(isinstance(claims.get(name), str) for name in ("sub", "client_id", "scope", "jti")):
        return None
    if not all(type(claims.get(name)) is int for name in ("iat", "exp")) or claims["exp"] <= now.timestamp():
        return None
    return claims


def jti_is_revoked(jti: str) -> bool:
    return RevokedJti.objects.filter(jti=jti).exists()


def jti_deny(*, jti: str, expires_at: datetime, now: datetime) -> None:
    """Put a JWT access token on the deny-list until it expires. Safe to call twice."""
    if expires_at > now:
        RevokedJti.objects.bulk_create(
            [RevokedJti(jti=jti, expires_at=expires_at, revoked_at=now)], ignore_conflicts=True
        )


def jti_denylist_clean(*, now: datetime) -> int:
    """Forget revoked JWT access tokens that have expired since: they verify no more anyway."""
    deleted, _ = RevokedJti.objects.filter(expires_at__lte=now).delete()
    return deleted


def access_token_deleted(sender: type[AccessToken], instance: AccessToken, **kwargs: Any) -> None:
    """post_delete of an AccessToken: how DOT revokes a token on every path (the revocation
    endpoint, refresh rotation, reuse detection, logout, deactivation, the admin)."""
    if instance.jti:
        jti_deny(jti=instance.jti, expires_at=instance.expires, now=timezone.now())


def timestamp_datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
