"""Authorization request parameters oauthlib leaves unchecked, judged before anyone signs in, with
the error sent back to the client (state and iss): never a sign-in form for a request that cannot
succeed, never a 5xx for a value too long to keep."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import REDIRECT_URI
from tests.relying_party import RelyingParty

VALID_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 Appendix B


def authorize(rp: RelyingParty, browser: requests.Session | None = None, **params: str | None) -> requests.Response:
    url = rp.authorization_url(**({"code_challenge": VALID_CHALLENGE, "code_challenge_method": "S256"} | params))
    return (browser or requests.Session()).get(url, allow_redirects=False, timeout=10)


def answer_of(reply: requests.Response) -> dict[str, str]:
    assert reply.status_code == 302, (reply.status_code, reply.text[:300])
    location = reply.headers["Location"]
    assert location.startswith(REDIRECT_URI), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


@pytest.mark.parametrize(
    "params",
    [
        {"max_age": "abc"},
        {"max_age": "-1"},
        {"claims": "{not json"},
        {"claims": "[1, 2]"},
        {"nonce": "n" * 256},
        {"code_challenge": "c" * 129},
        {"code_challenge": "short"},
        {"code_challenge": "x" * 42 + "!"},
    ],
    ids=[
        "max-age-word",
        "max-age-negative",
        "claims-not-json",
        "claims-not-object",
        "nonce-256",
        "challenge-129",
        "challenge-short",
        "challenge-bad-character",
    ],
)
def test_a_malformed_parameter_goes_back_to_the_client_before_sign_in(rp, params):
    state = "st-" + secrets.token_hex(4)
    answer = answer_of(authorize(rp, state=state, **params))
    assert answer["error"] == "invalid_request"
    assert answer["state"] == state
    assert answer["iss"] == rp.metadata["issuer"]


@pytest.mark.parametrize("params", [{"nonce": "n" * 256}, {"code_challenge": "c" * 129}])
def test_a_signed_in_user_gets_the_error_too_never_a_500(rp, alice, params):
    rp.authorize(username=alice.username, password="correct horse battery staple", consent="allow-remember")
    answer = answer_of(authorize(rp, browser=rp.browser, **params))
    assert answer["error"] == "invalid_request"


def test_values_at_the_limits_are_accepted(rp):
    reply = authorize(rp, nonce="n" * 255, code_challenge="c" * 128)
    assert reply.status_code == 302 and "/accounts/login/" in reply.headers["Location"]


def test_an_openid_request_without_redirect_uri_is_an_error_page(rp):
    """OIDC Core §3.1.2.1: redirect_uri is required; without it nothing can be sent anywhere."""
    reply = authorize(rp, redirect_uri=None)
    assert reply.status_code == 400
    assert "Location" not in reply.headers
    assert 'name="password"' not in reply.text


def test_a_plain_oauth_request_may_omit_the_single_registered_redirect_uri(rp):
    """RFC 6749 §3.1.2.3: with one URI registered, it is the default."""
    reply = authorize(rp, redirect_uri=None, scope="profile")
    assert reply.status_code == 302 and "/accounts/login/" in reply.headers["Location"]
