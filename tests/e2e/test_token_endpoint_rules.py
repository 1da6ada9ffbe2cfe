"""The token endpoint's rules of RFC 6749 §4.1.3 and §5.2 that a second round of attacks found
loose: redirect_uri required when the authorization request had it, one client per request, the
Basic challenge on every 401; and the admin's "Log out" ending the session's tokens."""

from __future__ import annotations

import requests
from django.urls import reverse

from tests.factories import USER_PASSWORD, make_client, totp_device
from tests.mfa.codes import totp_code


def test_an_openid_code_needs_its_redirect_uri_at_the_token_endpoint(rp, alice):
    result = rp.authorize(username=alice.username, password=USER_PASSWORD)
    reply = rp.token_request(
        grant_type="authorization_code", code=result.params["code"], code_verifier=result.code_verifier
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_request"


def test_basic_credentials_of_one_client_and_a_body_client_id_of_another_are_invalid_request(rp, db):
    other = make_client()
    reply = requests.post(
        rp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "client_id": other.application.client_id},
        auth=(rp.client_id, rp.client_secret),
        timeout=10,
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "invalid_request"


def test_a_failed_body_authentication_is_challenged_with_basic(rp):
    reply = requests.post(
        rp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "client_id": rp.client_id, "client_secret": "wrong"},
        timeout=10,
    )
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith('Basic realm="')


def test_signing_out_of_django_admin_ends_that_sessions_tokens(rp, live_server, alice):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    _device, seed = totp_device(alice)  # staff reach Django admin with a second factor
    tokens = rp.exchange(
        rp.authorize(username=alice.username, password=USER_PASSWORD, second_factor=lambda: totp_code(seed))
    )
    admin_page = rp.browser.get(live_server.url + reverse("admin:index"), timeout=10)
    assert admin_page.status_code == 200
    reply = rp.browser.post(
        live_server.url + reverse("admin:logout"),
        data={"csrfmiddlewaretoken": rp.browser.cookies.get("idp_csrf")},
        headers={"Referer": admin_page.url},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code in (200, 302)
    userinfo = requests.get(
        rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert userinfo.status_code == 401
    refreshed = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.json()["error"] == "invalid_grant"
