"""Sign-out is not a weapon. RP-initiated logout ends a browser session only when its own user
confirms it (or sends back, from the client that asks, an unexpired ID token of that very
session), and it revokes only what that browser session was issued: tokens of other sessions and
other devices live on. Nothing an attacker can make a browser load ends a victim's session."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests
from jwcrypto import jwt

from idp.keys.signing import signing_key_active
from idp.models import AccessToken, Grant, IDToken, RefreshToken
from tests.conftest import POST_LOGOUT_REDIRECT_URI, REDIRECT_URI
from tests.factories import make_client, make_user, relying_party, sign_in_at, tokens_at
from tests.relying_party import RelyingParty, parse_form


def alive(rp: RelyingParty, tokens: dict) -> bool:
    """The access token still opens userinfo."""
    reply = requests.get(
        rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    return reply.status_code == 200


def refreshable(rp: RelyingParty, tokens: dict) -> bool:
    reply = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    if reply.status_code == 200:
        tokens.update(reply.json())
    return reply.status_code == 200


def still_signed_in(rp: RelyingParty, user) -> bool:
    before = rp.sign_ins
    result = sign_in_at(rp, user, prompt="none", consent=None)
    assert rp.sign_ins == before
    return "code" in result.params


def forged_hint(*, user, client_id: str, issuer: str, expired: bool) -> str:
    """An ID token this provider really signed (with its own active key), for the user and client."""
    key = signing_key_active("RS256")
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": str(user.pk),
        "aud": client_id,
        "iat": now - 7200,
        "exp": now - 3600 if expired else now + 300,
        "jti": secrets.token_hex(8),
    }
    token = jwt.JWT(header={"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims=json.dumps(claims))
    token.make_signed_token(key.jwk)
    return token.serialize()


def end_session_get(browser: requests.Session, rp: RelyingParty, **params: str) -> requests.Response:
    return browser.get(rp.metadata["end_session_endpoint"], params=params, allow_redirects=False, timeout=10)


def confirm(rp: RelyingParty, page: requests.Response) -> requests.Response:
    _, fields = parse_form(page.text)
    fields["allow"] = "on"
    return rp.browser.post(page.url, data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10)


@pytest.fixture
def other_client(db):
    return make_client(redirect_uris=[REDIRECT_URI], post_logout_redirect_uris=[POST_LOGOUT_REDIRECT_URI])


# --- A hint alone revokes nothing -------------------------------------------------------------------


@pytest.mark.parametrize("expired", [True, False])
def test_a_hint_without_the_browser_session_revokes_nothing(rp, alice, other_client, live_server, expired):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    elsewhere = relying_party(live_server.url, other_client)
    other_tokens = tokens_at(elsewhere, alice, consent="allow-remember")
    hint = forged_hint(user=alice, client_id=rp.client_id, issuer=rp.metadata["issuer"], expired=expired)

    reply = end_session_get(requests.Session(), rp, id_token_hint=hint)  # no cookie at all

    assert reply.status_code in (200, 302), reply.text[:300]
    assert alive(rp, tokens) and refreshable(rp, tokens)
    assert alive(elsewhere, other_tokens) and refreshable(elsewhere, other_tokens)
    assert still_signed_in(rp, alice)


def test_an_expired_hint_can_still_name_the_client_for_its_redirect(rp, alice):
    tokens_at(rp, alice, consent="allow-remember")
    hint = forged_hint(user=alice, client_id=rp.client_id, issuer=rp.metadata["issuer"], expired=True)
    reply = end_session_get(
        requests.Session(), rp, id_token_hint=hint, post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI, state="s1"
    )
    assert reply.status_code == 302
    assert reply.headers["Location"] == f"{POST_LOGOUT_REDIRECT_URI}?state=s1"


# --- Nothing a page can make the browser load ends the session -------------------------------------


def test_someone_elses_hint_in_a_top_level_navigation_asks_and_changes_nothing(rp, alice, live_server):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    mallory = make_user(username="mallory")
    hint = forged_hint(user=mallory, client_id=rp.client_id, issuer=rp.metadata["issuer"], expired=False)

    page = end_session_get(rp.browser, rp, id_token_hint=hint)

    assert page.status_code == 200 and 'name="allow"' in page.text, page.text[:300]
    assert still_signed_in(rp, alice)
    assert alive(rp, tokens)


def test_an_expired_hint_of_the_signed_in_user_asks_first(rp, alice):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    hint = forged_hint(user=alice, client_id=rp.client_id, issuer=rp.metadata["issuer"], expired=True)
    page = end_session_get(rp.browser, rp, id_token_hint=hint)
    assert page.status_code == 200 and 'name="allow"' in page.text
    assert still_signed_in(rp, alice) and alive(rp, tokens)


def test_the_confirmation_needs_its_csrf_token(rp, alice):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    page = end_session_get(rp.browser, rp)
    _, fields = parse_form(page.text)
    fields.pop("csrfmiddlewaretoken")
    fields["allow"] = "on"
    forged = rp.browser.post(page.url, data=fields, allow_redirects=False, timeout=10)
    assert forged.status_code == 403
    assert still_signed_in(rp, alice) and alive(rp, tokens)


@pytest.mark.parametrize("parameter", ["max_age", "id_token_hint"])
def test_authorization_requests_do_not_end_the_session(rp, alice, parameter):
    """max_age=0 (or someone else's id_token_hint) asks the user to sign in again; it does not
    sign anyone out, so a link to it is no logout CSRF."""
    tokens = tokens_at(rp, alice, consent="allow-remember")
    mallory = make_user(username="mallory2")
    value = (
        "0"
        if parameter == "max_age"
        else forged_hint(user=mallory, client_id=rp.client_id, issuer=rp.metadata["issuer"], expired=False)
    )
    url = (
        requests.Request(
            "GET",
            rp.metadata["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": rp.client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                parameter: value,
            },
        )
        .prepare()
        .url
    )
    reply = rp.browser.get(url, allow_redirects=False, timeout=10)
    assert reply.status_code == 302 and "/accounts/login/" in reply.headers["Location"]
    # The victim closes the sign-in page: still signed in, tokens intact.
    assert still_signed_in(rp, alice)
    assert alive(rp, tokens)


# --- Only the ending session's tokens are revoked --------------------------------------------------


def test_logout_revokes_only_the_tokens_of_its_browser_session(rp, alice, live_server, issued_client, other_client):
    laptop_tokens = tokens_at(rp, alice, consent="allow-remember")
    laptop_other = relying_party(live_server.url, other_client)
    laptop_other.browser = rp.browser  # the same browser, a second application
    laptop_other_tokens = tokens_at(laptop_other, alice, consent="allow-remember")
    phone = relying_party(live_server.url, issued_client)
    phone_tokens = tokens_at(phone, alice, consent="allow-remember")

    page = end_session_get(rp.browser, rp)
    assert 'name="allow"' in page.text
    done = confirm(rp, page)
    assert done.status_code == 200 and "signed out" in done.text.lower()

    assert not alive(rp, laptop_tokens) and not refreshable(rp, laptop_tokens)
    assert not alive(laptop_other, laptop_other_tokens) and not refreshable(laptop_other, laptop_other_tokens)
    assert alive(phone, phone_tokens) and refreshable(phone, phone_tokens)
    assert still_signed_in(phone, alice)
    assert not still_signed_in(rp, alice)


def test_tokens_refreshed_in_a_session_belong_to_it(rp, alice, live_server, issued_client):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    assert refreshable(rp, tokens)  # rotated: the new pair carries the session
    phone = relying_party(live_server.url, issued_client)
    phone_tokens = tokens_at(phone, alice, consent="allow-remember")
    confirm(rp, end_session_get(rp.browser, rp))
    assert not alive(rp, tokens) and not refreshable(rp, tokens)
    assert alive(phone, phone_tokens)


def test_id_tokens_carry_the_session_id_and_every_token_is_bound(rp, alice, live_server, issued_client):
    first = tokens_at(rp, alice, consent="allow-remember")
    second = tokens_at(rp, alice, consent="allow-remember")
    phone = relying_party(live_server.url, issued_client)
    third = tokens_at(phone, alice, consent="allow-remember")
    sids = [rp.verify_id_token(tokens["id_token"], nonce=None).get("sid") for tokens in (first, second, third)]
    assert sids[0] and sids[0] == sids[1] and sids[2] and sids[2] != sids[0]
    for model in (Grant, AccessToken, RefreshToken, IDToken):
        assert set(model.objects.values_list("session_id", flat=True)) == {sids[0], sids[2]}, model


# --- A hint of this very session, from its client, may skip the question ---------------------------


def test_an_unexpired_hint_of_this_session_from_its_client_signs_out_at_once(rp, alice):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    reply = end_session_get(
        rp.browser,
        rp,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI,
        state="s2",
    )
    assert reply.status_code == 302, reply.text[:300]
    assert reply.headers["Location"] == f"{POST_LOGOUT_REDIRECT_URI}?state=s2"
    assert not alive(rp, tokens)
    assert not still_signed_in(rp, alice)


def test_a_hint_from_another_session_of_the_same_user_asks_first(rp, alice, live_server, issued_client):
    tokens_at(rp, alice, consent="allow-remember")
    phone = relying_party(live_server.url, issued_client)
    phone_tokens = tokens_at(phone, alice, consent="allow-remember")
    page = end_session_get(rp.browser, rp, id_token_hint=phone_tokens["id_token"])
    assert page.status_code == 200 and 'name="allow"' in page.text
    assert still_signed_in(rp, alice) and alive(phone, phone_tokens)


def test_a_hint_for_another_client_than_the_one_asking_is_refused(rp, alice, other_client):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    reply = end_session_get(
        rp.browser, rp, id_token_hint=tokens["id_token"], client_id=other_client.application.client_id
    )
    assert reply.status_code == 400
    assert still_signed_in(rp, alice) and alive(rp, tokens)


def test_signing_out_on_the_providers_own_page_ends_that_sessions_tokens(rp, alice, live_server, issued_client):
    tokens = tokens_at(rp, alice, consent="allow-remember")
    phone = relying_party(live_server.url, issued_client)
    phone_tokens = tokens_at(phone, alice, consent="allow-remember")
    rp.browser.get(live_server.url + "/", timeout=10)  # the home page, with its sign-out button
    reply = rp.browser.post(
        live_server.url + "/accounts/logout/",
        data={"csrfmiddlewaretoken": rp.browser.cookies.get("idp_csrf")},
        headers={"Referer": live_server.url + "/"},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code in (200, 302), reply.status_code
    assert not alive(rp, tokens)
    assert alive(phone, phone_tokens)
