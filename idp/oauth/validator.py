"""Our oauthlib request validator: DOT's, extended at its documented seams."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from jwcrypto import jwt
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256

import audit
from accounts.credentials import authorization_parse
from accounts.selectors import subject_access, user_may_receive_tokens, user_standard_claims
from idp.http import ratelimit
from idp.keys import signing as keys
from idp.models import AccessToken, Application, AuthenticationBound, Grant, IDToken, RefreshToken
from idp.oauth import access_tokens, clients, tokens
from idp.ops import logs


@dataclass
class TokenRequest:
    """What one token request has established so far, for the seams DOT calls later in the same
    request. One object per request (idp.oauth.views.token opens it), kept in a context variable:
    DOT shares one validator among every request, and some seams (_set_token_value) get no
    request at all."""

    grant: Grant | None = None  # the code's row, locked and checked once by validate_code
    access_token: AccessToken | None = None  # the access token just issued
    id_token: tuple[str, IDToken] | None = None  # the ID token just signed, with its row
    session_id: str = ""  # the browser session the tokens belong to (idp.oauth.sessions)
    authentication: AuthenticationBound | None = None  # how the user authenticated (idp.mfa.levels)


_token_request: ContextVar[TokenRequest | None] = ContextVar("idp_token_request", default=None)


@contextmanager
def token_request_opened() -> Iterator[TokenRequest]:
    """The state of the token request that runs inside (idp.oauth.views.token.TokenView)."""
    state = TokenRequest()
    reset = _token_request.set(state)
    try:
        yield state
    finally:
        _token_request.reset(reset)


def _state() -> TokenRequest:
    """This token request's state; outside one (a seam called some other way), a throwaway one."""
    return _token_request.get() or TokenRequest()


def _session_of(request: Any) -> str:
    """The browser session a token request's tokens belong to: the session the code was issued
    through, or the refresh token's; none for client credentials."""
    grant = _state().grant
    if grant is not None:
        return grant.session_id
    refresh = getattr(request, "refresh_token_instance", None)  # DOT's validate_refresh_token sets it
    if getattr(request, "grant_type", None) == "refresh_token" and refresh is not None:
        return str(refresh.session_id)
    return ""


def authentication_of(request: Any) -> AuthenticationBound | None:
    """The authentication behind a token request's tokens (auth_time, amr, acr): the code's, or
    the refresh token's; none for client credentials, or for what was issued before it was kept."""
    source: AuthenticationBound | None = _state().grant
    if source is None and getattr(request, "grant_type", None) == "refresh_token":
        source = getattr(request, "refresh_token_instance", None)
    if source is None or not source.acr:
        return None
    return source


class IdpValidator(OAuth2Validator):
    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        # A client without a stored secret (a public client) never authenticates by secret, and
        # an empty presented secret never matches anything.
        if not provided_secret or not stored_secret:
            return False
        return super()._check_secret(provided_secret, stored_secret)

    def _load_application(self, client_id: str, request: Any) -> Any:
        # DOT's own checks still run on what the shared cache gives (the id matches, the client
        # is usable); only the database read is saved.
        if not request.client and isinstance(client_id, str):  # None when no credentials came
            request.client = clients.client_cached(client_id=client_id)
        return super()._load_application(client_id, request)

    def _authenticate_basic_auth(self, request: Any) -> bool:
        # DOT lets base64's ValueError for a non-ASCII Authorization header escape as a 500;
        # it is a failed client authentication like any other malformed header.
        try:
            return super()._authenticate_basic_auth(request) or self._authenticate_with_previous_secret(
                super()._authenticate_basic_auth, request
            )
        except ValueError:
            return False

    def _authenticate_request_body(self, request: Any) -> bool:
        return super()._authenticate_request_body(request) or self._authenticate_with_previous_secret(
            super()._authenticate_request_body, request
        )

    # --- The request line (idp.ops.logs) names a client only once it authenticated, or for a public
    # client (RFC 6749 §2.1: it has no credentials) once it named a registered client; an unknown
    # client_id a caller typed never reaches the log.
    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        basic = authorization_parse((request.headers or {}).get("Authorization")).basic
        if basic is not None and getattr(request, "client_secret", None) is not None:
            # RFC 6749 §2.3: a client uses one authentication method per request. Which of two
            # secrets counts would otherwise be DOT's choice; a client sending both is misbuilt.
            raise errors.InvalidRequestError(
                description="client credentials in both the Authorization header and the body", request=request
            )
        body_client_id = getattr(request, "client_id", None)
        if basic is not None and body_client_id is not None and body_client_id != basic[0]:
            raise errors.InvalidRequestError(
                description="client_id does not match the Basic credentials", request=request
            )
        authenticated = super().authenticate_client(request, *args, **kwargs)
        if authenticated:
            logs.request_client_set(client_id=request.client.client_id)
            ratelimit.client_authenticated(client_id=request.client.client_id)
        else:
            ratelimit.client_authentication_failed()
        return authenticated

    def authenticate_client_id(self, client_id: str, request: Any, *args: Any, **kwargs: Any) -> bool:
        identified = super().authenticate_client_id(client_id, request, *args, **kwargs)
        if identified:
            logs.request_client_set(client_id=request.client.client_id)
        return identified

    def _authenticate_with_previous_secret(self, authenticate: Callable[[Any], bool], request: Any) -> bool:
        """During a rotation's grace period (idp.services.client_secret_rotate) the secret before
        it still authenticates the client. DOT's own check runs again, every rule of it (client
        id, usable client, check_password's constant-time comparison), against the previous hash
        put in place of the current one on this request's copy of the client only."""
        client = getattr(request, "client", None)
        if client is None or not client.previous_secret_accepted(timezone.now()):
            return False
        current = client.client_secret
        client.client_secret = client.previous_client_secret
        try:
            return authenticate(request)
        finally:
            client.client_secret = current

    # --- A deactivated user's tokens stop working at once, everywhere (userinfo, refresh and,
    # in idp.oauth.selectors, introspection), not when they expire.
    def validate_bearer_token(self, token: str, scopes: Any, request: Any) -> bool:
        valid = super().validate_bearer_token(token, scopes, request)
        if valid and request.user is not None and not request.user.is_active:
            request.oauth2_error = {"error": "invalid_token", "error_description": "The access token is invalid."}
            return False
        if valid:  # the token's client and owner, for the request line (userinfo, /api/v1)
            if request.client is not None:
                logs.request_client_set(client_id=request.client.client_id)
            if request.user is not None:
                logs.request_user_set(user_id=request.user.pk)
        return valid

    def validate_refresh_token(self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        started = timezone.now()
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        if not valid:
            self._record_refresh_token_reuse(refresh_token, client, since=started)
        # A deactivated user's, or a self-registered user's whose address is unverified again (changed).
        return valid and (request.user is None or (request.user.is_active and user_may_receive_tokens(request.user)))

    def _record_refresh_token_reuse(self, refresh_token: str, client: Any, *, since: datetime) -> None:
        """A revoked refresh token came back (RFC 9700 §4.14.2): rotated away, or revoked on
        purpose. DOT's validate_refresh_token has just revoked its family (REFRESH_TOKEN_REUSE_
        PROTECTION), inside this token request's transaction; this records it. Looked up only on
        the failure path, so a good refresh costs no extra query."""
        checksum = hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()
        presented = (
            RefreshToken.objects.filter(token_checksum=checksum)
            .select_related("application", "user")
            .order_by(F("revoked").desc(nulls_first=True))  # DOT's choice among rows sharing a checksum
            .first()
        )
        if presented is None or presented.revoked is None:
            return  # unknown, or refused for another reason (expired, another client's)
        family = presented.token_family
        target = audit.Target.user(presented.user)
        client_id = presented.application.client_id
        audit.record(
            audit.Action.TOKEN_REUSE_DETECTED,
            actor=audit.Actor.client(client),
            target=target,
            client_id=client_id,
            outcome="alert",
            data={
                "credential": "refresh_token",
                "refresh_token": presented.pk,
                "family": str(family) if family else None,
                # Rotated away (a successor joined the family after it), or revoked on purpose.
                "rotated": bool(family)
                and RefreshToken.objects.filter(token_family=family, pk__gt=presented.pk).exists(),
            },
        )
        # What DOT's family sweep revoked just now: its rows carry the sweep's time, after since.
        # Each live member held its access token (rotation mints the pair), deleted with it.
        swept = RefreshToken.objects.filter(token_family=family, revoked__gte=since).count() if family else 0
        if swept:
            audit.record(
                audit.Action.TOKEN_REVOKED,
                actor=audit.Actor.client(client),
                target=target,
                client_id=client_id,
                data={"reason": "reuse_detected", "access_tokens": swept, "refresh_tokens": swept},
            )

    def is_pkce_required(self, client_id: str, request: Any) -> bool:
        """PKCE is required of public clients and of confidential clients registered with
        require_pkce (settings PKCE_REQUIRED says required; this is its per-client answer).
        oauthlib asks once the client is known (validate_client_id, authenticate_client), so the
        client on the request answers without a query; an unknown client needs PKCE."""
        client = request.client
        if client is None or client.client_id != client_id:
            client = clients.client_cached(client_id=client_id)
        return client is None or client.client_type == Application.CLIENT_PUBLIC or bool(client.require_pkce)

    # --- Authorization codes: single use, and reuse revokes what the first use bought. The token
    # view runs in one transaction, so the row lock below serialises two redemptions of a code.
    def validate_code(self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        # The grant's row only, and FOR NO KEY UPDATE: its user's row is referenced by every token
        # any request inserts for that user, and PostgreSQL checks those (deferred) foreign keys at
        # COMMIT, after audit.record took the audit chain's lock. Locking the user row here made a
        # code exchange and a concurrent refresh of the same user deadlock (make bench found it).
        grant = (
            Grant.objects.select_for_update(of=("self",), no_key=True)
            .select_related("user")
            .filter(code=code, application=client)
            .first()
        )
        if grant is None:
            return False
        if grant.redeemed_at is not None:  # reuse, expired or not: revoke what the first use bought
            tokens.code_reuse_revoke(grant=grant, actor=audit.Actor.client(client))
            return False
        if grant.is_expired():
            return False
        if not grant.user.is_active or not client.is_active:
            return False  # a code outlives neither its user's deactivation nor its client's
        if not user_may_receive_tokens(grant.user):
            return False  # a self-registered user's address is unverified (idp.oauth.views.authorize)
        # What DOT's validate_code sets, from the row already locked (one query, not two).
        _state().grant = grant
        request.scopes = grant.scope.split(" ")
        request.user = grant.user
        if grant.nonce:
            request.nonce = grant.nonce
        if grant.claims:
            request.claims = json.loads(grant.claims)
        return True

    def invalidate_authorization_code(self, client_id: str, code: str, request: Any, *args: Any, **kwargs: Any) -> None:
        redeemed = Grant.objects.filter(code=code, application=request.client, redeemed_at__isnull=True).update(
            redeemed_at=timezone.now(), access_token=_state().access_token
        )
        if not redeemed:
            raise errors.InvalidGrantError(request=request)

    # prompt=none (oauthlib asks, DOT does not answer): an unauthenticated request never gets
    # this far (DOT's dispatch answers login_required), and consent, max_age and id_token_hint
    # need the session, which only idp.oauth.views.AuthorizationView sees; it decides them.
    def validate_silent_login(self, request: Any) -> bool:
        return True

    def validate_silent_authorization(self, request: Any) -> bool:
        return True

    def validate_user_match(self, id_token_hint: str, scopes: Any, claims: Any, request: Any) -> bool:
        return True

    def save_authorization_code(self, client_id: str, code: dict, request: Any, *args: Any, **kwargs: Any) -> None:
        # The user authorized; the client receives the code. The row and its audit event commit
        # together. The event names the grant's id, never the code.
        with transaction.atomic():
            grant = self._create_authorization_code(request, code)
            # DOT creates the row in one call; the browser session and how its user authenticated
            # (idp.oauth.views.authorize puts both into the request's credentials) are ours to add.
            added: dict[str, Any] = {}
            session_id = getattr(request, "session_id", "")
            if session_id:
                added["session_id"] = session_id
            authentication = getattr(request, "authentication", None)
            if isinstance(authentication, dict):
                added |= {key: authentication[key] for key in ("auth_time", "amr", "acr")}
            if added:
                Grant.objects.filter(pk=grant.pk).update(**added)
            audit.record(
                audit.Action.CODE_ISSUED,
                actor=audit.Actor.user(request.user),
                target=audit.Target.user(request.user),
                client_id=request.client.client_id,
                data={"grant": grant.pk, "scope": grant.scope.split()},
            )

    def revoke_token(self, token: str, token_type_hint: str | None, request: Any, *args: Any, **kwargs: Any) -> None:
        """RFC 7009 revocation, as DOT does it (only the authenticated client's own tokens; a
        refresh token takes its access token along and the other way round), audited: one
        token.revoked for a token really revoked. An unknown, foreign or already revoked token
        changes and records nothing (and still gets 200, RFC 7009 §2.2)."""
        application = request.client
        if getattr(application, "pk", None) is None:
            return
        # DOT looks for the hinted kind first, then the other; a random token's checksum is never
        # both, so looking for both at once finds the same token.
        checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
        tokens.tokens_revoke(
            actor=audit.Actor.client(application),
            reason="revocation_endpoint",
            access_token_ids=AccessToken.objects.filter(token_checksum=checksum, application=application).values_list(
                "pk", flat=True
            ),
            refresh_token_ids=RefreshToken.objects.filter(
                token_checksum=checksum, application=application, revoked__isnull=True
            ).values_list("pk", flat=True),
        )

    def get_default_redirect_uri(self, client_id: str, request: Any, *args: Any, **kwargs: Any) -> str | None:
        # DOT falls back to the first registered URI. With several registered, a request that
        # names none is ambiguous: no default, so oauthlib shows an error page, never a redirect.
        uris = request.client.redirect_uris.split()
        return uris[0] if len(uris) == 1 else None

    def _create_access_token(self, expires: Any, request: Any, token: dict, source_refresh_token: Any = None) -> Any:
        access_token = super()._create_access_token(expires, request, token, source_refresh_token)
        if isinstance(request.claims, dict) and request.claims.get("userinfo"):
            access_token.claims = {"userinfo": request.claims["userinfo"]}
            access_token.save(update_fields=["claims"])
        _state().access_token = access_token
        return access_token

    def _set_token_value(self, token_instance: Any, raw_token: str) -> None:
        super()._set_token_value(token_instance, raw_token)
        state = _state()
        token_instance.session_id = state.session_id
        if state.authentication is not None:
            token_instance.authentication_copy(state.authentication)
        if isinstance(token_instance, AccessToken) and (minted := access_tokens.unverified_jti_exp(raw_token)):
            # A JWT access token's row keeps its jti and expires with the token: deleting the row
            # revokes it until then (idp.oauth.access_tokens).
            token_instance.jti, token_instance.expires = minted

    def _save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> None:
        # DOT calls this inside transaction.atomic, so the tokens and the audit row commit together.
        if request.grant_type == "refresh_token":
            # Two refreshes with the same token can both pass validate_refresh_token before either
            # rotates it. Re-check under a row lock: the second one finds it rotated and gets
            # invalid_grant (DOT's grace-period branch would instead try to hand it the first
            # one's tokens, which hashed storage no longer has).
            presented = request.refresh_token_instance
            if not RefreshToken.objects.select_for_update().filter(pk=presented.pk, revoked__isnull=True).exists():
                raise errors.InvalidGrantError(request=request)
            # The claims request of the original authorization carries over to the new access
            # token (read before DOT's rotation deletes the old one).
            if presented.access_token is not None and presented.access_token.claims:
                request.claims = presented.access_token.claims
        if request.grant_type == "authorization_code" and "offline_access" not in request.scopes:
            # OpenID Connect Core §11: a refresh token only for offline_access, granted and
            # consented (the README's promise for every authorization code: least privilege).
            # oauthlib always makes one; this drops it before it is saved or answered.
            token.pop("refresh_token", None)
        state = _state()
        state.session_id = _session_of(request)
        state.authentication = authentication_of(request)
        super()._save_bearer_token(token, request, *args, **kwargs)
        if request.user is not None:
            logs.request_user_set(user_id=request.user.pk)  # whom the tokens act for, in the request line
        # The tokens and their audit row commit together: DOT calls this inside the token request's
        # transaction (idp.oauth.views.token).
        issued = state.access_token
        assert issued is not None  # noqa: S101 - _create_access_token ran above
        client = request.client
        audit.record(
            audit.Action.TOKEN_REFRESHED if request.grant_type == "refresh_token" else audit.Action.TOKEN_ISSUED,
            actor=audit.Actor.client(client),
            target=audit.Target.user(issued.user) if issued.user_id is not None else audit.Target.client(client),
            client_id=client.client_id,
            data={"grant": request.grant_type, "scope": issued.scope},
        )

    # DOT reads the grant again for each of these (oauthlib asks after validate_code); the row
    # validate_code locked and checked for this client answers them all, within the request.
    def _grant_validated(self, code: str, request: Any) -> Grant | None:
        grant = _state().grant
        if grant is None or request.code != code or grant.application_id != getattr(request.client, "pk", None):
            return None
        return grant

    def confirm_redirect_uri(
        self, client_id: str, code: str, redirect_uri: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        grant = self._grant_validated(code, request)
        if grant is None:
            confirmed = super().confirm_redirect_uri(client_id, code, redirect_uri, client, request, *args, **kwargs)
        else:
            confirmed = grant.redirect_uri_allowed(redirect_uri)
        if confirmed and request.using_default_redirect_uri and grant is not None and "openid" in grant.scope.split():
            # RFC 6749 §4.1.3: required when the authorization request had it, which an OpenID
            # request always does (idp.oauth.server refuses one without it).
            raise errors.InvalidRequestError(description="redirect_uri is required", request=request)
        if not confirmed:
            # RFC 6749 §5.2: the redirect_uri does not match the one the code was issued to, so the
            # grant is invalid (oauthlib would answer invalid_request).
            raise errors.InvalidGrantError(
                description="redirect_uri does not match the authorization request", request=request
            )
        return True

    def get_code_challenge(self, code: str, request: Any) -> str | None:
        grant = self._grant_validated(code, request)
        if grant is None:
            return super().get_code_challenge(code, request)
        if not grant.code_challenge and request.code_verifier is not None:
            # RFC 9700 §2.1.1: a verifier for a code issued without a challenge is a downgrade (an
            # injected code, with whatever verifier the attacker likes). oauthlib would ignore it.
            self._spend_code(grant)
            raise errors.InvalidGrantError(
                description="code_verifier given for a code issued without code_challenge", request=request
            )
        if grant.code_challenge and (
            request.code_verifier is None or not code_challenge_method_s256(request.code_verifier, grant.code_challenge)
        ):
            # The PKCE check oauthlib makes next will fail: the code is spent first, so whoever
            # holds it without its verifier cannot try again (RFC 9700 §2.1.1, §4.5).
            self._spend_code(grant)
        return grant.code_challenge or None

    def get_code_challenge_method(self, code: str, request: Any) -> str | None:
        grant = self._grant_validated(code, request)
        if grant is None:
            return super().get_code_challenge_method(code, request)
        return grant.code_challenge_method or None

    @staticmethod
    def _spend_code(grant: Grant) -> None:
        """Mark a code redeemed, buying nothing: presented again it is reuse (validate_code). The
        token request's transaction commits this even though it answers an error."""
        Grant.objects.filter(pk=grant.pk, redeemed_at__isnull=True).update(redeemed_at=timezone.now())

    def get_authorization_code_nonce(self, client_id: str, code: str, redirect_uri: str, request: Any) -> str | None:
        grant = self._grant_validated(code, request)
        if grant is None:
            return super().get_authorization_code_nonce(client_id, code, redirect_uri, request)
        return grant.nonce or None

    # --- ID tokens: signed with the active key of the algorithm the client registered
    # (id_token_signed_response_alg), always with its kid, so a relying party picks the key from
    # the JWKS by kid across rotations (DOT sets a kid for RS256 only).
    def finalize_id_token(self, id_token: dict[str, Any], token: Any, token_handler: Any, request: Any) -> str:
        claims, expiration_time = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(**claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce  # oauthlib bug #746, as DOT works around it
        session_id = _session_of(request)
        if session_id:
            id_token["sid"] = session_id  # OpenID Connect Front-/Back-Channel Logout
        authentication = authentication_of(request)
        if authentication is not None and authentication.auth_time is not None:
            # How and when the user authenticated (idp.mfa.levels), as the browser session had it
            # when the code was issued; kept on refresh tokens, so a refreshed ID token says the same.
            id_token["auth_time"] = int(authentication.auth_time.timestamp())
            id_token["amr"] = list(authentication.amr)
            id_token["acr"] = authentication.acr
        key = keys.signing_key_active(request.client.algorithm)
        if key.algorithm == "EdDSA" and "at_hash" in id_token:
            # OIDC Core §3.1.3.6 hashes with the alg's hash: SHA-512 for Ed25519 (Core errata 2).
            # oauthlib always uses SHA-256, which is right for RS256 and ES256 only.
            digest = hashlib.sha512(token["access_token"].encode("ascii")).digest()
            id_token["at_hash"] = base64.urlsafe_b64encode(digest[: len(digest) // 2]).decode().rstrip("=")
        header = {"typ": "JWT", "alg": key.algorithm, "kid": key.kid}
        signed = jwt.JWT(header=json.dumps(header), claims=json.dumps(id_token, default=str))
        signed.make_signed_token(key.jwk)
        with transaction.atomic():
            saved = self._save_id_token(id_token["jti"], request, expiration_time, session_id=session_id)
        request.access_token = saved
        request.id_token = saved
        serialized = signed.serialize()
        _state().id_token = (serialized, saved)
        return serialized

    def _save_id_token(
        self, jti: str, request: Any, expires: Any, *args: Any, session_id: str = "", **kwargs: Any
    ) -> Any:
        # DOT's row, with the browser session it belongs to.
        return IDToken.objects.create(
            user=request.user,
            scope=request.scope or " ".join(request.scopes),
            expires=expires,
            jti=jti,
            application=request.client,
            session_id=session_id,
        )

    def _load_id_token(self, token: str) -> Any:
        # DOT verifies the ID token finalize_id_token just signed, and reads its row again, to link
        # it to the access token in _save_bearer_token. The very string signed a moment ago, in
        # this request, needs neither.
        signed = _state().id_token
        if signed is not None and hmac.compare_digest(signed[0], token):
            return signed[1]
        return super()._load_id_token(token)

    def _get_key_for_token(self, token: str) -> Any:
        # DOT verifies an ID token it is handed back (its own, when linking it to the access token
        # at the code exchange, and RP-initiated logout's id_token_hint) with its client's key; ours
        # is whichever key the token's kid names, if that key may still have signed something.
        signed = keys.signed_token_parse(token)
        return signed.key if signed is not None else None

    # --- Claims: scopes release the standard claims the user has; the claims request parameter
    # (Core §5.5) can ask for single claims, released only if the client is registered for the
    # claim's scope, so it never widens what the client may see.
    def get_discovery_claims(self, request: Any) -> list[str]:
        return ["sub", "roles", *self.oidc_claim_scope.keys() - {"sub"}]

    def get_oidc_claims(self, token: Any, token_handler: Any, request: Any) -> dict[str, Any]:
        return self._released_claims(request, target="id_token", requested=request.claims)

    def get_userinfo_claims(self, request: Any) -> dict[str, Any]:
        return self._released_claims(request, target="userinfo", requested=request.access_token.claims)

    def _released_claims(self, request: Any, *, target: str, requested: Any) -> dict[str, Any]:
        available = user_standard_claims(request.user)
        scopes = set(request.scopes)
        registered = set(request.client.scope_list) if request.client is not None else set()
        asked = set((requested or {}).get(target) or {}) if isinstance(requested, dict) else set()
        released: dict[str, Any] = {"sub": str(request.user.pk)}
        for name, value in available.items():
            scope = self.oidc_claim_scope.get(name)
            if scope in scopes or (name in asked and scope in registered):
                released[name] = value
        if "roles" in scopes:
            # Read now, for this client: global roles plus the client's own.
            access = subject_access(user_id=request.user.pk, application_pk=getattr(request.client, "pk", None))
            released["roles"] = access.roles
        return released
