"""Hostile input at the passkey ceremony endpoints (idp.mfa.passkeys). Real assertions come from
Chrome's virtual authenticator (tests/mfa/test_passkeys_browser.py's helpers) and are then
replayed, presented for another user, or signed for another origin; malformed bodies go through
Django's test client. Every refusal is a 4xx JSON answer and leaves nobody signed in.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from django.test import Client
from playwright.sync_api import Browser, Page

from idp.mfa import factors
from idp.models import TotpDevice
from tests.browser import _orm_beside_playwright, browser  # noqa: F401 - fixtures
from tests.factories import make_user, post_sign_in_form
from tests.mfa.test_passkeys_browser import (  # noqa: F401 - base_url and page are fixtures
    BEGIN_AUTHENTICATION,
    BEGIN_REGISTRATION,
    COMPLETE_AUTHENTICATION,
    COMPLETE_REGISTRATION,
    authenticated_page,
    base_url,
    begin_and_assert,
    events,
    is_signed_in,
    page,
    password_sign_in,
    post_from_page,
    register_passkey,
)

pytestmark = pytest.mark.django_db(transaction=True)


def refused(reply: dict, status: int) -> dict:
    assert reply["status"] == status, reply
    assert reply["type"].startswith("application/json"), reply
    body = json.loads(reply["text"])
    assert body["detail"] and body["error"] == body["code"]
    return body


def test_a_replayed_assertion_is_refused(base_url, browser: Browser, page: Page):  # noqa: F811 - fixtures
    alice = make_user()
    register_passkey(page, base_url, alice)
    page.goto(f"{base_url}/accounts/login/")
    assertion = begin_and_assert(page)
    assert post_from_page(page, COMPLETE_AUTHENTICATION, assertion)["status"] == 200  # alice signs in
    signed_in = len(events(alice, "login.succeeded"))

    # Someone who captured that request replays it: in their own session, after beginning their
    # own ceremony (another challenge), and without one.
    other, context = authenticated_page(browser)
    try:
        other.goto(f"{base_url}/accounts/login/")
        assert post_from_page(other, BEGIN_AUTHENTICATION)["status"] == 200
        assert refused(post_from_page(other, COMPLETE_AUTHENTICATION, assertion), 422)["code"] == (
            "invalid_authentication_response"
        )
        assert refused(post_from_page(other, COMPLETE_AUTHENTICATION, assertion), 400)["code"] == "invalid_state"
        assert not is_signed_in(other, base_url)
    finally:
        context.close()
    assert len(events(alice, "login.succeeded")) == signed_in


def test_a_passkey_of_another_user_is_refused_for_a_pending_sign_in(base_url, page):  # noqa: F811 - fixtures
    alice, bob = make_user(), make_user()
    register_passkey(page, base_url, alice)  # the page's authenticator holds alice's passkey
    device = factors.totp_enrol_begin(user=bob)
    TotpDevice.objects.filter(pk=device.pk).update(confirmed=True)  # bob has an app, no passkey

    password_sign_in(page, base_url, bob)  # bob's pending sign-in waits for his second factor
    assertion = begin_and_assert(page)  # no credential of bob's to allow: alice's discoverable one answers
    body = refused(post_from_page(page, COMPLETE_AUTHENTICATION, assertion), 403)
    assert body["code"] == "credential_user_mismatch"

    (failed,) = events(bob, "mfa.challenge_failed")
    assert failed.data == {"factor": "webauthn"}
    assert not is_signed_in(page, base_url)
    assert not events(bob, "login.succeeded")
    assert len(events(alice, "login.succeeded")) == 1  # registering's password sign-in, no other


def test_an_assertion_signed_for_another_origin_is_refused(base_url, page):  # noqa: F811 - fixtures
    alice = make_user()
    register_passkey(page, base_url, alice)
    page.goto(f"{base_url}/accounts/login/")
    begun = post_from_page(page, BEGIN_AUTHENTICATION)
    assert begun["status"] == 200

    # A look-alike site on another origin with the same host name (so the same relying party id,
    # which the authenticator checks) relays the challenge: the user's passkey signs there.
    elsewhere = "http://localhost:9/"
    page.route(elsewhere, lambda route: route.fulfill(status=200, content_type="text/html", body="<p>login</p>"))
    page.goto(elsewhere)
    assertion = page.evaluate(
        "async (options) => JSON.stringify((await navigator.credentials.get("
        "{publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)})).toJSON())",
        json.loads(begun["text"]),
    )
    assert client_data(assertion)["origin"] == "http://localhost:9"

    page.goto(f"{base_url}/accounts/login/")
    body = refused(post_from_page(page, COMPLETE_AUTHENTICATION, assertion), 422)
    assert body["code"] == "invalid_authentication_response"
    assert not is_signed_in(page, base_url)
    assert len(events(alice, "login.succeeded")) == 1  # registering's password sign-in


def client_data(assertion: str) -> dict:
    encoded = json.loads(assertion)["response"]["clientDataJSON"]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


@pytest.mark.parametrize("refusal", ["locked out", "deactivated"])
def test_a_passwordless_sign_in_of_a_locked_out_or_deactivated_user_is_refused(base_url, page, settings, refusal):  # noqa: F811 - fixtures
    alice = make_user()
    register_passkey(page, base_url, alice)
    if refusal == "locked out":
        for _ in range(settings.AXES_FAILURE_LIMIT):
            post_sign_in_form(alice.username, "wrong password", ip="198.51.100.7")
    else:
        alice.is_active = False
        alice.save(update_fields=["is_active"])
    page.goto(f"{base_url}/accounts/login/")
    assertion = begin_and_assert(page)
    reply = post_from_page(page, COMPLETE_AUTHENTICATION, assertion)
    body = refused(reply, 429 if refusal == "locked out" else 403)
    assert body["code"] == ("locked_out" if refusal == "locked out" else "user_disabled")
    assert not is_signed_in(page, base_url)


# --- Malformed bodies, through Django's test client (a 5xx would raise here) -----------------------

UNKNOWN_CREDENTIAL = {
    "id": "AAAA",
    "rawId": "AAAA",
    "type": "public-key",
    "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"},
}
BODIES = {
    "not json": (b"{not json", "application/json"),
    "not utf-8": (b'{"id": "\xff\xfe"}', "application/json"),
    "nested too deep": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    "a list": (b"[]", "application/json"),
    "a string": (b'"text"', "application/json"),
    "empty object": (b"{}", "application/json"),
    "empty body": (b"", "application/json"),
    "form encoded": (b"id=AAAA&rawId=AAAA", "application/x-www-form-urlencoded"),
    "wrong types": (json.dumps({"id": 1, "rawId": [], "response": "x", "type": None}).encode(), "application/json"),
    "response fields of wrong types": (
        json.dumps({**UNKNOWN_CREDENTIAL, "response": {"clientDataJSON": 1, "authenticatorData": {}}}).encode(),
        "application/json",
    ),
    "user handle not base64url": (
        json.dumps({**UNKNOWN_CREDENTIAL, "response": {**UNKNOWN_CREDENTIAL["response"], "userHandle": "!!"}}).encode(),
        "application/json",
    ),
    "not base64url": (
        json.dumps({**UNKNOWN_CREDENTIAL, "rawId": "***", "id": "***"}).encode(),
        "application/json",
    ),
    "unknown credential": (json.dumps(UNKNOWN_CREDENTIAL).encode(), "application/json"),
    "attestation garbage": (
        json.dumps(
            {
                "id": "AAAA",
                "rawId": "AAAA",
                "type": "public-key",
                "response": {"clientDataJSON": "e30", "attestationObject": "AAAA"},
                "clientExtensionResults": {"credProps": "rk"},
            }
        ).encode(),
        "application/json",
    ),
}


@pytest.fixture
def passwordless_client() -> Client:
    client = Client()
    assert client.post(BEGIN_AUTHENTICATION).status_code == 200
    return client


@pytest.fixture
def registering_client() -> Client:
    client = Client()
    client.force_login(make_user())
    assert client.post(BEGIN_REGISTRATION).status_code == 200
    return client


@pytest.mark.parametrize("ceremony", ["authentication", "registration"])
@pytest.mark.parametrize("name", list(BODIES))
def test_malformed_bodies_get_a_4xx_json_answer(ceremony, name, passwordless_client, registering_client):
    client, url = (
        (passwordless_client, COMPLETE_AUTHENTICATION)
        if ceremony == "authentication"
        else (registering_client, COMPLETE_REGISTRATION)
    )
    body, content_type = BODIES[name]
    reply = client.post(url, data=body, content_type=content_type)
    assert 400 <= reply.status_code < 500, reply.content
    assert reply["Content-Type"].startswith("application/json")
    assert "detail" in reply.json() and "error" in reply.json()
    if ceremony == "authentication":
        assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    ("url", "status"),
    [
        (BEGIN_AUTHENTICATION, 405),
        (COMPLETE_AUTHENTICATION, 405),
        (BEGIN_REGISTRATION, 403),  # who may register is decided first: nobody here
        (COMPLETE_REGISTRATION, 403),
    ],
)
def test_the_ceremony_endpoints_answer_a_get_in_json(url, status):
    reply = Client().get(url)
    assert reply.status_code == status and reply["Content-Type"].startswith("application/json")
    assert reply.json()["error"]


@pytest.mark.parametrize(
    ("session_proved", "status"),
    [
        (None, 403),  # a password sign-in (or a stolen session cookie of one)
        ({"amr": ["pwd", "otp", "mfa"], "seconds_ago": 60}, 200),
        ({"amr": ["pwd", "otp", "mfa"], "seconds_ago": 3600}, 403),  # not fresh
        ({"amr": ["pwd"], "seconds_ago": 0}, 403),
    ],
)
def test_a_user_with_a_factor_adds_a_passkey_only_after_a_fresh_second_factor(session_proved, status):
    user = make_user()
    device = factors.totp_enrol_begin(user=user)
    TotpDevice.objects.filter(pk=device.pk).update(confirmed=True)
    client = Client()
    client.force_login(user)
    if session_proved is not None:
        session = client.session
        at = time.time() - session_proved["seconds_ago"]
        session["idp_auth"] = {"amr": session_proved["amr"], "auth_time": at}
        session.save()
    reply = client.post(BEGIN_REGISTRATION)
    assert reply.status_code == status, reply.content
    if status == 403:
        assert reply.json()["code"] == "user_not_verified"
