"""The OpenID Foundation's Basic OP certification plan (oidcc-basic-certification-test-plan),
one test per module, named after it, against the live server."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from django.utils import timezone

from accounts.models import User
from idp.models import Grant
from tests.conformance.conftest import sign_in
from tests.conftest import REDIRECT_URI
from tests.factories import make_client, make_user, relying_party
from tests.relying_party import RelyingParty

PROFILE = {"name", "given_name", "family_name", "preferred_username", "locale", "zoneinfo", "updated_at"}
SCOPE_CLAIMS = {
    "profile": PROFILE,
    "email": {"email", "email_verified"},
    "address": {"address"},
    "phone": {"phone_number", "phone_number_verified"},
}


def userinfo(op: RelyingParty, access_token: str) -> dict:
    reply = requests.get(
        op.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def tokens_for(op: RelyingParty, subject, **kwargs) -> tuple[dict, dict]:
    """Front channel, code exchange and a verified ID token: (token response, ID token claims)."""
    result = sign_in(op, subject, **kwargs)
    assert "code" in result.params, result.params
    tokens = op.exchange(result)
    return tokens, op.verify_id_token(tokens["id_token"], nonce=result.nonce)


def authorization_redirect(op: RelyingParty, **params: str) -> requests.Response:
    """One authorization request from the signed-in browser, not followed."""
    query = {"response_type": "code", "client_id": op.client_id, "redirect_uri": op.redirect_uri, "scope": "openid"}
    query.update(params)
    return op.browser.get(op.metadata["authorization_endpoint"], params=query, allow_redirects=False, timeout=10)


def redirect_params(reply: requests.Response) -> dict[str, str]:
    assert reply.status_code == 302, f"{reply.status_code}: {reply.text[:200]}"
    location = reply.headers["Location"]
    assert location.startswith(REDIRECT_URI), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def jose_header(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def make_auth_time_older(subject, seconds: int = 2) -> None:
    """Wait: the sign-in becomes `seconds` old (its time is kept in the browser's session,
    idp.mfa.signin, which a test cannot move back)."""
    time.sleep(seconds)


# --- Happy flows ---------------------------------------------------------------------------------


def test_oidcc_server(op, subject):
    """Code flow with client_secret_basic: a code, tokens, a valid ID token for the subject."""
    tokens, claims = tokens_for(op, subject, pkce=False)
    assert tokens["token_type"] == "Bearer"
    assert claims["sub"] == str(subject.pk)
    assert set(claims) >= {"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash"}


def test_oidcc_server_client_secret_post(op, subject):
    """The same flow, the client authenticating with client_secret_post."""
    result = sign_in(op, subject, pkce=False)
    session = op.session(state=result.state, token_endpoint_auth_method="client_secret_post")
    tokens = session.fetch_token(op.metadata["token_endpoint"], authorization_response=result.location)
    assert op.verify_id_token(tokens["id_token"], nonce=result.nonce)["sub"] == str(subject.pk)


def test_oidcc_id_token_signature(op, subject):
    """The ID token is RS256-signed by a key in the JWKS, named by kid."""
    tokens, _ = tokens_for(op, subject)
    header = jose_header(tokens["id_token"])
    assert header["alg"] == "RS256"
    jwks = requests.get(op.metadata["jwks_uri"], timeout=10).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}


def test_oidcc_id_token_unsigned(op, subject, certified_client):
    """alg none is never used: no client can register it, and discovery does not offer it."""
    assert "none" not in op.metadata["id_token_signing_alg_values_supported"]
    algorithms = {choice for choice, _ in certified_client.application._meta.get_field("algorithm").choices}
    assert "none" not in algorithms and "" not in algorithms
    tokens, _ = tokens_for(op, subject)
    assert jose_header(tokens["id_token"])["alg"] != "none"


def test_oidcc_userinfo_get(op, subject):
    """UserInfo by GET with the bearer token in the header."""
    tokens, claims = tokens_for(op, subject)
    assert userinfo(op, tokens["access_token"])["sub"] == claims["sub"]


def test_oidcc_userinfo_post_header(op, subject):
    """UserInfo by POST with the bearer token in the header."""
    tokens, claims = tokens_for(op, subject)
    reply = requests.post(
        op.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert reply.status_code == 200
    assert reply.json()["sub"] == claims["sub"]


def test_oidcc_userinfo_post_body(op, subject):
    """UserInfo by POST with the token in the form body (RFC 6750 §2.2)."""
    tokens, claims = tokens_for(op, subject)
    reply = requests.post(op.metadata["userinfo_endpoint"], data={"access_token": tokens["access_token"]}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["sub"] == claims["sub"]


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(op, subject):
    """nonce is optional in the code flow; the ID token then carries none."""
    sign_in(op, subject)  # consent remembered
    params = redirect_params(authorization_redirect(op, state="s1"))
    assert "code" in params
    reply = op.token_request(grant_type="authorization_code", code=params["code"], redirect_uri=op.redirect_uri)
    assert reply.status_code == 200
    claims = op.verify_id_token(reply.json()["id_token"], nonce=None)
    assert "nonce" not in claims


# --- Scopes and claims ---------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["profile", "email", "address", "phone"])
def test_oidcc_scope(op, subject, scope):
    """oidcc-scope-profile / -email / -address / -phone: the scope's claims come from userinfo,
    and no other scope's."""
    tokens, _ = tokens_for(op, subject, scope=f"openid {scope}")
    claims = userinfo(op, tokens["access_token"])
    assert SCOPE_CLAIMS[scope] <= set(claims), set(claims)
    others = set().union(*(names for name, names in SCOPE_CLAIMS.items() if name != scope))
    assert not (set(claims) & others)


def test_oidcc_scope_all(op, subject):
    """All four scopes at once return every claim the subject has."""
    tokens, _ = tokens_for(op, subject, scope="openid profile email address phone")
    claims = userinfo(op, tokens["access_token"])
    assert set().union(*SCOPE_CLAIMS.values()) <= set(claims)
    assert claims["address"]["country"] == "GB" and "formatted" in claims["address"]
    assert claims["phone_number"] == "+441632960001" and claims["email_verified"] is True


def test_oidcc_ensure_other_scope_order_succeeds(op, subject):
    """Scope order does not matter."""
    tokens, _ = tokens_for(op, subject, scope="email openid")
    assert set(tokens["scope"].split()) == {"openid", "email"}
    assert "email" in userinfo(op, tokens["access_token"])


def test_oidcc_ensure_request_with_unknown_parameter_succeeds(op, subject):
    """Unknown authorization parameters are ignored."""
    tokens, claims = tokens_for(op, subject, extra_unknown_parameter="x", another="y")
    assert claims["sub"] == str(subject.pk)


@pytest.mark.parametrize(
    "params",
    [
        {"display": "page"},
        {"display": "popup"},
        {"ui_locales": "se"},
        {"claims_locales": "se"},
        {"login_hint": "conformance@example.com"},
        {"acr_values": "1 2"},
    ],
    ids=["display-page", "display-popup", "ui-locales", "claims-locales", "login-hint", "acr-values"],
)
def test_oidcc_optional_request_parameters(op, subject, params):
    """oidcc-display-page / -display-popup / -ui-locales / -claims-locales /
    -ensure-request-with-acr-values-succeeds / login_hint: none of them breaks the flow."""
    _, claims = tokens_for(op, subject, **params)
    assert claims["sub"] == str(subject.pk)


def test_login_hint_fills_in_the_username(op):
    """login_hint reaches the sign-in form as the username, escaped like any value."""
    reply = authorization_redirect(op, login_hint='conformance"><b>x')
    page = op.browser.get(urljoin(reply.url, reply.headers["Location"]), timeout=10)
    assert page.status_code == 200
    assert 'value="conformance&quot;&gt;&lt;b&gt;x"' in page.text


def test_oidcc_claims_essential(op, subject):
    """The claims parameter: an essential claim outside the requested scopes is returned (the
    client is registered for its scope), in userinfo and in the ID token as asked."""
    claims_request = {"userinfo": {"name": {"essential": True}}, "id_token": {"email": {"essential": True}}}
    tokens, id_claims = tokens_for(op, subject, scope="openid offline_access", claims=json.dumps(claims_request))
    assert userinfo(op, tokens["access_token"])["name"] == "Ada Lovelace"
    assert id_claims["email"] == "conformance@example.com"
    assert "name" not in id_claims, "asked for userinfo only"
    refreshed = op.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert userinfo(op, refreshed["access_token"])["name"] == "Ada Lovelace", "kept across a refresh"


def test_claims_request_is_asked_for_on_the_consent_page(op, subject):
    """Consent remembered for openid alone does not cover a claims request for email: the user is
    asked, and the page names it."""
    sign_in(op, subject)
    reply = authorization_redirect(op, claims=json.dumps({"userinfo": {"email": None}}))
    assert reply.status_code == 200
    assert 'id="authorizationForm"' in reply.text
    assert "See your email address" in reply.text


def test_oidcc_claims_request_never_widens_the_registration(live_server, signing_key, subject):
    """A client registered without the email scope does not get email by asking for the claim."""
    narrow = make_client(scopes=["openid"], redirect_uris=[REDIRECT_URI])
    rp = relying_party(live_server.url, narrow)
    tokens, id_claims = tokens_for(rp, subject, claims=json.dumps({"id_token": {"email": {"essential": True}}}))
    assert "email" not in id_claims
    assert set(userinfo(rp, tokens["access_token"])) == {"sub"}


# --- prompt, max_age, id_token_hint --------------------------------------------------------------


def test_oidcc_prompt_login(op, subject):
    """prompt=login makes the user sign in again; the new ID token has a later auth_time."""
    _, first = tokens_for(op, subject)
    make_auth_time_older(subject)
    before = op.sign_ins
    _, second = tokens_for(op, subject, prompt="login")
    assert op.sign_ins == before + 1, "the sign-in form was shown again"
    assert second["auth_time"] >= first["auth_time"], "a new sign-in, not the earlier one"


def test_oidcc_prompt_none_not_logged_in(op):
    """prompt=none without a session: login_required, by redirect, with the state."""
    params = redirect_params(authorization_redirect(op, prompt="none", state="quiet"))
    assert params["error"] == "login_required"
    assert params["state"] == "quiet"
    assert params["iss"] == op.metadata["issuer"], "RFC 9207: error responses name the issuer too"


def test_every_authorization_response_names_the_issuer(op, subject):
    """RFC 9207, advertised by authorization_response_iss_parameter_supported."""
    assert op.metadata["authorization_response_iss_parameter_supported"] is True
    assert sign_in(op, subject).params["iss"] == op.metadata["issuer"]
    refused = redirect_params(authorization_redirect(op, scope="openid unknown-scope"))
    assert refused["error"] == "invalid_scope"
    assert refused["iss"] == op.metadata["issuer"]


def test_oidcc_prompt_none_logged_in(op, subject):
    """prompt=none with a session and consent given: a code, with no page shown."""
    _, first = tokens_for(op, subject)
    before = op.sign_ins
    params = redirect_params(authorization_redirect(op, prompt="none", state="quiet"))
    assert "code" in params and params["state"] == "quiet"
    assert op.sign_ins == before


def test_prompt_none_without_consent_is_consent_required(op, subject):
    """prompt=none may not show the consent page: consent_required instead."""
    sign_in(op, subject, consent="allow")  # allowed once, not remembered
    params = redirect_params(authorization_redirect(op, prompt="none"))
    assert params["error"] == "consent_required"


def test_oidcc_max_age_1(op, subject):
    """max_age=1 after an older sign-in: the user signs in again, auth_time is returned and new."""
    _, first = tokens_for(op, subject)
    make_auth_time_older(subject)
    older = User.objects.get(pk=subject.pk).last_login
    before = op.sign_ins
    _, second = tokens_for(op, subject, max_age="1")
    assert op.sign_ins == before + 1
    assert second["auth_time"] >= first["auth_time"]
    signed_in = User.objects.get(pk=subject.pk).last_login
    assert signed_in > older, "the new sign-in is recorded"
    assert second["auth_time"] == int(signed_in.timestamp()), "auth_time is the new sign-in's"


def test_oidcc_max_age_10000(op, subject):
    """max_age=10000 after a recent sign-in: no new sign-in, same auth_time."""
    _, first = tokens_for(op, subject)
    before = op.sign_ins
    _, second = tokens_for(op, subject, max_age="10000")
    assert op.sign_ins == before
    assert second["auth_time"] == first["auth_time"]


def test_max_age_with_prompt_none_is_login_required(op, subject):
    """A sign-in older than max_age cannot be renewed silently."""
    tokens_for(op, subject)
    make_auth_time_older(subject)
    assert redirect_params(authorization_redirect(op, prompt="none", max_age="1"))["error"] == "login_required"


def test_oidcc_id_token_hint(op, subject):
    """id_token_hint for the signed-in user with prompt=none: a code, silently."""
    tokens, _ = tokens_for(op, subject)
    params = redirect_params(authorization_redirect(op, prompt="none", id_token_hint=tokens["id_token"]))
    assert "code" in params


def test_id_token_hint_for_another_user_is_login_required(op, subject):
    """A hint naming someone other than the signed-in user: login_required, never their code."""
    tokens, _ = tokens_for(op, subject)
    op.browser.cookies.clear()
    sign_in(op, make_user())
    params = redirect_params(authorization_redirect(op, prompt="none", id_token_hint=tokens["id_token"]))
    assert params["error"] == "login_required"


# --- Codes, redirect URIs, request objects -------------------------------------------------------


def _code_reuse(op, subject, *, later: bool) -> None:
    result = sign_in(op, subject, scope="openid offline_access")
    tokens = op.exchange(result)
    if later:  # stands in for the suite's 30-second wait; the code is still unexpired
        Grant.objects.update(redeemed_at=timezone.now() - timedelta(seconds=30))
    again = op.token_request(
        grant_type="authorization_code",
        code=result.params["code"],
        redirect_uri=op.redirect_uri,
        code_verifier=result.code_verifier,
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # The tokens the first redemption bought are revoked.
    assert (
        requests.get(
            op.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
        ).status_code
        == 401
    )
    refreshed = op.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.json()["error"] == "invalid_grant"


def test_oidcc_codereuse(op, subject):
    """A code presented twice: invalid_grant, and the first use's tokens are revoked."""
    _code_reuse(op, subject, later=False)


def test_oidcc_codereuse_30seconds(op, subject):
    """The same 30 seconds after the first use."""
    _code_reuse(op, subject, later=True)


def test_oidcc_ensure_registered_redirect_uri(op, subject):
    """An unregistered redirect URI gets an error page, never a redirect."""
    sign_in(op, subject)
    reply = authorization_redirect(op, redirect_uri="https://attacker.example/callback")
    assert reply.status_code == 400
    assert "Location" not in reply.headers


@pytest.mark.parametrize(
    "redirect_uri",
    [f"{REDIRECT_URI}?extra=1", REDIRECT_URI.replace("/callback", "/callback/")],
    ids=["query-added", "path-changed"],
)
def test_oidcc_redirect_uri_query_added(op, subject, redirect_uri):
    """oidcc-redirect-uri-query-added / -query-mismatch: the URI must match exactly."""
    sign_in(op, subject)
    reply = authorization_redirect(op, redirect_uri=redirect_uri)
    assert reply.status_code == 400 and "Location" not in reply.headers


def test_oidcc_ensure_redirect_uri_in_authorization_request(live_server, signing_key, subject):
    """Two redirect URIs registered and none sent: an error page, no redirect."""
    two = make_client(redirect_uris=[REDIRECT_URI, "http://127.0.0.1:9999/other"])
    rp = relying_party(live_server.url, two)
    sign_in(rp, subject)
    reply = rp.browser.get(
        rp.metadata["authorization_endpoint"],
        params={"response_type": "code", "client_id": rp.client_id, "scope": "openid"},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 400 and "Location" not in reply.headers


def test_oidcc_ensure_post_request_succeeds(op, subject):
    """The authorization request sent as a form POST works like the GET."""
    sign_in(op, subject)
    form = {"response_type": "code", "client_id": op.client_id, "redirect_uri": op.redirect_uri, "scope": "openid"}
    form["state"] = "posted"
    reply = op.browser.post(op.metadata["authorization_endpoint"], data=form, allow_redirects=False, timeout=10)
    assert reply.status_code == 303, "answered as the same request by GET"
    again = op.browser.get(urljoin(reply.url, reply.headers["Location"]), allow_redirects=False, timeout=10)
    params = redirect_params(again)
    assert "code" in params and params["state"] == "posted"


@pytest.mark.parametrize(
    ("parameter", "error"),
    [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")],
)
def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(op, subject, parameter, error):
    """oidcc-unsigned-request-object-... / oidcc-request-uri-unsigned-...: not supported, so
    rejected with the OIDC error, by redirect, as discovery announces."""
    sign_in(op, subject)
    value = "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9." if parameter == "request" else "https://rp.example/req"
    params = redirect_params(authorization_redirect(op, state="s", **{parameter: value}))
    assert params["error"] == error
    assert params["state"] == "s"
    assert op.metadata[f"{parameter}_parameter_supported"] is False


# --- Refresh and PKCE ----------------------------------------------------------------------------


def test_oidcc_refresh_token(op, subject):
    """A refresh gives a new ID token with the same sub, iss and aud; the refresh token works for
    its own client only."""
    tokens, first = tokens_for(op, subject, scope="openid offline_access")
    other = make_client(redirect_uris=[REDIRECT_URI])
    stolen = op.token_request(
        auth=(other.application.client_id, other.client_secret),
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
    )
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"

    refreshed = op.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    second = op.verify_id_token(refreshed.json()["id_token"], nonce=None)
    assert (second["sub"], second["iss"], second["aud"]) == (first["sub"], first["iss"], first["aud"])


def test_oidcc_ensure_request_with_valid_pkce_succeeds(op, subject):
    """A confidential client sending a valid S256 PKCE pair is never refused for it."""
    _, claims = tokens_for(op, subject, pkce=True)
    assert claims["sub"] == str(subject.pk)
