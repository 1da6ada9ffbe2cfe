"""oidcc-config-certification-test-plan: the discovery document and the key set it points to, as
the OpenID Foundation's config plan checks them (module oidcc-discovery-endpoint-verification)."""

from __future__ import annotations

import requests
from joserfc.jwk import KeySet

REQUIRED_FIELDS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
)
RECOMMENDED_FIELDS = ("userinfo_endpoint", "scopes_supported", "claims_supported")
PRIVATE_KEY_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def fetch_discovery(base_url: str) -> requests.Response:
    reply = requests.get(f"{base_url}/.well-known/openid-configuration", timeout=10)
    assert reply.status_code == 200, reply.text[:300]
    return reply


def test_oidcc_discovery_endpoint_verification(op, live_server):
    """The discovery document is JSON with every required and recommended field, names the issuer it
    was fetched from, points only at endpoints under that issuer, and publishes a valid public JWKS."""
    reply = fetch_discovery(live_server.url)
    assert reply.headers["Content-Type"].split(";")[0].strip() == "application/json"
    document = reply.json()

    missing = [name for name in REQUIRED_FIELDS + RECOMMENDED_FIELDS if name not in document]
    assert missing == [], f"discovery lacks {missing}"

    # Discovery §4.3: the issuer is exactly the URL the document was fetched under.
    issuer = document["issuer"]
    assert issuer == live_server.url
    assert not issuer.endswith("/")

    assert "openid" in document["scopes_supported"]
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert "none" not in document["id_token_signing_alg_values_supported"]
    assert document["response_types_supported"] == ["code"]
    assert "public" in document["subject_types_supported"] or "pairwise" in document["subject_types_supported"]

    locations = {name: value for name, value in document.items() if name.endswith("_endpoint") or name == "jwks_uri"}
    assert {"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"} <= locations.keys()
    for name, url in locations.items():
        assert isinstance(url, str) and url.startswith(issuer + "/"), f"{name} = {url!r} is not under the issuer"

    # The JWKS: public signing keys only, each identifiable and importable.
    jwks_reply = requests.get(document["jwks_uri"], timeout=10)
    assert jwks_reply.status_code == 200
    assert jwks_reply.headers["Content-Type"].split(";")[0].strip() == "application/json"
    jwks = jwks_reply.json()
    assert jwks["keys"], "the key set is empty"
    for key in jwks["keys"]:
        assert key.get("kty"), key
        assert key.get("kid"), key
        assert key.get("use") == "sig" or key.get("alg"), key
        assert PRIVATE_KEY_MEMBERS.isdisjoint(key), f"key {key['kid']} publishes private members"
    assert len({key["kid"] for key in jwks["keys"]}) == len(jwks["keys"]), "kids are unique"
    imported = KeySet.import_key_set(jwks)
    assert len(imported.keys) == len(jwks["keys"])
    assert all(not key.is_private for key in imported.keys)


def test_discovery_advertises_exactly_what_is_supported(op, live_server):
    """Every capability the document announces is one the provider has, and nothing it lacks."""
    document = fetch_discovery(live_server.url).json()

    assert set(document["grant_types_supported"]) == {"authorization_code", "client_credentials", "refresh_token"}
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert document["response_modes_supported"] == ["query", "form_post"]
    assert document["prompt_values_supported"] == ["none", "login", "consent"]
    assert document["claims_parameter_supported"] is True
    assert document["request_parameter_supported"] is False
    assert document["request_uri_parameter_supported"] is False
    assert set(document["scopes_supported"]) == {
        "openid",
        "profile",
        "email",
        "address",
        "phone",
        "roles",
        "idp.manage",
        "offline_access",
    }
    assert {
        "sub",
        "name",
        "email",
        "email_verified",
        "phone_number",
        "address",
        "auth_time",
        "iss",
    } <= set(document["claims_supported"])
    for name in ("end_session_endpoint", "revocation_endpoint", "introspection_endpoint"):
        assert document.get(name, "").startswith(document["issuer"] + "/"), name
