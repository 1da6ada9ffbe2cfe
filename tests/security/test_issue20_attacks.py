"""Attacks on account self-service, sessions, single logout and federation, as an outsider and as
the least-privileged insider: each test is a hole that was open, and stays shut.

- A self-registered user whose address is unverified gets no token at any client; an API key
  (dashboard, management API, introspection by a resource server) is such a credential too.
- Staff holding idp.sessions.end see, in Django admin, only the sessions of users they may end
  (every role those users hold, and a superuser for staff accounts): the management API's rule,
  so a lesser staff member does not learn where an administrator signs in from.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urljoin

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

import audit
from accounts.models import ADMIN_ROLE, SESSIONS_END, Role
from accounts.selectors import Caller
from accounts.services import role_grant, user_email_change, user_email_verify, user_register
from accounts.tokens import email_verification_token, password_reset_token
from apikeys.models import ApiKey
from apikeys.services import apikey_create
from audit.models import AuditEvent
from idp.models import BrowserSession
from tests.apikeys.conftest import basic_auth
from tests.factories import (
    USER_PASSWORD,
    make_client,
    make_resource_server,
    make_staff,
    make_user,
    relying_party,
    signed_in_client,
    signed_in_session,
    tokens_at,
)
from tests.hostile import INTERNALS, VALUES
from tests.ops.test_logs import server_log  # noqa: F401 - a fixture, used by name
from tests.relying_party import parse_form

SYSTEM = audit.Actor.system("tests")
INTROSPECT = "/oauth/introspect/"
SESSIONS_CHANGELIST = "/admin/idp/browsersession/"
NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.keys.hashers.ClientSecretHasher"]


def _introspect(client: Any, token: str) -> dict[str, Any]:
    server = make_resource_server()
    reply = client.post(
        INTROSPECT,
        urlencode({"token": token}),
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": basic_auth(server.application.client_id, server.client_secret)},
    )
    assert reply.status_code == 200, reply.content
    return reply.json()


# --- Self-registered, unverified: no credential of any kind -------------------------------------------


def test_an_unverified_self_registered_user_cannot_mint_an_api_key_on_the_dashboard(db):
    user = user_register(username="newcomer", email="newcomer@example.com", password=USER_PASSWORD)
    assert user is not None and not user.email_verified
    browser = signed_in_client(user, second_factor=False)

    reply = browser.post("/dashboard/keys/new/", {"name": "my key", "grace_hours": 24})

    assert reply.status_code == 400
    assert not ApiKey.objects.filter(user=user).exists()


def test_an_api_key_of_a_self_registered_user_whose_address_is_unverified_again_is_refused(client, db):
    user = user_register(username="newcomer", email="newcomer@example.com", password=USER_PASSWORD)
    assert user is not None
    user = user_email_verify(user_id=user.pk, email=user.email, actor=audit.Actor.user(user), via="link")
    issued = apikey_create(name="k", caller=Caller.operator(SYSTEM), user=user, scopes=["idp.manage"])
    assert _introspect(client, issued.secret)["active"] is True

    # A new address, unverified: as with refresh tokens, the key stops working until it is verified.
    user_email_change(user_id=user.pk, email="elsewhere@example.com", actor=audit.Actor.user(user))
    assert _introspect(client, issued.secret) == {"active": False}
    reply = client.get("/api/v1/users/", headers={"X-API-Key": issued.secret})
    assert reply.status_code == 401

    user_email_verify(user_id=user.pk, email="elsewhere@example.com", actor=audit.Actor.user(user), via="link")
    assert _introspect(client, issued.secret)["active"] is True


def test_users_not_self_registered_keep_their_api_keys_with_an_unverified_address(client, db):
    user = make_user()
    assert not user.email_verified
    issued = apikey_create(name="k", caller=Caller.operator(SYSTEM), user=user)
    assert _introspect(client, issued.secret)["active"] is True


# --- Staff: the admin's sessions list follows the holdings rule ------------------------------------------


def _administrator() -> Any:
    user = make_user()
    role_grant(role=Role.objects.get(name=ADMIN_ROLE, application__isnull=True), user=user, actor=SYSTEM)
    return user


def _signed_in_somewhere(user: Any) -> BrowserSession:
    signed_in_client(user, second_factor=False)
    return BrowserSession.objects.filter(user=user).latest("pk")


def test_a_lesser_staff_member_does_not_see_an_administrators_sessions_in_admin(client, db):
    staff = make_staff(permissions=[SESSIONS_END])
    administrator, staff_peer, bystander = _administrator(), make_staff(), make_user()
    hidden = [_signed_in_somewhere(administrator), _signed_in_somewhere(staff_peer)]
    shown = _signed_in_somewhere(bystander)
    signed_in_client(staff, client=client)

    page = client.get(SESSIONS_CHANGELIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert shown.public_id in text
    for row in hidden:
        assert row.public_id not in text, row.user
        detail = client.get(f"{SESSIONS_CHANGELIST}{row.pk}/change/")
        assert detail.status_code == 302 and row.public_id not in detail.content.decode()  # "does not exist"
    searched = client.get(SESSIONS_CHANGELIST, {"q": administrator.username}).content.decode()
    assert hidden[0].public_id not in searched


def test_a_superuser_sees_every_session_in_admin(client, db):
    superuser = make_staff(superuser=True)
    administrator, bystander = _administrator(), make_user()
    rows = [_signed_in_somewhere(administrator), _signed_in_somewhere(bystander)]
    signed_in_client(superuser, client=client)
    text = client.get(SESSIONS_CHANGELIST).content.decode()
    assert all(row.public_id in text for row in rows)


# --- Tokens of a session whose row is gone ---------------------------------------------------------------


def _sign_in_again_as(browser: Any, base_url: str, user: Any) -> None:
    """The same browser signs in as someone else: Django flushes the session (its row goes)."""
    page = browser.get(f"{base_url}/accounts/login/", timeout=10)
    action, fields = parse_form(page.text)
    fields.update(username=user.username, password=USER_PASSWORD)
    reply = browser.post(
        urljoin(page.url, action or page.url),
        data=fields,
        headers={"Referer": page.url},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 302, reply.text[:300]


def _password_change(browser: Any, base_url: str) -> None:
    page = browser.get(f"{base_url}/dashboard/password/", timeout=10)
    action, fields = parse_form(page.text)
    fields.update(old_password=USER_PASSWORD, new_password1=NEW_PASSWORD, new_password2=NEW_PASSWORD)
    reply = browser.post(
        f"{base_url}{action}", data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10
    )
    assert reply.status_code == 302, reply.text[:300]


def _sign_out_everywhere(browser: Any, base_url: str) -> None:
    page = browser.get(f"{base_url}/dashboard/sessions/", timeout=10)
    _, fields = parse_form(page.text)  # a session's form: the same CSRF token
    reply = browser.post(
        f"{base_url}/dashboard/sessions/end-all/",
        data={"csrfmiddlewaretoken": fields["csrfmiddlewaretoken"]},
        headers={"Referer": page.url},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code in (200, 302), reply.text[:300]


@pytest.mark.parametrize("ending", ["password change", "sign out everywhere"])
def test_tokens_of_a_session_flushed_by_another_sign_in_die_with_the_users_other_sessions(
    live_server, signing_key, ending
):
    # An attacker who has the victim's password signs in at a client (a refresh token bound to that
    # browser session), then signs in as someone else in the same browser: the session's row goes
    # without ending it. The victim then changes the password, or signs out everywhere.
    victim, other = make_user(), make_user()
    attacker = relying_party(live_server.url, make_client())
    stolen = tokens_at(attacker, victim, scope="openid offline_access")
    _sign_in_again_as(attacker.browser, live_server.url, other)
    assert not BrowserSession.objects.filter(user=victim).exists()

    browser = signed_in_session(live_server.url, victim)
    if ending == "password change":
        _password_change(browser, live_server.url)
    else:
        _sign_out_everywhere(browser, live_server.url)

    refused = attacker.token_request(grant_type="refresh_token", refresh_token=stolen["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_a_browser_signing_in_as_someone_else_ends_the_previous_persons_session(live_server, signing_key):
    # A shared computer: Alice signs in at a client and walks away; Bob signs in there. Alice's
    # session is gone from her sessions page, so what it issued must not live on unseen.
    alice, bob = make_user(), make_user()
    shared = relying_party(live_server.url, make_client())
    tokens = tokens_at(shared, alice, scope="openid offline_access")
    _sign_in_again_as(shared.browser, live_server.url, bob)

    assert not BrowserSession.objects.filter(user=alice).exists()
    refused = shared.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    ended = AuditEvent.objects.get(action="session.ended", target_id=str(alice.pk))
    assert ended.data["reason"] == "flushed"


# --- Hostile path segments ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(set(VALUES) - {"empty"}))
@pytest.mark.parametrize(
    "path",
    [
        "/accounts/upstream/{}/",
        "/accounts/upstream/{}/callback/?state=s&code=c",
        "/accounts/email/verify/{}/a-b/",
        "/accounts/email/verify/MQ/{}/",
    ],
)
def test_hostile_path_segments_of_the_account_and_upstream_pages_are_refused_cleanly(db, path, kind):
    browser = Client(raise_request_exception=False)
    reply = browser.get(path.format(quote(VALUES[kind], safe="")))
    assert 400 <= reply.status_code < 500, (path, kind, reply.status_code)
    text = reply.content.decode("utf-8", "replace")
    assert not any(internal in text for internal in INTERNALS), text[:300]


# --- Link tokens in the request log ------------------------------------------------------------------


@pytest.mark.parametrize("link", ["password-reset-confirm", "email-verify"])
def test_the_request_log_does_not_keep_the_token_of_a_reset_or_verification_link(client, db, server_log, link):  # noqa: F811
    # Whoever reads the logs (an operator, a log pipeline) must not get a usable reset link.
    user = make_user()
    generator = password_reset_token if link == "password-reset-confirm" else email_verification_token
    token = generator.make_token(user)
    path = reverse(link, kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": token})

    reply = client.get(path)

    assert reply.status_code in (200, 302)
    assert server_log.requests(path=path) == [], "the path is logged as is"
    assert token not in server_log.text
    assert token.split("-")[1] not in server_log.text
