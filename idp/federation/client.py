"""The relying party at an upstream provider, through authlib's Django client: never by hand.

authlib does discovery (<issuer>/.well-known/openid-configuration), builds the authorization
request with PKCE S256, `state` and `nonce` (kept in the session, so a callback belongs to the
browser that started it and is accepted once), redeems the code, and validates the ID token:
signature against the upstream's JWKS, `aud` (our client id), `exp`, `iat`, `nonce`; `iss` we
require to be the configured issuer (not only the discovery document's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.django_client import OAuth
from django.http import HttpRequest, HttpResponseRedirect
from joserfc.errors import JoseError

from idp.keys.signing import key_ring
from idp.models import UpstreamProvider

TIMEOUT_SECONDS = 10  # every call to an upstream: discovery, JWKS, token endpoint
PARAMETER_MAX = 2048  # a longer code, state or error is no upstream's: refused unread
_NEXT = "idp_next"
_STARTED = "idp_started_at"
STATE_SECONDS = 600  # a sign-in at the upstream that takes longer starts again


class UpstreamError(Exception):
    """The upstream sign-in failed. `reason` is a short code for the audit and the page; nothing
    an upstream or an attacker sent is echoed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class UpstreamIdentity:
    """Who the upstream says signed in, from a validated ID token."""

    issuer: str
    subject: str
    email: str
    email_verified: bool
    preferred_username: str
    given_name: str
    family_name: str
    role_values: tuple[str, ...]


# Whatever an upstream that is down or answers garbage makes authlib, requests or joserfc raise.
_FAILURES = (AuthlibBaseError, JoseError, requests.RequestException, ValueError, KeyError, TypeError, RuntimeError)


def secret_encrypt(secret: str) -> str:
    return key_ring().encrypt(secret.encode()).decode() if secret else ""


def _secret(provider: UpstreamProvider) -> str | None:
    encrypted = provider.client_secret_encrypted
    return key_ring().decrypt(encrypted.encode()).decode() if encrypted else None


def _client(provider: UpstreamProvider) -> Any:
    """A fresh authlib client for this upstream (its configuration is read now, from the row)."""
    secret = _secret(provider)
    oauth = OAuth()
    return oauth.register(
        name=f"upstream-{provider.pk}",
        client_id=provider.client_id,
        client_secret=secret,
        server_metadata_url=f"{provider.issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": provider.scopes,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
            "default_timeout": TIMEOUT_SECONDS,
        },
    )


def _metadata(client: Any, provider: UpstreamProvider) -> dict[str, Any]:
    metadata = client.load_server_metadata()
    # OpenID Connect Discovery 1.0 §4.3: the issuer in the document must be the one configured.
    if not isinstance(metadata, dict) or metadata.get("issuer") != provider.issuer:
        raise UpstreamError("issuer_mismatch")
    return metadata


def authorization_start(request: HttpRequest, *, provider: UpstreamProvider, callback: str, next_to: str) -> Any:
    """The redirect to the upstream's authorization endpoint; the session keeps state, nonce,
    PKCE verifier and where to go after. Raises UpstreamError when the upstream cannot be used."""
    try:
        client = _client(provider)
        _metadata(client, provider)
        found = client.create_authorization_url(callback)
        client.save_authorize_data(request, redirect_uri=callback, **{_NEXT: next_to, _STARTED: time.time()}, **found)
    except _FAILURES:
        raise UpstreamError("upstream_unavailable") from None
    return HttpResponseRedirect(found["url"])


@dataclass(frozen=True)
class Finished:
    identity: UpstreamIdentity
    next_to: str


def authorization_finish(request: HttpRequest, *, provider: UpstreamProvider) -> Finished:
    """The callback: the state checked against this session's (once), the code redeemed, the ID
    token validated. Raises UpstreamError with the reason."""
    params = request.GET
    if any(len(value) > PARAMETER_MAX for values in params.lists() for value in values[1]):
        raise UpstreamError("oversized_parameter")
    if params.get("error"):
        # RFC 6749 §4.1.2.1: the upstream refused (access_denied: the person said no).
        raise UpstreamError("upstream_" + ("access_denied" if params["error"] == "access_denied" else "error"))
    state = params.get("state") or ""
    if not state or not params.get("code"):
        raise UpstreamError("missing_parameter")
    try:
        client = _client(provider)
        saved = client.framework.get_state_data(request.session, state)
    except _FAILURES:
        saved = None
    if not isinstance(saved, dict):
        raise UpstreamError("state_mismatch")  # forged, replayed, or another browser's
    started = saved.get(_STARTED)
    try:
        if not isinstance(started, int | float) or time.time() - started > STATE_SECONDS:
            raise UpstreamError("state_expired")
        _metadata(client, provider)
        # Clears the state first: a code or state presented again finds nothing (a replay).
        token = client.authorize_access_token(
            request, claims_options={"iss": {"essential": True, "values": [provider.issuer]}}
        )
    except UpstreamError:
        client.framework.clear_state_data(request.session, state)
        raise
    except _FAILURES:
        client.framework.clear_state_data(request.session, state)
        raise UpstreamError("token_rejected") from None
    claims = token.get("userinfo") if isinstance(token, dict) else None
    if not claims:
        raise UpstreamError("id_token_missing")  # no ID token, or no nonce kept: nothing validated
    return Finished(identity=_identity(provider, claims), next_to=str(saved.get(_NEXT) or ""))


def _text(claims: Any, name: str, limit: int) -> str:
    value = claims.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _identity(provider: UpstreamProvider, claims: Any) -> UpstreamIdentity:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise UpstreamError("bad_subject")
    values: Any = claims.get(provider.role_claim) if provider.role_claim else None
    if isinstance(values, str):
        values = values.split()
    role_values = tuple(v for v in values if isinstance(v, str)) if isinstance(values, list) else ()
    email = _text(claims, "email", 254)
    return UpstreamIdentity(
        issuer=provider.issuer,
        subject=subject,
        email=email if "@" in email else "",
        email_verified=claims.get("email_verified") is True,
        preferred_username=_text(claims, "preferred_username", 150),
        given_name=_text(claims, "given_name", 150),
        family_name=_text(claims, "family_name", 150),
        role_values=role_values[:100],
    )
