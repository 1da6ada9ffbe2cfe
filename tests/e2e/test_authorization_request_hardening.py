"""What an attacker found in the protocol endpoints, each held by a test through the live server: a
PKCE downgrade, codes outliving their user or client, refresh tokens without offline_access,
authorization requests judged only after sign-in, and token-endpoint error shapes (RFC 6749 §5.2)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from idp.models import AccessToken, Grant
from tests.conftest import REDIRECT_URI
from tests.factories import USER_PASSWORD, make_client, make_public_client, relying_party, sign_in_at
from tests.relying_party import RelyingParty, parse_form


def exchange_raw(rp: RelyingParty, code: str, verifier: str | None, **extra: str) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    return rp.token_request(**data)


def error_of(reply: requests.Response) -> str | None:
    try:
        return reply.json().get("error")
    except ValueError:
        return None


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# --- PKCE downgrade (RFC 9700 §2.1.1) -----------------------------------------------------------


def test_a_verifier_for_a_code_issued_without_a_challenge_is_invalid_grant(rp, alice):
    """A confidential client that sent no code_challenge cannot redeem with some code_verifier: an
    attacker who injected a stolen code would otherwise pass any verifier it likes."""
    result = sign_in_at(rp, alice, pkce=False)
    reply = exchange_raw(rp, result.params["code"], "v" * 50)
    assert reply.status_code == 400, reply.text
    assert error_of(reply) == "invalid_grant"
    assert not AccessToken.objects.exists()
    # The code is spent: not even the honest request without a verifier redeems it now.
    assert exchange_raw(rp, result.params["code"], None).status_code == 400


def test_a_failed_pkce_verification_invalidates_the_code(rp, signed_in_code):
    wrong = exchange_raw(rp, signed_in_code.params["code"], "w" * 50)
    assert error_of(wrong) == "invalid_grant"
    right = exchange_raw(rp, signed_in_code.params["code"], signed_in_code.code_verifier)
    assert right.status_code == 400, right.text
    assert error_of(right) == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_a_code_presented_without_its_verifier_is_invalidated_too(rp, signed_in_code):
    missing = exchange_raw(rp, signed_in_code.params["code"], None)
    assert missing.status_code == 400
    right = exchange_raw(rp, signed_in_code.params["code"], signed_in_code.code_verifier)
    assert error_of(right) == "invalid_grant"


# --- A code outlives neither its user nor its client ---------------------------------------------


def test_a_code_of_a_deactivated_user_is_invalid_grant(rp, signed_in_code, alice):
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    reply = exchange_raw(rp, signed_in_code.params["code"], signed_in_code.code_verifier)
    assert reply.status_code == 400, reply.text
    assert error_of(reply) == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_a_code_of_a_disabled_public_client_is_refused(live_server, signing_key, alice):
    public = make_public_client()
    rp = relying_party(live_server.url, public)
    result = sign_in_at(rp, alice)
    public.application.is_active = False
    public.application.save(update_fields=["is_active"])
    reply = exchange_raw(rp, result.params["code"], result.code_verifier, client_id=rp.client_id)
    assert reply.status_code in (400, 401), reply.text
    assert error_of(reply) in {"invalid_grant", "invalid_client"}
    assert not AccessToken.objects.exists()


# --- Refresh tokens only with offline_access (OpenID Connect Core §11) ----------------------------


def test_no_refresh_token_without_offline_access(rp, alice):
    result = sign_in_at(rp, alice, scope="openid profile")
    tokens = exchange_raw(rp, result.params["code"], result.code_verifier).json()
    assert "access_token" in tokens and "id_token" in tokens
    assert "refresh_token" not in tokens


def test_a_client_not_registered_for_offline_access_cannot_ask_for_it(live_server, signing_key, alice):
    issued = make_client(scopes=["openid", "profile"])
    rp = relying_party(live_server.url, issued)
    result = sign_in_at(rp, alice, scope="openid offline_access", consent=None)
    assert result.params["error"] == "invalid_scope"
    assert "code" not in result.params


def test_offline_access_granted_and_consented_gives_a_refresh_token(rp, alice):
    result = sign_in_at(rp, alice, scope="openid offline_access")
    tokens = exchange_raw(rp, result.params["code"], result.code_verifier).json()
    assert tokens["refresh_token"]


# --- The authorization request is judged before anyone is asked to sign in ------------------------


def first_answer(rp: RelyingParty, url: str) -> requests.Response:
    """The provider's answer to a browser that is not signed in."""
    return rp.browser.get(url, allow_redirects=False, timeout=10)


def assert_no_sign_in(reply: requests.Response) -> None:
    assert 'name="password"' not in reply.text
    location = reply.headers.get("Location", "")
    assert "/accounts/login/" not in location, location


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "no-such-client"},
        {"redirect_uri": "https://attacker.example/callback"},
        {"redirect_uri": ""},
    ],
    ids=["unknown-client", "unregistered-redirect", "no-redirect-with-several-registered"],
)
def test_fatal_request_errors_are_an_error_page_before_sign_in(live_server, signing_key, params):
    issued = make_client(redirect_uris=[REDIRECT_URI, "http://127.0.0.1:9999/other"])
    rp = relying_party(live_server.url, issued)
    url = rp.authorization_url(**params)
    if params.get("redirect_uri") == "":
        url = url.replace("&redirect_uri=", "&x=")
    reply = first_answer(rp, url)
    assert reply.status_code == 400, (reply.status_code, reply.headers.get("Location"))
    assert "Location" not in reply.headers
    assert reply.headers["Content-Type"].startswith("text/html")
    assert_no_sign_in(reply)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid no-such-scope"}, "invalid_scope"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"request_uri": "https://rp.example/req"}, "request_uri_not_supported"),
        ({"response_mode": "fragment"}, "invalid_request"),
    ],
)
def test_other_errors_redirect_to_the_client_before_sign_in(rp, params, error):
    state = "st-" + secrets.token_hex(4)
    reply = first_answer(rp, rp.authorization_url(state=state, **params))
    assert reply.status_code == 302, reply.text[:300]
    assert_no_sign_in(reply)
    location = reply.headers["Location"]
    assert location.startswith(REDIRECT_URI), location
    answer = query_of(location)
    assert answer["error"] == error
    assert answer["state"] == state
    assert answer["iss"] == rp.metadata["issuer"]
    assert "code" not in answer


def test_missing_pkce_where_required_redirects_before_sign_in(live_server, signing_key):
    public = make_public_client()
    rp = relying_party(live_server.url, public)
    reply = first_answer(rp, rp.authorization_url())
    assert reply.status_code == 302
    assert_no_sign_in(reply)
    answer = query_of(reply.headers["Location"])
    assert answer["error"] == "invalid_request"
    assert answer["iss"] == rp.metadata["issuer"]


def test_a_valid_request_still_asks_to_sign_in(rp):
    verifier = secrets.token_urlsafe(48)
    reply = first_answer(rp, rp.authorization_url(code_challenge=s256(verifier), code_challenge_method="S256"))
    assert reply.status_code == 302
    assert "/accounts/login/" in reply.headers["Location"]


def test_form_post_response_mode_posts_the_code_to_the_client(rp, alice):
    """OAuth 2.0 Form Post Response Mode: the answer is a page whose form posts code, state and iss
    to the redirect URI, never a redirect carrying them in the URL."""
    verifier = secrets.token_urlsafe(48)
    state = "st-" + secrets.token_hex(4)
    url = rp.authorization_url(
        state=state, response_mode="form_post", code_challenge=s256(verifier), code_challenge_method="S256"
    )
    reply = rp.follow(first_answer(rp, url), username=alice.username, password=USER_PASSWORD, consent="allow")
    assert reply.status_code == 200, reply.text[:300]
    assert "Location" not in reply.headers
    assert reply.headers["Cache-Control"].startswith("no-store") or "no-store" in reply.headers["Cache-Control"]
    action, fields = parse_form(reply.text)
    assert action == REDIRECT_URI
    assert fields["state"] == state
    assert fields["iss"] == rp.metadata["issuer"]
    tokens = exchange_raw(rp, fields["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    assert "form_post" in rp.metadata["response_modes_supported"]


def test_form_post_error_responses_are_posted_too(rp):
    state = "st-" + secrets.token_hex(4)
    reply = first_answer(rp, rp.authorization_url(state=state, response_mode="form_post", scope="openid bogus"))
    assert reply.status_code == 200, reply.text[:300]
    action, fields = parse_form(reply.text)
    assert action == REDIRECT_URI
    assert fields["error"] == "invalid_scope"
    assert fields["state"] == state


# --- Token endpoint error shapes (RFC 6749 §5.2) ----------------------------------------------------


def test_a_redirect_uri_that_does_not_match_is_invalid_grant(live_server, signing_key, alice):
    issued = make_client(redirect_uris=[REDIRECT_URI, "http://127.0.0.1:9999/other"])
    rp = relying_party(live_server.url, issued)
    result = sign_in_at(rp, alice)
    reply = rp.token_request(
        grant_type="authorization_code",
        code=result.params["code"],
        redirect_uri="http://127.0.0.1:9999/other",
        code_verifier=result.code_verifier,
    )
    assert reply.status_code == 400, reply.text
    assert error_of(reply) == "invalid_grant"


def test_invalid_client_with_basic_answers_www_authenticate_basic(rp):
    reply = rp.token_request(auth=(rp.client_id, "wrong"), grant_type="client_credentials")
    assert reply.status_code == 401
    assert error_of(reply) == "invalid_client"
    assert reply.headers["WWW-Authenticate"].startswith('Basic realm="')


def test_credentials_in_both_header_and_body_are_invalid_request(rp):
    reply = requests.post(
        rp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "client_id": rp.client_id, "client_secret": rp.client_secret},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert reply.status_code == 400, reply.text
    assert error_of(reply) == "invalid_request"


def test_grant_rows_keep_no_code_after_the_pkce_failure(rp, signed_in_code):
    exchange_raw(rp, signed_in_code.params["code"], "x" * 50)
    grant = Grant.objects.get()
    assert grant.redeemed_at is not None
    assert grant.access_token_id is None
