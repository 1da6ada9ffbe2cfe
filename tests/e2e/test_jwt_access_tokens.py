"""JWT access tokens (RFC 9068), end to end: a client registered for them gets signed tokens that
an independent resource server validates with authlib's RFC 9068 validator and the published JWKS
alone; revocation puts the jti on a deny-list that introspection honours and that is emptied once
the tokens have expired. Opaque stays the default."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import requests
import time_machine
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from django.utils import timezone
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

import audit
from accounts.services import role_create, role_grant
from idp.models import AccessToken, RevokedJti
from idp.oauth.access_tokens import timestamp_datetime
from idp.oauth.tokens import tokens_clear_expired, user_tokens_revoke
from tests.conftest import REDIRECT_URI
from tests.factories import make_client, make_machine_client, make_resource_server, relying_party, tokens_at
from tests.relying_party import RelyingParty

SYSTEM = audit.Actor.system("tests")
API = "https://api.example.com"
SCOPE = "openid profile roles offline_access"  # everything the client is registered for


class ResourceServer(JWTBearerTokenValidator):
    """An API that validates JWT access tokens locally, as RFC 9068 §4 says, with the JWKS
    fetched from the provider (authlib's validator: typ, iss, aud, exp, iat, jti, client_id)."""

    def __init__(self, base_url: str, issuer: str, audience: str) -> None:
        super().__init__(issuer=issuer, resource_server=audience)
        self.base_url = base_url

    def jwks(self) -> dict:
        return requests.get(f"{self.base_url}/.well-known/jwks.json", timeout=10).json()

    def get_jwks(self) -> KeySet:
        return KeySet.import_key_set(self.jwks())

    def claims(self, token: str, *, scopes: list[str] | None = None) -> dict:
        verified = self.authenticate_token(token)
        self.validate_token(verified, scopes or [], None)
        return dict(verified)


@pytest.fixture
def jwt_app(db):
    return make_client(
        redirect_uris=[REDIRECT_URI],
        scopes=["openid", "profile", "roles", "offline_access"],
        access_token_format="jwt",
        access_token_audience=API,
    )


@pytest.fixture
def jwt_rp(live_server, signing_key, jwt_app) -> RelyingParty:
    return relying_party(live_server.url, jwt_app)


@pytest.fixture
def api(live_server, jwt_rp) -> ResourceServer:
    return ResourceServer(live_server.url, issuer=jwt_rp.metadata["issuer"], audience=API)


@pytest.fixture
def gateway(db):
    """A confidential client that introspects."""
    return make_resource_server()


@pytest.fixture
def editor_alice(alice, jwt_app):
    editor = role_create(name="editor", application=jwt_app.application, permissions=["docs.write"], actor=SYSTEM)
    role_grant(role=editor, user=alice, actor=SYSTEM)
    return alice


def introspect(live_server, issued, token: str) -> dict:
    auth = (issued.application.client_id, issued.client_secret)
    reply = requests.post(f"{live_server.url}/oauth/introspect/", data={"token": token}, auth=auth, timeout=10)
    assert reply.status_code == 200
    return reply.json()


def revoke(live_server, rp: RelyingParty, token: str, hint: str = "access_token") -> None:
    reply = requests.post(
        f"{live_server.url}/oauth/revoke/",
        data={"token": token, "token_type_hint": hint},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert reply.status_code == 200


def segments(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload)


def test_a_jwt_access_token_validates_with_an_independent_rfc9068_validator(jwt_rp, api, editor_alice, jwt_app):
    tokens = tokens_at(jwt_rp, editor_alice, scope=SCOPE)

    header, _ = segments(tokens["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert header["kid"] in {key["kid"] for key in api.jwks()["keys"]}
    claims = api.claims(tokens["access_token"], scopes=["profile"])
    assert claims["iss"] == jwt_rp.metadata["issuer"]
    assert claims["sub"] == str(editor_alice.pk)
    assert claims["aud"] == API
    assert claims["client_id"] == jwt_app.application.client_id
    assert claims["scope"].split() == ["openid", "profile", "roles", "offline_access"]
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]
    assert claims["roles"] == ["editor"]
    assert len(claims["jti"]) >= 32
    # RFC 9068 §2.2.1: how the user authenticated, as the ID token says.
    assert (claims["acr"], claims["amr"]) == ("urn:idp:acr:pwd", ["pwd"])
    assert abs(claims["auth_time"] - claims["iat"]) < 60
    assert set(claims) == {
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "jti",
        "iat",
        "exp",
        "roles",
        "auth_time",
        "acr",
        "amr",
    }


def test_an_independent_validator_refuses_what_rfc9068_refuses(jwt_rp, api, alice):
    tokens = tokens_at(jwt_rp, alice, scope=SCOPE)
    with pytest.raises(InvalidTokenError):
        ResourceServer(api.base_url, issuer=api.issuer, audience="https://other.example.com").claims(
            tokens["access_token"]
        )
    with pytest.raises(InvalidTokenError):  # an ID token is a JWT of another type
        api.claims(tokens["id_token"])
    with pytest.raises(InvalidTokenError):  # expired
        with time_machine.travel(timezone.now() + timedelta(seconds=tokens["expires_in"] + 120), tick=False):
            api.claims(tokens["access_token"])


def test_roles_appear_only_when_the_roles_scope_was_granted(jwt_rp, api, editor_alice):
    claims = api.claims(tokens_at(jwt_rp, editor_alice, scope="openid profile")["access_token"])
    assert "roles" not in claims


def test_a_jwt_access_token_introspects_like_an_opaque_one(live_server, jwt_rp, gateway, editor_alice, jwt_app):
    tokens = tokens_at(jwt_rp, editor_alice, scope=SCOPE)
    _, claims = segments(tokens["access_token"])

    answer = introspect(live_server, gateway, tokens["access_token"])
    assert answer["active"] is True
    assert answer["token_type"] == "Bearer"
    assert answer["sub"] == str(editor_alice.pk) and answer["username"] == editor_alice.username
    assert answer["client_id"] == jwt_app.application.client_id
    assert (answer["jti"], answer["aud"], answer["exp"], answer["iat"]) == (
        claims["jti"],
        API,
        claims["exp"],
        claims["iat"],
    )
    assert answer["roles"] == ["editor"] and answer["permissions"] == ["docs.write"]
    reply = requests.get(
        f"{live_server.url}/oauth/userinfo/", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert reply.status_code == 200 and reply.json()["sub"] == str(editor_alice.pk)


def test_a_revoked_jwt_access_token_introspects_inactive(live_server, jwt_rp, gateway, alice):
    tokens = tokens_at(jwt_rp, alice, scope=SCOPE)
    _, claims = segments(tokens["access_token"])

    revoke(live_server, jwt_rp, tokens["access_token"])

    assert introspect(live_server, gateway, tokens["access_token"]) == {"active": False}
    denied = RevokedJti.objects.get()
    assert denied.jti == claims["jti"]
    # Derived from the token itself: denied exactly as long as the token could be presented.
    assert denied.expires_at == timestamp_datetime(claims["exp"])
    reply = requests.get(
        f"{live_server.url}/oauth/userinfo/", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert reply.status_code == 401


def test_every_revocation_path_denies_the_jti(live_server, jwt_rp, gateway, alice):
    """Refresh rotation revokes the previous access token; revoking a refresh token takes its
    access token along; deactivating a user revokes all: each path lands on the deny-list."""
    first = tokens_at(jwt_rp, alice, scope=SCOPE)
    refreshed = jwt_rp.session().refresh_token(jwt_rp.metadata["token_endpoint"], first["refresh_token"])
    assert introspect(live_server, gateway, first["access_token"]) == {"active": False}
    assert introspect(live_server, gateway, refreshed["access_token"])["active"] is True

    revoke(live_server, jwt_rp, refreshed["refresh_token"], hint="refresh_token")
    assert introspect(live_server, gateway, refreshed["access_token"]) == {"active": False}

    third = tokens_at(jwt_rp, alice, scope=SCOPE)
    user_tokens_revoke(user_id=alice.pk, actor=SYSTEM, reason="tests")
    assert introspect(live_server, gateway, third["access_token"]) == {"active": False}
    jtis = {segments(tokens["access_token"])[1]["jti"] for tokens in (first, refreshed, third)}
    assert set(RevokedJti.objects.values_list("jti", flat=True)) == jtis


def test_the_deny_list_holds_no_row_per_valid_token_and_is_cleaned_after_expiry(live_server, jwt_rp, gateway, alice):
    kept = tokens_at(jwt_rp, alice, scope=SCOPE)
    revoked = tokens_at(jwt_rp, alice, scope=SCOPE)
    revoke(live_server, jwt_rp, revoked["access_token"])
    assert RevokedJti.objects.count() == 1, "only the revoked token has a row"
    assert AccessToken.objects.exclude(jti="").count() == 1, "the valid token's row holds its jti, for revocation"

    assert tokens_clear_expired(now=timezone.now()) == 0, "not expired yet: kept"
    assert introspect(live_server, gateway, revoked["access_token"]) == {"active": False}
    assert tokens_clear_expired(now=timezone.now() + timedelta(seconds=revoked["expires_in"] + 1)) == 1
    assert not RevokedJti.objects.exists()
    assert introspect(live_server, gateway, kept["access_token"])["active"] is True


def test_a_deactivated_user_or_disabled_client_makes_a_jwt_inactive(live_server, jwt_rp, jwt_app, gateway, alice):
    tokens = tokens_at(jwt_rp, alice, scope=SCOPE)
    alice.is_active = False
    alice.save(update_fields=["is_active"])  # directly, without the service that also revokes
    assert introspect(live_server, gateway, tokens["access_token"]) == {"active": False}
    alice.is_active = True
    alice.save(update_fields=["is_active"])
    jwt_app.application.is_active = False
    jwt_app.application.save(update_fields=["is_active"])
    assert introspect(live_server, gateway, tokens["access_token"]) == {"active": False}


def test_client_credentials_jwt_names_the_client_as_subject(live_server, signing_key, gateway):
    machine = make_machine_client(access_token_format="jwt")
    reply = requests.post(
        f"{live_server.url}/oauth/token/",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(machine.application.client_id, machine.client_secret),
        timeout=10,
    )
    token = reply.json()["access_token"]
    issuer = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()["issuer"]
    claims = ResourceServer(live_server.url, issuer=issuer, audience=issuer).claims(token)
    assert claims["sub"] == claims["client_id"] == machine.application.client_id
    assert claims["aud"] == issuer, "no audience registered: the provider's own API"
    answer = introspect(live_server, gateway, token)
    assert answer["active"] is True and answer["sub"] == machine.application.client_id and "username" not in answer


def test_opaque_access_tokens_stay_the_default(rp, alice, gateway, live_server):
    tokens = tokens_at(rp, alice)
    assert "." not in tokens["access_token"]
    assert "." not in tokens["refresh_token"]
    assert AccessToken.objects.get().jti == ""
    assert introspect(live_server, gateway, tokens["access_token"])["active"] is True


@pytest.mark.parametrize(
    "forgery",
    [
        "other-key-same-kid",
        "alg-none",
        "typ-JWT",
        "other-issuer",
        "hs256-with-public-key",
        "garbage",
        "not-base64",
        "header-not-an-object",
        "huge",
        "sql-in-kid",
    ],
)
def test_forged_jwt_access_tokens_introspect_inactive(live_server, jwt_rp, gateway, alice, signing_key, forgery):
    genuine = tokens_at(jwt_rp, alice, scope=SCOPE)["access_token"]
    header, claims = segments(genuine)
    attacker = RSAKey.generate_key(2048)
    if forgery == "other-key-same-kid":
        token = jwt.encode(header, claims, attacker, algorithms=["RS256"])
    elif forgery == "alg-none":
        encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
        token = f"{encode({**header, 'alg': 'none'})}.{encode(claims)}."
    elif forgery == "typ-JWT":
        token = jwt.encode({**header, "typ": "JWT"}, claims, attacker, algorithms=["RS256"])
    elif forgery == "other-issuer":
        token = jwt.encode(header, {**claims, "iss": "https://evil.example.com"}, attacker, algorithms=["RS256"])
    elif forgery == "hs256-with-public-key":
        from joserfc.jwk import OctKey

        public = json.dumps(signing_key.public_jwk).encode()
        token = jwt.encode({**header, "alg": "HS256"}, claims, OctKey.import_key(public), algorithms=["HS256"])
    elif forgery == "not-base64":
        token = "%%%.&&&.***"
    elif forgery == "header-not-an-object":
        token = f"{base64.urlsafe_b64encode(b'[1]').decode()}.{genuine.split('.', 1)[1]}"
    elif forgery == "huge":
        token = genuine + "A" * 2048  # still under the 4 KB parameter limit, which answers 400
    elif forgery == "sql-in-kid":
        token = jwt.encode({**header, "kid": "' OR 1=1 --"}, claims, attacker, algorithms=["RS256"])
    else:
        token = "a.b.c"
    assert introspect(live_server, gateway, token) == {"active": False}


def test_jwks_verifies_jwt_access_tokens_with_joserfc(jwt_rp, alice):
    """The same check with joserfc alone, the typ header included."""
    token = tokens_at(jwt_rp, alice, scope=SCOPE)["access_token"]
    jwks = requests.get(jwt_rp.metadata["jwks_uri"], timeout=10).json()
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header["typ"] == "at+jwt"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": jwt_rp.metadata["issuer"]},
        aud={"essential": True, "value": API},
        client_id={"essential": True, "value": jwt_rp.client_id},
        jti={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True, "value": str(alice.pk)},
    ).validate(decoded.claims)
