"""Each way a client can get the protocol wrong, answered with the RFC's error code."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.utils import timezone

from idp.models import AccessToken, Grant, RefreshToken
from tests.conftest import REDIRECT_URI
from tests.factories import USER_PASSWORD, make_client, make_public_client, relying_party, sign_in_at, tokens_at
from tests.relying_party import RelyingParty


def exchange_raw(rp: RelyingParty, code: str, verifier: str | None) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": rp.redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    return rp.token_request(**data)


def assert_oauth_error(reply: requests.Response, status: int, error: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json()["error"] == error


def test_code_reuse_is_invalid_grant(rp, signed_in_code):
    first = exchange_raw(rp, signed_in_code.params["code"], signed_in_code.code_verifier)
    assert first.status_code == 200
    again = exchange_raw(rp, signed_in_code.params["code"], signed_in_code.code_verifier)
    assert_oauth_error(again, 400, "invalid_grant")


def test_wrong_code_verifier_is_invalid_grant(rp, signed_in_code):
    reply = exchange_raw(rp, signed_in_code.params["code"], "x" * 43 + "wrong")
    assert_oauth_error(reply, 400, "invalid_grant")


def test_code_issued_with_a_challenge_is_never_redeemed_without_its_verifier(rp, signed_in_code):
    reply = exchange_raw(rp, signed_in_code.params["code"], None)
    assert_oauth_error(reply, 400, "invalid_request")
    assert AccessToken.objects.count() == 0


def test_expired_code_is_invalid_grant(rp, signed_in_code):
    Grant.objects.update(expires=timezone.now() - timedelta(seconds=1))
    reply = exchange_raw(rp, signed_in_code.params["code"], signed_in_code.code_verifier)
    assert_oauth_error(reply, 400, "invalid_grant")


def test_wrong_client_secret_is_401_invalid_client(rp, signed_in_code):
    reply = rp.token_request(
        auth=(rp.client_id, "not-the-secret"),
        grant_type="authorization_code",
        code=signed_in_code.params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=signed_in_code.code_verifier,
    )
    assert_oauth_error(reply, 401, "invalid_client")


@pytest.mark.parametrize("grant_type", ["urn:example:unknown", "password", "implicit"])
def test_unsupported_grant_types_are_refused(rp, grant_type):
    reply = rp.token_request(grant_type=grant_type, username="alice", password=USER_PASSWORD)
    assert_oauth_error(reply, 400, "unsupported_grant_type")


def test_public_client_without_pkce_is_refused(live_server, signing_key, alice):
    public = make_public_client()
    rp = relying_party(live_server.url, public)
    result = sign_in_at(rp, alice, pkce=False, consent=None)
    assert result.params["error"] == "invalid_request"
    assert "code" not in result.params


def test_public_client_with_pkce_signs_in(live_server, signing_key, alice):
    public = make_public_client()
    rp = relying_party(live_server.url, public)
    tokens = tokens_at(rp, alice)
    assert rp.verify_id_token(tokens["id_token"], nonce=None)["sub"] == str(alice.pk)


def test_confidential_client_may_omit_pkce_unless_registered_so(live_server, signing_key, alice):
    optional = make_client()
    rp = relying_party(live_server.url, optional)
    result = sign_in_at(rp, alice, pkce=False)
    assert exchange_raw(rp, result.params["code"], None).status_code == 200

    strict = make_client(require_pkce=True)
    rp = relying_party(live_server.url, strict)
    refused = sign_in_at(rp, alice, pkce=False, consent=None)
    assert refused.params["error"] == "invalid_request"


def test_plain_pkce_is_refused(rp, alice):
    rp.browser.get(rp.base_url + "/accounts/login/", timeout=10)
    url = rp.metadata["authorization_endpoint"]
    params = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid",
        "state": "s",
        "code_challenge": "a" * 43,
        "code_challenge_method": "plain",
    }
    reply = rp.follow(
        rp.browser.get(url, params=params, allow_redirects=False, timeout=10),
        username=alice.username,
        password=USER_PASSWORD,
        consent=None,  # refused before the user is asked anything
    )
    assert reply.status_code == 302
    query = parse_qs(urlsplit(reply.headers["Location"]).query)
    assert query["error"] == ["invalid_request"]
    assert query["state"] == ["s"]
    assert "code" not in query


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://attacker.example/callback",
        REDIRECT_URI + "?extra=1",  # differs by a query: exact matching
        REDIRECT_URI + "/",
        "http://127.0.0.1:9999/other",
    ],
)
def test_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(rp, alice, redirect_uri):
    reply = rp.follow(
        rp.browser.get(
            rp.metadata["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": rp.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid",
            },
            allow_redirects=False,
            timeout=10,
        ),
        username=alice.username,
        password=USER_PASSWORD,
        consent=None,
    )
    assert reply.status_code == 400
    assert "Location" not in reply.headers
    assert "invalid_request" in reply.text
    assert "Traceback" not in reply.text


def test_unknown_client_gets_an_error_page(rp, alice):
    reply = rp.follow(
        rp.browser.get(
            rp.metadata["authorization_endpoint"],
            params={"response_type": "code", "client_id": "no-such-client", "redirect_uri": REDIRECT_URI},
            allow_redirects=False,
            timeout=10,
        ),
        username=alice.username,
        password=USER_PASSWORD,
        consent=None,
    )
    assert reply.status_code == 400
    assert "Location" not in reply.headers


def test_reused_refresh_token_revokes_the_family(rp, signed_in_code):
    tokens = rp.exchange(signed_in_code)
    rotated = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    replay = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert_oauth_error(replay, 400, "invalid_grant")
    # The family is revoked: the successor pair no longer works either.
    successor = rp.token_request(grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    assert_oauth_error(successor, 400, "invalid_grant")
    assert not AccessToken.objects.exists()
    assert not RefreshToken.objects.filter(revoked__isnull=True).exists()


def test_parallel_refreshes_give_one_success_and_one_invalid_grant(rp, signed_in_code):
    tokens = rp.exchange(signed_in_code)
    barrier = threading.Barrier(2)
    replies: list[requests.Response] = []

    def refresh() -> None:
        barrier.wait()
        replies.append(rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"]))

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(reply.status_code for reply in replies) == [200, 400]
    failed = next(reply for reply in replies if reply.status_code == 400)
    assert failed.headers["Content-Type"] == "application/json"
    assert failed.json()["error"] == "invalid_grant", failed.text


def test_disabled_client_cannot_get_tokens(rp, signed_in_code, issued_client):
    issued_client.application.is_active = False
    issued_client.application.save(update_fields=["is_active"])
    reply = exchange_raw(rp, signed_in_code.params["code"], signed_in_code.code_verifier)
    assert_oauth_error(reply, 401, "invalid_client")


def test_userinfo_refuses_an_access_token_in_the_query_string(rp, signed_in_code):
    """RFC 9700 §4.3.2: a token in a URL ends up in logs; the header and the form body still work."""
    token = rp.exchange(signed_in_code)["access_token"]
    userinfo = rp.metadata["userinfo_endpoint"]

    in_query = requests.get(userinfo, params={"access_token": token}, timeout=10)
    assert_oauth_error(in_query, 400, "invalid_request")
    assert in_query.headers["WWW-Authenticate"].startswith("Bearer")
    assert token not in in_query.text

    assert requests.get(userinfo, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    assert requests.post(userinfo, data={"access_token": token}, timeout=10).status_code == 200
