"""RFC 7662 introspection of access and refresh tokens (API keys: apikeys.selectors.apikey_claims),
answered to resource servers (idp.oauth.views.introspect)."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from oauth2_provider.models import refresh_token_expire_timedelta

from accounts.selectors import subject_access
from apikeys.keyformat import key_digest, key_parse
from apikeys.selectors import apikey_claims
from apikeys.services import apikey_use, apikey_use_noted
from idp.models import AccessToken, Application, RefreshToken
from idp.oauth import access_tokens, introspection_cache

INACTIVE: dict[str, Any] = {"active": False}


User = get_user_model()


def _claims(
    *,
    user: Any,
    application: Application | None,
    scope: str,
    issued_at: datetime,
    expires_at: datetime,
    token_type: str,
    issuer: str,
    authentication: Any = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "active": True,
        "scope": scope,
        "token_type": token_type,
        "exp": int(expires_at.timestamp()),
        "iat": int(issued_at.timestamp()),
        "iss": issuer,
    }
    if application is not None:
        data["client_id"] = application.client_id
    if user is not None:
        data["sub"] = str(user.pk)
        data["username"] = user.get_username()
        if authentication is not None and authentication.get("acr"):
            # How the user authenticated for this token (idp.mfa.levels), as its ID token says.
            data |= {name: authentication[name] for name in ("acr", "amr", "auth_time") if name in authentication}
        access = subject_access(user_id=user.pk, application_pk=getattr(application, "pk", None))
    elif application is not None:
        data["sub"] = application.client_id  # client_credentials: the client is the subject
        access = subject_access(client_pk=application.pk, application_pk=application.pk)
    else:
        return data
    # Computed now, not at issuance: a role removed is gone from the next answer.
    data["roles"] = access.roles
    data["permissions"] = access.permissions
    return data


def token_introspect(*, token: str, token_type_hint: str | None, issuer: str, client: Application) -> dict[str, Any]:
    """RFC 7662 answer for an access or refresh token, to the resource server `client`. An inactive
    answer carries nothing else.

    token_type tells a resource server what it holds: "Bearer" (RFC 6749 §7.1) for an access
    token, the only kind it should accept; "refresh_token" for a refresh token, which only its
    client may present, and only at the token endpoint, so only its client learns about it
    (another client gets the answer of an unknown token)."""
    if access_tokens.is_jwt(token):
        return _introspect_jwt_access_token(token, issuer)
    checksum = introspection_cache.checksum_of(token)
    lookups = [_introspect_access_token_kept, _introspect_refresh_token]
    if token_type_hint == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        answer = lookup(checksum, issuer, client)
        if answer is not None:
            return answer
    return INACTIVE


# What an introspection answer reads of a token and its holders, and nothing else: the rows carry
# much more (the hashed secret, redirect URIs, a user's profile).
_ACCESS_TOKEN_FIELDS = (
    "scope",
    "expires",
    "created",
    "auth_time",
    "amr",
    "acr",
    "application__client_id",
    "application__is_active",
    "user__username",
    "user__is_active",
)


def _holders_active(application: Application | None, user: Any) -> bool:
    """A token dies with its client's or its user's deactivation."""
    return (application is None or application.is_active) and (user is None or user.is_active)


def apikey_introspect(*, presented: str, issuer: str) -> dict[str, Any]:
    """RFC 7662 answer for an API key, verified exactly as /api/v1 verifies it (apikeys.selectors.
    apikey_verify) and its use noted. From the shared cache when it holds a good answer: the
    presented key is checked in constant time against the digest kept with it, and its usable
    period against now; revocation, rotation and role changes drop the entry (introspection_cache)."""
    parsed = key_parse(presented)
    if parsed is None:
        return INACTIVE
    name = introspection_cache.apikey_entry(parsed.public_id)
    lookup = introspection_cache.answer_lookup(name=name)
    now = timezone.now()
    if lookup.kept is not None:
        secret_hash, usable_until, answer = lookup.kept
        if not hmac.compare_digest(secret_hash, key_digest(parsed.key)):
            return INACTIVE
        if usable_until is not None and usable_until <= now.timestamp():
            return INACTIVE
        apikey_use_noted(public_id=parsed.public_id, now=now)
        return {**answer, "iss": issuer}
    verified = apikey_use(presented=presented, now=now, narrow=True)
    if verified is None:
        return INACTIVE
    answer = apikey_claims(verified=verified, issuer=issuer)
    key = verified.key
    ends = [moment for moment in (key.expires_at, key.grace_ends_at) if moment is not None]
    usable_until = min(ends) if ends else None
    kept = (
        key.secret_hash,
        usable_until.timestamp() if usable_until is not None else None,
        {member: value for member, value in answer.items() if member != "iss"},
    )
    introspection_cache.answer_keep(name=name, lookup=lookup, kept=kept, expires_at=usable_until)
    return answer


def _introspect_access_token_kept(checksum: str, issuer: str, client: Application) -> dict[str, Any] | None:
    """An opaque access token's answer from the shared cache when it holds a good one, else from the
    database, kept for the next time when active (idp.oauth.introspection_cache)."""
    name = introspection_cache.token_entry(checksum)
    lookup = introspection_cache.answer_lookup(name=name)
    if lookup.kept is not None:
        kept_expires_at, kept_answer = lookup.kept
        if kept_expires_at <= timezone.now().timestamp():
            return INACTIVE
        return {**kept_answer, "iss": issuer}
    answer = _introspect_access_token(checksum, issuer, client)
    if answer is not None and answer.get("active"):
        expires_at = access_tokens.timestamp_datetime(answer["exp"])
        kept = (expires_at.timestamp(), {member: value for member, value in answer.items() if member != "iss"})
        introspection_cache.answer_keep(name=name, lookup=lookup, kept=kept, expires_at=expires_at)
    return answer


def _introspect_access_token(checksum: str, issuer: str, client: Application) -> dict[str, Any] | None:
    access = (
        AccessToken.objects.select_related("application", "user")
        .only(*_ACCESS_TOKEN_FIELDS)
        .filter(token_checksum=checksum)
        .first()
    )
    if access is None:
        return None
    if access.is_expired() or not _holders_active(access.application, access.user):
        return INACTIVE
    return _claims(
        user=access.user,
        application=access.application,
        scope=access.scope,
        issued_at=access.created,
        expires_at=access.expires,
        token_type="Bearer",
        issuer=issuer,
        authentication=_authentication(access),
    )


def _authentication(row: Any) -> dict[str, Any] | None:
    if not row.acr or row.auth_time is None:
        return None
    return {"acr": row.acr, "amr": list(row.amr), "auth_time": int(row.auth_time.timestamp())}


def _introspect_jwt_access_token(token: str, issuer: str) -> dict[str, Any]:
    """A JWT access token (RFC 9068) is checked as a resource server would check it (signature
    with a published key, typ, issuer, expiry), then against the deny-list of revoked jtis and the
    live state of its client and user. Its row is not looked up: revocation is the deny-list."""
    claims = access_tokens.jwt_access_token_claims(token, issuer=issuer, now=timezone.now())
    if claims is None or access_tokens.jti_is_revoked(claims["jti"]):
        return INACTIVE
    application = Application.objects.filter(client_id=claims["client_id"]).first()
    if application is None:
        return INACTIVE
    user = None
    if claims["sub"] != application.client_id:
        user = User.objects.filter(pk=claims["sub"]).first() if claims["sub"].isdigit() else None
        if user is None:
            return INACTIVE
    if not _holders_active(application, user):
        return INACTIVE
    answer = _claims(
        user=user,
        application=application,
        scope=claims["scope"],
        issued_at=access_tokens.timestamp_datetime(claims["iat"]),
        expires_at=access_tokens.timestamp_datetime(claims["exp"]),
        token_type="Bearer",
        issuer=issuer,
        authentication={name: claims[name] for name in ("acr", "amr", "auth_time") if name in claims},
    )
    answer.update({"aud": claims.get("aud"), "jti": claims["jti"]})
    return answer


def _introspect_refresh_token(checksum: str, issuer: str, client: Application) -> dict[str, Any] | None:
    refresh = (
        RefreshToken.objects.select_related("application", "user", "access_token")
        .filter(token_checksum=checksum, revoked__isnull=True, application=client)
        .first()
    )
    if refresh is None:
        return None
    # Mirrors DOT's validate_refresh_token: a live refresh token has its access token, and its
    # lifetime runs REFRESH_TOKEN_EXPIRE_SECONDS past that token's expiry.
    access = refresh.access_token
    if access is None or not _holders_active(refresh.application, refresh.user):
        return INACTIVE
    expires_at = access.expires + refresh_token_expire_timedelta()
    if expires_at <= timezone.now():
        return INACTIVE
    return _claims(
        user=refresh.user,
        application=refresh.application,
        scope=access.scope,
        issued_at=refresh.created,
        expires_at=expires_at,
        token_type="refresh_token",
        issuer=issuer,
        authentication=_authentication(refresh),
    )
