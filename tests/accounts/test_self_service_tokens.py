"""What self-service does to tokens, over the live server with a real relying party: a
self-registered user gets no code and no token before the address is verified (a page for the
person, access_denied for a silent request, invalid_grant at the token endpoint), and a password
change revokes the refresh tokens issued before it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

import audit
from accounts.services import user_email_change, user_email_verify, user_register
from audit.models import AuditEvent
from tests.factories import (
    USER_PASSWORD,
    make_client,
    make_user,
    relying_party,
    sign_in_at,
    signed_in_session,
    tokens_at,
)
from tests.relying_party import parse_form

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


def test_a_self_registered_user_gets_no_token_until_the_address_is_verified(live_server, signing_key):
    user = user_register(username="newcomer", email="newcomer@example.com", password=USER_PASSWORD)
    assert user is not None
    rp = relying_party(live_server.url, make_client())

    # The person: a page telling them to verify, no code.
    reply = rp.follow(
        rp.browser.get(rp.authorization_url(scope="openid email"), allow_redirects=False, timeout=10),
        username=user.username,
        password=USER_PASSWORD,
        consent="allow",
    )
    assert reply.status_code == 403
    assert "Verify your e-mail address first" in reply.text
    # A client asking silently (the browser is signed in now): access_denied, back at the client.
    silent = rp.browser.get(rp.authorization_url(scope="openid", prompt="none"), allow_redirects=False, timeout=10)
    assert silent.status_code == 302 and silent.headers["Location"].startswith(rp.redirect_uri)
    assert parse_qs(urlsplit(silent.headers["Location"]).query)["error"] == ["access_denied"]

    # Verified: the code, and tokens whose email_verified is true.
    user_email_verify(user_id=user.pk, email=user.email, actor=audit.Actor.user(user), via="link")
    tokens = tokens_at(rp, user, scope="openid email offline_access")
    assert rp.verify_id_token(tokens["id_token"], nonce=None)["email_verified"] is True

    # A new address is unverified again: its refresh token no longer mints tokens.
    user_email_change(user_id=user.pk, email="elsewhere@example.com", actor=audit.Actor.user(user))
    refused = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_a_code_issued_before_the_address_became_unverified_is_refused(live_server, signing_key):
    user = user_register(username="newcomer", email="newcomer@example.com", password=USER_PASSWORD)
    assert user is not None
    user_email_verify(user_id=user.pk, email=user.email, actor=audit.Actor.user(user), via="link")
    rp = relying_party(live_server.url, make_client())
    result = sign_in_at(rp, user, scope="openid")
    user_email_change(user_id=user.pk, email="elsewhere@example.com", actor=audit.Actor.user(user))
    reply = rp.token_request(
        grant_type="authorization_code",
        code=result.params["code"],
        redirect_uri=rp.redirect_uri,
        code_verifier=result.code_verifier or "",
    )
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"


def test_users_not_self_registered_keep_getting_tokens_with_an_unverified_address(live_server, signing_key):
    user = make_user()
    assert not user.email_verified
    rp = relying_party(live_server.url, make_client())
    assert "access_token" in tokens_at(rp, user, scope="openid")


def test_a_refresh_token_issued_before_a_password_change_is_refused_after_it(live_server, signing_key):
    user = make_user()
    rp = relying_party(live_server.url, make_client())
    tokens = tokens_at(rp, user, scope="openid offline_access")

    browser = signed_in_session(live_server.url, user)
    page = browser.get(f"{live_server.url}/dashboard/password/", timeout=10)
    action, fields = parse_form(page.text)
    fields.update(old_password=USER_PASSWORD, new_password1=NEW_PASSWORD, new_password2=NEW_PASSWORD)
    changed = browser.post(
        f"{live_server.url}{action}", data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10
    )
    assert changed.status_code == 302, changed.text[:300]

    refused = rp.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert browser.get(f"{live_server.url}/dashboard/account/", allow_redirects=False, timeout=10).status_code == 200
    revoked = AuditEvent.objects.get(action="token.revoked", target_id=str(user.pk))
    assert revoked.data["reason"] == "password_changed"
    assert AuditEvent.objects.filter(action="password.changed", target_id=str(user.pk), data__via="change").exists()
