"""Conditions the OpenID Foundation suite checks in every module that meets the value: entropy of
codes and tokens, sane ID token times, uncacheable token responses, and error descriptions in the
RFC 6749 character set."""

from __future__ import annotations

import math
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conformance.conftest import sign_in
from tests.factories import make_machine_client, sign_in_at
from tests.relying_party import AuthorizationResult, RelyingParty

# RFC 6749 §5.2 / §4.1.2.1: error_description = 1*( %x20-21 / %x23-5B / %x5D-7E )
ERROR_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


def estimated_entropy_bits(samples: list[str]) -> float:
    """What an observer can credit the values with: the shortest length times log2 of the alphabet
    the samples together draw from (the characters actually seen, so a narrow generator shows)."""
    alphabet = set("".join(samples))
    return min(len(value) for value in samples) * math.log2(len(alphabet))


def redeem(op: RelyingParty, result: AuthorizationResult, **overrides: str) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": result.params["code"],
        "redirect_uri": op.redirect_uri,
        "code_verifier": result.code_verifier,
    }
    data.update(overrides)
    return op.token_request(**data)


def refresh(op: RelyingParty, refresh_token: str) -> dict:
    return dict(op.session().refresh_token(op.metadata["token_endpoint"], refresh_token=refresh_token))


@pytest.fixture
def machine(db):
    return make_machine_client()


def token_error_replies(op: RelyingParty, subject) -> dict[str, tuple[str, requests.Response]]:
    """One token endpoint error of each kind a client commonly meets: name -> (error, reply)."""
    return {
        "unknown code": ("invalid_grant", redeem(op, sign_in(op, subject), code="not-a-code")),
        "wrong code_verifier": ("invalid_grant", redeem(op, sign_in(op, subject), code_verifier="x" * 43 + "wrong")),
        "missing code": (
            "invalid_request",
            op.token_request(grant_type="authorization_code", redirect_uri=op.redirect_uri),
        ),
        "wrong client secret": (
            "invalid_client",
            op.token_request(auth=(op.client_id, "not-the-secret"), grant_type="authorization_code", code="x"),
        ),
        "unknown grant type": ("unsupported_grant_type", op.token_request(grant_type="urn:example:not-a-grant")),
        "unknown refresh token": (
            "invalid_grant",
            op.token_request(grant_type="refresh_token", refresh_token="not-a-token"),
        ),
    }


def test_codes_and_tokens_have_enough_entropy(op, subject):
    """Authorization codes and access tokens carry at least 96 bits of entropy, refresh tokens 128."""
    codes, access_tokens, refresh_tokens = [], [], []
    for _ in range(4):
        result = sign_in(op, subject, scope="openid offline_access")
        codes.append(result.params["code"])
        tokens = op.exchange(result)
        refreshed = refresh(op, tokens["refresh_token"])
        access_tokens += [tokens["access_token"], refreshed["access_token"]]
        refresh_tokens += [tokens["refresh_token"], refreshed["refresh_token"]]

    for name, samples in (("code", codes), ("access token", access_tokens), ("refresh token", refresh_tokens)):
        assert len(set(samples)) == len(samples), f"every {name} is new"
    assert estimated_entropy_bits(codes) >= 96, codes
    assert estimated_entropy_bits(access_tokens) >= 96, access_tokens
    assert estimated_entropy_bits(refresh_tokens) >= 128, refresh_tokens


def test_id_token_times_are_sane(op, subject):
    """iat is the moment the token was made (between the request for it and the answer, to the
    second), exp follows it by at most a day, auth_time is not after iat; for the ID token from
    the code and the one from a refresh."""
    result = sign_in(op, subject, scope="openid offline_access")
    asked = math.floor(time.time())
    tokens = op.exchange(result)
    made = [(tokens["id_token"], result.nonce, asked, time.time())]
    asked = math.floor(time.time())
    refreshed = refresh(op, tokens["refresh_token"])
    made.append((refreshed["id_token"], None, asked, time.time()))

    for id_token, nonce, asked, answered in made:
        claims = op.verify_id_token(id_token, nonce=nonce)
        assert asked <= claims["iat"] <= answered, (asked, claims, answered)
        assert claims["exp"] > claims["iat"], claims
        assert claims["exp"] - claims["iat"] <= 24 * 3600, claims
        assert "auth_time" in claims, claims
        assert claims["auth_time"] <= claims["iat"], claims


def test_token_responses_are_not_cacheable(op, subject, machine):
    """Every token endpoint answer, success or error, carries Cache-Control: no-store (RFC 6749 §5.1,
    §5.2), and Pragma, when present, is no-cache."""
    result = sign_in(op, subject, scope="openid offline_access")
    issued = redeem(op, result)
    assert issued.status_code == 200, issued.text
    replies = {
        "authorization_code": issued,
        "refresh_token": op.token_request(grant_type="refresh_token", refresh_token=issued.json()["refresh_token"]),
        "client_credentials": requests.post(
            op.metadata["token_endpoint"],
            data={"grant_type": "client_credentials", "scope": "profile"},
            auth=(machine.application.client_id, machine.client_secret),
            timeout=10,
        ),
    }
    for name, reply in replies.items():
        assert reply.status_code == 200, f"{name}: {reply.text}"
    for name, (_, reply) in token_error_replies(op, subject).items():
        assert reply.status_code in (400, 401), f"{name}: {reply.status_code} {reply.text}"
        replies[name] = reply

    failures = []
    for name, reply in replies.items():
        directives = {part.strip().lower() for part in reply.headers.get("Cache-Control", "").split(",")}
        if "no-store" not in directives:
            failures.append(f"{name} ({reply.status_code}): Cache-Control is {reply.headers.get('Cache-Control')!r}")
        if reply.headers.get("Pragma", "no-cache").lower() != "no-cache":
            failures.append(f"{name} ({reply.status_code}): Pragma is {reply.headers['Pragma']!r}")
    assert not failures, "\n".join(failures)


def test_token_error_descriptions_use_the_rfc_6749_character_set(op, subject):
    """error_description in token endpoint errors holds only %x20-21 / %x23-5B / %x5D-7E."""
    failures = []
    for name, (error, reply) in token_error_replies(op, subject).items():
        assert reply.headers["Content-Type"].startswith("application/json"), f"{name}: {reply.text[:200]}"
        body = reply.json()
        assert body.get("error") == error, f"{name}: {body}"
        if "error_description" in body and not ERROR_DESCRIPTION.fullmatch(body["error_description"]):
            failures.append(f"{name}: error_description {body['error_description']!r}")
    assert not failures, "\n".join(failures)


def test_authorization_error_descriptions_use_the_rfc_6749_character_set(op, subject):
    """Errors redirected to the client from the authorization endpoint carry an error and an
    error_description in the RFC 6749 character set."""
    sign_in(op, subject)  # signed in, consent to "openid" remembered: errors come from the request itself

    def refused(browser: requests.Session, **params: str) -> dict[str, str]:
        query = {
            "client_id": op.client_id,
            "redirect_uri": op.redirect_uri,
            "response_type": "code",
            "scope": "openid",
            "state": "the-state",
            "nonce": "the-nonce",
            **params,
        }
        reply = browser.get(op.metadata["authorization_endpoint"], params=query, allow_redirects=False, timeout=10)
        location = reply.headers.get("Location", "")
        assert reply.status_code == 302 and location.startswith(op.redirect_uri), f"{reply.status_code} {location}"
        return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}

    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    answers = {
        "unknown scope": ("invalid_scope", refused(op.browser, scope="openid not-a-scope")),
        "response_type token": ("unsupported_response_type", refused(op.browser, response_type="token")),
        "PKCE plain": (
            "invalid_request",
            refused(op.browser, code_challenge=challenge, code_challenge_method="plain"),
        ),
        "PKCE unknown method": (
            "invalid_request",
            refused(op.browser, code_challenge=challenge, code_challenge_method="S512"),
        ),
        "request object": ("request_not_supported", refused(op.browser, request="eyJhbGciOiJub25lIn0.e30.")),
        "prompt=none, consent not given": (
            "consent_required",
            refused(op.browser, scope="openid phone", prompt="none"),
        ),
        "prompt=none, signed out": ("login_required", refused(requests.Session(), prompt="none")),
        "consent denied": (
            "access_denied",
            sign_in_at(op, subject, scope="openid", consent="deny", prompt="consent").params,
        ),
    }

    failures = []
    for name, (error, params) in answers.items():
        assert "code" not in params, f"{name}: a code was issued"
        assert params.get("error") == error, f"{name}: {params}"
        if "error_description" in params and not ERROR_DESCRIPTION.fullmatch(params["error_description"]):
            failures.append(f"{name}: error_description {params['error_description']!r}")
    assert not failures, "\n".join(failures)
